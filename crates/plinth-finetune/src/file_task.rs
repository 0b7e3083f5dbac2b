//! A finetuning task from a user's own file (`[task] data = { ... }`): CSV, TSV or
//! JSON Lines with an input column and a label column, split here, with every row
//! that cannot be used kept as a reject (its line and the reason) instead of being
//! dropped silently. The result is the same [`TaskSpec`] and rows a plugin task
//! gives, so training, evaluation, baselines, reports and prediction do not know
//! where a task came from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use plinth_plugin_protocol::{
    fnv1a, splitmix64, ComponentSpec, DomainRequest, DomainSpec, DomainSplit, DomainValue, LabelledExample, Plugins,
    PluginsExt, Split, TaskKind, TaskSpec,
};
use serde::{Deserialize, Serialize};

use crate::{FinetuneError, Result};

/// The plugin id a file task reports as its source (in `task.json` and reports).
pub const FILE_SOURCE: &str = "file";

/// `[task] data = { path, input, label, kind, ... }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTaskConfig {
    /// The data file (relative to the working directory).
    pub path: PathBuf,
    /// `csv`, `tsv`, `jsonl` or `parquet`; default from the extension (`.csv`,
    /// `.tsv`/`.tab`, `.jsonl`/`.ndjson`, `.parquet`/`.pq`).
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// The column (or JSON key) holding the text or SMILES the model reads
    /// (regression and classification).
    #[serde(default)]
    pub input: String,
    /// What the input column holds, when a plugin knows the kind: `"molecule"`
    /// (the plugin's `domain` component) or `"PLUGIN/COMPONENT"`. The domain
    /// checks and canonicalises each value (a rejected one is a bad row), gives
    /// its features to the baselines and offers its own splits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The label column: a number for regression, any value for classification;
    /// or a list of columns: several values (multi-output regression) or several
    /// 0/1 labels (multi-label), where an empty cell is a missing entry.
    #[serde(default, skip_serializing_if = "Labels::is_none")]
    pub label: Labels,
    /// `regression`, `classification` (binary or multi-class; class names are kept),
    /// `multilabel` (several 0/1 columns) or `generation` (a causal base learns
    /// `completion` after `prompt`).
    pub kind: FileTaskKind,
    /// Generation: what the model is given, a template over columns such as
    /// `"Task: {request}\n"` (`{{` and `}}` for braces); none: the model learns the
    /// completion alone.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Generation: what the model learns to write, a template such as `"{task}"`.
    #[serde(default)]
    pub completion: Option<String>,
    /// `random` (default, seeded), `column:NAME` (each row's split named in a column:
    /// `train`, `validation`/`valid`/`val`, `test`), `group:NAME` (rows sharing the
    /// column's value land in the same split), or a split the input's domain offers
    /// (`scaffold` for molecules).
    #[serde(default = "default_split")]
    pub split: String,
    /// Seed of the random and grouped splits, default 0.
    #[serde(default)]
    pub seed: u64,
    /// Shares of rows (random) or groups' rows (grouped) for validation and test, default 0.1 each.
    #[serde(default = "tenth")]
    pub validation_fraction: f64,
    #[serde(default = "tenth")]
    pub test_fraction: f64,
    /// A run refuses to start when more than this share of rows is bad, default 0.05.
    #[serde(default = "default_max_bad")]
    pub max_bad_share: f64,
    /// Validation metric; default `rmse` (regression), `roc_auc` (two classes) or `accuracy`.
    #[serde(default)]
    pub metric: Option<String>,
}

fn default_split() -> String {
    "random".into()
}
fn tenth() -> f64 {
    0.1
}
fn default_max_bad() -> f64 {
    0.05
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Tsv,
    Jsonl,
    Parquet,
}

impl FileFormat {
    /// The format a path's extension names: `.csv`, `.tsv`/`.tab`, `.jsonl`/`.ndjson`,
    /// `.parquet`/`.pq`.
    pub fn of_path(path: &Path) -> Option<FileFormat> {
        let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(FileFormat::Csv),
            "tsv" | "tab" => Some(FileFormat::Tsv),
            "jsonl" | "ndjson" => Some(FileFormat::Jsonl),
            "parquet" | "pq" => Some(FileFormat::Parquet),
            _ => None,
        }
    }

    /// The field separator of a table format (`,` for CSV, a tab for TSV).
    pub fn delimiter(self) -> u8 {
        if self == FileFormat::Tsv {
            b'\t'
        } else {
            b','
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileTaskKind {
    Regression,
    Classification,
    #[serde(alias = "multi_label", alias = "multi-label")]
    MultiLabel,
    Generation,
}

/// `label = "col"` or `label = ["a", "b", ...]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Labels {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Labels {
    pub fn is_none(&self) -> bool {
        *self == Labels::None
    }

    /// The label columns named.
    pub fn columns(&self) -> Vec<String> {
        match self {
            Labels::None => Vec::new(),
            Labels::One(c) if c.is_empty() => Vec::new(),
            Labels::One(c) => vec![c.clone()],
            Labels::Many(cs) => cs.clone(),
        }
    }
}

impl From<&str> for Labels {
    fn from(c: &str) -> Self {
        Labels::One(c.into())
    }
}

/// A piece of a template: text as it stands, or a `{column}` to fill in.
enum Part<'a> {
    Text(std::borrow::Cow<'a, str>),
    Column(&'a str),
}

/// Splits a template into text and `{name}` columns; `{{` and `}}` are literal braces.
fn template_parts(template: &str) -> std::result::Result<Vec<Part<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push(Part::Text(rest[..at].into()));
        let (c, after) = (rest.as_bytes()[at], &rest[at + 1..]);
        if after.starts_with(c as char) {
            out.push(Part::Text((c as char).to_string().into()));
            rest = &after[1..];
            continue;
        }
        if c == b'}' {
            return Err(format!("template {template:?} has a `}}` without its `{{` (write `}}}}` for a brace)"));
        }
        let end = after.find('}').ok_or_else(|| format!("template {template:?} has a `{{` that is not closed"))?;
        let name = &after[..end];
        if name.is_empty() || name.contains('{') {
            return Err(format!("template {template:?}: `{{{name}}}` does not name a column"));
        }
        out.push(Part::Column(name));
        rest = &after[end + 1..];
    }
    out.push(Part::Text(rest.into()));
    Ok(out)
}

/// The columns a template names: `{name}`; `{{` and `}}` are literal braces.
pub fn template_columns(template: &str) -> std::result::Result<Vec<String>, String> {
    Ok(template_parts(template)?
        .into_iter()
        .filter_map(|p| match p {
            Part::Column(name) => Some(name.to_string()),
            Part::Text(_) => None,
        })
        .collect())
}

/// `template` with each `{name}` replaced by that column's value.
fn render(template: &str, get: &dyn Fn(&str) -> Option<String>) -> std::result::Result<String, String> {
    let mut out = String::new();
    for part in template_parts(template)? {
        match part {
            Part::Text(t) => out.push_str(&t),
            Part::Column(name) => out.push_str(
                &get(name)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| format!("no {name} (the template needs it)"))?,
            ),
        }
    }
    Ok(out)
}

/// A row that could not be used: its line in the file (1-based, the header is line 1
/// in CSV/TSV) and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    pub line: usize,
    pub reason: String,
}

/// A file task, read and split.
#[derive(Debug, Clone)]
pub struct FileTask {
    pub spec: TaskSpec,
    pub train: Vec<LabelledExample>,
    pub validation: Vec<LabelledExample>,
    pub test: Vec<LabelledExample>,
    pub rejects: Vec<Reject>,
    /// Data rows in the file (kept and rejected).
    pub rows_read: usize,
}

impl FileTask {
    pub fn split(&self, split: Split) -> &[LabelledExample] {
        match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }
}

/// One usable row before splitting.
struct Row {
    text: String,
    /// One cell per label column (empty: missing, for several columns).
    labels: Vec<String>,
    /// The domain's features for the input, once asked.
    features: Vec<u32>,
    /// The domain's split, when the split is the domain's.
    domain_split: Option<Split>,
    /// Generation: the rendered prompt.
    prompt: Option<String>,
    /// The split or group column's value, when the split uses one.
    key: Option<String>,
}

enum SplitBy {
    /// Every row is a test row: a labelled file that scores a trained task.
    All,
    Random,
    Column(String),
    Group(String),
    /// A split the input's domain assigns.
    Domain(String),
}

impl FileTaskConfig {
    /// A config for `path` and `kind` with every other key at its default (the
    /// columns still to be named: `input` and `label`, or `prompt`/`completion`).
    pub fn new(path: impl Into<PathBuf>, kind: FileTaskKind) -> Self {
        FileTaskConfig {
            path: path.into(),
            format: None,
            input: String::new(),
            domain: None,
            label: Labels::None,
            kind,
            split: default_split(),
            seed: 0,
            validation_fraction: tenth(),
            test_fraction: tenth(),
            max_bad_share: default_max_bad(),
            metric: None,
            prompt: None,
            completion: None,
        }
    }

    /// The task's name when the config gives none: the file's stem.
    pub fn default_name(&self) -> String {
        self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into())
    }

    fn split_by(&self) -> std::result::Result<SplitBy, String> {
        match self.split.split_once(':') {
            None if self.split == "random" => Ok(SplitBy::Random),
            Some(("column", c)) if !c.is_empty() => Ok(SplitBy::Column(c.into())),
            Some(("group", c)) if !c.is_empty() => Ok(SplitBy::Group(c.into())),
            None if self.domain.is_some() && !self.split.is_empty() => Ok(SplitBy::Domain(self.split.clone())),
            _ => Err(format!(
                "task.data.split = {:?}: use \"random\", \"column:NAME\", \"group:NAME\" or a split of the input's domain (with task.data.domain)",
                self.split
            )),
        }
    }

    /// The domain as `(plugin, component)`: `"molecule"` is the molecule plugin's
    /// component `domain`.
    pub fn domain_component(&self) -> Option<(String, String)> {
        self.domain.as_ref().map(|d| match d.split_once('/') {
            Some((p, c)) => (p.to_string(), c.to_string()),
            None => (d.clone(), "domain".to_string()),
        })
    }

    /// Settings that cannot work, named by key; no file is read.
    pub fn problems(&self) -> std::result::Result<(), String> {
        self.split_by()?;
        let (v, t) = (self.validation_fraction, self.test_fraction);
        if !(v > 0.0 && t > 0.0 && v + t < 1.0) {
            return Err(format!(
                "task.data.validation_fraction and test_fraction must be positive and leave rows to train on; got {v} and {t}"
            ));
        }
        if !(0.0..1.0).contains(&self.max_bad_share) {
            return Err(format!("task.data.max_bad_share must be in [0, 1), got {}", self.max_bad_share));
        }
        match self.kind {
            FileTaskKind::Generation => {
                let Some(completion) = &self.completion else {
                    return Err(
                        "a generation file task needs task.data.completion, a template such as \"{answer}\"".into()
                    );
                };
                for t in std::iter::once(completion).chain(&self.prompt) {
                    if template_columns(t).map_err(|e| format!("task.data: {e}"))?.is_empty() {
                        return Err(format!("task.data: template {t:?} names no column; write {{column}}"));
                    }
                }
                if !self.input.is_empty() || !self.label.columns().is_empty() {
                    return Err(
                        "a generation file task reads its columns through prompt and completion, not input and label"
                            .into(),
                    );
                }
            }
            _ => {
                let labels = self.label.columns();
                if self.input.is_empty() || labels.is_empty() || labels.iter().any(String::is_empty) {
                    return Err("task.data.input and task.data.label must name columns".into());
                }
                if self.prompt.is_some() || self.completion.is_some() {
                    return Err("task.data.prompt and completion are for kind = \"generation\"".into());
                }
                if self.kind == FileTaskKind::Classification && labels.len() > 1 {
                    return Err(format!(
                        "task.data.label names {} columns; a classification reads one (several 0/1 columns: kind = \"multilabel\")",
                        labels.len()
                    ));
                }
                let mut seen = BTreeSet::new();
                if let Some(c) = labels.iter().find(|c| !seen.insert(c.as_str()) || **c == self.input) {
                    return Err(format!("task.data.label names column {c:?} twice (or it is the input)"));
                }
            }
        }
        if self.domain.is_some() && self.kind == FileTaskKind::Generation {
            return Err("task.data.domain is for an input column; a generation task has prompt and completion".into());
        }
        if self.domain.as_deref().is_some_and(|d| d.is_empty() || d.split('/').any(str::is_empty)) {
            return Err(format!(
                "task.data.domain = {:?}: name a plugin, or PLUGIN/COMPONENT",
                self.domain.as_deref().unwrap_or("")
            ));
        }
        Ok(())
    }

    fn format(&self) -> Result<FileFormat> {
        self.format.or_else(|| FileFormat::of_path(&self.path)).ok_or_else(|| {
            let ext = self.path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
            self.error(format!(
                "cannot tell the format from the extension {ext:?}; set task.data.format = \"csv\", \"tsv\", \"jsonl\" or \"parquet\""
            ))
        })
    }

    fn error(&self, message: String) -> FinetuneError {
        FinetuneError::Invalid(format!("{}: {message}", self.path.display()))
    }
}

/// Reads, checks and splits the file. Bad rows become [`Reject`]s; more of them than
/// `max_bad_share` allows is an error that lists the first few. `plugins` serve a
/// `domain`; none is needed without one.
pub fn load(cfg: &FileTaskConfig, plugins: Option<&dyn Plugins>) -> Result<FileTask> {
    load_as(cfg, None, plugins)
}

/// Reads a labelled file as the test set of a task already trained (`trained`, its
/// spec): every usable row is a test row, classes are the task's own (a row of
/// another class is a reject), and the metric is the task's.
pub fn load_external(cfg: &FileTaskConfig, trained: &TaskSpec, plugins: Option<&dyn Plugins>) -> Result<FileTask> {
    load_as(cfg, Some(trained), plugins)
}

/// A domain's spec, checked to be one: the message says how to fix the name.
pub fn domain_spec(cfg: &FileTaskConfig, plugins: Option<&dyn Plugins>) -> Result<Option<DomainSpec>> {
    let Some((plugin, component)) = cfg.domain_component() else { return Ok(None) };
    let plugins = plugins.ok_or_else(|| {
        FinetuneError::Settings(format!("task.data.domain = {:?} needs its plugin loaded", cfg.domain))
    })?;
    match plugins.spec(&plugin, &component) {
        Ok(ComponentSpec::Domain(d)) => Ok(Some(d)),
        Ok(other) => Err(FinetuneError::Settings(format!(
            "task.data.domain: {plugin}/{component} is a {}, not a domain",
            other.role()
        ))),
        Err(e) => Err(FinetuneError::Settings(format!(
            "task.data.domain = {:?}: {e}; `plinth plugins list` shows the plugins found and `plinth plugins inspect PLUGIN` their domains",
            cfg.domain.as_deref().unwrap_or("")
        ))),
    }
}

/// Inputs through a domain: each value's canonical form or the reason it is
/// rejected, with features and the split when asked.
pub fn ask_domain(
    plugins: &dyn Plugins,
    (plugin, component): (&str, &str),
    values: Vec<String>,
    features: bool,
    split: Option<DomainSplit>,
) -> Result<Vec<DomainValue>> {
    let n = values.len();
    let out = plugins
        .ask(plugin, component, &DomainRequest { values, features, split })
        .map_err(|e| FinetuneError::Plugin(format!("domain {e}")))?;
    if out.len() != n {
        return Err(FinetuneError::Plugin(format!(
            "domain {plugin}/{component} answered {} values for {n}",
            out.len()
        )));
    }
    Ok(out)
}

fn load_as(cfg: &FileTaskConfig, trained: Option<&TaskSpec>, plugins: Option<&dyn Plugins>) -> Result<FileTask> {
    cfg.problems().map_err(FinetuneError::Settings)?;
    let domain = domain_spec(cfg, plugins)?;
    let split_by = match trained {
        Some(_) => SplitBy::All,
        None => cfg.split_by().map_err(FinetuneError::Settings)?,
    };
    let known: Option<&[String]> = trained.filter(|t| t.kind == TaskKind::Classification).map(|t| t.labels.as_slice());
    if let (SplitBy::Domain(name), Some(d)) = (&split_by, &domain) {
        if !d.splits.iter().any(|s| &s.name == name) {
            let offered: Vec<&str> = d.splits.iter().map(|s| s.name.as_str()).collect();
            return Err(FinetuneError::Settings(format!(
                "task.data.split = {name:?} is not a split of domain {:?} (it offers {offered:?}); or use random, column:NAME, group:NAME",
                cfg.domain.as_deref().unwrap_or("")
            )));
        }
    }
    let key_column = match &split_by {
        SplitBy::All | SplitBy::Random | SplitBy::Domain(_) => None,
        SplitBy::Column(c) | SplitBy::Group(c) => Some(c.as_str()),
    };
    let label_columns = cfg.label.columns();
    let several = label_columns.len() > 1 || cfg.kind == FileTaskKind::MultiLabel;
    let format = cfg.format()?;
    let text = match format {
        FileFormat::Parquet => String::new(),
        _ => {
            std::fs::read_to_string(&cfg.path).map_err(|source| FinetuneError::Io { path: cfg.path.clone(), source })?
        }
    };
    let mut rejects = Vec::new();
    let mut rows: Vec<(usize, Row)> = Vec::new();
    let empty_row = |text: String, labels: Vec<String>, prompt, key| Row {
        text,
        labels,
        features: Vec::new(),
        domain_split: None,
        prompt,
        key,
    };
    let mut read = 0;
    let check = |get: &dyn Fn(&str) -> Option<String>| -> std::result::Result<Row, String> {
        let key = match key_column {
            Some(c) => Some(
                get(c)
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("no {c} (the split column is empty or missing)"))?,
            ),
            None => None,
        };
        if cfg.kind == FileTaskKind::Generation {
            let text = render(cfg.completion.as_deref().unwrap_or(""), get)?;
            let prompt = cfg.prompt.as_deref().map(|p| render(p, get)).transpose()?;
            return Ok(empty_row(text, Vec::new(), prompt, key));
        }
        let input = get(&cfg.input)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("no {} (the input column is empty or missing)", cfg.input))?;
        let cells: Vec<String> =
            label_columns.iter().map(|c| get(c).map(|s| s.trim().to_string()).unwrap_or_default()).collect();
        if !several {
            let (label, column) = (&cells[0], &label_columns[0]);
            if label.is_empty() {
                return Err(format!("no {column} (the label is empty or missing)"));
            }
            if cfg.kind == FileTaskKind::Regression && !label.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(format!("label {label:?} is not a number (a regression label must be one)"));
            }
            if let Some(classes) = known.filter(|k| !k.contains(label)) {
                return Err(format!("class {label:?} is not one the task was trained on ({})", classes.join(", ")));
            }
            return Ok(empty_row(input, cells, None, key));
        }
        // Several columns: an empty cell is a missing entry; a row needs one entry.
        let mut cells = cells;
        for (cell, column) in cells.iter_mut().zip(&label_columns) {
            if cell.is_empty() {
                continue;
            }
            match cfg.kind {
                FileTaskKind::MultiLabel => match binary(cell) {
                    Some(b) => *cell = b.to_string(),
                    None => {
                        return Err(format!(
                            "{column} = {cell:?} is not 0 or 1 (a multi-label entry must be one, or empty)"
                        ))
                    }
                },
                _ if !cell.parse::<f64>().is_ok_and(f64::is_finite) => {
                    return Err(format!("{column} = {cell:?} is not a number (or empty for a missing value)"))
                }
                _ => {}
            }
        }
        if cells.iter().all(String::is_empty) {
            return Err(format!("no label in any of {}", label_columns.join(", ")));
        }
        Ok(empty_row(input, cells, None, key))
    };
    let mut keep = |line: usize, row: std::result::Result<Row, String>, rows: &mut Vec<(usize, Row)>| match row {
        Ok(r) => rows.push((line, r)),
        Err(reason) => rejects.push(Reject { line, reason }),
    };
    match format {
        FileFormat::Parquet => {
            let (header, table) = read_parquet(&cfg.path).map_err(|e| cfg.error(e))?;
            let index: std::collections::HashMap<&str, usize> =
                header.iter().enumerate().map(|(i, h)| (h.as_str(), i)).collect();
            let wanted = wanted_columns(cfg, &label_columns, key_column);
            if let Some(name) = wanted.iter().find(|n| !index.contains_key(n.as_str())) {
                return Err(cfg.error(format!("no column {name:?} in the file ({})", header.join(", "))));
            }
            for (i, row) in table.iter().enumerate() {
                read += 1;
                let get = |k: &str| index.get(k).and_then(|&c| row[c].clone());
                keep(i + 1, check(&get), &mut rows);
            }
        }
        FileFormat::Jsonl => {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line) {
                    Ok(obj) => {
                        let get = |k: &str| {
                            obj.get(k).and_then(|v| match v {
                                serde_json::Value::String(s) => Some(s.clone()),
                                serde_json::Value::Number(n) => Some(n.to_string()),
                                serde_json::Value::Bool(b) => Some(b.to_string()),
                                _ => None,
                            })
                        };
                        read += 1;
                        keep(i + 1, check(&get), &mut rows);
                    }
                    Err(e) => {
                        read += 1;
                        keep(i + 1, Err(format!("not a JSON object: {e}")), &mut rows);
                    }
                }
            }
        }
        format => {
            let mut reader =
                csv::ReaderBuilder::new().delimiter(format.delimiter()).flexible(true).from_reader(text.as_bytes());
            let header: Vec<String> = reader
                .headers()
                .map_err(|e| cfg.error(format!("cannot read the header row: {e}")))?
                .iter()
                .map(|h| h.trim().to_string())
                .collect();
            if header.iter().all(String::is_empty) {
                return Err(cfg.error("the file is empty; it needs a header row and data rows".into()));
            }
            for name in &wanted_columns(cfg, &label_columns, key_column) {
                if !header.iter().any(|h| h == name) {
                    let other = if format == FileFormat::Tsv { ',' } else { '\t' };
                    let hint = match header.as_slice() {
                        [only] if only.contains(other) || only.contains(';') => format!(
                            "; the header is one column, {only:?}: is the file delimited by something else (set task.data.format)?"
                        ),
                        _ => String::new(),
                    };
                    return Err(cfg.error(format!("no column {name:?} in the header ({}){hint}", header.join(", "))));
                }
            }
            let index: std::collections::HashMap<&str, usize> =
                header.iter().enumerate().map(|(i, h)| (h.as_str(), i)).collect();
            for record in reader.records() {
                let record = record.map_err(|e| cfg.error(format!("cannot read a row: {e}")))?;
                let line = record.position().map_or(0, |p| p.line() as usize);
                read += 1;
                if record.len() != header.len() {
                    keep(
                        line,
                        Err(format!("{} fields where the header has {}", record.len(), header.len())),
                        &mut rows,
                    );
                    continue;
                }
                let get = |k: &str| index.get(k).and_then(|&i| record.get(i)).map(str::to_string);
                keep(line, check(&get), &mut rows);
            }
        }
    }
    if read == 0 {
        return Err(
            cfg.error("the file has no data rows (a CSV or TSV file needs a header row and rows under it)".into())
        );
    }
    for (what, column) in std::iter::once(("input", &cfg.input)).chain(label_columns.iter().map(|c| ("label", c))) {
        if rows.is_empty() && rejects.iter().all(|r| r.reason.starts_with(&format!("no {column} "))) {
            return Err(cfg.error(format!("no row has the {what} {column:?}")));
        }
    }
    // The domain checks and canonicalises every input of the rows kept so far,
    // gives their features and, for its own split, their splits.
    if let (Some((plugin, component)), Some(plugins)) = (cfg.domain_component(), plugins) {
        let values: Vec<String> = rows.iter().map(|(_, r)| r.text.clone()).collect();
        let split = match &split_by {
            SplitBy::Domain(name) => Some(DomainSplit {
                name: name.clone(),
                validation_fraction: cfg.validation_fraction,
                test_fraction: cfg.test_fraction,
                seed: cfg.seed,
            }),
            _ => None,
        };
        let asked_split = split.is_some();
        let feature_size = domain.as_ref().and_then(|d| d.features.as_ref()).map_or(0, |f| f.size);
        let answers = ask_domain(
            plugins,
            (&plugin, &component),
            values,
            // Features feed the baselines, which only a training run fits.
            trained.is_none() && domain.as_ref().is_some_and(|d| d.features.is_some()),
            split,
        )?;
        let mut kept = Vec::with_capacity(rows.len());
        for ((line, mut row), answer) in rows.into_iter().zip(answers) {
            match answer.reject {
                Some(reason) => {
                    rejects.push(Reject { line, reason: format!("{} {:?}: {reason}", cfg.input, row.text) })
                }
                None if asked_split && answer.split.is_none() => {
                    return Err(FinetuneError::Plugin(format!("domain {plugin}/{component} gave line {line} no split")))
                }
                None if answer.features.iter().any(|&k| k as usize >= feature_size) => {
                    return Err(FinetuneError::Plugin(format!(
                        "domain {plugin}/{component} gave line {line} a feature index past its {feature_size} features"
                    )))
                }
                None => {
                    row.text = answer.value;
                    row.features = answer.features;
                    row.domain_split = answer.split;
                    kept.push((line, row));
                }
            }
        }
        rows = kept;
        rejects.sort_by_key(|r| r.line);
    }
    let bad_share = rejects.len() as f64 / read as f64;
    if bad_share > cfg.max_bad_share {
        let first: Vec<String> = rejects.iter().take(5).map(|r| format!("line {}: {}", r.line, r.reason)).collect();
        return Err(cfg.error(format!(
            "{} of {read} rows cannot be used ({:.1}%, more than task.data.max_bad_share = {}); the first: {}. Fix the file, or raise task.data.max_bad_share to use the rest",
            rejects.len(),
            100.0 * bad_share,
            cfg.max_bad_share,
            first.join("; ")
        )));
    }
    let (kind, labels) = match (trained, cfg.kind) {
        (Some(t), _) => (t.kind, t.labels.clone()),
        (None, FileTaskKind::Regression) => (TaskKind::Regression, Vec::new()),
        (None, FileTaskKind::MultiLabel) => (TaskKind::MultiLabel, Vec::new()),
        (None, FileTaskKind::Generation) => (TaskKind::Generation, Vec::new()),
        (None, FileTaskKind::Classification) => {
            let names: BTreeSet<&str> = rows.iter().map(|(_, r)| r.labels[0].as_str()).collect();
            let mut names: Vec<String> = names.into_iter().map(String::from).collect();
            // Numeric class names in numeric order (2 before 10).
            if names.iter().all(|n| n.parse::<f64>().is_ok()) {
                names.sort_by(|a, b| a.parse::<f64>().unwrap_or(0.0).total_cmp(&b.parse::<f64>().unwrap_or(0.0)));
            }
            if names.len() < 2 {
                return Err(cfg.error(format!(
                    "column {:?} holds one class ({:?}); classification needs two or more",
                    label_columns[0],
                    names.first().map(String::as_str).unwrap_or("")
                )));
            }
            (TaskKind::Classification, names)
        }
    };
    let metric = trained.map(|t| t.metric.clone()).or_else(|| cfg.metric.clone()).unwrap_or_else(|| {
        match (kind, labels.len()) {
            (TaskKind::Regression, _) => "rmse",
            (TaskKind::Generation, _) => "perplexity",
            (TaskKind::MultiLabel, _) | (_, 2) => "roc_auc",
            _ => "accuracy",
        }
        .into()
    });
    let example = |r: &Row| {
        let number = |c: &String| c.parse::<f64>().ok();
        let (label, targets) = match kind {
            _ if several => (0.0, r.labels.iter().map(number).collect()),
            TaskKind::Regression => (number(&r.labels[0]).unwrap_or(f64::NAN), Vec::new()),
            TaskKind::Classification => (labels.iter().position(|l| *l == r.labels[0]).unwrap_or(0) as f64, Vec::new()),
            TaskKind::MultiLabel | TaskKind::Generation => (0.0, Vec::new()),
        };
        LabelledExample {
            prompt: r.prompt.clone(),
            targets,
            features: r.features.clone(),
            ..LabelledExample::new(r.text.clone(), label)
        }
    };
    let mut parts: [Vec<LabelledExample>; 3] = Default::default();
    match &split_by {
        SplitBy::All => parts[2] = rows.iter().map(|(_, r)| example(r)).collect(),
        SplitBy::Domain(_) => {
            for (_, r) in &rows {
                let at = match r.domain_split {
                    Some(Split::Train) => 0,
                    Some(Split::Validation) => 1,
                    _ => 2,
                };
                parts[at].push(example(r));
            }
        }
        SplitBy::Column(c) => {
            let mut unknown = Vec::new();
            for (line, r) in &rows {
                let key = r.key.as_deref().unwrap_or("").to_ascii_lowercase();
                let at = match key.as_str() {
                    "train" | "training" => 0,
                    "validation" | "valid" | "val" | "dev" => 1,
                    "test" => 2,
                    _ => {
                        unknown.push(*line);
                        continue;
                    }
                };
                parts[at].push(example(r));
            }
            if !unknown.is_empty() {
                return Err(cfg.error(format!(
                    "column {c:?} must say train, validation (or valid, val, dev) or test; lines {} say something else",
                    unknown.iter().take(10).map(usize::to_string).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        SplitBy::Random | SplitBy::Group(_) => {
            // Units (rows, or groups of rows) in an order fixed by the seed, then cut
            // so that test and validation get their shares of rows.
            let mut units: Vec<(u64, Vec<usize>)> = match &split_by {
                SplitBy::Random => (0..rows.len()).map(|i| (splitmix64(cfg.seed, i as u64), vec![i])).collect(),
                _ => {
                    let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
                    for (i, (_, r)) in rows.iter().enumerate() {
                        groups.entry(r.key.as_deref().unwrap_or("")).or_default().push(i);
                    }
                    groups.into_iter().map(|(k, members)| (splitmix64(cfg.seed, fnv1a(k.bytes())), members)).collect()
                }
            };
            units.sort_by_key(|u| u.0);
            let n = rows.len() as f64;
            let (test_rows, val_rows) =
                ((cfg.test_fraction * n).round() as usize, (cfg.validation_fraction * n).round() as usize);
            let mut taken = 0;
            for (_, members) in units {
                let at = if taken < test_rows.max(1) {
                    2
                } else if taken < test_rows.max(1) + val_rows.max(1) {
                    1
                } else {
                    0
                };
                taken += members.len();
                parts[at].extend(members.iter().map(|&i| example(&rows[i].1)));
            }
        }
    }
    let [train, validation, test] = parts;
    for (name, part) in [("train", &train), ("validation", &validation), ("test", &test)] {
        if part.is_empty() && (trained.is_none() || name == "test") {
            return Err(cfg.error(format!(
                "the {name} split is empty ({} usable rows, split {:?}); add rows or change the split",
                rows.len(),
                cfg.split
            )));
        }
    }
    let targets =
        if several { trained.map_or_else(|| label_columns.clone(), |t| t.targets.clone()) } else { Vec::new() };
    if trained.is_some_and(|t| t.targets.len() != targets.len()) {
        return Err(cfg.error(format!(
            "the task was trained on {} label columns; this file names {}",
            trained.map_or(0, |t| t.targets.len()),
            label_columns.len()
        )));
    }
    let spec = TaskSpec {
        kind,
        labels,
        targets,
        data: FILE_SOURCE.into(),
        metric,
        source: format!(
            "{} ({} of {read} rows used; split {}, seed {})",
            cfg.path.display(),
            rows.len(),
            cfg.split,
            cfg.seed
        ),
        features: domain.and_then(|d| d.features),
        input_check: None,
        completion: None,
        head: None,
    };
    // The checks every task spec gets (the metric fits the kind and the classes).
    spec.validate().map_err(|e| FinetuneError::Settings(format!("task.data.metric: {e}")))?;
    Ok(FileTask { spec, train, validation, test, rejects, rows_read: read })
}

/// One row of a Parquet file as text cells (`None`: null).
pub type Cells = Vec<Option<String>>;

/// The columns a file task reads: the input and labels (or the templates'
/// columns), and the split's key column.
fn wanted_columns(cfg: &FileTaskConfig, labels: &[String], key_column: Option<&str>) -> Vec<String> {
    let mut wanted: Vec<String> = match cfg.kind {
        FileTaskKind::Generation => {
            cfg.completion.iter().chain(&cfg.prompt).flat_map(|t| template_columns(t).unwrap_or_default()).collect()
        }
        _ => std::iter::once(cfg.input.clone()).chain(labels.iter().cloned()).collect(),
    };
    wanted.extend(key_column.map(String::from));
    wanted
}

/// A Parquet file's top-level column names and each row's cells as text (numbers
/// and booleans written out, strings as they are, nulls as `None`). Nested
/// columns (lists, maps, groups) are refused by name.
pub fn read_parquet(path: &Path) -> std::result::Result<(Vec<String>, Vec<Cells>), String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let reader = SerializedFileReader::new(file).map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let header: Vec<String> = schema.root_schema().get_fields().iter().map(|f| f.name().to_string()).collect();
    let mut rows = Vec::new();
    for (i, row) in reader.get_row_iter(None).map_err(|e| e.to_string())?.enumerate() {
        let row = row.map_err(|e| format!("row {}: {e}", i + 1))?;
        let mut cells = Vec::with_capacity(header.len());
        for (name, field) in row.get_column_iter() {
            cells.push(match field {
                Field::Null => None,
                Field::Str(s) => Some(s.clone()),
                Field::Bool(b) => Some(b.to_string()),
                Field::Byte(x) => Some(x.to_string()),
                Field::Short(x) => Some(x.to_string()),
                Field::Int(x) => Some(x.to_string()),
                Field::Long(x) => Some(x.to_string()),
                Field::UByte(x) => Some(x.to_string()),
                Field::UShort(x) => Some(x.to_string()),
                Field::UInt(x) => Some(x.to_string()),
                Field::ULong(x) => Some(x.to_string()),
                Field::Float(x) => Some(x.to_string()),
                Field::Double(x) => Some(x.to_string()),
                Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => {
                    return Err(format!("column {name:?} is nested (a list, map or group); plinth reads flat columns"))
                }
                other => Some(other.to_string()),
            });
        }
        rows.push(cells);
    }
    Ok((header, rows))
}

/// Writes rejects as JSON lines (`{"line": N, "reason": "..."}`), atomically.
pub fn write_rejects(path: &Path, rejects: &[Reject]) -> Result<()> {
    let mut out = String::new();
    for r in rejects {
        out.push_str(&serde_json::to_string(r).map_err(|e| FinetuneError::Checkpoint(e.to_string()))?);
        out.push('\n');
    }
    plinth_model::checkpoint::write_atomic(path, out.as_bytes())?;
    Ok(())
}

/// A 0/1 cell: `0`, `1` (also `0.0`, `1.0`), `true`, `false`, `yes`, `no`.
fn binary(cell: &str) -> Option<u8> {
    match cell.to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" => Some(1),
        "0" | "0.0" | "false" | "no" => Some(0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, name: &str, body: &str, kind: FileTaskKind) -> FileTaskConfig {
        let path = dir.join(name);
        std::fs::write(&path, body).expect("write");
        FileTaskConfig { input: "text".into(), label: "y".into(), ..FileTaskConfig::new(path, kind) }
    }

    fn csv_rows(n: usize, label: impl Fn(usize) -> String) -> String {
        let mut s = String::from("id,text,y,fold\n");
        for i in 0..n {
            let fold = ["train", "train", "train", "val", "test"][i % 5];
            s.push_str(&format!("{i},\"row number {i}, with a comma\",{},{fold}\n", label(i)));
        }
        s
    }

    #[test]
    fn regression_rows_split_by_seed_and_by_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg =
            config(dir.path(), "a.csv", &csv_rows(200, |i| format!("{}", i as f64 / 10.0)), FileTaskKind::Regression);
        let t = load(&cfg, None).expect("load");
        assert_eq!((t.train.len(), t.validation.len(), t.test.len()), (160, 20, 20));
        assert_eq!((t.spec.kind, t.spec.metric.as_str(), t.rows_read), (TaskKind::Regression, "rmse", 200));
        assert!(t.train[0].text.contains(", with a comma"), "quoted fields stay whole");
        let again = load(&cfg, None).expect("load");
        assert_eq!(again.test[0].text, t.test[0].text, "the same seed gives the same split");
        cfg.seed = 1;
        assert_ne!(
            load(&cfg, None).expect("load").test.iter().map(|r| &r.text).collect::<Vec<_>>(),
            t.test.iter().map(|r| &r.text).collect::<Vec<_>>()
        );
        cfg.split = "column:fold".into();
        let t = load(&cfg, None).expect("load");
        assert_eq!((t.train.len(), t.validation.len(), t.test.len()), (120, 40, 40));
    }

    #[test]
    fn classes_keep_their_names_and_groups_stay_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = csv_rows(200, |i| ["spam", "ham", "eggs"][i % 3].to_string());
        let mut cfg = config(dir.path(), "c.csv", &body, FileTaskKind::Classification);
        let t = load(&cfg, None).expect("load");
        assert_eq!(t.spec.labels, ["eggs", "ham", "spam"]);
        assert_eq!(t.spec.metric, "accuracy");
        for wrong in ["rmse", "roc_auc"] {
            let err =
                load(&FileTaskConfig { metric: Some(wrong.into()), ..cfg.clone() }, None).expect_err(wrong).to_string();
            assert!(err.contains("task.data.metric") && err.contains(wrong), "{err}");
        }
        cfg.split = "group:y".into();
        cfg.validation_fraction = 0.3;
        cfg.test_fraction = 0.3;
        let t = load(&cfg, None).expect("grouped");
        for part in [&t.train, &t.validation, &t.test] {
            let classes: BTreeSet<u64> = part.iter().map(|r| r.label as u64).collect();
            assert_eq!(classes.len(), 1, "each group (here: each class) lies in one split");
        }
        let binary = csv_rows(200, |i| if i % 4 == 0 { "10" } else { "2" }.to_string());
        let t = load(&config(dir.path(), "b.csv", &binary, FileTaskKind::Classification), None).expect("binary");
        assert_eq!(
            (t.spec.labels.as_slice(), t.spec.metric.as_str()),
            (&["2".to_string(), "10".to_string()][..], "roc_auc")
        );
    }

    #[test]
    fn bad_rows_are_rejected_with_their_line_and_too_many_refuse_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut body = csv_rows(100, |i| format!("{i}"));
        body.push_str("100,,3.0,train\n101,text,,train\n102,text,many,train\n103,short row\n");
        let mut cfg = config(dir.path(), "bad.csv", &body, FileTaskKind::Regression);
        let t = load(&cfg, None).expect("4 of 104 rows (3.8%) are bad: under the default 5%, so they become rejects");
        let lines: Vec<usize> = t.rejects.iter().map(|r| r.line).collect();
        assert_eq!(lines, [102, 103, 104, 105]);
        assert!(t.rejects[0].reason.contains("no text") && t.rejects[1].reason.contains("no y"), "{:?}", t.rejects);
        assert!(t.rejects[2].reason.contains("\"many\" is not a number") && t.rejects[3].reason.contains("2 fields"));
        cfg.max_bad_share = 0.01;
        let err = load(&cfg, None).expect_err("over 1%").to_string();
        assert!(
            err.contains("4 of 104 rows") && err.contains("line 102: no text") && err.contains("max_bad_share"),
            "{err}"
        );
    }

    #[test]
    fn an_external_file_is_all_test_rows_in_the_trained_classes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = csv_rows(100, |i| ["spam", "ham"][i % 2].to_string());
        let cfg = config(dir.path(), "train.csv", &body, FileTaskKind::Classification);
        let trained = load(&cfg, None).expect("train").spec;
        let mut other = body.replace("spam", "eggs");
        other.push_str("101,\"one more\",ham,train\n");
        let external = FileTaskConfig { path: dir.path().join("other.csv"), max_bad_share: 0.9, ..cfg.clone() };
        std::fs::write(&external.path, other).expect("write");
        let t = load_external(&external, &trained, None).expect("external");
        assert_eq!((t.train.len(), t.validation.len(), t.test.len()), (0, 0, 51));
        assert_eq!(t.spec.labels, trained.labels, "the task's own classes, in its order");
        assert_eq!(t.rejects.len(), 50);
        assert!(t.rejects[0].reason.contains("class \"eggs\" is not one the task was trained on (ham, spam)"));
    }

    #[test]
    fn generation_rows_come_from_templates_over_columns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut body = String::from("request,task\n");
        for i in 0..50 {
            body.push_str(&format!("install package {i},\"- ansible.builtin.package: {{name: p{i}}}\"\n"));
        }
        body.push_str("no task here,\n");
        let mut cfg = config(dir.path(), "g.csv", &body, FileTaskKind::Generation);
        cfg.input.clear();
        cfg.label = Labels::None;
        cfg.prompt = Some("# {request}\n".into());
        cfg.completion = Some("{task}".into());
        let t = load(&cfg, None).expect("generation");
        assert_eq!((t.spec.kind, t.spec.metric.as_str()), (TaskKind::Generation, "perplexity"));
        let row = t.train.iter().chain(&t.test).find(|r| r.text.ends_with("p7}")).expect("row 7");
        assert_eq!(row.prompt.as_deref(), Some("# install package 7\n"));
        assert_eq!(t.rejects.len(), 1);
        assert!(t.rejects[0].reason.contains("no task"), "{:?}", t.rejects);
        assert_eq!(template_columns("{{literal}} {a} and {b}").expect("ok"), ["a", "b"]);
        for bad in ["{a", "a}", "{}"] {
            assert!(template_columns(bad).is_err(), "{bad}");
        }
        cfg.completion = Some("{answer}".into());
        assert!(load(&cfg, None).expect_err("missing column").to_string().contains("no column \"answer\""));
        cfg.completion = None;
        assert!(load(&cfg, None).expect_err("no completion").to_string().contains("task.data.completion"));
    }

    #[test]
    fn unusable_files_say_what_to_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("empty.csv", "", "empty"),
            ("header.csv", "text,y\n", "no data rows"),
            ("semi.csv", "text;y\nhello;1\n", "delimited by something else"),
            ("missing.csv", "text,label\nhello,1\n", "no column \"y\""),
            ("words.csv", "text,y\nhello,one\nbye,two\n", "not a number"),
            ("data.txt", "text,y\n", "set task.data.format"),
        ];
        for (name, body, want) in cases {
            let err =
                load(&config(dir.path(), name, body, FileTaskKind::Regression), None).expect_err(name).to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        let jsonl = "{\"text\": \"a\", \"y\": 1}\n{\"text\": \"b\", \"y\": \"x\"}\nnot json\n";
        let mut cfg = config(dir.path(), "j.jsonl", jsonl, FileTaskKind::Classification);
        cfg.max_bad_share = 0.5;
        let err = load(&cfg, None).expect_err("too few rows").to_string();
        assert!(err.contains("split is empty"), "{err}");
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data").join(name)
    }

    fn fixture_config(name: &str, input: &str, label: Labels, kind: FileTaskKind) -> FileTaskConfig {
        FileTaskConfig { input: input.into(), label, ..FileTaskConfig::new(fixture(name), kind) }
    }

    fn many(columns: &[&str]) -> Labels {
        Labels::Many(columns.iter().map(|c| c.to_string()).collect())
    }

    #[test]
    fn every_kind_reads_from_its_fixture() {
        let t = load(&fixture_config("permeable.csv", "smiles", "crosses".into(), FileTaskKind::Classification), None)
            .expect("binary with string labels");
        assert_eq!((t.spec.labels.as_slice(), t.spec.metric.as_str()), (&["no".into(), "yes".into()][..], "roc_auc"));
        assert_eq!(t.train.len() + t.validation.len() + t.test.len(), 200);
        let t = load(&fixture_config("topics.jsonl", "text", "topic".into(), FileTaskKind::Classification), None)
            .expect("multi-class from JSON lines");
        assert_eq!((t.spec.labels.len(), t.spec.metric.as_str()), (3, "accuracy"));
        let t = load(
            &fixture_config("properties.csv", "smiles", many(&["size", "polarity"]), FileTaskKind::Regression),
            None,
        )
        .expect("multi-output regression");
        assert_eq!(
            (t.spec.kind, t.spec.targets.as_slice()),
            (TaskKind::Regression, &["size".into(), "polarity".into()][..])
        );
        let rows: Vec<&LabelledExample> = t.train.iter().chain(&t.validation).chain(&t.test).collect();
        assert_eq!(rows.len(), 198, "a row missing one value keeps the other");
        assert_eq!(t.rejects.len(), 2, "two rows miss both");
        assert!(t.rejects[0].reason.contains("no label in any of size, polarity"), "{:?}", t.rejects);
        assert!(rows.iter().all(|r| r.targets.len() == 2 && r.targets.iter().any(Option::is_some)));
        assert_eq!(rows.iter().filter(|r| r.targets[0].is_none()).count(), 16, "size is empty on 16 kept rows");
        let cfg =
            fixture_config("alerts.tsv", "smiles", many(&["nitrogen", "oxygen", "ring"]), FileTaskKind::MultiLabel);
        let t = load(&cfg, None).expect("multi-label with missing entries");
        assert_eq!((t.spec.kind, t.spec.metric.as_str(), t.spec.outputs()), (TaskKind::MultiLabel, "roc_auc", 3));
        let rows: Vec<&LabelledExample> = t.train.iter().chain(&t.validation).chain(&t.test).collect();
        assert!(rows.iter().flat_map(|r| &r.targets).flatten().all(|&v| v == 0.0 || v == 1.0));
        assert_eq!(rows.iter().flat_map(|r| &r.targets).filter(|v| v.is_none()).count(), 47);
        let mut cfg = fixture_config("requests.csv", "", Labels::None, FileTaskKind::Generation);
        cfg.prompt = Some("Request: {request}\n".into());
        cfg.completion = Some("{task}".into());
        let t = load(&cfg, None).expect("generation");
        assert!(t.train[0].prompt.as_deref().is_some_and(|p| p.starts_with("Request: ")));
        assert!(t.train[0].text.starts_with("ansible.builtin."), "{}", t.train[0].text);
    }

    #[test]
    fn several_label_columns_are_checked_per_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let body = (0..100).map(|i| format!("row {i},{},{}\n", i % 2, (i + 1) % 2)).collect::<String>();
        let body = format!("text,a,b\n{body}row x,,\nrow y,2,1\nrow z,1,yes\n");
        let mut cfg = config(dir.path(), "m.csv", &body, FileTaskKind::MultiLabel);
        cfg.label = many(&["a", "b"]);
        let t = load(&cfg, None).expect("3 bad rows of 103");
        let reasons: Vec<&str> = t.rejects.iter().map(|r| r.reason.as_str()).collect();
        assert!(
            reasons[0].contains("no label in any of a, b") && reasons[1].contains("a = \"2\" is not 0 or 1"),
            "{reasons:?}"
        );
        assert_eq!(t.rejects.len(), 2, "yes reads as 1: {reasons:?}");
        cfg.kind = FileTaskKind::Classification;
        assert!(load(&cfg, None).expect_err("one column").to_string().contains("kind = \"multilabel\""));
        cfg.kind = FileTaskKind::Regression;
        cfg.label = many(&["a", "a"]);
        assert!(load(&cfg, None).expect_err("twice").to_string().contains("twice"));
    }

    #[test]
    fn wrong_files_from_the_fixtures_say_what_to_fix() {
        let reg = |name: &str| fixture_config(name, "smiles", "logS".into(), FileTaskKind::Regression);
        let t = load(&FileTaskConfig { max_bad_share: 0.1, ..reg("bad_rows.csv") }, None).expect("4 of 100 bad");
        let got: Vec<(usize, &str)> = t.rejects.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [12, 22, 32, 42], "{got:?}");
        assert!(got[1].1.contains("\"n/a\" is not a number") && got[3].1.contains("1 fields"), "{got:?}");
        let err = load(&FileTaskConfig { max_bad_share: 0.03, ..reg("bad_rows.csv") }, None).expect_err("4% > 3%");
        assert!(err.to_string().contains("4 of 100 rows cannot be used"), "{err}");
        for (name, want) in [
            ("semicolons.csv", "delimited by something else"),
            ("no_label.csv", "no column \"logS\""),
            ("empty.csv", "empty"),
            ("text_labels.csv", "not a number"),
        ] {
            let err = load(&reg(name), None).expect_err(name).to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    /// A stand-in domain plugin: lower-cases values (its "canonical form"), rejects
    /// values with an unclosed parenthesis, one feature per first letter, and a
    /// split by position.
    #[derive(Debug)]
    struct FakeDomain;

    impl Plugins for FakeDomain {
        fn spec(
            &self,
            plugin: &str,
            component: &str,
        ) -> std::result::Result<ComponentSpec, plinth_plugin_protocol::CallError> {
            match (plugin, component) {
                ("mol", "domain") => Ok(ComponentSpec::Domain(DomainSpec {
                    value: "test".into(),
                    splits: vec![plinth_plugin_protocol::DomainSplitSpec {
                        name: "scaffold".into(),
                        description: String::new(),
                    }],
                    features: Some(plinth_plugin_protocol::FeatureSpec { name: "fp".into(), size: 128 }),
                })),
                ("mol", "validate") => Ok(ComponentSpec::Query),
                _ => Err(plinth_plugin_protocol::CallError::new(plugin, component, "no such component")),
            }
        }
        fn call(
            &self,
            _: &str,
            _: &str,
            request: &str,
        ) -> std::result::Result<String, plinth_plugin_protocol::CallError> {
            let req: DomainRequest = serde_json::from_str(request).expect("a domain request");
            let out: Vec<DomainValue> = req
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| match v.matches('(').count() == v.matches(')').count() {
                    true => DomainValue {
                        features: if req.features { vec![u32::from(v.as_bytes()[0])] } else { vec![] },
                        split: req
                            .split
                            .as_ref()
                            .map(|_| [Split::Train, Split::Train, Split::Validation, Split::Test][i % 4]),
                        ..DomainValue::accepted(v.to_lowercase())
                    },
                    false => DomainValue::rejected("unclosed parenthesis"),
                })
                .collect();
            Ok(serde_json::to_string(&out).expect("json"))
        }
        fn open(&self, _: &str, _: &str, _: &str) -> std::result::Result<u64, plinth_plugin_protocol::CallError> {
            unreachable!("no stages")
        }
        fn process(
            &self,
            _: &str,
            _: &str,
            _: u64,
            _: &str,
        ) -> std::result::Result<String, plinth_plugin_protocol::CallError> {
            unreachable!("no stages")
        }
        fn close(&self, _: &str, _: &str, _: u64) {}
    }

    #[test]
    fn a_domain_checks_canonicalises_featurises_and_splits_the_inputs() {
        let mut cfg = fixture_config("solubility.csv", "smiles", "logS".into(), FileTaskKind::Regression);
        cfg.domain = Some("mol".into());
        cfg.split = "scaffold".into();
        let t = load(&cfg, Some(&FakeDomain)).expect("domain");
        assert_eq!(t.rejects.len(), 1, "{:?}", t.rejects);
        assert_eq!(t.rejects[0].line, 122);
        assert!(t.rejects[0].reason.contains("smiles \"C(C\": unclosed parenthesis"), "{:?}", t.rejects);
        assert_eq!((t.train.len(), t.validation.len(), t.test.len()), (101, 51, 51), "the domain's split");
        assert!(t.train.iter().all(|r| r.text == r.text.to_lowercase() && r.features.len() == 1));
        assert_eq!(t.spec.features.as_ref().map(|f| f.size), Some(128), "the baselines get the domain's features");
        cfg.split = "murcko".into();
        assert!(load(&cfg, Some(&FakeDomain))
            .expect_err("no such split")
            .to_string()
            .contains("offers [\"scaffold\"]"));
        cfg.split = "random".into();
        let t = load(&cfg, Some(&FakeDomain)).expect("random split, domain inputs");
        assert_eq!(t.train.len() + t.validation.len() + t.test.len(), 203);
        let dir = tempfile::tempdir().expect("tempdir");
        let body: String = std::iter::once("smiles,logS\n".to_string())
            .chain((0..40).map(|i| format!("{}CCO,{i}\n", if i == 3 { "é" } else { "" })))
            .collect();
        let odd = config(dir.path(), "odd.csv", &body, FileTaskKind::Regression);
        let odd = FileTaskConfig { input: "smiles".into(), label: "logS".into(), domain: Some("mol".into()), ..odd };
        let err = load(&odd, Some(&FakeDomain)).expect_err("index 195 of 128").to_string();
        assert!(err.contains("gave line 5 a feature index past its 128 features"), "{err}");
        cfg.domain = Some("mol/validate".into());
        assert!(load(&cfg, Some(&FakeDomain))
            .expect_err("not a domain")
            .to_string()
            .contains("is a query, not a domain"));
        cfg.domain = Some("protein".into());
        let err = load(&cfg, Some(&FakeDomain)).expect_err("no plugin").to_string();
        assert!(err.contains("task.data.domain = \"protein\"") && err.contains("plinth plugins list"), "{err}");
    }

    /// A Parquet file with a required text column and an optional number column.
    fn write_parquet(path: &Path, texts: &[String], ys: &[Option<f64>]) {
        use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
        use parquet::file::writer::SerializedFileWriter;
        let schema = parquet::schema::parser::parse_message_type(
            "message rows { REQUIRED BYTE_ARRAY text (UTF8); OPTIONAL DOUBLE y; }",
        )
        .expect("schema");
        let file = std::fs::File::create(path).expect("create");
        let mut writer =
            SerializedFileWriter::new(file, std::sync::Arc::new(schema), Default::default()).expect("writer");
        let mut group = writer.next_row_group().expect("row group");
        let mut col = group.next_column().expect("column").expect("text");
        let values: Vec<ByteArray> = texts.iter().map(|t| ByteArray::from(t.as_str())).collect();
        col.typed::<ByteArrayType>().write_batch(&values, None, None).expect("texts");
        col.close().expect("close");
        let mut col = group.next_column().expect("column").expect("y");
        let present: Vec<f64> = ys.iter().flatten().copied().collect();
        let levels: Vec<i16> = ys.iter().map(|y| i16::from(y.is_some())).collect();
        col.typed::<DoubleType>().write_batch(&present, Some(&levels), None).expect("ys");
        col.close().expect("close");
        group.close().expect("close group");
        writer.close().expect("close file");
    }

    #[test]
    fn parquet_files_read_like_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let texts: Vec<String> = (0..100).map(|i| format!("row {i}")).collect();
        let ys: Vec<Option<f64>> = (0..100).map(|i| (i != 7).then_some(i as f64 / 10.0)).collect();
        let path = dir.path().join("rows.parquet");
        write_parquet(&path, &texts, &ys);
        let mut cfg = config(dir.path(), "unused.csv", "", FileTaskKind::Regression);
        cfg.path = path.clone();
        let t = load(&cfg, None).expect("parquet");
        assert_eq!(t.rows_read, 100);
        assert_eq!(t.rejects, [Reject { line: 8, reason: "no y (the label is empty or missing)".into() }]);
        let all: Vec<&LabelledExample> = t.train.iter().chain(&t.validation).chain(&t.test).collect();
        assert!(all.iter().any(|r| r.text == "row 12" && r.label == 1.2), "numbers read as numbers");
        cfg.label = "weight".into();
        assert!(load(&cfg, None)
            .expect_err("no column")
            .to_string()
            .contains("no column \"weight\" in the file (text, y)"));
        std::fs::write(&path, "not parquet").expect("write");
        assert!(load(&cfg, None).expect_err("garbage").to_string().contains("not a readable Parquet file"));
    }
}
