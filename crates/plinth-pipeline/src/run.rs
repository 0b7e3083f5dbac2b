//! Running a checked pipeline: records stream through the stages in batches
//! (up to a barrier such as `sort`), per-record failures go to `rejects.jsonl`, and
//! a summary, results files and an HTML report land in the pipeline's `out_dir`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use plinth_finetune::FinetunedTask;
use plinth_plugin_protocol::{Outcome, Plugins, PluginsExt, StageSession};
use plinth_train::Checkpoint;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Format, Op, Pipeline, PipelineError};

pub type Record = Map<String, Value>;

/// How to run.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub device: tch::Device,
    /// Draw a progress bar per stage (on a terminal).
    pub progress: bool,
}

/// One stage's line in the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageSummary {
    pub name: String,
    pub op: String,
    pub records_in: usize,
    pub records_out: usize,
    pub rejected: usize,
    pub seconds: f64,
}

/// What a run did, also written to `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub pipeline: String,
    pub stages: Vec<StageSummary>,
    pub results: usize,
    pub rejected: usize,
    pub seconds: f64,
    pub out_dir: PathBuf,
}

pub const RESULTS_JSONL: &str = "results.jsonl";
pub const RESULTS_CSV: &str = "results.csv";
pub const REJECTS: &str = "rejects.jsonl";
pub const SUMMARY: &str = "summary.json";
pub const REPORT: &str = "report.html";

/// Parses records from CSV (header row; numbers and true/false typed), JSONL (one
/// object per line) or plain lines (each becomes `{field: line}`); at most `max`.
pub fn parse_records(text: &str, format: Format, field: &str, max: usize) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    match format {
        Format::Lines => {
            for l in text.lines().map(str::trim).filter(|l| !l.is_empty()).take(max) {
                out.push(Map::from_iter([(field.to_string(), Value::from(l))]));
            }
        }
        Format::Jsonl => {
            for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).take(max) {
                match serde_json::from_str::<Value>(l) {
                    Ok(Value::Object(m)) => out.push(m),
                    Ok(_) => return Err(format!("line {}: not a JSON object", i + 1)),
                    Err(e) => return Err(format!("line {}: {e}", i + 1)),
                }
            }
        }
        Format::Csv => {
            let mut r = csv::Reader::from_reader(text.as_bytes());
            let headers = r.headers().map_err(|e| e.to_string())?.clone();
            for (i, rec) in r.records().take(max).enumerate() {
                let rec = rec.map_err(|e| format!("row {}: {e}", i + 2))?;
                let mut m = Map::new();
                for (h, v) in headers.iter().zip(rec.iter()) {
                    let value = if let Ok(n) = v.parse::<f64>() {
                        Value::from(n)
                    } else if v == "true" || v == "false" {
                        Value::from(v == "true")
                    } else {
                        Value::from(v)
                    };
                    m.insert(h.to_string(), value);
                }
                out.push(m);
            }
        }
    }
    Ok(out)
}

fn write_records(path: &Path, format: Format, field: Option<&str>, records: &[Record]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut columns: Vec<String> = Vec::new();
    for r in records {
        for k in r.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let text = match format {
        Format::Jsonl => records.iter().map(|r| Value::Object(r.clone()).to_string() + "\n").collect::<String>(),
        Format::Lines => {
            let value = |r: &Record| match field {
                Some(f) => r.get(f).map(plain),
                None => r.values().next().map(plain),
            };
            records.iter().map(|r| value(r).unwrap_or_default() + "\n").collect::<String>()
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(&columns).map_err(|e| e.to_string())?;
            for r in records {
                w.write_record(columns.iter().map(|c| r.get(c).map(plain).unwrap_or_default()))
                    .map_err(|e| e.to_string())?;
            }
            String::from_utf8(w.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?
        }
    };
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn op_name(op: &Op) -> String {
    match op {
        Op::Read { .. } => "read".into(),
        Op::Generate { .. } => "generate".into(),
        Op::Predict { .. } => "predict".into(),
        Op::Filter { .. } => "filter".into(),
        Op::Sort { .. } => "sort".into(),
        Op::TopK { .. } => "top_k".into(),
        Op::Dedupe { .. } => "dedupe".into(),
        Op::Write { .. } => "write".into(),
        Op::Collect { .. } => "collect".into(),
        Op::Curate { .. } => "curate".into(),
        Op::Plugin { plugin, stage, .. } => format!("{plugin}/{stage}"),
    }
}

/// Loaded models, shared across stages: one resident base per checkpoint folder,
/// so several adapters on one base load it once.
#[derive(Default)]
struct Models {
    bases: HashMap<PathBuf, Rc<Checkpoint>>,
}

impl Models {
    fn base(&mut self, dir: &Path, device: tch::Device) -> Result<Rc<Checkpoint>, String> {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if let Some(c) = self.bases.get(&key) {
            return Ok(c.clone());
        }
        let c = Rc::new(Checkpoint::load(dir, device).map_err(|e| format!("loading {}: {e}", dir.display()))?);
        self.bases.insert(key, c.clone());
        Ok(c)
    }
}

/// Whether a stage needs every record before it can emit any (a barrier ends a
/// streaming segment).
fn is_barrier(op: &Op) -> bool {
    matches!(op, Op::Sort { .. } | Op::Collect { .. })
}

/// A stage's state across the batches that stream through it.
struct StageRun<'a> {
    /// A plugin stage's session, opened on its first batch.
    session: Option<StageSession<'a, dyn Plugins + 'a>>,
    /// Loaded on first use: the base and (generate with an adapter, predict) the task.
    model: Option<(Rc<Checkpoint>, Option<FinetunedTask>)>,
    seen: HashSet<Option<String>>,
    taken: usize,
    /// `write`: records written so far (the file is written when the segment ends).
    written: Vec<Record>,
    /// `generate` with provenance: the checkpoint's weights SHA-256, read once.
    weights_sha256: Option<String>,
    /// `curate`: the duplicate memories across batches.
    duplicates: Option<plinth_curate::Duplicates>,
    records_in: usize,
    records_out: usize,
    rejected: usize,
    seconds: f64,
    bar: Option<indicatif::ProgressBar>,
}

impl StageRun<'_> {
    fn new(stage: &crate::Stage, bars: Option<&indicatif::MultiProgress>, len: usize) -> Self {
        let bar = bars.map(|m| {
            let b = m.add(indicatif::ProgressBar::new(len as u64));
            b.set_style(
                indicatif::ProgressStyle::with_template("{prefix:>16} {bar:30} {pos}/{len} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(stage.name.clone());
            b
        });
        StageRun {
            session: None,
            model: None,
            seen: HashSet::new(),
            taken: 0,
            written: Vec::new(),
            weights_sha256: None,
            duplicates: None,
            records_in: 0,
            records_out: 0,
            rejected: 0,
            seconds: 0.0,
            bar,
        }
    }

    fn tick(&self, n: usize) {
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
    }
}

/// What every stage can reach while it runs.
struct Ctx<'a> {
    p: &'a Pipeline,
    plugins: &'a dyn Plugins,
    opts: RunOptions,
    models: Models,
}

type Rejected = Vec<(Record, String)>;

/// Runs a checked pipeline. Records stream through the stages in batches of
/// `batch_size`: each batch passes every stage up to the next barrier (`sort`,
/// `collect`) before the next batch starts; a barrier waits for all of its input.
pub fn run(p: &Pipeline, plugins: &dyn Plugins, opts: RunOptions) -> Result<Summary, PipelineError> {
    let fail = |m: String| PipelineError::Run(m);
    std::fs::create_dir_all(&p.out_dir).map_err(|e| fail(format!("{}: {e}", p.out_dir.display())))?;
    let rejects_path = p.out_dir.join(REJECTS);
    let mut rejects =
        std::fs::File::create(&rejects_path).map_err(|e| fail(format!("{}: {e}", rejects_path.display())))?;
    let mut ctx = Ctx { p, plugins, opts, models: Models::default() };
    let bars = opts.progress.then(indicatif::MultiProgress::new);
    let mut runs: Vec<Option<StageRun>> = p.stages.iter().map(|_| None).collect();
    let t_all = Instant::now();
    let mut records: Vec<Record> = Vec::new();
    let mut i = 0;
    while i < p.stages.len() {
        let stage = &p.stages[i];
        if is_barrier(&stage.op) {
            let mut run = StageRun::new(stage, bars.as_ref(), records.len());
            let t0 = Instant::now();
            run.records_in = records.len();
            records = barrier(&stage.op, std::mem::take(&mut records));
            run.tick(run.records_in);
            run.records_out = records.len();
            run.seconds = t0.elapsed().as_secs_f64();
            runs[i] = Some(run);
            i += 1;
            continue;
        }
        // A streaming segment: stages i..end.
        let end = (i..p.stages.len()).find(|&k| is_barrier(&p.stages[k].op)).unwrap_or(p.stages.len());
        let total = match &stage.op {
            Op::Generate { samples, prompt_field: None, .. } => *samples,
            Op::Read { path, format, field } => {
                let text = std::fs::read_to_string(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
                records = parse_records(&text, *format, field, usize::MAX)
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?;
                records.len()
            }
            _ => records.len(),
        };
        for (slot, st) in runs[i..end].iter_mut().zip(&p.stages[i..end]) {
            *slot = Some(StageRun::new(st, bars.as_ref(), total));
        }
        let mut out = Vec::new();
        let bs = p.batch_size.max(1);
        let mut input = std::mem::take(&mut records).into_iter();
        let source = matches!(stage.op, Op::Read { .. } | Op::Generate { prompt_field: None, .. });
        for start in (0..total).step_by(bs) {
            let n = bs.min(total - start);
            // A `generate` source fills empty records; otherwise batches are cut from the input.
            let mut batch: Vec<Record> = match &stage.op {
                Op::Generate { prompt_field: None, .. } => vec![Record::new(); n],
                _ => input.by_ref().take(n).collect(),
            };
            for (k, slot) in runs.iter_mut().enumerate().take(end).skip(i) {
                let run = slot.as_mut().expect("segment stage");
                let stage_k = &p.stages[k];
                let t0 = Instant::now();
                // A source has no input records: it counts only what it emits.
                if !(source && k == i) {
                    run.records_in += batch.len();
                }
                let n_in = batch.len();
                let (kept, rejected) = apply(&mut ctx, stage_k, run, batch).map_err(fail)?;
                for (r, reason) in &rejected {
                    let line = serde_json::json!({"stage": stage_k.name, "reason": reason, "record": r});
                    writeln!(rejects, "{line}").map_err(|e| fail(format!("{}: {e}", rejects_path.display())))?;
                }
                run.rejected += rejected.len();
                run.records_out += kept.len();
                run.seconds += t0.elapsed().as_secs_f64();
                run.tick(n_in);
                batch = kept;
            }
            out.extend(batch);
        }
        // Segment end: write what `write` stages saw.
        for (slot, st) in runs[i..end].iter_mut().zip(&p.stages[i..end]) {
            let run = slot.as_mut().expect("segment stage");
            if let Op::Write { path, format, field } = &st.op {
                let t0 = Instant::now();
                let target = if path.is_absolute() { path.clone() } else { p.out_dir.join(path) };
                write_records(&target, *format, field.as_deref(), &run.written).map_err(fail)?;
                run.written.clear();
                run.seconds += t0.elapsed().as_secs_f64();
            }
            if let Some(b) = &run.bar {
                b.set_length((run.records_in as u64).max(b.position()));
            }
        }
        records = out;
        i = end;
    }
    let mut summaries = Vec::new();
    for (stage, run) in p.stages.iter().zip(runs) {
        let run = run.expect("every stage ran");
        if let Some(b) = &run.bar {
            b.finish();
        }
        summaries.push(StageSummary {
            name: stage.name.clone(),
            op: op_name(&stage.op),
            records_in: run.records_in,
            records_out: run.records_out,
            rejected: run.rejected,
            seconds: run.seconds,
        });
    }
    let total_rejected = summaries.iter().map(|s| s.rejected).sum();
    write_records(&p.out_dir.join(RESULTS_JSONL), Format::Jsonl, None, &records).map_err(fail)?;
    write_records(&p.out_dir.join(RESULTS_CSV), Format::Csv, None, &records).map_err(fail)?;
    let summary = Summary {
        pipeline: p.name.clone(),
        stages: summaries,
        results: records.len(),
        rejected: total_rejected,
        seconds: t_all.elapsed().as_secs_f64(),
        out_dir: p.out_dir.clone(),
    };
    let json = serde_json::to_string_pretty(&summary).map_err(|e| fail(e.to_string()))?;
    std::fs::write(p.out_dir.join(SUMMARY), json).map_err(|e| fail(e.to_string()))?;
    std::fs::write(p.out_dir.join(REPORT), report_html(p, &summary, &records)).map_err(|e| fail(e.to_string()))?;
    Ok(summary)
}

/// Sorts or collects all records.
fn barrier(op: &Op, mut records: Vec<Record>) -> Vec<Record> {
    match op {
        Op::Sort { by, descending } => {
            records.sort_by(|a, b| {
                let (x, y) = (a.get(by), b.get(by));
                let ord = match (x.and_then(Value::as_f64), y.and_then(Value::as_f64)) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    _ => x.map(plain).cmp(&y.map(plain)),
                };
                if *descending {
                    ord.reverse()
                } else {
                    ord
                }
            });
            records
        }
        Op::Collect { field, separator } => {
            if records.is_empty() {
                return records;
            }
            let joined: Vec<String> = records.iter().filter_map(|r| r.get(field).map(plain)).collect();
            let mut one = Record::new();
            one.insert(field.clone(), Value::from(joined.join(separator)));
            one.insert("records".into(), Value::from(records.len()));
            vec![one]
        }
        _ => records,
    }
}

/// Loads (once per stage) the base of `checkpoint` and the finetuned task in `task_dir`.
fn model<'r>(
    ctx: &mut Ctx,
    run: &'r mut StageRun<'_>,
    checkpoint: Option<&Path>,
    task_dir: Option<&Path>,
) -> Result<&'r (Rc<Checkpoint>, Option<FinetunedTask>), String> {
    if run.model.is_none() {
        let base_dir = match (checkpoint, task_dir) {
            (Some(c), _) => c.to_path_buf(),
            (None, Some(t)) => {
                let dir = plinth_finetune::task::resolve_dir(t).map_err(|e| e.to_string())?;
                plinth_finetune::task::read_meta(&dir).map_err(|e| e.to_string())?.base
            }
            (None, None) => return Err("a model stage needs a checkpoint or a finetune run".into()),
        };
        let base = ctx.models.base(&base_dir, ctx.opts.device)?;
        let task = task_dir.map(|t| FinetunedTask::load(t, &base)).transpose().map_err(|e| e.to_string())?;
        run.model = Some((base, task));
    }
    run.model.as_ref().ok_or_else(|| "model not loaded".to_string())
}

/// The `provenance` field of one generated text.
fn provenance(
    run: &mut StageRun<'_>,
    checkpoint: &Path,
    adapter: Option<&Path>,
    prompt: &str,
    seed: u64,
    sampling: &plinth_generate::SamplingConfig,
) -> Result<Value, String> {
    if run.weights_sha256.is_none() {
        run.weights_sha256 = Some(plinth_train::state::checkpoint_sha256(checkpoint).map_err(|e| e.to_string())?);
    }
    let p = serde_json::json!({
        "checkpoint": checkpoint.display().to_string(),
        "weights_sha256": run.weights_sha256,
        "adapter": adapter.map(|a| a.display().to_string()),
        "prompt": prompt,
        "seed": seed,
        "temperature": sampling.temperature,
        "top_k": sampling.top_k,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
        "repetition_penalty": sampling.repetition_penalty,
    });
    Ok(Value::from(p.to_string()))
}

fn generate_one(
    base: &Checkpoint,
    task: Option<&FinetunedTask>,
    plugins: &dyn Plugins,
    prompt: &str,
    sampling: &plinth_generate::SamplingConfig,
    seed: u64,
    trim: bool,
) -> Result<String, String> {
    let cfg = plinth_generate::SamplingConfig { seed, ..sampling.clone() };
    let text = match task {
        Some(t) => t.complete(base, plugins, prompt, &cfg).map_err(|e| e.to_string())?,
        None => plinth_generate::generate(&base.model, &base.tokenizer, prompt, &cfg)
            .map(|g| g.text)
            .map_err(|e| e.to_string())?,
    };
    Ok(if trim { text.trim().to_string() } else { text })
}

/// One batch through one streaming stage: the records kept (with what the stage
/// added) and those rejected with the reason.
fn apply<'a>(
    ctx: &mut Ctx<'a>,
    stage: &crate::Stage,
    run: &mut StageRun<'a>,
    batch: Vec<Record>,
) -> Result<(Vec<Record>, Rejected), String> {
    let mut out = Vec::with_capacity(batch.len());
    let mut rejected: Rejected = Vec::new();
    match &stage.op {
        Op::Sort { .. } | Op::Collect { .. } => return Err(format!("{} is not a streaming stage", stage.name)),
        // The source's batch was read from its file.
        Op::Read { .. } => out = batch,
        Op::Generate {
            checkpoint,
            adapter,
            prompt,
            prompt_field,
            field,
            sampling,
            trim,
            provenance: with_provenance,
            ..
        } => {
            // Seeds count through the stage's records: those it has kept or rejected so far.
            let offset = run.records_out + run.rejected;
            model(ctx, run, Some(checkpoint), adapter.as_deref())?;
            for (i, mut r) in batch.into_iter().enumerate() {
                let prompt = match prompt_field {
                    Some(pf) => r.get(pf).and_then(Value::as_str).unwrap_or("").to_string(),
                    None => prompt.clone(),
                };
                let seed = sampling.seed.wrapping_add((offset + i) as u64);
                let (base, task) = run.model.as_ref().ok_or("model not loaded")?;
                match generate_one(base, task.as_ref(), ctx.plugins, &prompt, sampling, seed, *trim) {
                    Ok(text) => {
                        r.insert(field.clone(), Value::from(text));
                        if *with_provenance {
                            let p = provenance(run, checkpoint, adapter.as_deref(), &prompt, seed, sampling)?;
                            r.insert("provenance".into(), p);
                        }
                        out.push(r);
                    }
                    Err(e) => rejected.push((r, e)),
                }
            }
        }
        Op::Predict { run: dir, input, output, classification } => {
            let (base, task) = model(ctx, run, None, Some(dir))?;
            let task = task.as_ref().ok_or("predict without a task")?;
            let mut checked = Vec::new();
            match &task.meta.spec.input_check {
                Some(check) => {
                    let texts: Vec<String> =
                        batch.iter().map(|r| r.get(input).map(plain).unwrap_or_default()).collect();
                    let verdicts =
                        ctx.plugins.check_inputs(&task.meta.plugin, check, &texts).map_err(|e| e.to_string())?;
                    for (r, verdict) in batch.into_iter().zip(verdicts) {
                        match verdict {
                            Ok(()) => checked.push(r),
                            Err(reason) => rejected.push((r, reason)),
                        }
                    }
                }
                None => checked = batch,
            }
            if !checked.is_empty() {
                let texts: Vec<String> = checked.iter().map(|r| r.get(input).map(plain).unwrap_or_default()).collect();
                let pred = task
                    .predict(base, &texts, ctx.p.batch_size)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Vec::<Vec<f64>>::try_from(t.to_kind(tch::Kind::Double)).map_err(|e| e.to_string()));
                match pred {
                    Ok(rows) => {
                        for (mut r, row) in checked.into_iter().zip(rows) {
                            match classification {
                                None => {
                                    r.insert(output.clone(), Value::from((row[0] * 1e4).round() / 1e4));
                                }
                                Some(labels) => {
                                    let (best, p) =
                                        row.iter().enumerate().fold(
                                            (0, f64::MIN),
                                            |b, (i, &v)| {
                                                if v > b.1 {
                                                    (i, v)
                                                } else {
                                                    b
                                                }
                                            },
                                        );
                                    r.insert(output.clone(), Value::from(labels[best].as_str()));
                                    r.insert(format!("{output}_probability"), Value::from((p * 1e4).round() / 1e4));
                                }
                            }
                            out.push(r);
                        }
                    }
                    Err(e) => rejected.extend(checked.into_iter().map(|r| (r, e.clone()))),
                }
            }
        }
        Op::Filter { expr, .. } => {
            for r in batch {
                match expr.eval(&r) {
                    Ok(true) => out.push(r),
                    Ok(false) => {}
                    Err(e) => rejected.push((r, e)),
                }
            }
        }
        Op::TopK { k } => {
            for r in batch {
                if run.taken < *k {
                    run.taken += 1;
                    out.push(r);
                }
            }
        }
        Op::Dedupe { field } => {
            out.extend(batch.into_iter().filter(|r| run.seen.insert(r.get(field).map(plain))));
        }
        Op::Write { .. } => {
            run.written.extend(batch.iter().cloned());
            out = batch;
        }
        Op::Curate { field, curator } => {
            let dups = run.duplicates.get_or_insert_with(|| curator.duplicates());
            for mut r in batch {
                let text = r.get(field).map(plain).unwrap_or_default();
                match curator.document(&text).and_then(|clean| dups.check(&clean).map(|()| clean)) {
                    Ok(clean) => {
                        r.insert(field.clone(), Value::from(clean));
                        out.push(r);
                    }
                    Err(reason) => rejected.push((r, reason)),
                }
            }
        }
        Op::Plugin { plugin, stage: component, params } => {
            if run.session.is_none() {
                let plugins: &'a dyn Plugins = ctx.plugins;
                run.session = Some(plugins.open_stage(plugin, component, params).map_err(|e| e.to_string())?);
            }
            let session = run.session.as_ref().ok_or("stage session missing")?;
            // One call per batch; a failed call (a panic, a poisoned plugin) rejects
            // the batch's records with its reason, as a failed record would be.
            match session.run(&batch) {
                Ok(outcomes) => {
                    for (mut r, o) in batch.into_iter().zip(outcomes) {
                        match o {
                            Outcome::Add(added) => {
                                r.extend(added);
                                out.push(r);
                            }
                            Outcome::Reject(reason) => rejected.push((r, reason)),
                        }
                    }
                }
                Err(e) => rejected.extend(batch.into_iter().map(|r| (r, e.to_string()))),
            }
        }
    }
    Ok((out, rejected))
}

/// The summary as a text table.
pub fn summary_table(s: &Summary) -> String {
    let mut t = format!("{:<18} {:<22} {:>8} {:>8} {:>8} {:>9}\n", "stage", "op", "in", "out", "rejected", "seconds");
    for st in &s.stages {
        t.push_str(&format!(
            "{:<18} {:<22} {:>8} {:>8} {:>8} {:>9.2}\n",
            st.name, st.op, st.records_in, st.records_out, st.rejected, st.seconds
        ));
    }
    t.push_str(&format!("{} results, {} rejected, {:.1} s\n", s.results, s.rejected, s.seconds));
    t
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A histogram of one numeric field as inline SVG.
fn histogram_svg(field: &str, values: &[f64]) -> String {
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let bins = 20usize;
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut counts = vec![0usize; bins];
    for &v in values {
        counts[(((v - lo) / span) * bins as f64).floor().clamp(0.0, (bins - 1) as f64) as usize] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1);
    let (w, h) = (400.0, 120.0);
    let bars: String = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let bh = c as f64 / max as f64 * (h - 20.0);
            format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#1f77b4\"/>",
                i as f64 * w / bins as f64,
                h - 20.0 - bh,
                w / bins as f64 - 1.0,
                bh
            )
        })
        .collect();
    format!(
        "<figure><svg width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">{bars}<text x=\"0\" y=\"{h}\" font-size=\"11\">{lo:.3}</text><text x=\"{}\" y=\"{h}\" font-size=\"11\" text-anchor=\"end\">{hi:.3}</text></svg><figcaption>{} (n = {})</figcaption></figure>",
        w,
        esc(field),
        values.len()
    )
}

fn report_html(p: &Pipeline, s: &Summary, results: &[Record]) -> String {
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}figure{{display:inline-block;margin:1em}}</style></head><body><h1>{0}</h1><p>{1}</p>",
        esc(&p.name),
        esc(&p.description)
    );
    html.push_str("<h2>Stages</h2><table><tr><th>stage</th><th>op</th><th>in</th><th>out</th><th>rejected</th><th>seconds</th></tr>");
    for st in &s.stages {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            esc(&st.name),
            esc(&st.op),
            st.records_in,
            st.records_out,
            st.rejected,
            st.seconds
        ));
    }
    html.push_str(&format!(
        "</table><p>{} results, {} rejected (see {REJECTS}), {:.1} s.</p>",
        s.results, s.rejected, s.seconds
    ));
    let mut numeric: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in results {
        for (k, v) in r {
            if let Some(x) = v.as_f64() {
                numeric.entry(k.clone()).or_default().push(x);
            }
        }
    }
    if !numeric.is_empty() {
        html.push_str("<h2>Result distributions</h2>");
        for (k, v) in numeric.iter().take(6) {
            html.push_str(&histogram_svg(k, v));
        }
    }
    if let Some(first) = results.first() {
        let cols: Vec<&String> = first.keys().collect();
        html.push_str("<h2>Results</h2><table><tr>");
        for c in &cols {
            html.push_str(&format!("<th>{}</th>", esc(c)));
        }
        html.push_str("</tr>");
        for r in results.iter().take(50) {
            html.push_str("<tr>");
            for c in &cols {
                html.push_str(&format!("<td>{}</td>", esc(&r.get(*c).map(plain).unwrap_or_default())));
            }
            html.push_str("</tr>");
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use plinth_plugin_protocol::CallError;

    use super::*;

    /// Two plugin stages that log the order they see records in.
    #[derive(Debug, Default)]
    struct Log(Mutex<Vec<String>>);

    impl Plugins for Log {
        fn spec(&self, _: &str, _: &str) -> Result<plinth_plugin_protocol::ComponentSpec, CallError> {
            Ok(plinth_plugin_protocol::ComponentSpec::Stage(plinth_plugin_protocol::StageSpec {
                requires: crate::Schema::from([("text".into(), crate::FieldType::String)]),
                optional: Default::default(),
                adds: Default::default(),
                params: Value::Null,
            }))
        }

        fn call(&self, plugin: &str, component: &str, _: &str) -> Result<String, CallError> {
            Err(CallError::new(plugin, component, "stages only"))
        }

        fn open(&self, _: &str, _: &str, _: &str) -> Result<u64, CallError> {
            Ok(1)
        }

        fn process(&self, plugin: &str, stage: &str, _: u64, batch: &str) -> Result<String, CallError> {
            let batch: plinth_plugin_protocol::StageBatch = plinth_plugin_protocol::decode(plugin, stage, batch)?;
            let mut log = self.0.lock().map_err(|e| CallError::new(plugin, stage, e.to_string()))?;
            let outcomes: Vec<Outcome> = batch
                .records
                .iter()
                .map(|r| {
                    let text = r["text"].as_str().unwrap_or_default();
                    log.push(format!("{stage}:{text}"));
                    if text == "bad" {
                        Outcome::Reject("bad record".into())
                    } else {
                        Outcome::Add(Record::new())
                    }
                })
                .collect();
            Ok(serde_json::to_string(&outcomes).unwrap_or_default())
        }

        fn close(&self, _: &str, _: &str, _: u64) {}
    }

    #[test]
    fn batches_stream_through_stages_until_a_barrier() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("in.txt"), "a\nb\nbad\nc\nd\na\n").expect("write");
        let toml = format!(
            r#"name = "s"
out_dir = "{}"
batch_size = 2
[[stage]]
op = "read"
path = "{}"
[[stage]]
plugin = "p"
stage = "one"
[[stage]]
plugin = "p"
stage = "two"
[[stage]]
op = "dedupe"
field = "text"
[[stage]]
op = "top_k"
k = 3
[[stage]]
op = "collect"
field = "text"
separator = ","
"#,
            tmp.path().join("out").display(),
            tmp.path().join("in.txt").display()
        );
        std::fs::write(tmp.path().join("p.toml"), toml).expect("write");
        let log = Log::default();
        let p = Pipeline::load(&tmp.path().join("p.toml"), &log).expect("load");
        let opts = RunOptions { device: tch::Device::Cpu, progress: false };
        let summary = run(&p, &log, opts).expect("run");
        // Each batch of two passes both stages before the next batch starts; the
        // rejected record does not reach stage two.
        let order = log.0.lock().expect("log").join(" ");
        assert_eq!(order, "one:a one:b two:a two:b one:bad one:c two:c one:d one:a two:d two:a");
        // dedupe and top_k keep their state across batches.
        let results = std::fs::read_to_string(tmp.path().join("out").join(RESULTS_JSONL)).expect("results");
        assert_eq!(results.trim(), r#"{"records":3,"text":"a,b,c"}"#);
        let counts: Vec<(usize, usize, usize)> =
            summary.stages.iter().map(|s| (s.records_in, s.records_out, s.rejected)).collect();
        assert_eq!(counts, [(0, 6, 0), (6, 5, 1), (5, 5, 0), (5, 4, 0), (4, 3, 0), (3, 1, 0)]);
    }
}
