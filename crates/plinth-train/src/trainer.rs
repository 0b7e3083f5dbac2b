//! The one training loop. [`Trainer`] owns the step: gradient accumulation,
//! data-parallel averaging, clipping, AdamW and the warmup + cosine schedule, the
//! evaluation cadence, early stopping, one typed [`StepMetrics`] row per step,
//! saving and the curve beside the metrics. Pretraining and finetuning supply an
//! [`Objective`]: their loss on a micro-batch (they own their data), their
//! evaluation, and what they save.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::ddp::DataParallel;
use crate::optim::{accumulate, clip_grad_norm, gradients, lr_at, AdamW};
use crate::plot::{write_line_chart, Series};
use crate::{Result, TrainError};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub lr: f64,
    pub warmup_steps: u64,
    /// Where the schedule ends (and the last evaluation happens).
    pub total_steps: u64,
    pub min_lr_ratio: f64,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Clip the global gradient norm to this (0: no clipping; the norm is logged either way).
    pub clip_norm: f64,
    pub seed: u64,
    pub eval_every: u64,
    /// Save every this many steps and at the end of each `train_until`; `None`:
    /// save at every evaluation (and the best weights when the metric improves).
    pub save_every: Option<u64>,
    /// Stop after this many evaluations without improvement (0: never).
    pub patience: usize,
    /// The number the schedule and the per-step seeds give the first step:
    /// pretraining counts from 1, finetuning from 0. Kept so both reproduce, bit for
    /// bit, the runs made before their loops were one.
    pub count_from: u64,
    /// Where `metrics.jsonl` and the curve go (rank 0 writes).
    pub out_dir: PathBuf,
    /// The curve's file name (`loss.png`, `curves.png`).
    pub plot: &'static str,
    /// The validation metric the curve draws beside the loss (`loss`, the task's metric).
    pub plot_metric: String,
    /// Draw a progress bar (rank 0).
    pub progress_bar: bool,
}

/// Where the loop stands. Objectives save it with their own state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopProgress {
    /// Optimizer steps completed.
    pub step: u64,
    pub best_step: u64,
    /// Best value of the evaluation metric so far (`None` before the first evaluation).
    pub best_metric: Option<f64>,
    pub evals_since_best: usize,
    /// True once the run ended (all steps done, or stopped early).
    pub done: bool,
    pub stopped_early: bool,
}

/// One evaluation on held-out data: its metrics (the step's metrics row holds them
/// under `validation`) and the one that ranks checkpoints.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub metrics: BTreeMap<String, f64>,
    /// The ranking metric's name (a key of `metrics`).
    pub metric: String,
    pub higher_is_better: bool,
}

impl Evaluation {
    fn value(&self) -> f64 {
        self.metrics.get(&self.metric).copied().unwrap_or(f64::NAN)
    }
}

/// What [`Objective::save`] is asked to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Save {
    /// Everything a resumed run needs: weights, optimizer moments, progress.
    Latest,
    /// The weights at the best evaluation so far.
    Best,
}

/// What a training run supplies to the loop. Its errors are its own; the loop's
/// (a non-finite loss, a failed collective, a metrics file) convert into them.
pub trait Objective {
    type Error: From<TrainError>;

    /// The loss of one micro-batch of the coming step; `done` optimizer steps are
    /// complete. The objective draws its rows (from a sampler it owns, or by
    /// position from `done`); in a data-parallel run every rank draws the same
    /// global batch and keeps its shard (`ddp`).
    fn micro_loss(&mut self, done: u64, ddp: Option<&DataParallel>) -> std::result::Result<Tensor, Self::Error>;

    /// Tokens one micro-batch holds on one rank, for the throughput column (`None`: not shown).
    fn tokens_per_micro(&self) -> Option<f64> {
        None
    }

    /// Called after each optimizer step (the objective records its data position).
    fn stepped(&mut self, _step: u64) {}

    /// Evaluates the current weights; `None` on ranks that do not evaluate.
    fn evaluate(&mut self, step: u64) -> std::result::Result<Option<Evaluation>, Self::Error>;

    /// Writes `what`, with the optimizer and the loop's progress for `Latest`.
    fn save(&mut self, what: Save, opt: &AdamW, progress: &LoopProgress) -> std::result::Result<(), Self::Error>;
}

/// One line of `metrics.jsonl`: the step's training numbers and, on evaluation
/// steps, the held-out metrics under `validation` (pretraining: `{"loss": ...}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tokens_per_s: Option<f64>,
    /// Data-parallel runs: seconds this step spent averaging gradients across ranks.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub allreduce_s: Option<f64>,
    /// An evaluation at this step: its metrics.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validation: Option<BTreeMap<String, f64>>,
}

/// The loop, its optimizer and its progress.
#[derive(Debug)]
pub struct Trainer {
    cfg: LoopConfig,
    opt: AdamW,
    ddp: Option<DataParallel>,
    progress: LoopProgress,
    /// True once `metrics.jsonl` was cut back to the restored step (the first
    /// `train_until`).
    metrics_ready: bool,
}

impl Trainer {
    pub fn new(cfg: LoopConfig, opt: AdamW, ddp: Option<DataParallel>, progress: LoopProgress) -> Self {
        Trainer { cfg, opt, ddp, progress, metrics_ready: false }
    }

    pub fn config(&self) -> &LoopConfig {
        &self.cfg
    }

    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }

    pub fn optimizer_mut(&mut self) -> &mut AdamW {
        &mut self.opt
    }

    pub fn ddp(&self) -> Option<&DataParallel> {
        self.ddp.as_ref()
    }

    pub fn progress(&self) -> &LoopProgress {
        &self.progress
    }

    pub fn progress_mut(&mut self) -> &mut LoopProgress {
        &mut self.progress
    }

    /// Saves `what` now (outside the loop's own cadence).
    pub fn save<O: Objective>(&self, job: &mut O, what: Save) -> std::result::Result<(), O::Error> {
        job.save(what, &self.opt, &self.progress)?;
        Ok(self.plot()?)
    }

    /// Trains until `target` steps are done (at most `total_steps`), the run ends
    /// or it stops early.
    pub fn train_until<O: Objective>(&mut self, job: &mut O, target: u64) -> std::result::Result<(), O::Error> {
        let c = self.cfg.clone();
        let target = target.min(c.total_steps);
        let (rank, world) = self.ddp.as_ref().map_or((0, 1), |d| (d.rank(), d.world()));
        // One rank writes: metrics, the curve and the progress bar.
        let writer = rank == 0;
        let metrics_path = c.out_dir.join(METRICS_FILE);
        let mut metrics = match writer {
            true => {
                std::fs::create_dir_all(&c.out_dir).map_err(TrainError::io(&c.out_dir))?;
                if !self.metrics_ready {
                    keep_rows_through(&metrics_path, self.progress.step)?;
                    self.metrics_ready = true;
                }
                let f = std::fs::OpenOptions::new().create(true).append(true).open(&metrics_path);
                Some(f.map_err(TrainError::io(&metrics_path))?)
            }
            false => None,
        };
        let bar =
            if writer && c.progress_bar { progress_bar(target, self.progress.step) } else { ProgressBar::hidden() };
        let tokens_per_step = job.tokens_per_micro().map(|t| t * (c.grad_accum * world) as f64);
        let (mut window, mut window_steps) = (Instant::now(), 0u64);
        while self.progress.step < target && !self.progress.done {
            let step = self.progress.step + 1;
            let index = self.progress.step + c.count_from;
            let lr = lr_at(index, c.lr, c.warmup_steps, c.total_steps, c.min_lr_ratio);
            // Dropout, masks and random replacements are a pure function of
            // (seed, step, rank), so a resumed run draws exactly what the
            // uninterrupted one would have.
            tch::manual_seed(c.seed.wrapping_add(index * world as u64 + rank as u64) as i64);
            let params = self.opt.params();
            let mut grads: Vec<Tensor> = Vec::new();
            let mut loss_sum = 0.0;
            for _ in 0..c.grad_accum {
                let loss = job.micro_loss(self.progress.step, self.ddp.as_ref())?;
                let micro = gradients(&(&loss / c.grad_accum as f64), &params);
                if grads.is_empty() {
                    grads = micro;
                } else {
                    accumulate(&mut grads, micro);
                }
                loss_sum += loss.double_value(&[]);
            }
            let mut loss = loss_sum / c.grad_accum as f64;
            let mut allreduce_s = None;
            if let Some(d) = &self.ddp {
                allreduce_s = Some(d.average(&mut grads)?);
                loss = d.mean(loss)?;
            }
            let grad_norm = clip_grad_norm(&mut grads, c.clip_norm);
            self.opt.step(&grads, lr)?;
            if !loss.is_finite() {
                return Err(TrainError::Invalid(format!(
                    "the training loss became {loss} at step {step}; lower train.lr or raise warmup_steps (the last checkpoint is untouched)"
                ))
                .into());
            }
            self.progress.step = step;
            job.stepped(step);
            plinth_model::run_dir::fault_point("train.step");
            window_steps += 1;
            let tps = tokens_per_step.map(|t| t * window_steps as f64 / window.elapsed().as_secs_f64().max(1e-9));
            if window_steps >= 20 {
                (window, window_steps) = (Instant::now(), 0);
            }
            let mut row = StepMetrics {
                step,
                loss: Some(loss),
                lr: Some(lr),
                grad_norm: Some(grad_norm),
                tokens_per_s: tps,
                allreduce_s,
                ..Default::default()
            };
            let at_end = step == c.total_steps;
            let mut save_now = c.save_every.is_some_and(|n| step.is_multiple_of(n) || step == target);
            if step.is_multiple_of(c.eval_every) || at_end {
                if let Some(e) = job.evaluate(step)? {
                    self.judge(job, &e)?;
                    let value = e.value();
                    tracing::info!(step, loss = format!("{loss:.4}"), metric = %e.metric, value, "evaluation");
                    row.validation = Some(e.metrics);
                }
                if at_end {
                    self.progress.done = true;
                }
                save_now |= c.save_every.is_none();
            }
            bar.set_position(step);
            bar.set_message(match tps {
                Some(t) => format!("loss {loss:.3}  {t:.0} tok/s"),
                None => format!("loss {loss:.3}"),
            });
            if let Some(m) = metrics.as_mut() {
                let text = serde_json::to_string(&row).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
                writeln!(m, "{text}").map_err(TrainError::io(&metrics_path))?;
                if save_now {
                    m.flush().map_err(TrainError::io(&metrics_path))?;
                }
            }
            if save_now {
                job.save(Save::Latest, &self.opt, &self.progress)?;
                if writer {
                    self.plot()?;
                }
            }
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Tracks the best evaluation (saving its weights) and early stopping.
    fn judge<O: Objective>(&mut self, job: &mut O, e: &Evaluation) -> std::result::Result<(), O::Error> {
        let value = e.value();
        let p = &mut self.progress;
        let better = p.best_metric.is_none_or(|b| if e.higher_is_better { value > b } else { value < b });
        if better {
            p.best_metric = Some(value);
            p.best_step = p.step;
            p.evals_since_best = 0;
            job.save(Save::Best, &self.opt, &self.progress)?;
        } else {
            p.evals_since_best += 1;
        }
        let patience = self.cfg.patience;
        if patience > 0 && self.progress.evals_since_best >= patience {
            self.progress.done = true;
            self.progress.stopped_early = true;
            tracing::info!(step = self.progress.step, patience, "no better evaluation; stopping early");
        }
        Ok(())
    }

    /// Redraws the curve from `metrics.jsonl`.
    fn plot(&self) -> Result<()> {
        if self.ddp.as_ref().is_some_and(|d| !d.is_writer()) {
            return Ok(());
        }
        plot_metrics(&self.cfg.out_dir.join(METRICS_FILE), &self.cfg.plot_metric, &self.cfg.out_dir.join(self.cfg.plot))
    }
}

/// The metrics file in a run's folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Cuts `metrics.jsonl` back to the rows of steps `1..=step`, the ones the restored
/// state covers: a new run (step 0) starts an empty file, and a resumed one drops
/// the rows a killed or failed run wrote past its last checkpoint (it will write
/// them again). Where a step appears twice, the later row wins; a torn last line
/// is dropped. Written atomically.
pub fn keep_rows_through(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(TrainError::io(path)(e)),
    };
    let mut rows: BTreeMap<u64, &str> = BTreeMap::new();
    for line in text.lines() {
        if let Ok(m) = serde_json::from_str::<StepMetrics>(line) {
            if m.step <= step {
                rows.insert(m.step, line);
            }
        }
    }
    let kept: String = rows.values().map(|l| format!("{l}\n")).collect();
    Ok(plinth_model::checkpoint::write_atomic(path, kept.as_bytes())?)
}

fn progress_bar(target: u64, at: u64) -> ProgressBar {
    let bar = ProgressBar::new(target);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}  eta {eta}")
    {
        bar.set_style(style);
    }
    bar.set_position(at);
    bar
}

/// Training loss (blue) and a validation metric (orange) from `metrics.jsonl`.
/// Validation `loss` shares the training loss's axis; any other metric is min-max
/// scaled, with the loss, to [0, 1] so both fit one chart.
pub fn plot_metrics(metrics: &Path, metric: &str, png: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).unwrap_or_default();
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for m in text.lines().filter_map(|l| serde_json::from_str::<StepMetrics>(l).ok()) {
        if let Some(l) = m.loss {
            train.push((m.step as f64, l));
        }
        if let Some(v) = m.validation.as_ref().and_then(|v| v.get(metric)) {
            val.push((m.step as f64, *v));
        }
    }
    if metric != "loss" {
        (train, val) = (scaled(train), scaled(val));
    }
    write_line_chart(png, &[Series { points: train, rgb: [31, 119, 180] }, Series { points: val, rgb: [255, 127, 14] }])
}

fn scaled(pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    pts.into_iter().map(|(x, y)| (x, (y - lo) / span)).collect()
}
