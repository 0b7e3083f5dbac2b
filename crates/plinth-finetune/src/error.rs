//! Finetuning's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// The finetune config says something unusable (checked before any work).
    #[error("invalid finetune config: {0}")]
    Settings(String),
    /// A run, task or request cannot go ahead as asked; the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// The task's plugin answered something unusable (its data, scorer, prompt stage or guide).
    #[error("{0}")]
    Plugin(String),
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Checkpoint(String),
    #[error(transparent)]
    Train(#[from] plinth_train::TrainError),
    #[error(transparent)]
    Base(#[from] plinth_checkpoint::CheckpointError),
    #[error(transparent)]
    Model(#[from] plinth_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] plinth_tokenizer::TokenizerError),
    #[error(transparent)]
    Generate(#[from] plinth_generate::GenerateError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}
