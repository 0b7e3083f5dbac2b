use std::path::Path;

use plinth_layers::{MlpKind, NormKind};
use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// Where position information comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionKind {
    /// Rotary embeddings applied to queries and keys (Llama).
    Rotary,
    /// A learned absolute position table added to the token embeddings (BERT, GPT-2).
    Learned,
}

/// Where a block normalises: before each sub-layer (pre-norm, Llama, GPT-2) or after
/// each residual sum (post-norm, the original Transformer and BERT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormPlacement {
    /// `x + f(norm(x))`, with one more norm after the last block.
    Pre,
    /// `norm(x + f(x))`, with one more norm on the embeddings before the first block.
    Post,
}

/// The architecture of a plinth Transformer, exactly as it is stored in
/// `configs/models/*.toml` and in a checkpoint's `model.json`.
///
/// The knobs are the ones that separate the Llama family (rotary, RMSNorm, SwiGLU,
/// grouped-query attention, no biases) from the BERT/GPT-2 family (learned
/// positions, layer norm, GELU, biases), so both can be expressed without
/// approximation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Vocabulary size; 0 in a preset means "take it from the tokenizer".
    #[serde(default)]
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub d_model: i64,
    /// Number of Transformer blocks.
    pub n_layers: i64,
    /// Query heads per attention layer; must divide `d_model` unless `head_dim` is set.
    pub n_heads: i64,
    /// Key/value heads (grouped-query attention); defaults to `n_heads`.
    #[serde(default)]
    pub n_kv_heads: Option<i64>,
    /// Width of one attention head, default `d_model / n_heads` (Llama 3.2 and
    /// Gemma-style configs set it explicitly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    /// Hidden width of the feed-forward block.
    pub d_ff: i64,
    /// Longest sequence (prompt plus generated tokens) the model accepts.
    pub max_seq_len: i64,
    /// Normalisation layer, default `rmsnorm`.
    #[serde(default = "default_norm")]
    pub norm: NormKind,
    /// Epsilon of the normalisation layers, default 1e-5.
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Feed-forward shape, default `swiglu`.
    #[serde(default = "default_mlp")]
    pub mlp: MlpKind,
    /// Position encoding, default `rotary`.
    #[serde(default = "default_position")]
    pub position: PositionKind,
    /// Rotary base frequency, default 10000.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Biases on the attention and feed-forward projections, default false.
    #[serde(default)]
    pub bias: bool,
    /// Share the output projection with the token embedding, default true.
    #[serde(default = "default_true")]
    pub tie_embeddings: bool,
    /// Pre-norm (default) or post-norm blocks.
    #[serde(default = "default_placement")]
    pub norm_placement: NormPlacement,
    /// Rows of a token-type (segment) table, default 0 (none). plinth feeds one
    /// segment, so row 0 is added to every position (BERT's single-sentence input).
    #[serde(default)]
    pub type_vocab_size: i64,
    /// First row of the learned position table that position 0 reads, default 0;
    /// the table has `max_seq_len + position_offset` rows (RoBERTa reserves
    /// `padding_idx + 1 = 2`).
    #[serde(default)]
    pub position_offset: i64,
    /// Before the output projection: dense (biased when `bias`), GELU and a norm
    /// of kind `norm` (BERT's masked-LM "transform"), default false.
    #[serde(default)]
    pub head_transform: bool,
    /// A bias on the output projection, default false (BERT's decoder bias).
    #[serde(default)]
    pub head_bias: bool,
}

fn default_placement() -> NormPlacement {
    NormPlacement::Pre
}

fn default_norm() -> NormKind {
    NormKind::RmsNorm
}
fn default_eps() -> f64 {
    1e-5
}
fn default_mlp() -> MlpKind {
    MlpKind::SwiGlu
}
fn default_position() -> PositionKind {
    PositionKind::Rotary
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_true() -> bool {
    true
}

impl ModelConfig {
    /// A 4-layer, 256-wide Llama-style architecture: the starting point tests and
    /// imports override field by field. (The shipped `configs/models/tiny.toml`
    /// preset is 128 wide.)
    pub fn tiny() -> Self {
        ModelConfig {
            vocab_size: 0,
            d_model: 256,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: None,
            d_ff: 688,
            max_seq_len: 256,
            norm: NormKind::RmsNorm,
            norm_eps: 1e-5,
            mlp: MlpKind::SwiGlu,
            position: PositionKind::Rotary,
            rope_theta: 10_000.0,
            bias: false,
            tie_embeddings: true,
            norm_placement: NormPlacement::Pre,
            type_vocab_size: 0,
            position_offset: 0,
            head_transform: false,
            head_bias: false,
            head_dim: None,
        }
    }

    /// Parses a TOML model config; the error names the file and the line.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        check_finite_numbers(&text)
            .map_err(|e| ModelError::ConfigFile { path: path.to_path_buf(), message: e.to_string() })?;
        let cfg: ModelConfig = toml::from_str(&text)
            .map_err(|e| ModelError::ConfigFile { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(cfg)
    }

    pub fn kv_heads(&self) -> i64 {
        self.n_kv_heads.unwrap_or(self.n_heads)
    }

    pub fn head_dim(&self) -> i64 {
        self.head_dim.unwrap_or(self.d_model / self.n_heads.max(1))
    }

    /// Width of all query heads together (`n_heads * head_dim`), the input of `o_proj`.
    pub fn q_dim(&self) -> i64 {
        self.n_heads * self.head_dim()
    }

    /// Rows of the learned position table (0 with rotary positions).
    pub fn position_rows(&self) -> i64 {
        match self.position {
            PositionKind::Learned => self.max_seq_len + self.position_offset,
            PositionKind::Rotary => 0,
        }
    }

    /// Checks the config in the user's terms.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        for (name, v) in [
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ] {
            if v <= 0 {
                return bad(format!("{name} must be positive, got {v}"));
            }
        }
        if self.vocab_size <= 0 {
            return bad(format!(
                "vocab_size must be positive, got {} (set it or build the model with a tokenizer)",
                self.vocab_size
            ));
        }
        match self.head_dim {
            Some(d) if d <= 0 => return bad(format!("head_dim must be positive, got {d}")),
            Some(_) => {}
            None if self.d_model % self.n_heads != 0 => {
                return bad(format!(
                    "d_model {} is not divisible by n_heads {} (set head_dim to use heads of another width)",
                    self.d_model, self.n_heads
                ))
            }
            None => {}
        }
        if self.type_vocab_size < 0 || self.position_offset < 0 {
            return bad(format!(
                "type_vocab_size and position_offset must not be negative, got {} and {}",
                self.type_vocab_size, self.position_offset
            ));
        }
        if self.position_offset > 0 && self.position != PositionKind::Learned {
            return bad("position_offset needs learned positions (position = \"learned\")".into());
        }
        let kv = self.kv_heads();
        if kv <= 0 || self.n_heads % kv != 0 {
            return bad(format!("n_kv_heads {kv} must divide n_heads {}", self.n_heads));
        }
        if self.position == PositionKind::Rotary && self.head_dim() % 2 != 0 {
            return bad(format!("rotary positions need an even head dimension, got {}", self.head_dim()));
        }
        if !(self.norm_eps > 0.0) {
            return bad(format!("norm_eps must be positive, got {}", self.norm_eps));
        }
        Ok(())
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> i64 {
        let (c, f, v, l) = (self.d_model, self.d_ff, self.vocab_size, self.n_layers);
        let (qd, kvd) = (self.q_dim(), self.kv_heads() * self.head_dim());
        let b = i64::from(self.bias);
        let attn = c * qd * 2 + c * kvd * 2 + b * (qd + c + kvd * 2);
        let n_mlp = if self.mlp == MlpKind::SwiGlu { 3 } else { 2 };
        let mlp = n_mlp * c * f + b * ((n_mlp - 1) * f + c);
        let norm_params = if self.norm == NormKind::LayerNorm { 2 * c } else { c };
        let block = attn + mlp + 2 * norm_params;
        let pos = self.position_rows() * c;
        let types = self.type_vocab_size * c;
        let head = if self.tie_embeddings { 0 } else { v * c }
            + if self.head_transform { c * c + b * c + norm_params } else { 0 }
            + if self.head_bias { v } else { 0 };
        v * c + pos + types + l * block + norm_params + head
    }

    /// Forward-plus-backward FLOPs per token at sequence length `t` with logits
    /// at every position: 6 per weight used in a matmul plus attention's
    /// 12·L·C·T (the PaLM appendix B estimate). Lookup tables (positions, and the
    /// token embedding when the head is untied) do no matmul and are left out.
    pub fn train_flops_per_token(&self, t: i64) -> f64 {
        let lookup_only = (self.position_rows() + self.type_vocab_size) * self.d_model
            + if self.tie_embeddings { 0 } else { self.vocab_size * self.d_model };
        let matmul_params = self.num_params() - lookup_only;
        6.0 * matmul_params as f64 + 12.0 * (self.n_layers * self.d_model * t) as f64
    }
}

/// A number in a config file that is NaN or infinite: its key, value and line.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFinite {
    /// Dotted key path (`train.clip_norm`, `stage[2].temperature`).
    pub key: String,
    pub value: f64,
    /// 1-based line, where the key's line could be found.
    pub line: Option<usize>,
}

impl NonFinite {
    /// The complaint without the line (for callers that report lines themselves).
    pub fn message(&self) -> String {
        format!("{} = {}: every number must be finite (not nan or inf); set a real value", self.key, self.value)
    }
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message()),
            None => f.write_str(&self.message()),
        }
    }
}

/// Refuses a TOML document holding a number that is NaN or infinite (TOML allows
/// `nan` and `inf`; no plinth setting does), naming the key and its line. Every
/// config file plinth reads goes through this before its own checks, so one rule
/// covers every float option.
pub fn check_finite_numbers(text: &str) -> std::result::Result<(), NonFinite> {
    fn walk(prefix: &str, v: &toml::Value) -> Option<(String, f64)> {
        match v {
            toml::Value::Float(f) if !f.is_finite() => Some((prefix.to_string(), *f)),
            toml::Value::Table(t) => t
                .iter()
                .find_map(|(k, v)| walk(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v)),
            toml::Value::Array(a) => a.iter().enumerate().find_map(|(i, v)| walk(&format!("{prefix}[{i}]"), v)),
            _ => None,
        }
    }
    let Ok(doc) = text.parse::<toml::Table>() else { return Ok(()) }; // syntax errors are reported by the typed parse
    let Some((key, value)) = doc.iter().find_map(|(k, v)| walk(k, v)) else { return Ok(()) };
    let leaf = key.rsplit('.').next().unwrap_or(&key).split('[').next().unwrap_or(&key);
    let is_literal = |l: &str| {
        let l = l.trim_start_matches(['+', '-']);
        l.starts_with("nan") || l.starts_with("inf")
    };
    let line = text.lines().position(|l| {
        l.split_once('=').is_some_and(|(k, rest)| {
            k.trim().trim_matches('"') == leaf && rest.split([',', '[', ']', '{', '}']).any(|p| is_literal(p.trim()))
        })
    });
    Err(NonFinite { key, value, line: line.map(|n| n + 1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_are_named_with_their_key_and_line() {
        let e = check_finite_numbers("a = 1.0\n[train]\nlr = 3e-3\nclip_norm = nan\n").expect_err("nan");
        assert_eq!((e.key.as_str(), e.line), ("train.clip_norm", Some(4)));
        let e = check_finite_numbers("[[stage]]\nop = \"x\"\n[[stage]]\nw = [1.0, -inf]\n").expect_err("inf");
        assert_eq!((e.key.as_str(), e.value, e.line), ("stage[1].w[1]", f64::NEG_INFINITY, Some(4)));
        assert!(e.to_string().contains("finite"));
        check_finite_numbers("x = 1e308\nname = \"nan\"\n").expect("finite numbers and strings pass");
    }

    #[test]
    fn tiny_preset_validates_once_vocab_is_known() {
        let mut c = ModelConfig::tiny();
        assert!(c.validate().is_err());
        c.vocab_size = 1000;
        c.validate().expect("tiny preset is valid");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = toml::from_str::<ModelConfig>(
            "d_model = 8\nn_layers = 1\nn_heads = 2\nd_ff = 8\nmax_seq_len = 4\nwidth = 3\n",
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("width"), "{err}");
    }

    #[test]
    fn param_count_matches_hand_count() {
        let mut c = ModelConfig::tiny();
        c.vocab_size = 100;
        c.d_model = 8;
        c.n_layers = 1;
        c.n_heads = 2;
        c.d_ff = 16;
        // embed 800, attn 4*64, mlp 3*128, two norms 16, final norm 8
        assert_eq!(c.num_params(), 800 + 256 + 384 + 16 + 8);
    }
}
