//! The scheduler: records stream through the stages in batches (up to a barrier
//! such as `sort`), per-record failures go to `rejects.jsonl`, and a summary,
//! results files and an HTML report land in the pipeline's `out_dir`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use plinth_plugin_protocol::Plugins;
use serde::{Deserialize, Serialize};

use crate::ops::{Env, Flow, OpRun};
use crate::records::{write_records, Format, Record};
use crate::{Pipeline, PipelineError, Stage};

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

/// A stage's counts and progress bar across the run.
struct Tally {
    records_in: usize,
    records_out: usize,
    rejected: usize,
    seconds: f64,
    bar: Option<indicatif::ProgressBar>,
}

impl Tally {
    fn new(stage: &Stage, bars: Option<&indicatif::MultiProgress>, len: usize) -> Self {
        let bar = bars.map(|m| {
            let b = m.add(indicatif::ProgressBar::new(len as u64));
            b.set_style(
                indicatif::ProgressStyle::with_template("{prefix:>16} {bar:30} {pos}/{len} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(stage.name.clone());
            b
        });
        Tally { records_in: 0, records_out: 0, rejected: 0, seconds: 0.0, bar }
    }

    fn tick(&self, n: usize) {
        if let Some(b) = &self.bar {
            b.inc(n as u64);
        }
    }
}

/// Runs a checked pipeline. Records stream through the stages in batches of
/// `batch_size`: each batch passes every stage up to the next barrier (`sort`,
/// `collect`) before the next batch starts; a barrier waits for all of its input.
pub fn run(p: &Pipeline, plugins: &dyn Plugins, opts: RunOptions) -> Result<Summary, PipelineError> {
    let fail = PipelineError::Run;
    // One run per folder at a time (held until this function returns).
    let _lock = plinth_model::run_dir::RunLock::acquire(&p.out_dir, "run").map_err(|e| fail(e.to_string()))?;
    let rejects_path = p.out_dir.join(REJECTS);
    let mut rejects =
        std::fs::File::create(&rejects_path).map_err(|e| fail(format!("{}: {e}", rejects_path.display())))?;
    let mut env = Env::new(p, plugins, opts.device);
    let bars = opts.progress.then(indicatif::MultiProgress::new);
    let mut tallies: Vec<Option<Tally>> = p.stages.iter().map(|_| None).collect();
    let t_all = Instant::now();
    let mut records: Vec<Record> = Vec::new();
    let mut i = 0;
    while i < p.stages.len() {
        let stage = &p.stages[i];
        if stage.op.flow() == Flow::Barrier {
            let mut tally = Tally::new(stage, bars.as_ref(), records.len());
            let t0 = Instant::now();
            tally.records_in = records.len();
            let mut run = stage.op.open(&env)?;
            records = run.all(std::mem::take(&mut records));
            tally.tick(tally.records_in);
            tally.records_out = records.len();
            tally.seconds = t0.elapsed().as_secs_f64();
            tallies[i] = Some(tally);
            i += 1;
            continue;
        }
        // A streaming segment: stages i..end.
        let end = (i..p.stages.len()).find(|&k| p.stages[k].op.flow() == Flow::Barrier).unwrap_or(p.stages.len());
        let source = stage.op.source()?;
        let is_source = source.is_some();
        if let Some(made) = source {
            records = made;
        }
        let total = records.len();
        let mut runs: Vec<Box<dyn OpRun + '_>> = Vec::with_capacity(end - i);
        for (k, st) in p.stages.iter().enumerate().take(end).skip(i) {
            tallies[k] = Some(Tally::new(st, bars.as_ref(), total));
            runs.push(st.op.open(&env)?);
        }
        let mut out = Vec::new();
        let bs = p.batch_size.max(1);
        let mut input = std::mem::take(&mut records).into_iter();
        loop {
            let mut batch: Vec<Record> = input.by_ref().take(bs).collect();
            if batch.is_empty() {
                break;
            }
            for (k, run) in (i..end).zip(runs.iter_mut()) {
                let tally = tallies[k].as_mut().ok_or_else(|| fail("stage without a tally".into()))?;
                let t0 = Instant::now();
                // A source has no input records: it counts only what it emits.
                if !(is_source && k == i) {
                    tally.records_in += batch.len();
                }
                let n_in = batch.len();
                let (kept, rejected) = run.batch(&mut env, batch)?;
                for (r, reason) in &rejected {
                    let line = serde_json::json!({"stage": p.stages[k].name, "reason": reason, "record": r});
                    writeln!(rejects, "{line}").map_err(|e| fail(format!("{}: {e}", rejects_path.display())))?;
                }
                tally.rejected += rejected.len();
                tally.records_out += kept.len();
                tally.seconds += t0.elapsed().as_secs_f64();
                tally.tick(n_in);
                batch = kept;
            }
            out.extend(batch);
        }
        // Segment end: `write` stages write what they saw.
        for (k, run) in (i..end).zip(runs.iter_mut()) {
            let t0 = Instant::now();
            run.finish(&env)?;
            if let Some(tally) = tallies[k].as_mut() {
                tally.seconds += t0.elapsed().as_secs_f64();
                if let Some(b) = &tally.bar {
                    b.set_length((tally.records_in as u64).max(b.position()));
                }
            }
        }
        drop(runs);
        records = out;
        i = end;
    }
    let mut summaries = Vec::new();
    for (stage, tally) in p.stages.iter().zip(tallies) {
        let tally = tally.ok_or_else(|| fail(format!("stage {} never ran", stage.name)))?;
        if let Some(b) = &tally.bar {
            b.finish();
        }
        summaries.push(StageSummary {
            name: stage.name.clone(),
            op: stage.op.name(),
            records_in: tally.records_in,
            records_out: tally.records_out,
            rejected: tally.rejected,
            seconds: tally.seconds,
        });
    }
    let total_rejected = summaries.iter().map(|s| s.rejected).sum();
    write_records(&p.out_dir.join(RESULTS_JSONL), Format::Jsonl, None, &records)?;
    write_records(&p.out_dir.join(RESULTS_CSV), Format::Csv, None, &records)?;
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
    let html = crate::report::report_html(p, &summary, &records);
    std::fs::write(p.out_dir.join(REPORT), html).map_err(|e| fail(e.to_string()))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use plinth_plugin_protocol::{CallError, Outcome};
    use serde_json::Value;

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
