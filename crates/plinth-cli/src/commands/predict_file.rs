//! `plinth predict --input FILE`: a file of inputs in two streaming passes. The
//! first reads the file a chunk at a time and checks every input against every
//! task (nothing is predicted or written while any input is bad, unless
//! `--skip-invalid`); the second reads it again, predicts each chunk and writes its
//! rows with the predictions added, to a temporary file renamed over `--output`
//! at the end (or to stdout). Memory holds one chunk, whatever the file's size;
//! a Parquet file is read whole (its rows then go out in chunks).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plinth_checkpoint::Checkpoint;
use plinth_finetune::file_task::FileFormat;
use plinth_finetune::{FinetunedTask, Prediction};
use plinth_plugin_protocol::TaskKind;

use super::plugin_data;
use crate::cli::TooLong;

/// Rows per chunk.
const CHUNK: usize = 2048;

/// One chunk of the input file: its rows as they are, and the input of each.
pub(crate) enum Rows {
    /// CSV or TSV: the header and each row's fields.
    Table { delimiter: u8, header: Vec<String>, rows: Vec<Vec<String>> },
    /// JSON Lines: each row's object.
    Objects(Vec<serde_json::Map<String, serde_json::Value>>),
}

/// One input: where it came from (`line N`), and its text (empty when the row lacks it).
pub(crate) struct Input {
    pub origin: String,
    pub text: String,
    /// Why the row has no input, if it has none.
    pub missing: Option<String>,
}

/// Calls `f` with each chunk of `path`'s rows and their inputs from `column`.
fn for_each_chunk(path: &Path, column: &str, f: &mut dyn FnMut(Rows, Vec<Input>) -> Result<()>) -> Result<()> {
    let input = |line: usize, value: Option<String>| {
        let text = value.clone().unwrap_or_default();
        let missing = (text.trim().is_empty()).then(|| format!("no {column} in this row"));
        Input { origin: format!("line {line}"), text, missing }
    };
    match FileFormat::of_path(path) {
        Some(table @ (FileFormat::Csv | FileFormat::Tsv)) => {
            let delimiter = table.delimiter();
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .flexible(true)
                .from_path(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
            let Some(at) = header.iter().position(|h| h.trim() == column) else {
                bail!("{}: no column {column:?} in the header ({}); pass --column", path.display(), header.join(", "));
            };
            let (mut rows, mut inputs) = (Vec::new(), Vec::new());
            for record in reader.records() {
                let record = record.with_context(|| format!("reading {}", path.display()))?;
                let line = record.position().map_or(0, |p| p.line() as usize);
                let fields: Vec<String> = record.iter().map(str::to_string).collect();
                inputs.push(input(line, fields.get(at).cloned()));
                rows.push(fields);
                if rows.len() == CHUNK {
                    f(
                        Rows::Table { delimiter, header: header.clone(), rows: std::mem::take(&mut rows) },
                        std::mem::take(&mut inputs),
                    )?;
                }
            }
            if !rows.is_empty() {
                f(Rows::Table { delimiter, header, rows }, inputs)?;
            }
        }
        Some(FileFormat::Jsonl) => {
            let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            let (mut rows, mut inputs) = (Vec::new(), Vec::new());
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
                    .with_context(|| format!("{} line {}: not a JSON object", path.display(), i + 1))?;
                inputs.push(input(i + 1, obj.get(column).and_then(|v| v.as_str()).map(str::to_string)));
                rows.push(obj);
                if rows.len() == CHUNK {
                    f(Rows::Objects(std::mem::take(&mut rows)), std::mem::take(&mut inputs))?;
                }
            }
            if !rows.is_empty() {
                f(Rows::Objects(rows), inputs)?;
            }
        }
        Some(FileFormat::Parquet) => {
            let (header, table) = plinth_finetune::file_task::read_parquet(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let Some(at) = header.iter().position(|h| h == column) else {
                bail!("{}: no column {column:?} in the file ({}); pass --column", path.display(), header.join(", "));
            };
            let mut line = 0;
            for chunk in table.chunks(CHUNK) {
                let rows: Vec<Vec<String>> =
                    chunk.iter().map(|r| r.iter().map(|c| c.clone().unwrap_or_default()).collect()).collect();
                let inputs = rows
                    .iter()
                    .map(|r: &Vec<String>| {
                        line += 1;
                        input(line, Some(r[at].clone()))
                    })
                    .collect();
                f(Rows::Table { delimiter: b',', header: header.clone(), rows }, inputs)?;
            }
        }
        None => bail!("{}: the input file must be .csv, .tsv, .jsonl or .parquet", path.display()),
    }
    Ok(())
}

/// Each task's reading of each input, each input's problems, and whether it is cut.
pub(crate) struct Checked {
    pub prepared: Vec<Vec<String>>,
    pub problems: Vec<Vec<String>>,
    pub cut: Vec<bool>,
}

/// Checks every input against every task: the plugin's own check or domain (an
/// invalid SMILES, say) and the task's length. `problems` starts with any the
/// inputs already have (a row without the input column).
pub(crate) fn check(
    tasks: &[FinetunedTask],
    ck: &Checkpoint,
    plugins: Option<&plinth_plugin_host::PluginHost>,
    texts: &[String],
    mut problems: Vec<Vec<String>>,
    too_long: TooLong,
) -> Result<Checked> {
    let mut cut = vec![false; texts.len()];
    let mut prepared = Vec::with_capacity(tasks.len());
    for t in tasks {
        let name = format!("{}/{}", t.meta.plugin, t.meta.task);
        let readings = match plugins {
            Some(host) => t.prepare_inputs(host, texts)?,
            None => texts.iter().cloned().map(Ok).collect(),
        };
        let mut reads = Vec::with_capacity(texts.len());
        for (i, r) in readings.into_iter().enumerate() {
            match r {
                Ok(text) => reads.push(text),
                Err(reason) => {
                    problems[i].push(format!("not valid for {name}: {reason}"));
                    reads.push(texts[i].clone());
                }
            }
        }
        let (lens, most) = t.input_tokens(ck, &reads)?;
        for (i, len) in lens.into_iter().enumerate().filter(|(_, len)| *len > most) {
            match too_long {
                TooLong::Refuse => problems[i].push(format!(
                    "{len} tokens, longer than the {most} {name} reads (pass --too-long truncate to cut it)"
                )),
                TooLong::Truncate => cut[i] = true,
            }
        }
        prepared.push(reads);
    }
    Ok(Checked { prepared, problems, cut })
}

/// The checks of one chunk of file inputs.
fn check_inputs(
    tasks: &[FinetunedTask],
    ck: &Checkpoint,
    plugins: Option<&plinth_plugin_host::PluginHost>,
    inputs: &[Input],
    too_long: TooLong,
) -> Result<Checked> {
    let texts: Vec<String> = inputs.iter().map(|i| i.text.clone()).collect();
    let problems = inputs.iter().map(|i| i.missing.iter().cloned().collect()).collect();
    check(tasks, ck, plugins, &texts, problems, too_long)
}

/// Refuses the run when inputs are invalid (unless `skip_invalid`, and some are
/// valid), and names the inputs cut to fit (`--too-long truncate`).
pub(crate) fn refuse_or_go(invalid: usize, total: usize, skip_invalid: bool, cut_at: &[String]) -> Result<()> {
    if invalid > 0 && !skip_invalid {
        bail!(
            "{invalid} of {total} inputs are invalid (listed above); nothing was predicted. Fix them, or pass --skip-invalid to predict the rest"
        );
    }
    if invalid == total {
        bail!("all {invalid} inputs are invalid (listed above); nothing was predicted");
    }
    if !cut_at.is_empty() {
        eprintln!("cut to the tokens the task reads (--too-long truncate): {}", cut_at.join(", "));
    }
    Ok(())
}

/// A prediction as the JSON the output carries for a task.
pub(crate) fn prediction_json(p: Prediction) -> serde_json::Value {
    match p {
        Prediction::Value(v) => serde_json::json!(v),
        Prediction::Label { label, probability, probabilities } => {
            let probs: serde_json::Map<String, serde_json::Value> =
                probabilities.into_iter().map(|(l, p)| (l, serde_json::json!(p))).collect();
            serde_json::json!({"label": label, "probability": probability, "probabilities": probs})
        }
        Prediction::Targets(values) => {
            let each: serde_json::Map<String, serde_json::Value> =
                values.into_iter().map(|(t, v)| (t, serde_json::json!(v))).collect();
            serde_json::json!({ "targets": each })
        }
    }
}

/// What one output column holds.
enum Cell {
    Main,
    Probability,
    Class(String),
    Target(String),
}

/// Where the rows go: stdout, or a temporary file beside `--output`, renamed over
/// it once every row is written (a failed run leaves the old output as it was).
enum Sink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File { tmp: PathBuf, to: PathBuf, w: std::io::BufWriter<std::fs::File> },
}

impl Sink {
    fn open(output: Option<&Path>) -> Result<Sink> {
        Ok(match output {
            None => Sink::Stdout(std::io::BufWriter::new(std::io::stdout())),
            Some(to) => {
                let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tmp = to.with_file_name(format!(".{name}.partial-{}", std::process::id()));
                let file = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
                Sink::File { tmp, to: to.to_path_buf(), w: std::io::BufWriter::new(file) }
            }
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(bytes)?,
            Sink::File { w, tmp, .. } => w.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?,
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Sink::Stdout(mut w) => w.flush()?,
            Sink::File { tmp, to, w } => {
                let file = w.into_inner().map_err(|e| anyhow::anyhow!("writing {}: {}", tmp.display(), e.error()))?;
                file.sync_all()?;
                std::fs::rename(&tmp, &to).with_context(|| format!("moving {} to {}", tmp.display(), to.display()))?;
            }
        }
        Ok(())
    }

    fn abandon(self) {
        if let Sink::File { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Predicts every row of `path` (its inputs in `column`) with each task and writes
/// the rows back with the predictions added; see the module docs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn predict_file(
    tasks: &[FinetunedTask],
    ck: &Checkpoint,
    keys: &[String],
    path: &Path,
    column: &str,
    output: Option<&Path>,
    too_long: TooLong,
    skip_invalid: bool,
) -> Result<()> {
    let plugins = if tasks.iter().any(|t| t.needs_plugins()) { Some(plugin_data()?) } else { None };
    // Pass 1: every input of every chunk checked against every task.
    let (mut total, mut invalid, mut cut_at) = (0usize, 0usize, Vec::new());
    for_each_chunk(path, column, &mut |_, inputs| {
        let c = check_inputs(tasks, ck, plugins.as_ref(), &inputs, too_long)?;
        for (input, why) in inputs.iter().zip(&c.problems).filter(|(_, p)| !p.is_empty()) {
            eprintln!("{}: {:?}: {}", input.origin, super::finetune::shorten(&input.text), why.join("; "));
            invalid += 1;
        }
        for ((input, cut), why) in inputs.iter().zip(&c.cut).zip(&c.problems) {
            if *cut && why.is_empty() {
                cut_at.push(input.origin.clone());
            }
        }
        total += inputs.len();
        Ok(())
    })?;
    if total == 0 {
        bail!("{}: no rows to predict", path.display());
    }
    refuse_or_go(invalid, total, skip_invalid, &cut_at)?;
    // The output's columns, from the tasks' specs: KEY, and for classes
    // KEY_probability and KEY_p_CLASS; for several targets KEY_TARGET each.
    let mut columns: Vec<(String, String, Cell)> = Vec::new();
    for (task, key) in tasks.iter().zip(keys) {
        let spec = &task.meta.spec;
        if spec.multi_target() {
            for t in &spec.targets {
                columns.push((format!("{key}_{t}"), key.clone(), Cell::Target(t.clone())));
            }
            continue;
        }
        columns.push((key.clone(), key.clone(), Cell::Main));
        if spec.kind == TaskKind::Classification {
            columns.push((format!("{key}_probability"), key.clone(), Cell::Probability));
            for class in &spec.labels {
                columns.push((format!("{key}_p_{class}"), key.clone(), Cell::Class(class.clone())));
            }
        }
    }
    let cell = |a: &serde_json::Map<String, serde_json::Value>, key: &str, what: &Cell| -> String {
        let v = &a[key];
        match what {
            Cell::Main => v.get("label").and_then(|l| l.as_str()).map(str::to_string).unwrap_or_else(|| v.to_string()),
            Cell::Probability => v["probability"].to_string(),
            Cell::Class(c) => v["probabilities"][c].to_string(),
            Cell::Target(t) => v["targets"][t].to_string(),
        }
    };
    // `--output`'s extension picks CSV or TSV for a table; otherwise the input's separator.
    let out_delimiter = match output.and_then(FileFormat::of_path) {
        Some(table @ (FileFormat::Csv | FileFormat::Tsv)) => Some(table.delimiter()),
        _ => None,
    };
    // Pass 2: predict and write chunk by chunk.
    let mut sink = Sink::open(output)?;
    let mut first = true;
    let written = for_each_chunk(path, column, &mut |rows, inputs| {
        let c = check_inputs(tasks, ck, plugins.as_ref(), &inputs, too_long)?;
        let keep: Vec<usize> = (0..inputs.len()).filter(|&i| c.problems[i].is_empty()).collect();
        let mut answers: Vec<Option<serde_json::Map<String, serde_json::Value>>> = vec![None; inputs.len()];
        for &i in &keep {
            answers[i] = Some(serde_json::Map::new());
        }
        for ((task, key), reads) in tasks.iter().zip(keys).zip(&c.prepared) {
            let texts: Vec<String> = keep.iter().map(|&i| reads[i].clone()).collect();
            for (&i, p) in keep.iter().zip(task.predict_labelled(ck, &texts, 64)?) {
                if let Some(a) = answers[i].as_mut() {
                    a.insert(key.clone(), prediction_json(p));
                }
            }
        }
        let errors: Vec<Option<String>> = c.problems.iter().map(|p| (!p.is_empty()).then(|| p.join("; "))).collect();
        let mut bytes = Vec::new();
        match rows {
            Rows::Table { delimiter, header, rows } => {
                let mut w = csv::WriterBuilder::new()
                    .delimiter(out_delimiter.unwrap_or(delimiter))
                    .flexible(true)
                    .from_writer(&mut bytes);
                if first {
                    let mut head = header.clone();
                    head.extend(columns.iter().map(|c| c.0.clone()));
                    if invalid > 0 {
                        head.push("error".into());
                    }
                    w.write_record(&head)?;
                }
                for ((mut fields, answer), error) in rows.into_iter().zip(&answers).zip(&errors) {
                    fields.resize(header.len(), String::new());
                    for (_, key, what) in &columns {
                        fields.push(answer.as_ref().map(|a| cell(a, key, what)).unwrap_or_default());
                    }
                    if invalid > 0 {
                        fields.push(error.clone().unwrap_or_default());
                    }
                    w.write_record(&fields)?;
                }
                w.flush()?;
            }
            Rows::Objects(rows) => {
                for ((mut obj, answer), error) in rows.into_iter().zip(answers).zip(errors) {
                    if let Some(a) = answer {
                        obj.extend(a);
                    }
                    if let Some(e) = error {
                        obj.insert("error".into(), serde_json::Value::from(e));
                    }
                    bytes.extend(serde_json::to_string(&obj)?.into_bytes());
                    bytes.push(b'\n');
                }
            }
        }
        first = false;
        sink.write(&bytes)
    });
    match written {
        Ok(()) => sink.finish()?,
        Err(e) => {
            sink.abandon();
            return Err(e);
        }
    }
    if let Some(out) = output {
        eprintln!("wrote {total} rows with predictions to {}", out.display());
    }
    if invalid > 0 {
        bail!("skipped {invalid} invalid inputs of {total} (listed above; their rows carry the reason in `error`)");
    }
    Ok(())
}
