//! Self-supervised pretraining: masked fill-in-the-blank (BERT), next-token
//! prediction (GPT) and fill-in-the-middle (Bavarian et al. 2022), with AdamW,
//! warmup + cosine, clipping, accumulation, held-out evaluation and checkpoints
//! that resume bit for bit.

mod config;
pub mod ddp;
mod error;
pub mod objectives;
pub mod optim;
pub mod plot;
mod run;
pub mod state;

pub use config::{
    resume_refusal, DataConfig, ModelSpec, ObjectiveConfig, ObjectiveKind, PretrainConfig, TokenizerConfig, TrainConfig,
};
pub use error::TrainError;
pub use run::{Pretrainer, RunOptions, StepMetrics};
pub use state::{Checkpoint, TrainingState};

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
