//! A pretrained base as inference loads it: weights, model config, tokenizer and
//! how it was trained (the objective, so `fill` and `generate` know what the model
//! can do). Below the trainer, so generation, pipelines and interop can load a
//! checkpoint without it; `plinth-train` writes what this reads.
//!
//! ```text
//! checkpoint/
//!   model.safetensors      weights, keyed by parameter path
//!   model.json             ModelConfig
//!   tokenizer.json         Hugging Face tokenizers format
//!   training.json          TrainingState (step, sampler position, objective, ...)
//!   optimizer.safetensors  AdamW moments (training only)
//!   pretrain.toml          the resolved config the run used (training only)
//! ```

use std::path::{Path, PathBuf};

use plinth_data::SamplerState;
use plinth_model::{checkpoint as ckpt, AttentionMode, Transformer};
use plinth_tokenizer::PlinthTokenizer;
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const STATE_FILE: &str = "training.json";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The folder is not a usable checkpoint; the message says why and what to pass.
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] plinth_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] plinth_tokenizer::TokenizerError),
}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

/// How a base was pretrained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveKind {
    /// Masked fill-in-the-blank with bidirectional attention.
    Mlm,
    /// Next-token prediction with causal attention (plus fill-in-the-middle when `fim_rate` > 0).
    Causal,
}

/// The pretraining objective, as a config's `[objective]` and `training.json` hold it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    pub kind: ObjectiveKind,
    /// Fraction of tokens selected for prediction (MLM), default 0.15; of those 80%
    /// become `<mask>`, 10% a random token and 10% stay.
    #[serde(default = "default_mask_prob")]
    pub mask_prob: f64,
    /// Fraction of documents rewritten as prefix/suffix/middle (causal only), default 0.
    #[serde(default)]
    pub fim_rate: f64,
}

fn default_mask_prob() -> f64 {
    0.15
}

/// Where training stands; with the optimizer moments this is all a resumed run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Position of the training-data sampler.
    pub sampler: SamplerState,
    /// The objective, so `fill` and `generate` know how the model was trained.
    pub objective: ObjectiveConfig,
    /// Training tokens consumed so far.
    pub tokens_seen: u64,
    /// Last held-out loss, if an evaluation ran.
    pub val_loss: Option<f64>,
    /// FNV-1a of the packed training and validation tokens (hex), so a resumed run
    /// refuses data that changed under the same config (another corpus version).
    /// Absent in checkpoints that were not pretrained here (imports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_fingerprint: Option<String>,
}

/// A model loaded from a checkpoint directory, ready for inference.
#[derive(Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub vs: nn::VarStore,
    pub model: Transformer,
    pub tokenizer: PlinthTokenizer,
    pub state: TrainingState,
}

impl Checkpoint {
    /// Loads weights, config, tokenizer and state from `dir` onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        if !dir.join(ckpt::WEIGHTS_FILE).exists() {
            return Err(CheckpointError::Invalid(format!(
                "{} is not a plinth checkpoint (no {}); pass the `checkpoint` folder a pretraining run wrote",
                dir.display(),
                ckpt::WEIGHTS_FILE
            )));
        }
        let cfg = ckpt::load_config(dir)?;
        let tokenizer = PlinthTokenizer::from_file(&dir.join(TOKENIZER_FILE))?;
        // Imported models may pad the embedding past the tokenizer (Llama 2: 32000
        // tokens, tables of 32000 + padding); more tokens than rows is the error.
        if tokenizer.vocab_size() as i64 > cfg.vocab_size {
            return Err(CheckpointError::Invalid(format!(
                "{}: tokenizer has {} tokens but the model has embeddings for {}",
                dir.display(),
                tokenizer.vocab_size(),
                cfg.vocab_size
            )));
        }
        let mut vs = nn::VarStore::new(device);
        let model = Transformer::new(&vs.root(), &cfg)?;
        ckpt::load_into(&mut vs, &dir.join(ckpt::WEIGHTS_FILE))?;
        vs.freeze();
        let state = read_state(dir)?;
        Ok(Checkpoint { dir: dir.to_path_buf(), vs, model, tokenizer, state })
    }

    /// The attention mode the model was trained with.
    pub fn mode(&self) -> AttentionMode {
        match self.state.objective.kind {
            ObjectiveKind::Mlm => AttentionMode::Bidirectional,
            ObjectiveKind::Causal => AttentionMode::Causal,
        }
    }
}

/// Reads `training.json`.
pub fn read_state(dir: &Path) -> Result<TrainingState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| CheckpointError::Io { path: path.clone(), source })?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::Parse { path, message: e.to_string() })
}

/// SHA-256 (hex) of a checkpoint folder's weights file: the identity finetuned
/// tasks and synthetic data's provenance record.
pub fn checkpoint_sha256(dir: &Path) -> Result<String> {
    Ok(plinth_model::lora::weights_sha256(&dir.join(ckpt::WEIGHTS_FILE))?)
}
