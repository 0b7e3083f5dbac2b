use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("invalid training config: {0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Checkpoint(String),
    /// A collective failed in a data-parallel run (a rank died, the network broke).
    #[error("distributed training stopped: {0}")]
    Distributed(String),
    #[error(transparent)]
    Model(#[from] plinth_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] plinth_tokenizer::TokenizerError),
    #[error(transparent)]
    Data(#[from] plinth_data::DataError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Stored(#[from] plinth_checkpoint::CheckpointError),
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    }
}
