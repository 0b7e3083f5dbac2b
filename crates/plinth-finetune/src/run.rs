//! Finetuning on plinth-train's one loop: this module supplies the objective
//! (batches of labelled rows through the frozen or not base and a task head), the
//! validation metrics, and what is saved (the best task, resumable state); then a
//! report with baselines.
//!
//! ```text
//! out_dir/
//!   best/          the task at its best validation metric (what eval and predict load)
//!   state/         the latest task weights, optimizer moments, progress and the
//!                  run's finetune.toml (for --resume)
//!   metrics.jsonl  one plinth_train::StepMetrics row per step: {"step", "loss", "lr", "grad_norm"},
//!                  plus "validation": {metric: value, ...} on evaluation steps
//!   curves.png     training loss (blue) and the validation metric (orange), each scaled to its range
//!   report.json    test metrics beside the baselines', sizes and times
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use plinth_checkpoint::Checkpoint;
use plinth_data::SplitMix64;
use plinth_model::checkpoint::{load_into, named_variables, replace_dir, save_tensors, write_atomic};
use plinth_model::heads::{HeadConfig, HeadKind, Pooling};
use plinth_model::run_dir::RunLock;
use plinth_model::{AttentionMode, ForwardOptions};
use plinth_plugin_protocol::{Plugins, Split, TaskKind, TaskSpec};
use plinth_tokenizer::Special;
use plinth_train::ddp::DataParallel;
use plinth_train::optim::{AdamW, AdamWConfig};
use plinth_train::{Evaluation, LoopConfig, LoopProgress, Objective, Save, Trainer};

use crate::FinetuneError;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::baselines;
use crate::config::{FinetuneConfig, Mode};
use crate::data::{batch, encode, fetch_split, label_tensor, task_spec, Encoded};
use crate::metrics::{higher_is_better, Metrics};
use crate::task::{evaluate_encoded, FinetuneMeta, TaskParts, BASE_WEIGHTS, TASK_META, TASK_WEIGHTS};
use crate::Result;

pub use crate::task::BEST_DIR;
pub const STATE_DIR: &str = "state";
pub use plinth_train::trainer::METRICS_FILE;
pub const REPORT_FILE: &str = "report.json";
/// Prompted generation: the scored test completions, one JSON object per line.
pub const COMPLETIONS_FILE: &str = "completions.jsonl";
pub const CURVES_FILE: &str = "curves.png";
/// A file task's rows that cannot be used: `{"line": N, "reason": "..."}` per line.
pub const REJECTS_FILE: &str = "rejects.jsonl";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const PROGRESS_FILE: &str = "progress.json";
/// The config a run was started with, in `state/`, so a resume can name what changed.
pub const CONFIG_COPY: &str = "finetune.toml";
/// Keys a resumed finetune run may change: how long it runs, how often it evaluates
/// and how much of the test split its report scores, and where the base lies (the
/// base's identity is its weights' SHA-256, checked separately).
pub const RESUMABLE_KEYS: &[&str] = &[
    "base",
    "out_dir",
    "train.max_epochs",
    "train.max_steps",
    "train.eval_every",
    "train.patience",
    "score.max_examples",
];

/// Where a run stands, as `state/progress.json` holds it: the loop's progress and
/// the seconds trained so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedProgress {
    #[serde(flatten)]
    run: LoopProgress,
    /// Seconds of training before this process (resumed runs add up).
    seconds: f64,
}

/// How to run, beyond the config file.
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    /// Continue from `out_dir/state` where an earlier run stopped.
    pub resume: bool,
    pub device: Device,
    /// The process group of a data-parallel run; none for one process. Every rank
    /// evaluates (so early stopping agrees without messages); rank 0 alone writes.
    pub group: Option<std::sync::Arc<plinth_dist::ProcessGroup>>,
    /// Show a progress bar (steps, loss, rate) while training, as pretraining does.
    pub progress: bool,
}

/// What `report.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub plugin: String,
    pub task: String,
    pub mode: Mode,
    pub base: PathBuf,
    pub metric: String,
    pub rows: BTreeMap<String, usize>,
    pub trainable_params: i64,
    /// Size of `best/` on disk (adapter and head; whole model for full mode).
    pub saved_bytes: u64,
    pub steps: u64,
    pub best_step: u64,
    pub stopped_early: bool,
    pub train_seconds: f64,
    pub validation: Metrics,
    pub test: Metrics,
    /// Test metrics of simple baselines on the same split, fitted in the same run.
    pub baselines: BTreeMap<String, Metrics>,
}

/// A finetuning run in progress: the loop and the job it trains.
#[derive(Debug)]
pub struct Finetuner {
    trainer: Trainer,
    job: FinetuneJob,
    /// The run folder's one-writer lock (rank 0 holds it).
    _lock: Option<RunLock>,
}

/// Finetuning as the loop sees it.
#[derive(Debug)]
struct FinetuneJob {
    cfg: FinetuneConfig,
    base: Checkpoint,
    spec: TaskSpec,
    meta: FinetuneMeta,
    train: Encoded,
    val: Encoded,
    test: Encoded,
    parts: TaskParts,
    /// This epoch's row order.
    order: Option<(u64, Vec<usize>)>,
    world: usize,
    writer: bool,
    /// Seconds trained before this process, and when this process began.
    seconds_before: f64,
    started: Instant,
    seconds: f64,
}

/// Optimizer steps per epoch: one per global batch of `batch · world` rows. One
/// process keeps a short last batch; data-parallel runs drop it, as PyTorch's
/// `DistributedSampler(drop_last=True)` does, so no rank is ever handed no rows.
fn steps_per_epoch(rows: usize, batch: usize, world: usize) -> u64 {
    let global = (batch * world).max(1);
    let steps = if world > 1 { rows / global } else { rows.div_ceil(global) };
    steps.max(1) as u64
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FinetuneError {
    let path = path.to_path_buf();
    move |source| FinetuneError::Io { path, source }
}

impl Finetuner {
    /// Loads the base and the task's data, builds the adapter and head, and (with
    /// `resume`) restores `out_dir/state`.
    pub fn new(mut cfg: FinetuneConfig, plugins: &dyn Plugins, opts: FinetuneOptions) -> Result<Self> {
        cfg.resolve_task();
        cfg.validate()?;
        // One writer per folder, taken before anything in it is read; taking it
        // also finishes or undoes a save that a kill interrupted.
        let lock = match opts.group.as_ref().is_none_or(|g| g.rank() == 0) {
            true => Some(RunLock::acquire(&cfg.out_dir, "finetune")?),
            false => None,
        };
        let state_dir = cfg.out_dir.join(STATE_DIR);
        if (state_dir.exists() || cfg.out_dir.join(BEST_DIR).exists()) && !opts.resume {
            return Err(FinetuneError::Invalid(format!(
                "{} already holds a finetune run; pass --resume to continue it, or choose another out_dir (nothing was changed)",
                cfg.out_dir.display()
            )));
        }
        if opts.resume {
            // Before the base or any data is loaded. (State written before the config
            // copy existed is checked by the task settings alone, in `restore`.)
            if let Some(message) = plinth_train::resume_refusal(&cfg, &state_dir, CONFIG_COPY, RESUMABLE_KEYS)? {
                return Err(FinetuneError::Invalid(message));
            }
        }
        let mut base = Checkpoint::load(&cfg.base, opts.device)?;
        let base_sha256 = plinth_checkpoint::checkpoint_sha256(&cfg.base)?;
        let context = base.model.config().max_seq_len as usize;
        if cfg.train.max_len > context {
            return Err(FinetuneError::Invalid(format!(
                "train.max_len {} exceeds the base's context of {context} tokens; lower it",
                cfg.train.max_len
            )));
        }
        let (spec, mut train_rows, val_rows, test_rows) = match &cfg.task.data {
            Some(d) => {
                // Read once; rows that cannot be used are listed, never dropped silently.
                let file = crate::file_task::load(d, Some(plugins))?;
                if lock.is_some() {
                    crate::file_task::write_rejects(&cfg.out_dir.join(REJECTS_FILE), &file.rejects)?;
                }
                if !file.rejects.is_empty() {
                    tracing::warn!(
                        rejected = file.rejects.len(),
                        rows = file.rows_read,
                        "rows of {} that cannot be used are listed in {}",
                        d.path.display(),
                        cfg.out_dir.join(REJECTS_FILE).display()
                    );
                }
                (file.spec, file.train, file.validation, file.test)
            }
            None => {
                let spec = task_spec(plugins, &cfg.task)?;
                let fetch = |split| fetch_split(plugins, &cfg.task, &spec, split);
                let (train, val, test) = (fetch(Split::Train)?, fetch(Split::Validation)?, fetch(Split::Test)?);
                (spec, train, val, test)
            }
        };
        if cfg.task.max_train > 0 {
            train_rows.truncate(cfg.task.max_train);
        }
        if spec.kind == TaskKind::Classification {
            for (name, rows) in [("validation", &val_rows), ("test", &test_rows)] {
                let first = rows[0].label;
                if rows.iter().all(|r| r.label == first) {
                    tracing::warn!(
                        "the {name} split of {}/{} holds only class {first}; its ROC-AUC is 0.5 and accuracy says little",
                        cfg.task.plugin,
                        cfg.task.name
                    );
                }
            }
        }
        let max_len = cfg.train.max_len;
        let train = encode(&base.tokenizer, &train_rows, max_len)?;
        let val = encode(&base.tokenizer, &val_rows, max_len)?;
        let test = encode(&base.tokenizer, &test_rows, max_len)?;
        let label_scale = match spec.kind {
            TaskKind::Regression => crate::data::label_scales(&train.labels),
            _ => vec![(0.0, 1.0); spec.outputs().max(1)],
        };
        let generation = spec.kind == TaskKind::Generation;
        if generation && base.mode() != AttentionMode::Causal {
            return Err(FinetuneError::Invalid(format!(
                "{}/{} is a generation task and needs a causal base, but {} was pretrained masked",
                cfg.task.plugin,
                cfg.task.name,
                cfg.base.display()
            )));
        }
        if generation && cfg.adapter.mode == Mode::Head {
            return Err(FinetuneError::Invalid(
                "a generation task has no head to train alone; use mode = \"lora\" or \"full\"".into(),
            ));
        }
        // The head: the config's settings, else the plugin's recommendation, else a
        // linear head with the base's natural pooling.
        let plugin_head = spec.head.clone().unwrap_or_default();
        let plugin_pooling = match plugin_head.pooling.as_deref() {
            Some("mean") => Some(Pooling::Mean),
            Some("first") => Some(Pooling::First),
            Some("last") => Some(Pooling::Last),
            _ => None, // validated with the spec
        };
        let hidden: Vec<i64> =
            cfg.head.hidden.clone().unwrap_or_else(|| plugin_head.hidden.iter().map(|&w| w as i64).collect());
        let pooling = cfg.head.pooling.or(plugin_pooling).unwrap_or(match base.mode() {
            AttentionMode::Causal => Pooling::Last,
            AttentionMode::Bidirectional => Pooling::Mean,
        });
        let head = match spec.kind {
            TaskKind::Classification => Some(HeadConfig {
                task: HeadKind::Classification { classes: spec.labels.len() as i64 },
                pooling,
                hidden: hidden.clone(),
            }),
            TaskKind::Regression => Some(HeadConfig {
                task: HeadKind::Regression { outputs: spec.outputs() as i64 },
                pooling,
                hidden: hidden.clone(),
            }),
            TaskKind::MultiLabel => Some(HeadConfig {
                task: HeadKind::MultiLabel { labels: spec.outputs() as i64 },
                pooling,
                hidden: hidden.clone(),
            }),
            TaskKind::Generation => None,
        };
        let mode = cfg.adapter.mode;
        let lora = (mode == Mode::Lora).then(|| cfg.adapter.lora());
        tch::manual_seed(cfg.train.seed as i64);
        let parts = TaskParts::new(&base.model, mode, lora.as_ref(), head.as_ref(), opts.device)?;
        let mut trainable = named_variables(&parts.vs);
        if mode == Mode::Full {
            base.vs.unfreeze();
            trainable.extend(named_variables(&base.vs).into_iter().map(|(k, v)| (format!("base.{k}"), v)));
        }
        let opt = AdamW::new(
            trainable,
            AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: cfg.train.weight_decay },
        );
        let ddp = opts.group.clone().map(DataParallel::new);
        let world = ddp.as_ref().map_or(1, DataParallel::world);
        if world > 1 && train.len() < cfg.train.batch_size * world {
            return Err(FinetuneError::Invalid(format!(
                "the training split has {} rows, fewer than batch_size {} x {world} ranks; lower train.batch_size or use fewer ranks",
                train.len(),
                cfg.train.batch_size
            )));
        }
        let per_epoch = steps_per_epoch(train.len(), cfg.train.batch_size, world);
        let mut total_steps = per_epoch * cfg.train.max_epochs as u64;
        if cfg.train.max_steps > 0 {
            total_steps = total_steps.min(cfg.train.max_steps);
        }
        let meta = FinetuneMeta {
            plugin: cfg.task.plugin.clone(),
            task: cfg.task.name.clone(),
            spec: spec.clone(),
            request: cfg.task.request.clone(),
            data: cfg.task.data.clone(),
            mode,
            lora,
            head,
            base: cfg.base.clone(),
            base_sha256,
            max_len,
            label_scale,
            step: 0,
            metric_value: None,
        };
        let (world, writer) = ddp.as_ref().map_or((1, true), |d| (d.world(), d.is_writer()));
        let t = &cfg.train;
        let loop_cfg = LoopConfig {
            lr: t.lr,
            warmup_steps: t.warmup_steps,
            total_steps,
            min_lr_ratio: t.min_lr_ratio,
            grad_accum: 1,
            clip_norm: t.clip_norm,
            seed: t.seed,
            eval_every: t.eval_every,
            save_every: None,
            patience: t.patience,
            count_from: 0,
            out_dir: cfg.out_dir.clone(),
            plot: CURVES_FILE,
            plot_metric: spec.metric.clone(),
            progress_bar: opts.progress,
        };
        let trainer = Trainer::new(loop_cfg, opt, ddp, LoopProgress::default());
        let job = FinetuneJob {
            cfg,
            base,
            spec,
            meta,
            train,
            val,
            test,
            parts,
            order: None,
            world,
            writer,
            seconds_before: 0.0,
            started: Instant::now(),
            seconds: 0.0,
        };
        let mut ft = Finetuner { trainer, job, _lock: lock };
        if opts.resume && state_dir.exists() {
            ft.restore(&state_dir)?;
        }
        if let Some(d) = ft.trainer.ddp() {
            // Every rank starts from rank 0's trainable weights (and, resuming, the same state).
            d.check_same(ft.job.train.len() as i64, "the number of training rows")?;
            d.broadcast(&ft.trainer.optimizer().params())?;
        }
        Ok(ft)
    }

    /// The base checkpoint the task trains on (its weights change only in full mode).
    pub fn base(&self) -> &Checkpoint {
        &self.job.base
    }

    /// The adapter and head being trained.
    pub fn parts(&self) -> &TaskParts {
        &self.job.parts
    }

    pub fn progress(&self) -> &LoopProgress {
        self.trainer.progress()
    }

    pub fn spec(&self) -> &TaskSpec {
        &self.job.spec
    }

    pub fn total_steps(&self) -> u64 {
        self.trainer.config().total_steps
    }

    /// Trainable parameter count (adapter and head, plus the base in full mode).
    pub fn trainable_params(&self) -> i64 {
        self.trainer.optimizer().params().iter().map(|t| t.numel() as i64).sum()
    }

    /// Rows of each split.
    pub fn rows(&self) -> BTreeMap<String, usize> {
        let j = &self.job;
        [("train", j.train.len()), ("validation", j.val.len()), ("test", j.test.len())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Trains to the end (or an early stop), then writes the report (`plugins`
    /// scores a prompted generation task's completions).
    pub fn run(&mut self, plugins: &dyn Plugins) -> Result<Report> {
        self.train_until(self.total_steps())?;
        self.finish(plugins)
    }

    /// Trains until `target` steps, the end, or an early stop.
    pub fn train_until(&mut self, target: u64) -> Result<()> {
        if let Some(a) = self.job.parts.adapter.as_mut() {
            a.set_training(true);
        }
        // Time already trained in this process counts once; this call adds its own.
        self.job.seconds_before = self.job.seconds;
        self.job.started = Instant::now();
        self.trainer.train_until(&mut self.job, target)
    }

    /// Metrics of the current weights on a split.
    pub fn evaluate_split(&mut self, split: Split) -> Result<Metrics> {
        self.job.evaluate_split(split)
    }

    fn restore(&mut self, dir: &Path) -> Result<()> {
        let j = &mut self.job;
        let saved = crate::task::read_meta(dir)?;
        let mut expected = j.meta.clone();
        expected.step = saved.step;
        expected.metric_value = saved.metric_value;
        // The base is identified by its weights' SHA-256 (compared with the rest);
        // its path may be spelled differently or moved.
        expected.base = saved.base.clone();
        // How a prompted task decodes (budget, stops, guide) is not part of what
        // was trained: a resumed run takes the plugin's current settings.
        if let (Some(e), Some(s)) = (expected.spec.completion.as_mut(), saved.spec.completion.as_ref()) {
            *e = s.clone();
        }
        if saved != expected {
            return Err(FinetuneError::Invalid(format!(
                "{} was started with different settings (task, mode, LoRA, head, base or max_len); resume with the config it was started with, or choose another out_dir",
                dir.display()
            )));
        }
        j.load_weights(dir)?;
        let path = dir.join(PROGRESS_FILE);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let progress: SavedProgress =
            serde_json::from_str(&text).map_err(|e| FinetuneError::Config { path, message: e.to_string() })?;
        let opt_path = dir.join(OPTIMIZER_FILE);
        let tensors = Tensor::read_safetensors(&opt_path)
            .map_err(|e| FinetuneError::Checkpoint(format!("{}: {e}", opt_path.display())))?;
        self.trainer.optimizer_mut().load_state(&tensors, progress.run.step as i64)?;
        j.seconds_before = progress.seconds;
        j.seconds = progress.seconds;
        *self.trainer.progress_mut() = progress.run;
        if let Ok(best) = crate::task::read_meta(&j.cfg.out_dir.join(BEST_DIR)) {
            j.meta.step = best.step;
            j.meta.metric_value = best.metric_value;
        }
        tracing::info!(step = self.trainer.progress().step, "resumed finetuning");
        Ok(())
    }

    /// Loads the best task, measures it on validation and test, fits the
    /// baselines, writes `report.json` and `curves.png`.
    pub fn finish(&mut self, plugins: &dyn Plugins) -> Result<Report> {
        let best = self.job.cfg.out_dir.join(BEST_DIR);
        self.job.load_weights(&best)?;
        let validation = self.job.evaluate_split(Split::Validation)?;
        let mut test = self.job.evaluate_split(Split::Test)?;
        let mut extra_baselines = Vec::new();
        if let Some(spec) = self.job.spec.completion.clone() {
            let (plugin, max) = (self.job.cfg.task.plugin.as_str(), self.job.cfg.score.max_examples);
            let t0 = Instant::now();
            let task = crate::complete::Prompted { plugins, plugin, spec: &spec, request: &self.job.cfg.task.request };
            let (scores, rows) = crate::complete::evaluate(
                &self.job.base.model,
                &self.job.base.tokenizer,
                self.job.parts.adapter.as_ref(),
                task,
                &self.job.test,
                max,
            )?;
            tracing::info!(rows = rows.len(), seconds = t0.elapsed().as_secs_f64(), "completed test prompts");
            crate::complete::write_completions(&self.job.cfg.out_dir.join(COMPLETIONS_FILE), &rows)?;
            test.extend(scores);
            let retrieval =
                crate::complete::retrieval_baseline(plugins, plugin, &spec, &self.job.train, &self.job.test, max)?;
            extra_baselines.push(("retrieval".to_string(), retrieval));
        }
        let vocab = self.job.base.model.config().vocab_size;
        let baselines = baselines::run(&self.job.spec, vocab, &self.job.train, &self.job.val, &self.job.test)
            .into_iter()
            .chain(extra_baselines)
            .collect();
        let saved_bytes = std::fs::read_dir(&best)
            .map_err(io(&best))?
            .filter_map(|e| e.ok().and_then(|e| e.metadata().ok()))
            .map(|m| m.len())
            .sum();
        let report = Report {
            plugin: self.job.cfg.task.plugin.clone(),
            task: self.job.cfg.task.name.clone(),
            mode: self.job.meta.mode,
            base: self.job.cfg.base.clone(),
            metric: self.job.spec.metric.clone(),
            rows: self.rows(),
            trainable_params: self.trainable_params(),
            saved_bytes,
            steps: self.trainer.progress().step,
            best_step: self.trainer.progress().best_step,
            stopped_early: self.trainer.progress().stopped_early,
            train_seconds: self.job.seconds,
            validation,
            test,
            baselines,
        };
        let json = serde_json::to_string_pretty(&report).map_err(|e| FinetuneError::Checkpoint(e.to_string()))?;
        write_atomic(&self.job.cfg.out_dir.join(REPORT_FILE), json.as_bytes())?;
        let out = &self.job.cfg.out_dir;
        plinth_train::trainer::plot_metrics(&out.join(METRICS_FILE), &self.job.spec.metric, &out.join(CURVES_FILE))?;
        Ok(report)
    }
}

impl FinetuneJob {
    /// Metrics of the current weights on a split.
    fn evaluate_split(&mut self, split: Split) -> Result<Metrics> {
        if let Some(a) = self.parts.adapter.as_mut() {
            a.set_training(false);
        }
        let data = match split {
            Split::Train => &self.train,
            Split::Validation => &self.val,
            Split::Test => &self.test,
        };
        // Generation perplexity runs at the training batch size, predictions at twice it.
        let bs = match self.spec.kind {
            TaskKind::Generation => self.cfg.train.batch_size,
            _ => self.cfg.train.batch_size * 2,
        };
        let pad = self.base.tokenizer.id(Special::Pad);
        let (model, mode) = (&self.base.model, self.base.mode());
        evaluate_encoded(model, mode, &self.parts, &self.spec, &self.meta.label_scale, data, pad, bs)
    }

    /// Writes the task (and with `resume`, the optimizer and `progress`) to `dir`,
    /// replacing an older copy only once the new one is complete.
    fn save_task(&self, dir: &Path, resume: Option<(&AdamW, &SavedProgress)>) -> Result<()> {
        if !self.writer {
            return Ok(()); // rank 0 writes for everyone
        }
        replace_dir(dir, |tmp| {
            save_tensors(&named_variables(&self.parts.vs), &tmp.join(TASK_WEIGHTS))?;
            if self.meta.mode == Mode::Full {
                save_tensors(&named_variables(&self.base.vs), &tmp.join(BASE_WEIGHTS))?;
            }
            let meta =
                serde_json::to_string_pretty(&self.meta).map_err(|e| FinetuneError::Checkpoint(e.to_string()))?;
            write_atomic(&tmp.join(TASK_META), meta.as_bytes())?;
            if let Some((opt, progress)) = resume {
                save_tensors(&opt.state_tensors(), &tmp.join(OPTIMIZER_FILE))?;
                let p = serde_json::to_string_pretty(progress).map_err(|e| FinetuneError::Checkpoint(e.to_string()))?;
                write_atomic(&tmp.join(PROGRESS_FILE), p.as_bytes())?;
                let c = toml::to_string_pretty(&self.cfg).map_err(|e| FinetuneError::Checkpoint(e.to_string()))?;
                write_atomic(&tmp.join(CONFIG_COPY), c.as_bytes())?;
            }
            Ok(())
        })
    }

    fn load_weights(&mut self, dir: &Path) -> Result<()> {
        load_into(&mut self.parts.vs, &dir.join(TASK_WEIGHTS))?;
        if self.meta.mode == Mode::Full {
            load_into(&mut self.base.vs, &dir.join(BASE_WEIGHTS))?;
        }
        Ok(())
    }
}

impl Objective for FinetuneJob {
    type Error = FinetuneError;

    fn micro_loss(&mut self, done: u64, ddp: Option<&DataParallel>) -> Result<Tensor> {
        // A global batch of batch_size rows per rank; each rank trains on its own slice.
        let bs = self.cfg.train.batch_size * self.world;
        let per_epoch = steps_per_epoch(self.train.len(), self.cfg.train.batch_size, self.world);
        let (epoch, within) = (done / per_epoch, (done % per_epoch) as usize);
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut o: Vec<usize> = (0..self.train.len()).collect();
            SplitMix64::new(self.cfg.train.seed ^ (epoch + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut o);
            self.order = Some((epoch, o));
        }
        let global: Vec<usize> =
            self.order.as_ref().map_or(Vec::new(), |(_, o)| o[within * bs..((within + 1) * bs).min(o.len())].to_vec());
        let rows: Vec<usize> = ddp.map_or(global.clone(), |d| d.shard(&global).to_vec());
        let (pad, device) = (self.base.tokenizer.id(Special::Pad), self.base.model.device());
        let seqs: Vec<&[u32]> = rows.iter().map(|&i| self.train.ids[i].as_slice()).collect();
        let labels: Vec<Vec<f64>> = rows.iter().map(|&i| self.train.labels[i].clone()).collect();
        let (ids, valid) = batch(&seqs, pad, device);
        match &self.parts.head {
            None => {
                let from: Vec<usize> = rows.iter().map(|&i| self.train.learn_from[i]).collect();
                let learn = crate::data::learn_mask(&seqs, &from, device);
                Ok(crate::lm::lm_loss(&self.base.model, &ids, &valid, &learn, self.parts.adapter.as_ref())?.0)
            }
            Some(head) => {
                let y = label_tensor(&labels, self.spec.kind, &self.meta.label_scale, device);
                let opts = ForwardOptions {
                    mode: self.base.mode(),
                    adapter: self.parts.adapter.as_ref(),
                    padding: Some(&valid),
                };
                let hidden = match self.meta.mode {
                    Mode::Head => tch::no_grad(|| self.base.model.hidden_with(&ids, None, &opts))?,
                    _ => self.base.model.hidden_with(&ids, None, &opts)?,
                };
                Ok(head.loss(&head.forward(&hidden, &valid), &y)?)
            }
        }
    }

    fn evaluate(&mut self, _step: u64) -> Result<Option<Evaluation>> {
        // Every rank evaluates, so early stopping agrees without messages.
        let metrics = self.evaluate_split(Split::Validation)?;
        if let Some(a) = self.parts.adapter.as_mut() {
            a.set_training(true);
        }
        let metric = self.spec.metric.clone();
        Ok(Some(Evaluation { higher_is_better: higher_is_better(&metric), metric, metrics }))
    }

    fn save(&mut self, what: Save, opt: &AdamW, progress: &LoopProgress) -> Result<()> {
        match what {
            Save::Best => {
                self.meta.step = progress.best_step;
                self.meta.metric_value = progress.best_metric;
                self.save_task(&self.cfg.out_dir.join(BEST_DIR), None)
            }
            Save::Latest => {
                self.seconds = self.seconds_before + self.started.elapsed().as_secs_f64();
                let saved = SavedProgress { run: progress.clone(), seconds: self.seconds };
                self.save_task(&self.cfg.out_dir.join(STATE_DIR), Some((opt, &saved)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::steps_per_epoch;

    #[test]
    fn data_parallel_epochs_drop_the_short_last_global_batch() {
        assert_eq!(steps_per_epoch(97, 8, 1), 13, "one process keeps the short batch");
        assert_eq!(steps_per_epoch(97, 8, 2), 6, "two ranks drop the last 1 row");
        assert_eq!(steps_per_epoch(96, 8, 2), 6);
    }
}
