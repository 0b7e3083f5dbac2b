//! Training: the one loop ([`Trainer`]: accumulation, data-parallel averaging,
//! clipping, AdamW with warmup + cosine, evaluation cadence, early stopping, metrics,
//! saving) and self-supervised pretraining on it: masked fill-in-the-blank (BERT),
//! next-token prediction (GPT) and fill-in-the-middle (Bavarian et al. 2022), with
//! checkpoints that resume bit for bit. Finetuning (`plinth-finetune`) is the
//! loop's other [`Objective`].

mod config;
pub mod ddp;
mod error;
pub mod objectives;
pub mod optim;
pub mod plot;
mod run;
pub mod state;
pub mod trainer;

pub use config::{
    resume_refusal, DataConfig, ModelSpec, ObjectiveConfig, ObjectiveKind, PretrainConfig, TokenizerConfig, TrainConfig,
};
pub use error::TrainError;
pub use run::{Pretrainer, RunOptions};
pub use state::{Checkpoint, TrainingState};
pub use trainer::{Evaluation, LoopConfig, LoopProgress, Objective, Save, StepMetrics, Trainer};

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
