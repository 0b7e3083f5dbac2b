//! Checkpoint directories: weights, model config, tokenizer, optimizer moments
//! and the trainer's position, written as one unit.
//!
//! ```text
//! checkpoint/
//!   model.safetensors      weights, keyed by parameter path
//!   model.json             ModelConfig
//!   tokenizer.json         Hugging Face tokenizers format
//!   optimizer.safetensors  AdamW moments m.NAME, v.NAME
//!   training.json          TrainingState (step, sampler position, objective, ...)
//!   pretrain.toml          the resolved config the run used
//! ```
//!
//! A new checkpoint is assembled in a sibling temporary directory and swapped in
//! by renames, so the previous one stays intact until the new one is complete.

use std::path::{Path, PathBuf};

use plinth_data::SamplerState;
use plinth_model::{checkpoint as ckpt, AttentionMode, ModelConfig, Transformer};
use plinth_tokenizer::PlinthTokenizer;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use crate::config::{ObjectiveConfig, ObjectiveKind, PretrainConfig};
use crate::optim::AdamW;
use crate::{Result, TrainError};

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "training.json";
pub const CONFIG_COPY: &str = "pretrain.toml";

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
            return Err(TrainError::Checkpoint(format!(
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
            return Err(TrainError::Checkpoint(format!(
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

/// Everything [`save`] writes.
#[derive(Debug)]
pub struct SaveRequest<'a> {
    pub vs: &'a nn::VarStore,
    pub model_cfg: &'a ModelConfig,
    pub tokenizer: &'a PlinthTokenizer,
    pub optimizer: &'a AdamW,
    pub state: &'a TrainingState,
    pub config: &'a PretrainConfig,
}

/// Writes a complete checkpoint to `dir`, replacing an older one only once the
/// new one is fully written.
pub fn save(dir: &Path, req: &SaveRequest<'_>) -> Result<()> {
    ckpt::replace_dir(dir, |tmp| {
        ckpt::save_tensors(&ckpt::named_variables(req.vs), &tmp.join(ckpt::WEIGHTS_FILE))?;
        ckpt::save_config(req.model_cfg, tmp)?;
        req.tokenizer.save(&tmp.join(TOKENIZER_FILE))?;
        ckpt::save_tensors(&req.optimizer.state_tensors(), &tmp.join(OPTIMIZER_FILE))?;
        let state = serde_json::to_string_pretty(req.state).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        ckpt::write_atomic(&tmp.join(STATE_FILE), state.as_bytes())?;
        let cfg = toml::to_string_pretty(req.config).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        ckpt::write_atomic(&tmp.join(CONFIG_COPY), cfg.as_bytes())?;
        Ok(())
    })
}

/// Reads `training.json`.
pub fn read_state(dir: &Path) -> Result<TrainingState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Config { path, message: e.to_string() })
}

/// Reads the optimizer moments of a checkpoint.
pub fn read_optimizer(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let path = dir.join(OPTIMIZER_FILE);
    Tensor::read_safetensors(&path).map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

/// SHA-256 (hex) of a checkpoint folder's weights file: the identity finetuned
/// tasks and synthetic data's provenance record.
pub fn checkpoint_sha256(dir: &Path) -> Result<String> {
    Ok(plinth_model::lora::weights_sha256(&dir.join(ckpt::WEIGHTS_FILE))?)
}
