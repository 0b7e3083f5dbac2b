//! Byte-level BPE (GPT-2's scheme, Radford et al. 2019) built with Hugging Face's
//! `tokenizers` crate, so the saved `tokenizer.json` loads unchanged in Python's
//! `tokenizers.Tokenizer.from_file`.
//!
//! Special tokens take the first ids in a fixed order ([`Special`]), so every
//! plinth tokenizer agrees on them. This crate is a leaf: it knows no tensors.

use std::path::{Path, PathBuf};

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// The special tokens every plinth tokenizer reserves, in id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Pad,
    Bos,
    Eos,
    Mask,
    FimPrefix,
    FimMiddle,
    FimSuffix,
}

impl Special {
    pub const ALL: [Special; 7] = [
        Special::Pad,
        Special::Bos,
        Special::Eos,
        Special::Mask,
        Special::FimPrefix,
        Special::FimMiddle,
        Special::FimSuffix,
    ];

    /// The token's text in `tokenizer.json`.
    pub fn text(self) -> &'static str {
        match self {
            Special::Pad => "<pad>",
            Special::Bos => "<bos>",
            Special::Eos => "<eos>",
            Special::Mask => "<mask>",
            Special::FimPrefix => "<fim_prefix>",
            Special::FimMiddle => "<fim_middle>",
            Special::FimSuffix => "<fim_suffix>",
        }
    }

    /// The token's id: its position in [`Special::ALL`].
    pub fn id(self) -> u32 {
        self as u32
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("tokenizer training failed: {0}")]
    Train(String),
    #[error("cannot encode text: {0}")]
    Encode(String),
    #[error("cannot decode ids: {0}")]
    Decode(String),
    #[error("tokenizer {path} does not reserve plinth's special tokens: {message}")]
    Specials { path: PathBuf, message: String },
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// Settings for training a tokenizer on a corpus.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Total vocabulary including the 256 byte symbols and the special tokens.
    pub vocab_size: usize,
    /// Merges seen fewer times than this are not learned.
    pub min_frequency: u64,
}

/// A byte-level BPE tokenizer with plinth's special tokens.
#[derive(Debug, Clone)]
pub struct PlinthTokenizer {
    inner: Tokenizer,
}

impl PlinthTokenizer {
    /// Learns merges from `texts`.
    pub fn train<I, S>(texts: I, opts: &TrainOptions) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let specials = Special::ALL.iter().map(|s| AddedToken::from(s.text(), true)).collect();
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(opts.vocab_size)
            .min_frequency(opts.min_frequency)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .show_progress(false)
            .build();
        let byte_level = ByteLevel::default().add_prefix_space(false);
        let mut tok = TokenizerBuilder::new()
            .with_model(BPE::default())
            .with_normalizer(None::<NormalizerWrapper>)
            .with_pre_tokenizer(Some(byte_level))
            .with_post_processor(Some(byte_level))
            .with_decoder(Some(byte_level))
            .build()
            .map_err(|e| TokenizerError::Train(e.to_string()))?;
        tok.train(&mut trainer, texts).map_err(|e| TokenizerError::Train(e.to_string()))?;
        let inner = Tokenizer::from(tok);
        Self::check_specials(inner, Path::new("<trained>"))
    }

    /// Loads a `tokenizer.json`, checking that it reserves plinth's special tokens.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::File { path: path.to_path_buf(), message: e.to_string() })?;
        Self::check_specials(inner, path)
    }

    /// Parses the contents of a `tokenizer.json`, checking plinth's special tokens.
    pub fn from_json(json: &str) -> Result<Self> {
        let inner: Tokenizer = json
            .parse()
            .map_err(|e: tokenizers::Error| TokenizerError::File { path: "<json>".into(), message: e.to_string() })?;
        Self::check_specials(inner, Path::new("<json>"))
    }

    /// Saves `tokenizer.json` (pretty-printed).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, true)
            .map_err(|e| TokenizerError::File { path: path.to_path_buf(), message: e.to_string() })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`, with no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of many texts, encoded in parallel.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let encs = self.inner.encode_batch(inputs, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encs.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Text of `ids`; special tokens are dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// The text of one token as the model sees it (byte-level symbols).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn id(&self, special: Special) -> u32 {
        special.id()
    }

    /// True for ids reserved as special tokens.
    pub fn is_special(&self, id: u32) -> bool {
        (id as usize) < Special::ALL.len()
    }

    fn check_specials(inner: Tokenizer, path: &Path) -> Result<Self> {
        for s in Special::ALL {
            match inner.token_to_id(s.text()) {
                Some(id) if id == s.id() => {}
                found => {
                    return Err(TokenizerError::Specials {
                        path: path.to_path_buf(),
                        message: format!("{} should have id {} but has {:?}", s.text(), s.id(), found),
                    })
                }
            }
        }
        Ok(PlinthTokenizer { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PlinthTokenizer {
        let texts = ["the cat sat on the mat", "the dog sat on the log", "cats and dogs"].repeat(20);
        PlinthTokenizer::train(texts.iter(), &TrainOptions { vocab_size: 300, min_frequency: 2 }).expect("train")
    }

    #[test]
    fn round_trips_text_including_unseen_bytes() {
        let tok = small();
        for text in ["the cat sat", "Ünïcödé ☃ and 42 tabs\there", "  leading spaces"] {
            let ids = tok.encode(text).expect("encode");
            assert_eq!(tok.decode(&ids).expect("decode"), text);
        }
    }

    #[test]
    fn specials_take_the_first_ids_and_survive_save_and_load() {
        let tok = small();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).expect("save");
        let back = PlinthTokenizer::from_file(&path).expect("load");
        assert_eq!(back.encode("<mask>").expect("encode"), vec![Special::Mask.id()]);
        assert_eq!(back.encode("the cat").expect("a"), tok.encode("the cat").expect("b"));
        assert!(tok.vocab_size() > 256 + Special::ALL.len());
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = PlinthTokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/tokenizer.json"), "{err}");
    }
}
