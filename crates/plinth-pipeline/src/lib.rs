//! Task pipelines: an ordered list of named stages in TOML
//! (`configs/pipelines/*.toml`), each a host operation (read, generate, predict,
//! filter, sort, top-k, dedupe, curate, collect, write; one module each under
//! [`ops`]) or a stage a plugin exports. Records are JSON objects whose fields are
//! typed; [`Pipeline::load`] checks every stage's inputs against what earlier
//! stages produce before any work is done, and its errors name the line of the
//! offending stage (or key). [`run::run`] executes a checked pipeline: records that
//! fail a stage go to `rejects.jsonl` with the stage and reason, and the run goes on.
//!
//! Code map: `ops/` (one file per op, the [`ops::Operator`] trait), `run.rs` (the
//! scheduler), `report.rs` (summary table and HTML report), `records.rs` (file
//! formats), `expr.rs` (filter expressions).

pub mod expr;
pub mod ops;
pub mod records;
pub mod report;
pub mod run;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use plinth_plugin_protocol::Plugins;
pub use plinth_plugin_protocol::{FieldType, Schema};
pub use records::Format;
use serde::Deserialize;

use ops::{CheckCx, HostOp, Operator, PluginToml};

/// Why a stage cannot be checked or cannot go on, in the user's words (the
/// pipeline adds the file, line and stage name).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct StageError(pub String);

impl From<String> for StageError {
    fn from(s: String) -> Self {
        StageError(s)
    }
}

impl From<&str> for StageError {
    fn from(s: &str) -> Self {
        StageError(s.to_string())
    }
}

impl From<StageError> for PipelineError {
    fn from(e: StageError) -> Self {
        PipelineError::Run(e.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{path}:{line}: {message}")]
    At { path: PathBuf, line: usize, message: String },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Run(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineToml {
    name: String,
    #[serde(default)]
    description: String,
    /// Where results, rejects, summary and report go.
    out_dir: PathBuf,
    /// Records per batch, default 64.
    #[serde(default)]
    batch_size: Option<usize>,
    stage: Vec<toml::Spanned<toml::Table>>,
}

/// A `[[stage]]` table: a host operation (`op = ...`) or a plugin's stage
/// (`plugin = ...`, `stage = ...`), each with its own keys.
#[derive(Debug)]
enum StageToml {
    Host(HostOp),
    Plugin(PluginToml),
}

/// A checked stage: its name, operation, source line, and the schema after it.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub op: Arc<dyn Operator>,
    pub line: usize,
    pub schema_after: Schema,
}

/// A loaded, type-checked pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    pub out_dir: PathBuf,
    pub batch_size: usize,
    pub stages: Vec<Stage>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of `key = ...` in the stage whose table starts at `start` (up to the
/// next table header), if it is written there.
fn key_line(text: &str, start: usize, key: &str) -> Option<usize> {
    let mut offset = start;
    for (i, l) in text.get(start..)?.split_inclusive('\n').enumerate() {
        let t = l.trim_start();
        if i > 0 && t.starts_with('[') {
            return None;
        }
        if t.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')) {
            return Some(line_of(text, offset));
        }
        offset += l.len();
    }
    None
}

impl Pipeline {
    /// Reads and checks a pipeline; `plugins` answers plugin stage specs and checks
    /// their params. Nothing runs.
    pub fn load(path: &Path, plugins: &dyn Plugins) -> Result<Self, PipelineError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PipelineError::File { path: path.to_path_buf(), message: e.to_string() })?;
        Self::parse(&text, path, plugins)
    }

    /// [`Pipeline::load`] on a pipeline's text; `path` is the file its errors name.
    pub fn parse(text: &str, path: &Path, plugins: &dyn Plugins) -> Result<Self, PipelineError> {
        let text = text.to_string();
        if let Err(e) = plinth_model::check_finite_numbers(&text) {
            return Err(PipelineError::At {
                path: path.to_path_buf(),
                line: e.line.unwrap_or(1),
                message: e.message(),
            });
        }
        let doc: PipelineToml = toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(&text, s.start));
            PipelineError::At { path: path.to_path_buf(), line, message: e.message().to_string() }
        })?;
        let mut schema = Schema::new();
        let mut stages: Vec<Stage> = Vec::new();
        for (k, spanned) in doc.stage.into_iter().enumerate() {
            let span = spanned.span();
            let stage_line = line_of(&text, span.start);
            let at = |line: usize, message: String| PipelineError::At { path: path.to_path_buf(), line, message };
            let mut table = spanned.into_inner();
            let name = match table.remove("name") {
                Some(toml::Value::String(n)) => Some(n),
                Some(other) => return Err(at(stage_line, format!("`name` must be a string, not {other}"))),
                None => None,
            };
            let name = name
                .or_else(|| table.get("stage").and_then(|v| v.as_str()).map(String::from))
                .or_else(|| table.get("op").and_then(|v| v.as_str()).map(String::from))
                .unwrap_or_else(|| format!("stage{}", k + 1));
            let parsed = parse_stage(table).map_err(|(key, m)| {
                let line = key.and_then(|k| key_line(&text, span.start, &k)).unwrap_or(stage_line);
                at(line, format!("stage {name:?}: {m}"))
            })?;
            let cx = CheckCx { schema: &schema, first: k == 0, plugins };
            let (op, after) = match parsed {
                StageToml::Host(op) => op.check(&cx),
                StageToml::Plugin(p) => p.check(&cx),
            }
            .map_err(|m| at(stage_line, format!("stage {name:?}: {m}")))?;
            schema = after;
            if let Some(twin) = stages.iter().find(|s| s.name == name) {
                return Err(at(
                    stage_line,
                    format!(
                        "stage name {name:?} is already used by the stage on line {}; give each stage its own `name`",
                        twin.line
                    ),
                ));
            }
            stages.push(Stage { name, op, line: stage_line, schema_after: schema.clone() });
        }
        if stages.is_empty() {
            return Err(PipelineError::File {
                path: path.to_path_buf(),
                message: "a pipeline needs at least one [[stage]]".into(),
            });
        }
        if doc.batch_size == Some(0) {
            let line = key_line(&text, 0, "batch_size").unwrap_or(1);
            return Err(PipelineError::At {
                path: path.to_path_buf(),
                line,
                message: "batch_size must be at least 1 (it is how many records move through the stages at once)"
                    .into(),
            });
        }
        Ok(Pipeline {
            name: doc.name,
            description: doc.description,
            path: path.to_path_buf(),
            out_dir: doc.out_dir,
            batch_size: doc.batch_size.unwrap_or(64),
            stages,
        })
    }
}

/// A stage's table as its op's own struct; an error names the offending key when
/// there is one, so the message can point at its line.
fn parse_stage(table: toml::Table) -> Result<StageToml, (Option<String>, String)> {
    let keyed = |e: toml::de::Error| {
        let m = e.message().to_string();
        let key = m.split('`').nth(1).filter(|_| m.starts_with("unknown field")).map(String::from);
        (key, m)
    };
    let op = table.get("op").map(|v| v.to_string()).unwrap_or_default();
    match (table.contains_key("op"), table.contains_key("plugin")) {
        (true, true) => Err((None, "give either `op` (a host operation) or `plugin` + `stage`, not both".into())),
        (false, true) => table.try_into().map(StageToml::Plugin).map_err(keyed),
        (true, false) => table.try_into().map(StageToml::Host).map_err(|e| {
            let (key, m) = keyed(e);
            let m = if m.starts_with("unknown variant") {
                format!("unknown op {op}; host operations are {} (or use `plugin` + `stage`)", HostOp::NAMES.join(", "))
            } else {
                m
            };
            (key, m)
        }),
        (false, false) => Err((None, format!("needs `op` ({}) or `plugin` + `stage`", HostOp::NAMES.join(", ")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_on_its_own_line_inside_its_stage() {
        let text = "name = \"p\"\n[[stage]]\nop = \"read\"\npath = \"x\"\n[[stage]]\nop = \"sort\"\nbye = \"w\"\n";
        let second = text.find("[[stage]]\nop = \"sort\"").expect("stage");
        assert_eq!(key_line(text, second, "bye"), Some(7));
        assert_eq!(key_line(text, second, "path"), None, "only inside that stage");
        let first = text.find("[[stage]]").expect("stage");
        assert_eq!(key_line(text, first, "bye"), None, "not past the next header");
    }

    /// A host with no plugins, for pipelines of host operations.
    #[derive(Debug)]
    struct NoPlugins;

    impl Plugins for NoPlugins {
        fn spec(
            &self,
            p: &str,
            c: &str,
        ) -> Result<plinth_plugin_protocol::ComponentSpec, plinth_plugin_protocol::CallError> {
            Err(plinth_plugin_protocol::CallError::new(p, c, "no plugins here"))
        }
        fn call(&self, p: &str, c: &str, _: &str) -> Result<String, plinth_plugin_protocol::CallError> {
            Err(plinth_plugin_protocol::CallError::new(p, c, "no plugins here"))
        }
        fn open(&self, p: &str, c: &str, _: &str) -> Result<u64, plinth_plugin_protocol::CallError> {
            Err(plinth_plugin_protocol::CallError::new(p, c, "no plugins here"))
        }
        fn process(&self, p: &str, c: &str, _: u64, _: &str) -> Result<String, plinth_plugin_protocol::CallError> {
            Err(plinth_plugin_protocol::CallError::new(p, c, "no plugins here"))
        }
        fn close(&self, _: &str, _: &str, _: u64) {}
    }

    #[test]
    fn read_takes_tsv_and_renames_columns_to_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("assay.tsv");
        std::fs::write(&data, "SMILES\tpIC50\nCCO\t5.5\nc1ccccc1\t7.25\n").expect("write");
        let pipeline = |rename: &str| {
            format!(
                "name = \"p\"\nout_dir = \"o\"\n[[stage]]\nop = \"read\"\npath = {data:?}\nrename = {rename}\n\
                 [[stage]]\nop = \"filter\"\nexpr = \"potency > 6 and smiles != 'x'\"\n"
            )
        };
        let p =
            Pipeline::parse(&pipeline("{ SMILES = \"smiles\", pIC50 = \"potency\" }"), Path::new("p.toml"), &NoPlugins)
                .expect("renamed fields type-check");
        assert_eq!(p.stages[0].schema_after.get("potency"), Some(&FieldType::Number));
        let records = p.stages[0].op.source().expect("read").expect("a source");
        assert_eq!(records[1]["smiles"], "c1ccccc1");
        assert_eq!(records[1]["potency"], 7.25);
        let err = Pipeline::parse(&pipeline("{ Smiles = \"smiles\" }"), Path::new("p.toml"), &NoPlugins)
            .expect_err("no such column")
            .to_string();
        assert!(err.contains("p.toml:3") && err.contains("no column \"Smiles\"") && err.contains("SMILES"), "{err}");
    }

    #[test]
    fn unknown_keys_and_ops_are_named() {
        let t = |s: &str| toml::from_str::<toml::Table>(s).expect("toml");
        let (key, m) = parse_stage(t("op = \"sort\"\nbye = \"w\"\n")).expect_err("unknown key");
        assert_eq!(key.as_deref(), Some("bye"));
        assert!(m.contains("unknown field `bye`") && m.contains("`by`"), "{m}");
        let (_, m) = parse_stage(t("op = \"explode\"\n")).expect_err("unknown op");
        assert!(m.contains("unknown op \"explode\"") && m.contains("top_k"), "{m}");
        let (_, m) = parse_stage(t("path = \"x\"\n")).expect_err("no op");
        assert!(m.contains("needs `op`"), "{m}");
        let (_, m) = parse_stage(t("op = \"read\"\nplugin = \"p\"\nstage = \"s\"\n")).expect_err("both");
        assert!(m.contains("not both"), "{m}");
        assert!(matches!(parse_stage(t("plugin = \"p\"\nstage = \"s\"\n")), Ok(StageToml::Plugin(_))));
    }
}
