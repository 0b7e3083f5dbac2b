//! Finetuning a pretrained base for a plugin's task: LoRA adapters and a task head
//! on a frozen base (or full finetuning, or a head-only linear probe), early
//! stopping on the validation metric, the best task kept as a small file bound to
//! its base by hash, resumable runs, and a report that puts simple baselines
//! fitted on the same split beside the test metrics.

pub mod baselines;
pub mod complete;
mod config;
pub mod data;
mod error;
pub mod file_task;
pub mod lm;
pub mod metrics;
mod run;
pub mod task;

pub use config::{AdapterSettings, FinetuneConfig, FinetuneTrain, HeadSettings, Mode, ScoreSettings, TaskRef};
pub use error::FinetuneError;
pub use file_task::{FileTaskConfig, FileTaskKind};
pub use run::{
    FinetuneOptions, Finetuner, Report, BEST_DIR, COMPLETIONS_FILE, CURVES_FILE, METRICS_FILE, REJECTS_FILE,
    REPORT_FILE, STATE_DIR,
};
pub use task::{FinetuneMeta, FinetunedTask, Prediction};

pub type Result<T, E = FinetuneError> = std::result::Result<T, E>;
