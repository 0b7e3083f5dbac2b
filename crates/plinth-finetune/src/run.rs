//! The finetuning loop: batches of labelled rows through the (frozen or not)
//! base, a task head, AdamW; validation every `eval_every` steps with early
//! stopping; the best task kept; resumable state; a report with baselines.
//!
//! ```text
//! out_dir/
//!   best/          the task at its best validation metric (what eval and predict load)
//!   state/         the latest task weights, optimizer moments, progress and the
//!                  run's finetune.toml (for --resume)
//!   metrics.jsonl  {"step", "loss", "lr"} and {"step", "split": "validation", metric...} lines
//!   curves.png     training loss (blue) and the validation metric (orange), each scaled to its range
//!   report.json    test metrics beside the baselines', sizes and times
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use plinth_data::SplitMix64;
use plinth_model::checkpoint::{load_into, named_variables, replace_dir, save_tensors, write_atomic};
use plinth_model::heads::{HeadConfig, HeadKind, Pooling};
use plinth_model::{AttentionMode, ForwardOptions};
use plinth_plugin_protocol::{Plugins, Split, TaskKind, TaskSpec};
use plinth_tokenizer::Special;
use plinth_train::ddp::DataParallel;
use plinth_train::optim::{clip_grad_norm, gradients, lr_at, AdamW, AdamWConfig};
use plinth_train::plot::{write_line_chart, Series};
use plinth_train::{Checkpoint, TrainError};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::baselines;
use crate::config::{FinetuneConfig, Mode};
use crate::data::{batch, encode, fetch_split, label_tensor, task_spec, Encoded};
use crate::metrics::{higher_is_better, Metrics};
use crate::task::{evaluate_encoded, FinetuneMeta, TaskParts, BASE_WEIGHTS, TASK_META, TASK_WEIGHTS};
use crate::Result;

pub const BEST_DIR: &str = "best";
pub const STATE_DIR: &str = "state";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const REPORT_FILE: &str = "report.json";
/// Prompted generation: the scored test completions, one JSON object per line.
pub const COMPLETIONS_FILE: &str = "completions.jsonl";
pub const CURVES_FILE: &str = "curves.png";
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

/// Where a run stands; saved in `state/` at every evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub step: u64,
    pub best_step: u64,
    /// Best validation value of the task's metric so far (`None` before the first evaluation).
    pub best_metric: Option<f64>,
    pub evals_since_best: usize,
    /// True once the run ended (all steps done, or stopped early).
    pub done: bool,
    pub stopped_early: bool,
    /// Seconds of training before this process (resumed runs add up).
    pub seconds: f64,
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

/// A finetuning run in progress.
#[derive(Debug)]
pub struct Finetuner {
    cfg: FinetuneConfig,
    base: Checkpoint,
    spec: TaskSpec,
    meta: FinetuneMeta,
    train: Encoded,
    val: Encoded,
    test: Encoded,
    parts: TaskParts,
    opt: AdamW,
    progress: Progress,
    total_steps: u64,
    ddp: Option<DataParallel>,
}

/// Optimizer steps per epoch: one per global batch of `batch · world` rows. One
/// process keeps a short last batch; data-parallel runs drop it, as PyTorch's
/// `DistributedSampler(drop_last=True)` does, so no rank is ever handed no rows.
fn steps_per_epoch(rows: usize, batch: usize, world: usize) -> u64 {
    let global = (batch * world).max(1);
    let steps = if world > 1 { rows / global } else { rows.div_ceil(global) };
    steps.max(1) as u64
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError {
    let path = path.to_path_buf();
    move |source| TrainError::Io { path, source }
}

impl Finetuner {
    /// Loads the base and the task's data, builds the adapter and head, and (with
    /// `resume`) restores `out_dir/state`.
    pub fn new(cfg: FinetuneConfig, plugins: &dyn Plugins, opts: FinetuneOptions) -> Result<Self> {
        cfg.validate().map_err(TrainError::Invalid)?;
        let state_dir = cfg.out_dir.join(STATE_DIR);
        if (state_dir.exists() || cfg.out_dir.join(BEST_DIR).exists()) && !opts.resume {
            return Err(TrainError::Invalid(format!(
                "{} already holds a finetune run; pass --resume to continue it, or choose another out_dir (nothing was changed)",
                cfg.out_dir.display()
            )));
        }
        if opts.resume {
            // Before the base or any data is loaded. (State written before the config
            // copy existed is checked by the task settings alone, in `restore`.)
            if let Some(message) = plinth_train::resume_refusal(&cfg, &state_dir, CONFIG_COPY, RESUMABLE_KEYS)? {
                return Err(TrainError::Invalid(message));
            }
        }
        let mut base = Checkpoint::load(&cfg.base, opts.device)?;
        let base_sha256 = plinth_train::state::checkpoint_sha256(&cfg.base)?;
        let context = base.model.config().max_seq_len as usize;
        if cfg.train.max_len > context {
            return Err(TrainError::Invalid(format!(
                "train.max_len {} exceeds the base's context of {context} tokens; lower it",
                cfg.train.max_len
            )));
        }
        let spec = task_spec(plugins, &cfg.task)?;
        let fetch = |split| fetch_split(plugins, &cfg.task, &spec, split);
        let mut train_rows = fetch(Split::Train)?;
        if cfg.task.max_train > 0 {
            train_rows.truncate(cfg.task.max_train);
        }
        let (val_rows, test_rows) = (fetch(Split::Validation)?, fetch(Split::Test)?);
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
            TaskKind::Regression => {
                let n = train.labels.len() as f64;
                let mean = train.labels.iter().sum::<f64>() / n;
                let std = (train.labels.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
                (mean, if std > 0.0 { std } else { 1.0 })
            }
            TaskKind::Classification | TaskKind::Generation => (0.0, 1.0),
        };
        let generation = spec.kind == TaskKind::Generation;
        if generation && base.mode() != AttentionMode::Causal {
            return Err(TrainError::Invalid(format!(
                "{}/{} is a generation task and needs a causal base, but {} was pretrained masked",
                cfg.task.plugin,
                cfg.task.name,
                cfg.base.display()
            )));
        }
        if generation && cfg.adapter.mode == Mode::Head {
            return Err(TrainError::Invalid(
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
            TaskKind::Regression => {
                Some(HeadConfig { task: HeadKind::Regression { outputs: 1 }, pooling, hidden: hidden.clone() })
            }
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
            return Err(TrainError::Invalid(format!(
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
        let progress = Progress {
            step: 0,
            best_step: 0,
            best_metric: None,
            evals_since_best: 0,
            done: false,
            stopped_early: false,
            seconds: 0.0,
        };
        let writer = ddp.as_ref().is_none_or(DataParallel::is_writer);
        let mut ft = Finetuner { cfg, base, spec, meta, train, val, test, parts, opt, progress, total_steps, ddp };
        if opts.resume && state_dir.exists() {
            ft.restore(&state_dir)?;
        } else if writer {
            std::fs::create_dir_all(&ft.cfg.out_dir).map_err(io(&ft.cfg.out_dir))?;
            let _ = std::fs::remove_file(ft.cfg.out_dir.join(METRICS_FILE));
        }
        if let Some(d) = &ft.ddp {
            // Every rank starts from rank 0's trainable weights (and, resuming, the same state).
            d.check_same(ft.train.len() as i64, "the number of training rows")?;
            d.broadcast(&ft.opt.params())?;
        }
        Ok(ft)
    }

    /// The base checkpoint the task trains on (its weights change only in full mode).
    pub fn base(&self) -> &Checkpoint {
        &self.base
    }

    /// The adapter and head being trained.
    pub fn parts(&self) -> &TaskParts {
        &self.parts
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// Trainable parameter count (adapter and head, plus the base in full mode).
    pub fn trainable_params(&self) -> i64 {
        self.opt.params().iter().map(|t| t.numel() as i64).sum()
    }

    /// Rows of each split.
    pub fn rows(&self) -> BTreeMap<String, usize> {
        [("train", self.train.len()), ("validation", self.val.len()), ("test", self.test.len())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Trains to the end (or an early stop), then writes the report (`plugins`
    /// scores a prompted generation task's completions).
    pub fn run(&mut self, plugins: &dyn Plugins) -> Result<Report> {
        self.train_until(self.total_steps)?;
        self.finish(plugins)
    }

    /// Trains until `target` steps, the end, or an early stop.
    pub fn train_until(&mut self, target: u64) -> Result<()> {
        let target = target.min(self.total_steps);
        let t0 = Instant::now();
        let seconds_before = self.progress.seconds;
        let params = self.opt.params();
        let (rank, world) = self.ddp.as_ref().map_or((0, 1), |d| (d.rank(), d.world()));
        // A global batch of batch_size rows per rank; each rank trains on its own slice.
        let bs = self.cfg.train.batch_size * world;
        let per_epoch = steps_per_epoch(self.train.len(), self.cfg.train.batch_size, world);
        let pad = self.base.tokenizer.id(Special::Pad);
        let device = self.base.model.device();
        let mut order: Option<(u64, Vec<usize>)> = None;
        let log_path = self.cfg.out_dir.join(METRICS_FILE);
        let mut log: Box<dyn Write> = match rank {
            0 => {
                Box::new(std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io(&log_path))?)
            }
            _ => Box::new(std::io::sink()),
        };
        if let Some(a) = self.parts.adapter.as_mut() {
            a.set_training(true);
        }
        while self.progress.step < target && !self.progress.done {
            let step = self.progress.step;
            let (epoch, within) = (step / per_epoch, (step % per_epoch) as usize);
            if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let mut o: Vec<usize> = (0..self.train.len()).collect();
                SplitMix64::new(self.cfg.train.seed ^ (epoch + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut o);
                order = Some((epoch, o));
            }
            let global: Vec<usize> =
                order.as_ref().map_or(Vec::new(), |(_, o)| o[within * bs..((within + 1) * bs).min(o.len())].to_vec());
            let rows: Vec<usize> = self.ddp.as_ref().map_or(global.clone(), |d| d.shard(&global).to_vec());
            // Dropout draws depend on the step (and rank) alone, so a resumed run repeats them.
            tch::manual_seed(self.cfg.train.seed.wrapping_add(step * world as u64 + rank as u64) as i64);
            let seqs: Vec<&[u32]> = rows.iter().map(|&i| self.train.ids[i].as_slice()).collect();
            let labels: Vec<f64> = rows.iter().map(|&i| self.train.labels[i]).collect();
            let (ids, valid) = batch(&seqs, pad, device);
            let loss = match &self.parts.head {
                None => {
                    let from: Vec<usize> = rows.iter().map(|&i| self.train.learn_from[i]).collect();
                    let learn = crate::data::learn_mask(&seqs, &from, device);
                    crate::lm::lm_loss(&self.base.model, &ids, &valid, &learn, self.parts.adapter.as_ref())?.0
                }
                Some(head) => {
                    let y = label_tensor(&labels, self.spec.kind, self.meta.label_scale, device);
                    let opts = ForwardOptions {
                        mode: self.base.mode(),
                        adapter: self.parts.adapter.as_ref(),
                        padding: Some(&valid),
                    };
                    let hidden = match self.meta.mode {
                        Mode::Head => tch::no_grad(|| self.base.model.hidden_with(&ids, None, &opts))?,
                        _ => self.base.model.hidden_with(&ids, None, &opts)?,
                    };
                    head.loss(&head.forward(&hidden, &valid), &y)?
                }
            };
            let mut grads = gradients(&loss, &params);
            let mut loss_value = loss.double_value(&[]);
            if let Some(d) = &self.ddp {
                d.average(&mut grads)?;
                loss_value = d.mean(loss_value)?;
            }
            if self.cfg.train.clip_norm > 0.0 {
                clip_grad_norm(&mut grads, self.cfg.train.clip_norm);
            }
            let t = &self.cfg.train;
            let lr = lr_at(step, t.lr, t.warmup_steps, self.total_steps, t.min_lr_ratio);
            self.opt.step(&grads, lr).map_err(TrainError::Invalid)?;
            self.progress.step += 1;
            if !loss_value.is_finite() {
                return Err(TrainError::Invalid(format!(
                    "the training loss became {loss_value} at step {}; lower train.lr",
                    self.progress.step
                )));
            }
            writeln!(log, "{}", serde_json::json!({"step": self.progress.step, "loss": loss_value, "lr": lr}))
                .map_err(io(&self.cfg.out_dir))?;
            let at_end = self.progress.step == self.total_steps;
            if self.progress.step.is_multiple_of(self.cfg.train.eval_every) || at_end {
                let m = self.evaluate_split(Split::Validation)?;
                let value = m.get(&self.spec.metric).copied().unwrap_or(f64::NAN);
                let mut line = serde_json::json!({"step": self.progress.step, "split": "validation"});
                for (k, v) in &m {
                    line[k] = (*v).into();
                }
                writeln!(log, "{line}").map_err(io(&self.cfg.out_dir))?;
                let better = self.progress.best_metric.is_none_or(|b| {
                    if higher_is_better(&self.spec.metric) {
                        value > b
                    } else {
                        value < b
                    }
                });
                tracing::info!(step = self.progress.step, metric = %self.spec.metric, value, best = better, "validation");
                if better {
                    self.progress.best_metric = Some(value);
                    self.progress.best_step = self.progress.step;
                    self.progress.evals_since_best = 0;
                    self.meta.step = self.progress.step;
                    self.meta.metric_value = Some(value);
                    self.save_task(&self.cfg.out_dir.join(BEST_DIR), false)?;
                } else {
                    self.progress.evals_since_best += 1;
                }
                let patience = self.cfg.train.patience;
                if patience > 0 && self.progress.evals_since_best >= patience {
                    self.progress.done = true;
                    self.progress.stopped_early = true;
                    tracing::info!(step = self.progress.step, patience, "no better validation metric; stopping early");
                }
                if at_end {
                    self.progress.done = true;
                }
                self.progress.seconds = seconds_before + t0.elapsed().as_secs_f64();
                self.save_task(&self.cfg.out_dir.join(STATE_DIR), true)?;
                if let Some(a) = self.parts.adapter.as_mut() {
                    a.set_training(true);
                }
            }
        }
        Ok(())
    }

    /// Metrics of the current weights on a split.
    pub fn evaluate_split(&mut self, split: Split) -> Result<Metrics> {
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
        evaluate_encoded(model, mode, &self.parts, self.spec.kind, self.meta.label_scale, data, pad, bs)
    }

    /// Writes the task (and with `resume_state`, the optimizer and progress) to
    /// `dir`, replacing an older copy only once the new one is complete.
    fn save_task(&self, dir: &Path, resume_state: bool) -> Result<()> {
        if self.ddp.as_ref().is_some_and(|d| !d.is_writer()) {
            return Ok(()); // rank 0 writes for everyone
        }
        replace_dir(dir, |tmp| {
            save_tensors(&named_variables(&self.parts.vs), &tmp.join(TASK_WEIGHTS))?;
            if self.meta.mode == Mode::Full {
                save_tensors(&named_variables(&self.base.vs), &tmp.join(BASE_WEIGHTS))?;
            }
            let meta = serde_json::to_string_pretty(&self.meta).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
            write_atomic(&tmp.join(TASK_META), meta.as_bytes())?;
            if resume_state {
                save_tensors(&self.opt.state_tensors(), &tmp.join(OPTIMIZER_FILE))?;
                let p =
                    serde_json::to_string_pretty(&self.progress).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
                write_atomic(&tmp.join(PROGRESS_FILE), p.as_bytes())?;
                let c = toml::to_string_pretty(&self.cfg).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
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

    fn restore(&mut self, dir: &Path) -> Result<()> {
        let saved = crate::task::read_meta(dir)?;
        let mut expected = self.meta.clone();
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
            return Err(TrainError::Invalid(format!(
                "{} was started with different settings (task, mode, LoRA, head, base or max_len); resume with the config it was started with, or choose another out_dir",
                dir.display()
            )));
        }
        self.load_weights(dir)?;
        let path = dir.join(PROGRESS_FILE);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        self.progress = serde_json::from_str(&text).map_err(|e| TrainError::Config { path, message: e.to_string() })?;
        let opt_path = dir.join(OPTIMIZER_FILE);
        let tensors = Tensor::read_safetensors(&opt_path)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", opt_path.display())))?;
        self.opt.load_state(&tensors, self.progress.step as i64).map_err(TrainError::Checkpoint)?;
        if let Ok(best) = crate::task::read_meta(&self.cfg.out_dir.join(BEST_DIR)) {
            self.meta.step = best.step;
            self.meta.metric_value = best.metric_value;
        }
        tracing::info!(step = self.progress.step, "resumed finetuning");
        Ok(())
    }

    /// Loads the best task, measures it on validation and test, fits the
    /// baselines, writes `report.json` and `curves.png`.
    pub fn finish(&mut self, plugins: &dyn Plugins) -> Result<Report> {
        let best = self.cfg.out_dir.join(BEST_DIR);
        self.load_weights(&best)?;
        let validation = self.evaluate_split(Split::Validation)?;
        let mut test = self.evaluate_split(Split::Test)?;
        let mut extra_baselines = Vec::new();
        if let Some(spec) = self.spec.completion.clone() {
            let (plugin, max) = (self.cfg.task.plugin.as_str(), self.cfg.score.max_examples);
            let t0 = Instant::now();
            let task = crate::complete::Prompted { plugins, plugin, spec: &spec, request: &self.cfg.task.request };
            let (scores, rows) = crate::complete::evaluate(
                &self.base.model,
                &self.base.tokenizer,
                self.parts.adapter.as_ref(),
                task,
                &self.test,
                max,
            )?;
            tracing::info!(rows = rows.len(), seconds = t0.elapsed().as_secs_f64(), "completed test prompts");
            crate::complete::write_completions(&self.cfg.out_dir.join(COMPLETIONS_FILE), &rows)?;
            test.extend(scores);
            let retrieval = crate::complete::retrieval_baseline(plugins, plugin, &spec, &self.train, &self.test, max)?;
            extra_baselines.push(("retrieval".to_string(), retrieval));
        }
        let vocab = self.base.model.config().vocab_size;
        let baselines = baselines::run(
            self.spec.kind,
            self.spec.labels.len(),
            vocab,
            &self.train,
            &self.val,
            &self.test,
            &self.spec.metric,
            self.spec.features.as_ref().map(|f| (f.name.as_str(), f.size)),
        )
        .into_iter()
        .chain(extra_baselines)
        .collect();
        let saved_bytes = std::fs::read_dir(&best)
            .map_err(io(&best))?
            .filter_map(|e| e.ok().and_then(|e| e.metadata().ok()))
            .map(|m| m.len())
            .sum();
        let report = Report {
            plugin: self.cfg.task.plugin.clone(),
            task: self.cfg.task.name.clone(),
            mode: self.meta.mode,
            base: self.cfg.base.clone(),
            metric: self.spec.metric.clone(),
            rows: self.rows(),
            trainable_params: self.trainable_params(),
            saved_bytes,
            steps: self.progress.step,
            best_step: self.progress.best_step,
            stopped_early: self.progress.stopped_early,
            train_seconds: self.progress.seconds,
            validation,
            test,
            baselines,
        };
        let json = serde_json::to_string_pretty(&report).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        write_atomic(&self.cfg.out_dir.join(REPORT_FILE), json.as_bytes())?;
        plot_curves(&self.cfg.out_dir.join(METRICS_FILE), &self.spec.metric, &self.cfg.out_dir.join(CURVES_FILE))?;
        Ok(report)
    }
}

/// One JSON line per completed test prompt: prompt, prediction, reference.
/// Training loss and the validation metric, each min-max scaled to [0, 1] so both fit one chart.
fn plot_curves(metrics: &Path, metric: &str, png: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics).map_err(io(metrics))?;
    let (mut loss, mut val) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let step = v["step"].as_f64().unwrap_or(0.0);
        if let Some(l) = v["loss"].as_f64() {
            loss.push((step, l));
        } else if let Some(m) = v[metric].as_f64() {
            val.push((step, m));
        }
    }
    let scale = |pts: Vec<(f64, f64)>| {
        let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let span = if hi > lo { hi - lo } else { 1.0 };
        pts.into_iter().map(|(x, y)| (x, (y - lo) / span)).collect::<Vec<_>>()
    };
    write_line_chart(
        png,
        &[Series { points: scale(loss), rgb: [31, 119, 180] }, Series { points: scale(val), rgb: [255, 127, 14] }],
    )
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
