//! Weight names between plinth and Hugging Face, and the safetensors files on
//! both sides: a single `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`. Pickle files are refused, never opened.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plinth_model::checkpoint::SafetensorsReader;
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

/// The tensors of a Hugging Face checkpoint across its files, read one at a time.
/// A base model saved on its own (`BertModel`, `LlamaModel`) has no `bert.` /
/// `model.` prefix; names get it back so they match the task model's.
pub struct HfWeights {
    readers: Vec<SafetensorsReader>,
    /// Name (with the base prefix) -> (reader, name in the file).
    index: BTreeMap<String, (usize, String)>,
}

impl HfWeights {
    pub fn open(files: &[PathBuf], family: Family) -> Result<Self> {
        let readers: Vec<SafetensorsReader> =
            files.iter().map(|f| SafetensorsReader::open(f)).collect::<Result<_, _>>()?;
        let (base, probe) = match family {
            Family::Llama => ("model", "embed_tokens.weight"),
            _ => (family.model_type(), "embeddings.word_embeddings.weight"),
        };
        let bare = readers.iter().any(|r| r.names().any(|n| n == probe));
        let mut index = BTreeMap::new();
        for (i, r) in readers.iter().enumerate() {
            for n in r.names() {
                let prefixed = bare
                    && (n.starts_with("embed")
                        || n.starts_with("layers.")
                        || n.starts_with("encoder.")
                        || n.starts_with("pooler.")
                        || n == "norm.weight");
                let key = if prefixed { format!("{base}.{n}") } else { n.to_string() };
                index.insert(key, (i, n.to_string()));
            }
        }
        Ok(HfWeights { readers, index })
    }

    pub fn shape(&self, name: &str) -> Option<Vec<i64>> {
        self.index.get(name).and_then(|(i, n)| self.readers[*i].shape(n))
    }

    /// Copies a tensor into `dst` and forgets it, so [`HfWeights::remaining`] lists
    /// what was not used; false when there is no such tensor.
    pub fn take_into(&mut self, name: &str, dst: &mut Tensor) -> Result<bool> {
        let Some((i, n)) = self.index.remove(name) else { return Ok(false) };
        self.readers[i].read_into(&n, dst)?;
        Ok(true)
    }

    /// Names not taken yet.
    pub fn remaining(self) -> Vec<String> {
        self.index.into_keys().collect()
    }
}

/// The weight files of a Hugging Face model folder: `model.safetensors`, or the
/// shards named in `model.safetensors.index.json`. A folder holding only pickle
/// weights is refused with instructions.
pub fn hf_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(HF_WEIGHTS);
    let index = dir.join(HF_INDEX);
    let files: Vec<PathBuf> = if index.exists() {
        let json = crate::read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| InteropError::file(&index, "no weight_map object"))?;
        let shards: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        shards.into_iter().map(|s| shard_path(dir, &index, s)).collect::<Result<_>>()?
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

/// A shard named in the index, refused unless it is a file inside `dir` (no
/// absolute path, no `..`, no link out of the folder): checked before it is opened.
fn shard_path(dir: &Path, index: &Path, shard: &str) -> Result<PathBuf> {
    use std::path::Component;
    let outside = || {
        InteropError::file(
            index,
            format!("weight_map names {shard:?}, which is not a file inside the model folder; shards must sit beside the index"),
        )
    };
    if shard.is_empty() || !Path::new(shard).components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(outside());
    }
    let path = dir.join(shard);
    let real = path.canonicalize().map_err(|e| InteropError::file(index, format!("shard {shard}: {e}")))?;
    let root = dir.canonicalize().map_err(|e| InteropError::io(dir, e))?;
    if !real.starts_with(&root) || !real.is_file() {
        return Err(outside());
    }
    Ok(path)
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
    fn shards_must_lie_inside_the_model_folder() {
        let root = tempfile::tempdir().expect("tempdir");
        let model = root.path().join("model");
        std::fs::create_dir(&model).expect("mkdir");
        std::fs::write(model.join("a.safetensors"), b"").expect("write");
        std::fs::write(root.path().join("outside.safetensors"), b"").expect("write");
        std::os::unix::fs::symlink(root.path().join("outside.safetensors"), model.join("link.safetensors"))
            .expect("symlink");
        let index = |shard: &str| {
            let json = serde_json::json!({"weight_map": {"w": "a.safetensors", "v": shard}});
            std::fs::write(model.join(HF_INDEX), json.to_string()).expect("write");
            hf_weight_files(&model)
        };
        assert_eq!(index("a.safetensors").expect("inside").len(), 1);
        for bad in ["/etc/passwd", "../outside.safetensors", "link.safetensors", "", "sub/../../outside.safetensors"] {
            let err = index(bad).expect_err(bad).to_string();
            assert!(err.contains("not a file inside the model folder"), "{bad}: {err}");
        }
        let err = index("missing.safetensors").expect_err("missing").to_string();
        assert!(err.contains("shard missing.safetensors"), "{err}");
    }

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
