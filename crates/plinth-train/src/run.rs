//! The pretraining loop.

use plinth_model::run_dir::RunLock;
use std::collections::BTreeMap;
use std::path::PathBuf;

use plinth_data::{load_corpus, pack_blocks, split_train_val, BlockSampler, SamplerState, SplitMix64};
use plinth_model::{ModelConfig, Transformer};
use plinth_plugin_protocol::{ComponentSpec, TokenizerSpec};
use plinth_tokenizer::{PlinthTokenizer, TrainOptions};
use tch::{nn, Device, Tensor};

use crate::config::{ObjectiveKind, PretrainConfig, TokenizerConfig, RESUMABLE_KEYS};
use crate::ddp::DataParallel;
use crate::objectives::{batch_loss, frame_causal, frame_masked};
use crate::optim::{AdamW, AdamWConfig};
use crate::state::{self, SaveRequest, TrainingState};
use crate::trainer::{Evaluation, LoopConfig, LoopProgress, Objective, Save, Trainer};
use crate::{Result, TrainError};

/// Name of the checkpoint folder inside `out_dir`.
pub const CHECKPOINT_DIR: &str = "checkpoint";

pub const LOSS_PLOT: &str = "loss.png";

/// How to run, beyond what the config file says.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Continue from `out_dir/checkpoint` instead of refusing to overwrite it.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    pub device: Device,
    /// Where registry packages are cached.
    pub cache_dir: PathBuf,
    /// Loaded plugins, for corpora that come from a plugin's data component.
    pub plugins: Option<std::sync::Arc<dyn plinth_plugin_protocol::Plugins>>,
    /// The process group of a data-parallel run (see [`crate::ddp`]); none for one process.
    pub group: Option<std::sync::Arc<plinth_dist::ProcessGroup>>,
}

/// A pretraining run: the loop (optimizer, schedule, progress) and the job it
/// trains (data, model, where they are saved).
#[derive(Debug)]
pub struct Pretrainer {
    trainer: Trainer,
    job: PretrainJob,
    /// The run folder's one-writer lock (rank 0 holds it).
    _lock: Option<RunLock>,
}

/// Pretraining as the loop sees it: batches of packed blocks, the held-out loss,
/// and checkpoints.
#[derive(Debug)]
struct PretrainJob {
    cfg: PretrainConfig,
    model_cfg: ModelConfig,
    vs: nn::VarStore,
    model: Transformer,
    tokenizer: PlinthTokenizer,
    train_blocks: Tensor, // (N, L) int64
    val_blocks: Tensor,   // (M, L) int64
    sampler: BlockSampler,
    state: TrainingState,
    out_dir: PathBuf,
    /// Data-parallel ranks, and whether this one writes (rank 0).
    world: usize,
    writer: bool,
}

impl Pretrainer {
    /// Prepares a run: loads (and on first use fetches) the corpus, trains or
    /// reloads the tokenizer, builds the model and, with `resume`, restores the
    /// checkpoint in `out_dir`.
    pub fn new(cfg: PretrainConfig, opts: &RunOptions) -> Result<Self> {
        cfg.validate()?;
        for warning in cfg.warnings() {
            tracing::warn!("{warning}");
        }
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads as i32);
        }
        let out_dir = cfg.out_dir.clone();
        // One writer per folder, taken before anything in it is read; taking it
        // also finishes or undoes a save that a kill interrupted.
        let lock = match opts.group.as_ref().is_none_or(|g| g.rank() == 0) {
            true => Some(RunLock::acquire(&out_dir, "pretrain")?),
            false => None,
        };
        let ckpt_dir = out_dir.join(CHECKPOINT_DIR);
        let resuming = opts.resume && ckpt_dir.join(plinth_model::checkpoint::WEIGHTS_FILE).exists();
        if !opts.resume && ckpt_dir.exists() {
            return Err(TrainError::Checkpoint(format!(
                "{} already holds a checkpoint; pass --resume to continue it or set another out_dir",
                ckpt_dir.display()
            )));
        }
        if resuming {
            // Before the corpus is read, so a mistake costs nothing.
            let refusal = crate::config::resume_refusal(&cfg, &ckpt_dir, state::CONFIG_COPY, RESUMABLE_KEYS)?;
            if let Some(message) = refusal {
                return Err(TrainError::Checkpoint(message));
            }
        } else if opts.resume {
            tracing::info!("no checkpoint in {} to resume; starting a new run", ckpt_dir.display());
        }

        let mut corpus = load_corpus(&cfg.data.corpus, &opts.cache_dir, opts.plugins.as_deref())?;
        if cfg.data.max_documents > 0 {
            corpus.documents.truncate(cfg.data.max_documents);
        }
        let (mut train_docs, val_docs) = split_train_val(&corpus, cfg.data.val_fraction, cfg.train.seed)?;
        if let Some(mix) = &cfg.data.synthetic {
            let added = mix.mix_into(&mut train_docs, cfg.train.seed)?;
            tracing::info!(added, share = mix.share, path = %mix.path.display(), "synthetic documents mixed into training");
        }
        tracing::info!(train = train_docs.len(), validation = val_docs.len(), "documents");

        let tokenizer = if resuming {
            PlinthTokenizer::from_file(&ckpt_dir.join(state::TOKENIZER_FILE))?
        } else {
            build_tokenizer(&cfg.tokenizer, &train_docs, opts.plugins.as_deref())?
        };
        let mut model_cfg = cfg.model_config()?;
        let vocab = tokenizer.vocab_size() as i64;
        if model_cfg.vocab_size != 0 && model_cfg.vocab_size != vocab {
            return Err(TrainError::Invalid(format!(
                "model vocab_size {} differs from the tokenizer's {vocab}; leave vocab_size out of pretraining presets",
                model_cfg.vocab_size
            )));
        }
        model_cfg.vocab_size = vocab;

        let causal = cfg.objective.kind == ObjectiveKind::Causal;
        let block_len = cfg.train.seq_len + usize::from(causal);
        let (train_blocks, train_fp) =
            blocks_tensor(&tokenizer, &train_docs, &cfg, block_len, opts.device, Split::Training)?;
        let (val_blocks, val_fp) =
            blocks_tensor(&tokenizer, &val_docs, &cfg, block_len, opts.device, Split::Validation)?;
        let data_fingerprint = format!("{train_fp:016x}{val_fp:016x}");

        tch::manual_seed(cfg.train.seed as i64);
        let mut vs = nn::VarStore::new(opts.device);
        let model = Transformer::new(&vs.root(), &model_cfg)?;
        let t = &cfg.train;
        let mut opt = AdamW::new(
            plinth_model::checkpoint::named_variables(&vs),
            AdamWConfig { beta1: t.beta1, beta2: t.beta2, eps: t.eps, weight_decay: t.weight_decay },
        );
        let mut st = TrainingState {
            step: 0,
            sampler: SamplerState { epoch: 0, position: 0 },
            objective: cfg.objective.clone(),
            tokens_seen: 0,
            val_loss: None,
            data_fingerprint: Some(data_fingerprint.clone()),
        };
        if resuming {
            plinth_model::checkpoint::load_into(&mut vs, &ckpt_dir.join(plinth_model::checkpoint::WEIGHTS_FILE))?;
            st = state::read_state(&ckpt_dir)?;
            if st.objective != cfg.objective {
                return Err(TrainError::Checkpoint(format!(
                    "{} was trained with objective {:?} but the config says {:?}; resume with the config it was started with",
                    ckpt_dir.display(),
                    st.objective,
                    cfg.objective
                )));
            }
            if let Some(saved) = &st.data_fingerprint {
                if *saved != data_fingerprint {
                    return Err(TrainError::Checkpoint(format!(
                        "{}: the training data is not the data this run was started with (same config, different \
                         tokens: a changed corpus file or package version); a resumed run would not continue \
                         exactly. Restore that data, or set another out_dir for a new run",
                        ckpt_dir.display()
                    )));
                }
            }
            st.data_fingerprint = Some(data_fingerprint);
            opt.load_state(&state::read_optimizer(&ckpt_dir)?, st.step as i64)?;
            tracing::info!(step = st.step, "resumed from {}", ckpt_dir.display());
        }
        let n_blocks = train_blocks.size()[0] as usize;
        let sampler = BlockSampler::resume(n_blocks, cfg.train.seed, st.sampler).ok_or_else(|| {
            TrainError::Checkpoint(format!(
                "{}: the saved data position (block {} of epoch {}) is past this run's {n_blocks} training blocks; \
                 the data changed since the checkpoint. Restore it, or set another out_dir for a new run",
                ckpt_dir.display(),
                st.sampler.position,
                st.sampler.epoch
            ))
        })?;
        let ddp = opts.group.clone().map(DataParallel::new);
        if let Some(d) = &ddp {
            // Every rank built its tokenizer and data itself: check they agree, then
            // start every rank from rank 0's weights.
            d.check_same(fingerprint(&tokenizer)?, "the tokenizer")?;
            d.check_same(n_blocks as i64, "the number of training blocks")?;
            d.check_same((train_fp >> 1) as i64, "the training tokens")?;
            d.broadcast(&opt.params())?;
            tracing::info!(rank = d.rank(), world = d.world(), "data-parallel run");
        }
        let t = &cfg.train;
        let loop_cfg = LoopConfig {
            lr: t.lr,
            warmup_steps: t.warmup_steps,
            total_steps: t.max_steps,
            min_lr_ratio: t.min_lr_ratio,
            grad_accum: t.grad_accum,
            clip_norm: t.clip_norm,
            seed: t.seed,
            eval_every: t.eval_every,
            save_every: Some(t.save_every),
            patience: 0,
            count_from: 1,
            out_dir: out_dir.clone(),
            plot: LOSS_PLOT,
            plot_metric: "loss".into(),
            progress_bar: opts.progress,
        };
        let (world, writer) = ddp.as_ref().map_or((1, true), |d| (d.world(), d.is_writer()));
        let progress = LoopProgress { step: st.step, ..Default::default() };
        let trainer = Trainer::new(loop_cfg, opt, ddp, progress);
        let job = PretrainJob {
            cfg,
            model_cfg,
            vs,
            model,
            tokenizer,
            train_blocks,
            val_blocks,
            sampler,
            state: st,
            out_dir,
            world,
            writer,
        };
        Ok(Pretrainer { trainer, job, _lock: lock })
    }

    pub fn state(&self) -> &TrainingState {
        &self.job.state
    }

    pub fn model(&self) -> &Transformer {
        &self.job.model
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.job.vs
    }

    pub fn tokenizer(&self) -> &PlinthTokenizer {
        &self.job.tokenizer
    }

    /// The checkpoint folder this run writes.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.job.checkpoint_dir()
    }

    /// Trains until `max_steps` from the config.
    pub fn run(&mut self) -> Result<()> {
        self.train_until(self.job.cfg.train.max_steps)
    }

    /// Trains until `target` optimizer steps are done (at most `max_steps`),
    /// evaluating and saving on the configured cadence and saving at the end.
    pub fn train_until(&mut self, target: u64) -> Result<()> {
        self.trainer.train_until(&mut self.job, target)
    }

    /// Mean held-out loss over the first `eval_batches` validation batches, with
    /// fixed masks so that evaluations are comparable across steps.
    pub fn evaluate(&self) -> Result<f64> {
        self.job.val_loss()
    }

    /// Saves the checkpoint, then redraws the loss curve beside it.
    pub fn save(&mut self) -> Result<()> {
        self.trainer.save(&mut self.job, Save::Latest)
    }
}

impl PretrainJob {
    fn checkpoint_dir(&self) -> PathBuf {
        self.out_dir.join(CHECKPOINT_DIR)
    }

    fn val_loss(&self) -> Result<f64> {
        let t = &self.cfg.train;
        let n = self.val_blocks.size()[0];
        let b = t.batch_size as i64;
        let batches = (n / b).clamp(1, t.eval_batches as i64);
        tch::manual_seed(t.seed.wrapping_add(0xE7A1) as i64);
        tch::no_grad(|| {
            let mut total = 0.0;
            for i in 0..batches {
                let len = b.min(n - i * b);
                total += self.loss(&self.val_blocks.narrow(0, i * b, len))?.double_value(&[]);
            }
            Ok(total / batches as f64)
        })
    }

    /// The objective's loss on one batch of blocks (B, L).
    fn loss(&self, batch: &Tensor) -> Result<Tensor> {
        batch_loss(&self.model, &self.cfg.objective, batch)
    }
}

impl Objective for PretrainJob {
    type Error = TrainError;

    fn micro_loss(&mut self, _done: u64, ddp: Option<&DataParallel>) -> Result<Tensor> {
        // Every rank draws the same global batch and keeps its own rows.
        let global = self.sampler.next_indices(self.cfg.train.batch_size * self.world);
        let mine = ddp.map_or(global.as_slice(), |d| d.shard(&global));
        let idx: Vec<i64> = mine.iter().map(|&i| i as i64).collect();
        let batch = self.train_blocks.index_select(0, &Tensor::from_slice(&idx).to_device(self.train_blocks.device()));
        self.loss(&batch)
    }

    fn tokens_per_micro(&self) -> Option<f64> {
        Some((self.cfg.train.batch_size * self.cfg.train.seq_len) as f64)
    }

    fn stepped(&mut self, step: u64) {
        let t = &self.cfg.train;
        self.state.step = step;
        self.state.sampler = self.sampler.state();
        self.state.tokens_seen += (t.batch_size * t.seq_len * t.grad_accum * self.world) as u64;
    }

    fn evaluate(&mut self, _step: u64) -> Result<Option<Evaluation>> {
        if !self.writer {
            return Ok(None); // rank 0 evaluates for everyone
        }
        let val = self.val_loss()?;
        self.state.val_loss = Some(val);
        Ok(Some(Evaluation {
            metrics: BTreeMap::from([("loss".to_string(), val)]),
            metric: "loss".into(),
            higher_is_better: false,
        }))
    }

    fn save(&mut self, what: Save, opt: &AdamW, _: &LoopProgress) -> Result<()> {
        if what == Save::Best || !self.writer {
            return Ok(()); // a checkpoint is the latest state; rank 0 writes it
        }
        let req = SaveRequest {
            vs: &self.vs,
            model_cfg: &self.model_cfg,
            tokenizer: &self.tokenizer,
            optimizer: opt,
            state: &self.state,
            config: &self.cfg,
        };
        state::save(&self.checkpoint_dir(), &req)
    }
}

/// A 63-bit FNV-1a hash of the tokenizer's serialised form, to compare across ranks.
fn fingerprint(tok: &PlinthTokenizer) -> Result<i64> {
    let text = tok.inner().to_string(false).map_err(|e| TrainError::Invalid(format!("tokenizer: {e}")))?;
    Ok((plinth_data::fnv1a(text.bytes()) >> 1) as i64)
}

/// Trains the configured tokenizer on the training split, or takes it from a
/// plugin's tokenizer component: a `tokenizer.json`, or a recipe
/// `{"train": {"vocab_size": N, "min_frequency": M}}` trained here.
fn build_tokenizer(
    cfg: &TokenizerConfig,
    train_docs: &[String],
    plugins: Option<&dyn plinth_plugin_protocol::Plugins>,
) -> Result<PlinthTokenizer> {
    let Some(p) = &cfg.plugin else {
        let opts = TrainOptions { vocab_size: cfg.vocab_size, min_frequency: cfg.min_frequency };
        return Ok(PlinthTokenizer::train(train_docs.iter(), &opts)?);
    };
    let bad = |m: String| TrainError::Invalid(format!("tokenizer from plugin {} component {}: {m}", p.id, p.component));
    let plugins = plugins.ok_or_else(|| bad("needs the plugin host; run it through the plinth command".into()))?;
    let spec = plugins.spec(&p.id, &p.component).map_err(|e| bad(e.message))?;
    match spec {
        ComponentSpec::Tokenizer(TokenizerSpec::Train { vocab_size, min_frequency }) => {
            Ok(PlinthTokenizer::train(train_docs.iter(), &TrainOptions { vocab_size, min_frequency })?)
        }
        ComponentSpec::Tokenizer(TokenizerSpec::File(json)) => Ok(PlinthTokenizer::from_json(&json)?),
        other => Err(bad(format!("is a {}, not a tokenizer", other.role()))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Split {
    Training,
    Validation,
}

/// Tokenizes, frames and packs `docs` into a `(blocks, block_len)` tensor and returns it with an FNV-1a
/// fingerprint of the tokens (their little-endian u32 bytes).
fn blocks_tensor(
    tok: &PlinthTokenizer,
    docs: &[String],
    cfg: &PretrainConfig,
    block_len: usize,
    device: Device,
    split: Split,
) -> Result<(Tensor, u64)> {
    let encoded = tok.encode_batch(docs)?;
    let mut rng = SplitMix64::new(cfg.train.seed ^ 0xF1F1);
    let framed: Vec<Vec<u32>> = encoded
        .iter()
        .map(|d| match cfg.objective.kind {
            ObjectiveKind::Mlm => frame_masked(d),
            ObjectiveKind::Causal => frame_causal(d, cfg.objective.fim_rate, &mut rng),
        })
        .collect();
    let blocks = pack_blocks(&framed, block_len);
    // Training needs one full batch; evaluation needs one block.
    let (what, min_blocks) = match split {
        Split::Training => ("training", cfg.train.batch_size),
        Split::Validation => ("validation", 1),
    };
    if blocks.len() < min_blocks {
        return Err(TrainError::Data(plinth_data::DataError::Empty(format!(
            "the {what} split packs into {} blocks of {block_len} tokens but needs at least {min_blocks}; use more documents or a shorter seq_len",
            blocks.len()
        ))));
    }
    let fingerprint = plinth_data::fnv1a(blocks.iter().flatten().flat_map(|t| t.to_le_bytes()));
    let flat: Vec<i64> = blocks.iter().flatten().map(|&t| i64::from(t)).collect();
    Ok((Tensor::from_slice(&flat).view([blocks.len() as i64, block_len as i64]).to_device(device), fingerprint))
}
