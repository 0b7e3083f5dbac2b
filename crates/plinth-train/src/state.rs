//! Writing checkpoint directories: weights, model config, tokenizer, optimizer
//! moments and the trainer's position, as one unit. Reading one for inference is
//! `plinth-checkpoint`'s (re-exported here).
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

use std::path::Path;

use plinth_model::{checkpoint as ckpt, ModelConfig};
use plinth_tokenizer::PlinthTokenizer;
use tch::{nn, Tensor};

use crate::config::PretrainConfig;
use crate::optim::AdamW;
use crate::{Result, TrainError};

pub use plinth_checkpoint::{checkpoint_sha256, read_state, Checkpoint, TrainingState, STATE_FILE, TOKENIZER_FILE};

pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const CONFIG_COPY: &str = "pretrain.toml";

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

/// Reads the optimizer moments of a checkpoint.
pub fn read_optimizer(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let path = dir.join(OPTIMIZER_FILE);
    Tensor::read_safetensors(&path).map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}
