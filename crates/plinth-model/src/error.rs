use std::path::PathBuf;

/// Everything that can go wrong building, running or (de)serialising a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("{path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    #[error("bad input: {0}")]
    Input(String),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Another process holds the run folder's lock; the message names it.
    #[error("{0}")]
    Busy(String),
    /// A save ran out of disk space; the previous copy is intact.
    #[error("{0}")]
    DiskFull(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}
