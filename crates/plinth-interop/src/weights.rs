//! Weight names between plinth and Hugging Face, and the safetensors files on
//! both sides: a single `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`. Pickle files are refused, never opened.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::{Kind, Tensor};

use crate::config::Family;
use crate::{InteropError, Result};

pub const HF_WEIGHTS: &str = "model.safetensors";
pub const HF_INDEX: &str = "model.safetensors.index.json";

/// File endings of PyTorch's pickle-based formats.
const PICKLE_ENDINGS: [&str; 5] = [".bin", ".pt", ".pth", ".ckpt", ".pkl"];

/// True for a file name in one of PyTorch's pickle formats.
pub fn is_pickle(name: &str) -> bool {
    PICKLE_ENDINGS.iter().any(|e| name.ends_with(e))
}

/// The error for a pickle checkpoint: what it is and how to convert it, without loading it.
pub fn pickle_error(path: &Path) -> InteropError {
    InteropError::Pickle { path: path.to_path_buf() }
}

/// The Hugging Face name of a plinth parameter, for a model of `family`
/// (`prefix` is the base model's attribute: `model.`, `bert.` or `roberta.`).
pub fn hf_name(family: Family, plinth: &str) -> Option<String> {
    let segs: Vec<&str> = plinth.split('.').collect();
    let leaf = *segs.last()?;
    let name = match family {
        Family::Llama => match segs.as_slice() {
            ["embed", "weight"] => "model.embed_tokens.weight".to_string(),
            ["norm", "weight"] => "model.norm.weight".to_string(),
            ["lm_head", "weight"] => "lm_head.weight".to_string(),
            ["blocks", i, "attn", proj, _] => format!("model.layers.{i}.self_attn.{proj}.{leaf}"),
            ["blocks", i, "mlp", proj, _] => format!("model.layers.{i}.mlp.{proj}.{leaf}"),
            ["blocks", i, "attn_norm", _] => format!("model.layers.{i}.input_layernorm.{leaf}"),
            ["blocks", i, "mlp_norm", _] => format!("model.layers.{i}.post_attention_layernorm.{leaf}"),
            _ => return None,
        },
        Family::Bert | Family::Roberta => {
            let base = family.model_type();
            // BERT's output head lives under `cls.predictions`, RoBERTa's under `lm_head`.
            let (head, head_norm) = match family {
                Family::Bert => ("cls.predictions", "cls.predictions.transform.LayerNorm"),
                _ => ("lm_head", "lm_head.layer_norm"),
            };
            let head_dense = match family {
                Family::Bert => "cls.predictions.transform.dense",
                _ => "lm_head.dense",
            };
            let ln = |l: &str| if l == "weight" { "weight" } else { "bias" };
            match segs.as_slice() {
                ["embed", "weight"] => format!("{base}.embeddings.word_embeddings.weight"),
                ["pos_embed", "weight"] => format!("{base}.embeddings.position_embeddings.weight"),
                ["type_embed", "weight"] => format!("{base}.embeddings.token_type_embeddings.weight"),
                ["norm", l] => format!("{base}.embeddings.LayerNorm.{}", ln(l)),
                ["blocks", i, "attn", proj, l] => {
                    let part = match *proj {
                        "q_proj" => "attention.self.query",
                        "k_proj" => "attention.self.key",
                        "v_proj" => "attention.self.value",
                        "o_proj" => "attention.output.dense",
                        _ => return None,
                    };
                    format!("{base}.encoder.layer.{i}.{part}.{l}")
                }
                ["blocks", i, "attn_norm", l] => {
                    format!("{base}.encoder.layer.{i}.attention.output.LayerNorm.{}", ln(l))
                }
                ["blocks", i, "mlp", "up_proj", l] => format!("{base}.encoder.layer.{i}.intermediate.dense.{l}"),
                ["blocks", i, "mlp", "down_proj", l] => format!("{base}.encoder.layer.{i}.output.dense.{l}"),
                ["blocks", i, "mlp_norm", l] => format!("{base}.encoder.layer.{i}.output.LayerNorm.{}", ln(l)),
                ["head", "dense", l] => format!("{head_dense}.{l}"),
                ["head", "norm", l] => format!("{head_norm}.{}", ln(l)),
                ["head", "bias"] => format!("{head}.bias"),
                ["lm_head", "weight"] => format!("{head}.decoder.weight"),
                _ => return None,
            }
        }
    };
    Some(name)
}

/// Tensors a Hugging Face checkpoint may hold that plinth does not use: buffers
/// (`position_ids`, rotary `inv_freq`), BERT's pooler and next-sentence head, and
/// copies of tied weights.
pub fn ignorable(family: Family, hf: &str) -> bool {
    hf.ends_with(".position_ids")
        || hf.ends_with("rotary_emb.inv_freq")
        || match family {
            Family::Llama => hf == "lm_head.weight",
            Family::Bert => {
                hf.starts_with("bert.pooler.")
                    || hf.starts_with("cls.seq_relationship.")
                    || hf.starts_with("cls.predictions.decoder.")
            }
            Family::Roberta => hf.starts_with("roberta.pooler.") || hf.starts_with("lm_head.decoder."),
        }
}

/// A base model saved on its own (`BertModel`, `LlamaModel`) has no `bert.` /
/// `model.` prefix; this adds it back so names match the task model's.
pub fn add_base_prefix(family: Family, tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let base = match family {
        Family::Llama => "model",
        _ => family.model_type(),
    };
    let probe = match family {
        Family::Llama => "embed_tokens.weight",
        _ => "embeddings.word_embeddings.weight",
    };
    if !tensors.iter().any(|(k, _)| k == probe) {
        return tensors;
    }
    tensors
        .into_iter()
        .map(|(k, t)| {
            let prefixed = k.starts_with("embed")
                || k.starts_with("layers.")
                || k.starts_with("encoder.")
                || k.starts_with("pooler.")
                || k == "norm.weight";
            (if prefixed { format!("{base}.{k}") } else { k }, t)
        })
        .collect()
}

/// The weight files of a Hugging Face model folder: `model.safetensors`, or the
/// shards named in `model.safetensors.index.json`. A folder holding only pickle
/// weights is refused with instructions.
pub fn hf_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(HF_WEIGHTS);
    let index = dir.join(HF_INDEX);
    let files: Vec<PathBuf> = if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| InteropError::io(&index, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| InteropError::file(&index, e))?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| InteropError::file(&index, "no weight_map object"))?;
        let shards: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        shards.into_iter().map(|s| dir.join(s)).collect()
    } else if single.exists() {
        vec![single]
    } else {
        let pickle = std::fs::read_dir(dir)
            .map_err(|e| InteropError::io(dir, e))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_pickle));
        return Err(match pickle {
            Some(p) => pickle_error(&p),
            None => {
                InteropError::file(dir, format!("no {HF_WEIGHTS} or {HF_INDEX}; is this a Hugging Face model folder?"))
            }
        });
    };
    Ok(files)
}

/// Reads every tensor of the given safetensors files.
pub fn read_safetensors(files: &[PathBuf]) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for file in files {
        let tensors = Tensor::read_safetensors(file).map_err(|e| InteropError::file(file, e))?;
        out.extend(tensors);
    }
    Ok(out)
}

/// Writes tensors as a safetensors file with the `{"format": "pt"}` header
/// `transformers` checks, through a temporary file and a rename.
pub fn write_hf_weights(named: &[(String, Tensor)], path: &Path) -> Result<()> {
    let mut buffers: BTreeMap<&str, (Vec<u8>, Vec<usize>)> = BTreeMap::new();
    for (name, t) in named {
        let t = t.to_device(tch::Device::Cpu).to_kind(Kind::Float).contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(t.flatten(0, -1)).map_err(|e| InteropError::file(path, e))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        buffers.insert(name.as_str(), (bytes, shape));
    }
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(name, (bytes, shape))| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (*name, v))
                .map_err(|e| InteropError::file(path, e))
        })
        .collect::<Result<_>>()?;
    let metadata = Some(std::collections::HashMap::from([("format".to_string(), "pt".to_string())]));
    let bytes = safetensors::serialize(views, metadata).map_err(|e| InteropError::file(path, e))?;
    plinth_model::checkpoint::write_atomic(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_names_follow_modeling_llama() {
        assert_eq!(
            hf_name(Family::Llama, "blocks.3.attn.k_proj.weight").as_deref(),
            Some("model.layers.3.self_attn.k_proj.weight")
        );
        assert_eq!(
            hf_name(Family::Llama, "blocks.0.mlp_norm.weight").as_deref(),
            Some("model.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(hf_name(Family::Llama, "head.bias"), None);
    }

    #[test]
    fn bert_and_roberta_heads_live_in_different_places() {
        assert_eq!(
            hf_name(Family::Bert, "head.norm.weight").as_deref(),
            Some("cls.predictions.transform.LayerNorm.weight")
        );
        assert_eq!(hf_name(Family::Roberta, "head.norm.bias").as_deref(), Some("lm_head.layer_norm.bias"));
        assert_eq!(
            hf_name(Family::Roberta, "blocks.1.mlp.up_proj.bias").as_deref(),
            Some("roberta.encoder.layer.1.intermediate.dense.bias")
        );
    }

    #[test]
    fn pickle_names_are_recognised() {
        assert!(is_pickle("pytorch_model.bin") && is_pickle("model.pt") && !is_pickle("model.safetensors"));
    }
}
