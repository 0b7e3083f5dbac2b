//! One module per command: each turns parsed arguments into calls on the crate that
//! owns the work and prints the outcome. Helpers shared by several commands live here.

pub mod checkpoint;
pub mod curate;
pub mod finetune;
pub mod interop;
pub mod pipeline;
pub mod plugins;
pub mod predict_file;
pub mod pretrain;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plinth_checkpoint::Checkpoint;

pub use plugins::{plugin_data, DEFAULT_PLUGINS_CONFIG};

/// The base of the first run (or `base`) and each run's finetuned task on it.
pub fn load_tasks(
    runs: &[PathBuf],
    base: Option<&Path>,
    device: tch::Device,
) -> Result<(Checkpoint, Vec<plinth_finetune::FinetunedTask>)> {
    let first = plinth_finetune::task::read_meta(&plinth_finetune::task::resolve_dir(&runs[0])?)?;
    let base_dir = base.map_or(first.base.clone(), Path::to_path_buf);
    let ck = Checkpoint::load(&base_dir, device).with_context(|| format!("loading the base {}", base_dir.display()))?;
    let tasks = runs.iter().map(|r| plinth_finetune::FinetunedTask::load(r, &ck)).collect::<Result<Vec<_>, _>>()?;
    Ok((ck, tasks))
}
