//! Hugging Face interop: plinth reads and writes the checkpoint layouts the field
//! uses, from and to local folders (nothing is downloaded).
//!
//! - [`import_hf`]: a `transformers` model folder (`config.json`, `model.safetensors`
//!   or shards with an index, `tokenizer.json` and `tokenizer_config.json`) of the
//!   Llama, BERT or RoBERTa family becomes a plinth checkpoint folder;
//! - [`export_hf`]: a plinth checkpoint becomes a folder `from_pretrained` loads;
//! - [`peft`]: LoRA adapters in PEFT's format, both ways.

//!
//! Names map one parameter at a time ([`weights::hf_name`]); nothing is reshaped,
//! because plinth's layers already use the Llama conventions (rotate-half rotary,
//! `(out, in)` weights). Pickle files are refused and never opened.

pub mod config;
mod convert;
pub mod peft;

pub mod weights;

use std::path::{Path, PathBuf};

pub use config::Family;
pub use convert::{export_hf, import_hf, save_checkpoint, ExportReport, ImportReport, IMPORT_RECORD};

#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: `{field}` = {value} is not supported: {why}")]
    Unsupported { path: PathBuf, field: String, value: String, why: String },
    #[error(
        "{path} is a pickle file, which can run arbitrary code when loaded, so plinth never opens it. Convert it to safetensors where you trust it, e.g. `python -c \"from transformers import AutoModel; AutoModel.from_pretrained('DIR').save_pretrained('OUT', safe_serialization=True)\"`, then import OUT"
    )]
    Pickle { path: PathBuf },
    #[error("{path}: {message}")]
    Mismatch { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] plinth_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] plinth_tokenizer::TokenizerError),
    #[error(transparent)]
    Checkpoint(#[from] plinth_checkpoint::CheckpointError),
    #[error(transparent)]
    Finetune(#[from] plinth_finetune::FinetuneError),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

impl InteropError {
    pub(crate) fn file(path: &Path, message: impl ToString) -> Self {
        InteropError::File { path: path.to_path_buf(), message: message.to_string() }
    }

    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        InteropError::File { path: path.to_path_buf(), message: e.to_string() }
    }
}

pub type Result<T, E = InteropError> = std::result::Result<T, E>;

/// Refuses to write into `dir` when it holds anything and `overwrite` is off, so a
/// typo never replaces a folder of the user's.
pub(crate) fn check_destination(dir: &Path, overwrite: bool) -> Result<()> {
    let non_empty = std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false);
    if non_empty && !overwrite {
        return Err(InteropError::file(
            dir,
            "already exists and is not empty; choose a new folder, or pass --overwrite to replace it",
        ));
    }
    if dir.is_file() {
        return Err(InteropError::file(dir, "is a file; the destination must be a folder"));
    }
    Ok(())
}

/// Reads a JSON file, naming it in errors.
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| InteropError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| InteropError::file(path, e))
}
