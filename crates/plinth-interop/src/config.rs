//! `config.json` of the Llama and BERT/RoBERTa families to and from plinth's
//! [`ModelConfig`]. Every field that changes the computation is either expressed
//! exactly or refused with its name; fields that only matter for training in
//! `transformers` (dropouts, initialiser ranges) are ignored.

use std::path::Path;

use plinth_checkpoint::ObjectiveKind;
use plinth_model::{MlpKind, ModelConfig, NormKind, NormPlacement, PositionKind};
use serde_json::{json, Map, Value};

use crate::{InteropError, Result};

/// A model family plinth reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `LlamaForCausalLM`: rotary positions, RMSNorm, SwiGLU, grouped-query attention.
    Llama,
    /// `BertForMaskedLM`: learned positions and token types, post-norm, GELU, biases.
    Bert,
    /// `RobertaForMaskedLM`: BERT with positions offset past the padding id.
    Roberta,
}

impl Family {
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Bert => "bert",
            Family::Roberta => "roberta",
        }
    }

    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Bert => "BertForMaskedLM",
            Family::Roberta => "RobertaForMaskedLM",
        }
    }

    /// How the family's models are trained, hence how plinth runs them.
    pub fn objective(self) -> ObjectiveKind {
        match self {
            Family::Llama => ObjectiveKind::Causal,
            Family::Bert | Family::Roberta => ObjectiveKind::Mlm,
        }
    }
}

/// Typed reads of `config.json` fields whose errors name the field.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a Path,
}

impl Fields<'_> {
    fn unsupported(&self, field: &str, value: impl ToString, why: &str) -> InteropError {
        InteropError::Unsupported {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            value: value.to_string(),
            why: why.to_string(),
        }
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn int(&self, key: &str, default: Option<i64>) -> Result<i64> {
        match self.present(key) {
            Some(v) => v.as_i64().ok_or_else(|| self.unsupported(key, v, "expected an integer")),
            None => default.ok_or_else(|| self.unsupported(key, "missing", "this field is required")),
        }
    }

    fn float(&self, key: &str, default: f64) -> Result<f64> {
        match self.present(key) {
            Some(v) => v.as_f64().ok_or_else(|| self.unsupported(key, v, "expected a number")),
            None => Ok(default),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.present(key) {
            Some(v) => v.as_bool().ok_or_else(|| self.unsupported(key, v, "expected true or false")),
            None => Ok(default),
        }
    }

    fn string(&self, key: &str, default: &str) -> Result<String> {
        match self.present(key) {
            Some(v) => v.as_str().map(str::to_string).ok_or_else(|| self.unsupported(key, v, "expected a string")),
            None => Ok(default.to_string()),
        }
    }

    /// Refuses a field whose presence (non-null, non-false) changes the computation.
    fn refuse_if_set(&self, key: &str, why: &str) -> Result<()> {
        match self.present(key) {
            Some(Value::Bool(false)) | None => Ok(()),
            Some(v) => Err(self.unsupported(key, v, why)),
        }
    }
}

/// Reads a Hugging Face `config.json` into plinth's config, or names the field
/// plinth cannot express.
pub fn from_hf(json: &Value, path: &Path) -> Result<(Family, ModelConfig)> {
    let obj = json.as_object().ok_or_else(|| InteropError::File {
        path: path.to_path_buf(),
        message: "config.json is not a JSON object".into(),
    })?;
    let f = Fields { obj, path };
    f.refuse_if_set(
        "quantization_config",
        "quantized checkpoints are not supported; export an unquantized (f32, f16 or bf16) one",
    )?;
    let model_type = f.string("model_type", "")?;
    match model_type.as_str() {
        "llama" => llama(&f).map(|c| (Family::Llama, c)),
        "bert" => bert(&f, Family::Bert).map(|c| (Family::Bert, c)),
        "roberta" => bert(&f, Family::Roberta).map(|c| (Family::Roberta, c)),
        other => Err(f.unsupported(
            "model_type",
            format!("{other:?}"),
            "plinth imports the llama, bert and roberta families",
        )),
    }
}

fn llama(f: &Fields<'_>) -> Result<ModelConfig> {
    let act = f.string("hidden_act", "silu")?;
    if act != "silu" {
        return Err(f.unsupported("hidden_act", format!("{act:?}"), "Llama's SwiGLU in plinth uses silu"));
    }
    let (attn_bias, mlp_bias) = (f.boolean("attention_bias", false)?, f.boolean("mlp_bias", false)?);
    if attn_bias != mlp_bias {
        return Err(f.unsupported(
            "mlp_bias",
            mlp_bias,
            "plinth's `bias` covers attention and feed-forward together; attention_bias and mlp_bias must agree",
        ));
    }
    // transformers 5 nests rotary settings in `rope_parameters`; 4.x kept
    // `rope_theta` at the top and scaling in `rope_scaling`.
    let mut rope_theta = f.float("rope_theta", 10_000.0)?;
    if let Some(params) = f.present("rope_parameters") {
        let p = params.as_object().ok_or_else(|| f.unsupported("rope_parameters", params, "expected an object"))?;
        let inner = Fields { obj: p, path: f.path };
        let kind = inner.string("rope_type", "default")?;
        if kind != "default" {
            return Err(f.unsupported(
                "rope_parameters.rope_type",
                format!("{kind:?}"),
                "plinth's rotary positions are unscaled (rope_type \"default\")",
            ));
        }
        rope_theta = inner.float("rope_theta", rope_theta)?;
    }
    f.refuse_if_set("rope_scaling", "plinth's rotary positions are unscaled")?;
    let (d_model, n_heads) = (f.int("hidden_size", None)?, f.int("num_attention_heads", None)?);
    let head_dim = match f.present("head_dim") {
        Some(_) => Some(f.int("head_dim", None)?).filter(|&d| n_heads <= 0 || d * n_heads != d_model),
        None => None,
    };
    let cfg = ModelConfig {
        vocab_size: f.int("vocab_size", None)?,
        d_model,
        n_layers: f.int("num_hidden_layers", None)?,
        n_heads,
        n_kv_heads: Some(f.int("num_key_value_heads", Some(n_heads))?),
        head_dim,
        d_ff: f.int("intermediate_size", None)?,
        max_seq_len: f.int("max_position_embeddings", Some(2048))?,
        norm: NormKind::RmsNorm,
        norm_eps: f.float("rms_norm_eps", 1e-6)?,
        mlp: MlpKind::SwiGlu,
        position: PositionKind::Rotary,
        rope_theta,
        bias: attn_bias,
        tie_embeddings: f.boolean("tie_word_embeddings", false)?,
        norm_placement: NormPlacement::Pre,
        type_vocab_size: 0,
        position_offset: 0,
        head_transform: false,
        head_bias: false,
    };
    cfg.validate()?;
    Ok(cfg)
}

fn bert(f: &Fields<'_>, family: Family) -> Result<ModelConfig> {
    let act = f.string("hidden_act", "gelu")?;
    if act != "gelu" {
        return Err(f.unsupported("hidden_act", format!("{act:?}"), "plinth's GELU is the exact (erf) form, \"gelu\""));
    }
    let pos = f.string("position_embedding_type", "absolute")?;
    if pos != "absolute" {
        return Err(f.unsupported(
            "position_embedding_type",
            format!("{pos:?}"),
            "plinth's learned positions are absolute",
        ));
    }
    f.refuse_if_set("is_decoder", "plinth imports BERT-family models as bidirectional encoders")?;
    f.refuse_if_set("add_cross_attention", "plinth has no cross-attention")?;
    let offset = match family {
        Family::Roberta => f.int("pad_token_id", Some(1))? + 1,
        _ => 0,
    };
    let rows = f.int("max_position_embeddings", Some(512))?;
    if rows <= offset {
        return Err(f.unsupported(
            "max_position_embeddings",
            rows,
            "leaves no positions after RoBERTa's padding offset",
        ));
    }
    let cfg = ModelConfig {
        vocab_size: f.int("vocab_size", None)?,
        d_model: f.int("hidden_size", None)?,
        n_layers: f.int("num_hidden_layers", None)?,
        n_heads: f.int("num_attention_heads", None)?,
        n_kv_heads: None,
        head_dim: None,
        d_ff: f.int("intermediate_size", None)?,
        max_seq_len: rows - offset,
        norm: NormKind::LayerNorm,
        norm_eps: f.float("layer_norm_eps", 1e-12)?,
        mlp: MlpKind::Gelu,
        position: PositionKind::Learned,
        rope_theta: 10_000.0,
        bias: true,
        tie_embeddings: f.boolean("tie_word_embeddings", true)?,
        norm_placement: NormPlacement::Post,
        type_vocab_size: f.int("type_vocab_size", Some(2))?,
        position_offset: offset,
        head_transform: true,
        head_bias: true,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The family a plinth model exports as, or the first setting that fits none.
pub fn family_of(cfg: &ModelConfig, objective: ObjectiveKind) -> Result<Family> {
    let refuse = |field: &str, value: String, why: &str| InteropError::Unsupported {
        path: "model.json".into(),
        field: field.into(),
        value,
        why: why.into(),
    };
    match objective {
        ObjectiveKind::Causal => {
            let checks: [(&str, bool, String); 6] = [
                ("position", cfg.position == PositionKind::Rotary, format!("{:?}", cfg.position)),
                ("norm", cfg.norm == NormKind::RmsNorm, format!("{:?}", cfg.norm)),
                ("mlp", cfg.mlp == MlpKind::SwiGlu, format!("{:?}", cfg.mlp)),
                ("norm_placement", cfg.norm_placement == NormPlacement::Pre, format!("{:?}", cfg.norm_placement)),
                ("type_vocab_size", cfg.type_vocab_size == 0, cfg.type_vocab_size.to_string()),
                ("head_transform", !cfg.head_transform && !cfg.head_bias, cfg.head_transform.to_string()),
            ];
            match checks.into_iter().find(|(_, ok, _)| !ok) {
                Some((field, _, value)) => Err(refuse(
                    field,
                    value,
                    "a causal model exports as LlamaForCausalLM, which needs rotary positions, rmsnorm, swiglu, pre-norm and a plain output head",
                )),
                None => Ok(Family::Llama),
            }
        }
        ObjectiveKind::Mlm => {
            let checks: [(&str, bool, String); 8] = [
                ("position", cfg.position == PositionKind::Learned, format!("{:?}", cfg.position)),
                ("norm", cfg.norm == NormKind::LayerNorm, format!("{:?}", cfg.norm)),
                ("mlp", cfg.mlp == MlpKind::Gelu, format!("{:?}", cfg.mlp)),
                ("norm_placement", cfg.norm_placement == NormPlacement::Post, format!("{:?}", cfg.norm_placement)),
                ("bias", cfg.bias, cfg.bias.to_string()),
                ("head_transform", cfg.head_transform, cfg.head_transform.to_string()),
                ("head_bias", cfg.head_bias, cfg.head_bias.to_string()),
                ("n_kv_heads", cfg.kv_heads() == cfg.n_heads && cfg.head_dim.is_none(), cfg.kv_heads().to_string()),
            ];
            match checks.into_iter().find(|(_, ok, _)| !ok) {
                Some((field, _, value)) => Err(refuse(
                    field,
                    value,
                    "a masked (bidirectional) model exports as BertForMaskedLM, which needs learned positions, layernorm, gelu, post-norm, biases and BERT's output head; transformers has no bidirectional Llama, so pretrain with configs/models/bert-tiny.toml to get an exportable masked model",
                )),
                None if cfg.position_offset > 0 => Ok(Family::Roberta),
                None => Ok(Family::Bert),
            }
        }
    }
}

/// The `config.json` for a plinth model of `family`; token ids come from the tokenizer.
pub fn to_hf(cfg: &ModelConfig, family: Family, tokens: &TokenIds) -> Value {
    let mut out = json!({
        "architectures": [family.architecture()],
        "model_type": family.model_type(),
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_ff,
        "tie_word_embeddings": cfg.tie_embeddings,
        "dtype": "float32",
        "bos_token_id": tokens.bos,
        "eos_token_id": tokens.eos,
        "pad_token_id": tokens.pad,
    });
    let extra = match family {
        Family::Llama => json!({
            "num_key_value_heads": cfg.kv_heads(),
            "head_dim": cfg.head_dim(),
            "max_position_embeddings": cfg.max_seq_len,
            "rms_norm_eps": cfg.norm_eps,
            "hidden_act": "silu",
            "attention_bias": cfg.bias,
            "mlp_bias": cfg.bias,
            "rope_theta": cfg.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
            "attention_dropout": 0.0,
        }),
        Family::Bert | Family::Roberta => json!({
            "max_position_embeddings": cfg.position_rows(),
            "type_vocab_size": cfg.type_vocab_size,
            "layer_norm_eps": cfg.norm_eps,
            "hidden_act": "gelu",
            "position_embedding_type": "absolute",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
        }),
    };
    if let (Some(o), Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
        if family == Family::Roberta {
            o.insert("pad_token_id".into(), json!(cfg.position_offset - 1));
        }
    }
    out
}

/// The special-token ids `config.json` records.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
}
