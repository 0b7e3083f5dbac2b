//! plinth's base model: one Transformer whose weights serve two attention modes,
//! bidirectional for masked fill-in-the-blank and causal for generation.
//!
//! The public surface is [`ModelConfig`], [`Transformer`], [`KvCache`] and the
//! checkpoint functions in [`checkpoint`]; blocks are private.

pub mod checkpoint;
mod config;
mod error;
pub mod heads;
pub mod lora;
pub mod run_dir;
mod transformer;

pub use config::{check_finite_numbers, ModelConfig, NonFinite, NormPlacement, PositionKind};
pub use error::ModelError;
pub use plinth_layers::{AttentionMode, MlpKind, NormKind};
pub use transformer::{ForwardOptions, KvCache, Transformer};

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
