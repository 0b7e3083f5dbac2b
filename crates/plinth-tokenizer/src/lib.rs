//! Byte-level BPE (GPT-2's scheme, Radford et al. 2019) built with Hugging Face's
//! `tokenizers` crate, so the saved `tokenizer.json` loads unchanged in Python's
//! `tokenizers.Tokenizer.from_file`.
//!
//! Special tokens take the first ids in a fixed order ([`Special`]), so every
//! tokenizer plinth trains agrees on them. A tokenizer imported from Hugging Face
//! keeps its own ids: the roles (bos, eos, pad, mask) are then read from the
//! `tokenizer_config.json` beside it, as `transformers` reads them. This crate is a
//! leaf: it knows no tensors.

use std::collections::BTreeSet;
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
    #[error("tokenizer {path}: special tokens: {message}")]
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

/// Hugging Face's file of tokenizer settings, read beside `tokenizer.json`.
pub const HF_TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// A tokenizer: byte-level BPE with plinth's special tokens when plinth trained it,
/// or any `tokenizer.json` with its roles named in `tokenizer_config.json`.
#[derive(Debug, Clone)]
pub struct PlinthTokenizer {
    inner: Tokenizer,
    /// Id of each role in [`Special::ALL`] order; `None` where the tokenizer has no such token.
    roles: [Option<u32>; 7],
    /// Every id registered as a special (added) token.
    special_ids: BTreeSet<u32>,
    /// [`PlinthTokenizer::id_texts`], decoded on first use.
    id_texts: std::sync::OnceLock<Vec<String>>,
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

    /// Loads a `tokenizer.json`. A file with plinth's special tokens at their ids is
    /// a plinth tokenizer; any other needs a Hugging Face `tokenizer_config.json`
    /// beside it naming its roles (`bos_token`/`cls_token`, `eos_token`/`sep_token`,
    /// `pad_token`, `mask_token`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::File { path: path.to_path_buf(), message: e.to_string() })?;
        let own = Special::ALL.iter().all(|s| inner.token_to_id(s.text()) == Some(s.id()));
        let settings = path.with_file_name(HF_TOKENIZER_CONFIG);
        if own || !settings.exists() {
            return Self::check_specials(inner, path);
        }
        let text = std::fs::read_to_string(&settings)
            .map_err(|e| TokenizerError::File { path: settings.clone(), message: e.to_string() })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| TokenizerError::File { path: settings.clone(), message: e.to_string() })?;
        Self::with_hf_roles(inner, &json, path)
    }

    /// A tokenizer whose roles come from a Hugging Face `tokenizer_config.json`
    /// (already parsed). Each named token must exist in the vocabulary.
    pub fn with_hf_roles(inner: Tokenizer, settings: &serde_json::Value, path: &Path) -> Result<Self> {
        let token = |key: &str| -> Result<Option<u32>> {
            let name = match settings.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Object(o)) => match o.get("content") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    _ => return Ok(None),
                },
                _ => return Ok(None),
            };
            inner.token_to_id(&name).map(Some).ok_or_else(|| TokenizerError::Specials {
                path: path.to_path_buf(),
                message: format!("{HF_TOKENIZER_CONFIG} names {key} {name:?}, which is not in the vocabulary"),
            })
        };
        let either = |a: &str, b: &str| -> Result<Option<u32>> { Ok(token(a)?.or(token(b)?)) };
        let roles = [
            token("pad_token")?,
            either("bos_token", "cls_token")?,
            either("eos_token", "sep_token")?,
            token("mask_token")?,
            None,
            None,
            None,
        ];
        if roles[2].is_none() && roles[1].is_none() {
            return Err(TokenizerError::Specials {
                path: path.to_path_buf(),
                message: format!("{HF_TOKENIZER_CONFIG} names neither bos_token/cls_token nor eos_token/sep_token"),
            });
        }
        let special_ids = special_ids(&inner);
        Ok(PlinthTokenizer { inner, roles, special_ids, id_texts: Default::default() })
    }

    /// True when the special tokens are plinth's own, at their fixed ids.
    pub fn is_plinth_layout(&self) -> bool {
        Special::ALL.iter().all(|&s| self.roles[s as usize] == Some(s.id()))
    }

    /// Hugging Face's `tokenizer_config.json` for this tokenizer: its roles by
    /// token text, so `AutoTokenizer.from_pretrained` finds them.
    pub fn hf_tokenizer_config(&self, max_len: i64) -> serde_json::Value {
        let mut cfg = serde_json::Map::new();
        cfg.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        cfg.insert("model_max_length".into(), max_len.into());
        cfg.insert("clean_up_tokenization_spaces".into(), false.into());
        for (key, role) in [
            ("pad_token", Special::Pad),
            ("bos_token", Special::Bos),
            ("eos_token", Special::Eos),
            ("mask_token", Special::Mask),
        ] {
            if let Some(text) = self.special(role).and_then(|id| self.inner.id_to_token(id)) {
                cfg.insert(key.into(), text.into());
            }
        }
        serde_json::Value::Object(cfg)
    }

    /// One line for `plinth info`: the model kind and where the special tokens come from.
    pub fn describe(&self) -> String {
        use tokenizers::models::ModelWrapper;
        let kind = match self.inner.get_model() {
            ModelWrapper::BPE(_) => "BPE",
            ModelWrapper::WordPiece(_) => "WordPiece",
            ModelWrapper::WordLevel(_) => "word-level",
            ModelWrapper::Unigram(_) => "Unigram",
        };
        let roles =
            if self.is_plinth_layout() { "plinth's special tokens" } else { "roles from tokenizer_config.json" };
        format!("{} tokens, {kind}, {roles}", self.vocab_size())
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Parses the contents of a `tokenizer.json`, checking plinth's special tokens.
    pub fn from_json(json: &str) -> Result<Self> {
        let inner: Tokenizer = json
            .parse()
            .map_err(|e: tokenizers::Error| TokenizerError::File { path: "<json>".into(), message: e.to_string() })?;
        Self::check_specials(inner, Path::new("<json>"))
    }

    /// Saves `tokenizer.json` (pretty-printed); a tokenizer whose roles are not
    /// plinth's also writes them to `tokenizer_config.json` beside it, so it loads again.
    pub fn save(&self, path: &Path) -> Result<()> {
        let err = |path: &Path, e: String| TokenizerError::File { path: path.to_path_buf(), message: e };
        self.inner.save(path, true).map_err(|e| err(path, e.to_string()))?;
        if !self.is_plinth_layout() {
            let settings = path.with_file_name(HF_TOKENIZER_CONFIG);
            let json = serde_json::to_string_pretty(&self.hf_tokenizer_config(i64::from(u32::MAX)))
                .map_err(|e| err(&settings, e.to_string()))?;
            std::fs::write(&settings, json).map_err(|e| err(&settings, e.to_string()))?;
        }
        Ok(())
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

    /// What [`PlinthTokenizer::decode`] writes for each id alone (empty for special
    /// tokens), indexed by id; decoded once per tokenizer, since guided generation
    /// masks by it on every call.
    pub fn id_texts(&self) -> Result<&[String]> {
        if let Some(texts) = self.id_texts.get() {
            return Ok(texts);
        }
        let texts = (0..self.vocab_size() as u32).map(|id| self.decode(&[id])).collect::<Result<Vec<_>>>()?;
        Ok(self.id_texts.get_or_init(|| texts))
    }

    /// The text of one token as the model sees it (byte-level symbols).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a role, `None` when the tokenizer has no such token (an imported
    /// Llama tokenizer has no `<mask>` and no fill-in-the-middle sentinels).
    pub fn special(&self, role: Special) -> Option<u32> {
        self.roles[role as usize]
    }

    /// The id to use for a framing role: the role's own token, else the nearest
    /// stand-in (`pad` falls back to `eos`, as `transformers` users do; `bos` and
    /// `eos` stand in for each other, as GPT-2's single `<|endoftext|>` does), else 0.
    /// Roles that carry meaning (mask, fill-in-the-middle) use [`PlinthTokenizer::special`].
    pub fn id(&self, role: Special) -> u32 {
        let order: &[Special] = match role {
            Special::Pad => &[Special::Pad, Special::Eos, Special::Bos],
            Special::Bos => &[Special::Bos, Special::Eos],
            Special::Eos => &[Special::Eos, Special::Bos],
            other => return self.special(other).unwrap_or(0),
        };
        order.iter().find_map(|&r| self.special(r)).unwrap_or(0)
    }

    /// True when token `id` begins a word: for WordPiece, a token without the
    /// continuation prefix (`##`); for byte-level BPE, one starting with the
    /// space symbol `Ġ`; for SentencePiece-style vocabularies, with `▁`.
    pub fn starts_word(&self, id: u32) -> bool {
        use tokenizers::models::ModelWrapper;
        let Some(text) = self.inner.id_to_token(id) else { return false };
        match self.inner.get_model() {
            ModelWrapper::WordPiece(wp) => !text.starts_with(wp.continuing_subword_prefix.as_str()),
            _ => text.starts_with('Ġ') || text.starts_with('▁'),
        }
    }

    /// True for ids registered as special tokens.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    fn check_specials(inner: Tokenizer, path: &Path) -> Result<Self> {
        for s in Special::ALL {
            match inner.token_to_id(s.text()) {
                Some(id) if id == s.id() => {}
                found => {
                    return Err(TokenizerError::Specials {
                        path: path.to_path_buf(),
                        message: format!(
                            "{} should have id {} but has {:?}; a tokenizer from elsewhere needs the {HF_TOKENIZER_CONFIG} that names its roles beside it (`plinth import` copies it)",
                            s.text(),
                            s.id(),
                            found
                        ),
                    })
                }
            }
        }
        let roles = Special::ALL.map(|s| Some(s.id()));
        let special_ids = special_ids(&inner);
        Ok(PlinthTokenizer { inner, roles, special_ids, id_texts: Default::default() })
    }
}

fn special_ids(inner: &Tokenizer) -> BTreeSet<u32> {
    inner.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(id, _)| id).collect()
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
