//! Running a checked pipeline: stages in order over the record list, model
//! stages in batches, per-record failures to `rejects.jsonl`, and a summary,
//! results files and an HTML report in the pipeline's `out_dir`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use plinth_data::PluginData;
use plinth_finetune::FinetunedTask;
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

fn write_records(path: &Path, format: Format, records: &[Record]) -> Result<(), String> {
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
            records.iter().map(|r| r.values().next().map(plain).unwrap_or_default() + "\n").collect::<String>()
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

/// Runs a checked pipeline.
pub fn run(p: &Pipeline, plugins: &dyn PluginData, opts: RunOptions) -> Result<Summary, PipelineError> {
    let fail = |m: String| PipelineError::Run(m);
    std::fs::create_dir_all(&p.out_dir).map_err(|e| fail(format!("{}: {e}", p.out_dir.display())))?;
    let rejects_path = p.out_dir.join(REJECTS);
    let mut rejects =
        std::fs::File::create(&rejects_path).map_err(|e| fail(format!("{}: {e}", rejects_path.display())))?;
    let mut models = Models::default();
    let mut records: Vec<Record> = Vec::new();
    let mut summaries = Vec::new();
    let mut total_rejected = 0;
    let t_all = Instant::now();
    for stage in &p.stages {
        let t0 = Instant::now();
        let n_in = records.len();
        let bar = opts.progress.then(|| {
            let len = match &stage.op {
                Op::Generate { samples, prompt_field: None, .. } => *samples,
                _ => n_in,
            };
            let b = indicatif::ProgressBar::new(len as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{prefix:>16} {bar:30} {pos}/{len} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(stage.name.clone());
            b
        });
        let tick = |n: u64| {
            if let Some(b) = &bar {
                b.inc(n);
            }
        };
        let mut rejected: Vec<(Record, String)> = Vec::new();
        records = match &stage.op {
            Op::Read { path, format, field } => {
                let text = std::fs::read_to_string(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
                let r = parse_records(&text, *format, field, usize::MAX)
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?;
                tick(r.len() as u64);
                r
            }
            Op::Generate { checkpoint, adapter, samples, prompt, prompt_field, field, sampling } => {
                let ck = models.base(checkpoint, opts.device).map_err(fail)?;
                let task = adapter
                    .as_ref()
                    .map(|a| FinetunedTask::load(a, &ck))
                    .transpose()
                    .map_err(|e| fail(e.to_string()))?;
                let gen = |prompt: &str, seed: u64| {
                    let cfg = plinth_generate::SamplingConfig { seed, ..sampling.clone() };
                    match &task {
                        Some(t) => t.generate(&ck, prompt, &cfg).map(|g| g.text).map_err(|e| e.to_string()),
                        None => plinth_generate::generate(&ck.model, &ck.tokenizer, prompt, &cfg)
                            .map(|g| g.text)
                            .map_err(|e| e.to_string()),
                    }
                };
                let mut out = Vec::new();
                match prompt_field {
                    None => {
                        for i in 0..*samples {
                            let mut r = Record::new();
                            match gen(prompt, sampling.seed.wrapping_add(i as u64)) {
                                Ok(t) => {
                                    r.insert(field.clone(), Value::from(t.trim()));
                                    out.push(r);
                                }
                                Err(e) => rejected.push((r, e)),
                            }
                            tick(1);
                        }
                    }
                    Some(pf) => {
                        for (i, mut r) in std::mem::take(&mut records).into_iter().enumerate() {
                            let prompt = r.get(pf).and_then(Value::as_str).unwrap_or("").to_string();
                            match gen(&prompt, sampling.seed.wrapping_add(i as u64)) {
                                Ok(t) => {
                                    r.insert(field.clone(), Value::from(t.trim()));
                                    out.push(r);
                                }
                                Err(e) => rejected.push((r, e)),
                            }
                            tick(1);
                        }
                    }
                }
                out
            }
            Op::Predict { run, input, output, classification } => {
                let dir = plinth_finetune::task::resolve_dir(run).map_err(|e| fail(e.to_string()))?;
                let meta = plinth_finetune::task::read_meta(&dir).map_err(|e| fail(e.to_string()))?;
                let base = models.base(&meta.base, opts.device).map_err(fail)?;
                let task = FinetunedTask::load(&dir, &base).map_err(|e| fail(e.to_string()))?;
                let mut out = Vec::new();
                let mut checked = Vec::new();
                for r in std::mem::take(&mut records) {
                    let text = r.get(input).map(plain).unwrap_or_default();
                    match meta.spec.input_check.as_ref().map(|c| c.check(plugins, &meta.plugin, &text)) {
                        Some(Err(reason)) => rejected.push((r, reason)),
                        _ => checked.push(r),
                    }
                }
                for chunk in checked.chunks(p.batch_size) {
                    let texts: Vec<String> =
                        chunk.iter().map(|r| r.get(input).map(plain).unwrap_or_default()).collect();
                    let pred = task.predict(&base, &texts, p.batch_size).map_err(|e| e.to_string()).and_then(|t| {
                        Vec::<Vec<f64>>::try_from(t.to_kind(tch::Kind::Double)).map_err(|e| e.to_string())
                    });
                    match pred {
                        Ok(rows) => {
                            for (mut r, row) in chunk.iter().cloned().zip(rows) {
                                match classification {
                                    None => {
                                        r.insert(output.clone(), Value::from((row[0] * 1e4).round() / 1e4));
                                    }
                                    Some(labels) => {
                                        let (best, p) = row.iter().enumerate().fold((0, f64::MIN), |b, (i, &v)| {
                                            if v > b.1 {
                                                (i, v)
                                            } else {
                                                b
                                            }
                                        });
                                        r.insert(output.clone(), Value::from(labels[best].as_str()));
                                        r.insert(format!("{output}_probability"), Value::from((p * 1e4).round() / 1e4));
                                    }
                                }
                                out.push(r);
                            }
                        }
                        Err(e) => rejected.extend(chunk.iter().cloned().map(|r| (r, e.clone()))),
                    }
                    tick(chunk.len() as u64);
                }
                out
            }
            Op::Filter { expr, .. } => {
                let mut out = Vec::new();
                for r in std::mem::take(&mut records) {
                    match expr.eval(&r) {
                        Ok(true) => out.push(r),
                        Ok(false) => {}
                        Err(e) => rejected.push((r, e)),
                    }
                    tick(1);
                }
                out
            }
            Op::Sort { by, descending } => {
                let mut out = std::mem::take(&mut records);
                out.sort_by(|a, b| {
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
                tick(out.len() as u64);
                out
            }
            Op::TopK { k } => {
                let mut out = std::mem::take(&mut records);
                out.truncate(*k);
                tick(n_in as u64);
                out
            }
            Op::Dedupe { field } => {
                let mut seen = HashSet::new();
                let out: Vec<Record> =
                    std::mem::take(&mut records).into_iter().filter(|r| seen.insert(r.get(field).map(plain))).collect();
                tick(n_in as u64);
                out
            }
            Op::Write { path, format } => {
                let target = if path.is_absolute() { path.clone() } else { p.out_dir.join(path) };
                write_records(&target, *format, &records).map_err(fail)?;
                tick(n_in as u64);
                std::mem::take(&mut records)
            }
            Op::Plugin { plugin, stage: component, params } => {
                let mut out = Vec::new();
                for r in std::mem::take(&mut records) {
                    let mut input = r.clone();
                    if !params.is_null() {
                        input.insert("params".into(), params.clone());
                    }
                    let answer = plugins.call(plugin, component, &Value::Object(input).to_string()).and_then(|s| {
                        match serde_json::from_str::<Value>(&s) {
                            Ok(Value::Object(mut m)) => {
                                m.remove("params");
                                Ok(m)
                            }
                            _ => Err(format!("stage answered something other than a JSON object: {s}")),
                        }
                    });
                    match answer {
                        Ok(m) => out.push(m),
                        Err(e) => rejected.push((r, e)),
                    }
                    tick(1);
                }
                out
            }
        };
        if let Some(b) = &bar {
            b.finish();
        }
        for (r, reason) in &rejected {
            let line = serde_json::json!({"stage": stage.name, "reason": reason, "record": r});
            writeln!(rejects, "{line}").map_err(|e| fail(format!("{}: {e}", rejects_path.display())))?;
        }
        total_rejected += rejected.len();
        summaries.push(StageSummary {
            name: stage.name.clone(),
            op: op_name(&stage.op),
            records_in: n_in,
            records_out: records.len(),
            rejected: rejected.len(),
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    write_records(&p.out_dir.join(RESULTS_JSONL), Format::Jsonl, &records).map_err(fail)?;
    write_records(&p.out_dir.join(RESULTS_CSV), Format::Csv, &records).map_err(fail)?;
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
