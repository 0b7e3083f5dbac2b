//! Whole checkpoints: a Hugging Face model folder to a plinth checkpoint folder
//! and back.

use std::path::{Path, PathBuf};

use plinth_checkpoint::{Checkpoint, ObjectiveConfig, ObjectiveKind, TrainingState};
use plinth_checkpoint::{STATE_FILE, TOKENIZER_FILE};
use plinth_data::SamplerState;
use plinth_model::{checkpoint as ckpt, ModelConfig, Transformer};
use plinth_tokenizer::{PlinthTokenizer, Special, HF_TOKENIZER_CONFIG};
use serde::Serialize;
use tch::{nn, Device, Tensor};

use crate::config::{self, Family, TokenIds};
use crate::weights::{self, hf_name};
use crate::{check_destination, read_json, InteropError, Result};

/// What an imported checkpoint records about its origin.
pub const IMPORT_RECORD: &str = "import.json";
pub const HF_CONFIG: &str = "config.json";

/// What [`import_hf`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub source: PathBuf,
    pub family: &'static str,
    pub parameters: i64,
    /// Tensors read and placed.
    pub tensors: usize,
    /// Tensors in the source that plinth does not use (pooler, buffers, tied copies).
    pub skipped: Vec<String>,
    pub tokenizer_tokens: usize,
}

/// What [`export_hf`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub family: &'static str,
    pub architecture: &'static str,
    pub tensors: usize,
}

/// Imports a Hugging Face model folder into a plinth checkpoint folder at `dst`
/// (written as one unit; an existing non-empty `dst` needs `overwrite`).
pub fn import_hf(src: &Path, dst: &Path, overwrite: bool) -> Result<ImportReport> {
    if src.is_file() {
        let name = src.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        return Err(if weights::is_pickle(name) {
            weights::pickle_error(src)
        } else {
            InteropError::file(
                src,
                "is a file; pass the model folder holding config.json, the safetensors weights and tokenizer.json",
            )
        });
    }
    check_destination(dst, overwrite)?;
    let cfg_path = src.join(HF_CONFIG);
    if !cfg_path.exists() {
        return Err(InteropError::file(
            src,
            "no config.json; pass a Hugging Face model folder (what save_pretrained writes)",
        ));
    }
    let (family, cfg) = config::from_hf(&read_json(&cfg_path)?, &cfg_path)?;
    let weight_files = weights::hf_weight_files(src)?;
    let tok_path = src.join(TOKENIZER_FILE);
    if !tok_path.exists() {
        return Err(InteropError::file(
            src,
            "no tokenizer.json; save the fast tokenizer beside the model (`tokenizer.save_pretrained(DIR)`)",
        ));
    }
    let tokenizer = PlinthTokenizer::from_file(&tok_path)?;
    if tokenizer.vocab_size() as i64 > cfg.vocab_size {
        return Err(InteropError::Mismatch {
            path: tok_path,
            message: format!(
                "the tokenizer has {} tokens but the model only {} embeddings",
                tokenizer.vocab_size(),
                cfg.vocab_size
            ),
        });
    }
    let mut source = weights::HfWeights::open(&weight_files, family)?;
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Transformer::new(&vs.root(), &cfg)?;
    let mut missing = Vec::new();
    let mut placed = 0;
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in ckpt::named_variables(&vs) {
            let hf = hf_name(family, &name).ok_or_else(|| {
                InteropError::file(src, format!("plinth parameter {name} has no {} name", family.model_type()))
            })?;
            let Some(shape) = source.shape(&hf) else {
                missing.push(hf);
                continue;
            };
            if shape != var.size() {
                return Err(InteropError::Mismatch {
                    path: src.to_path_buf(),
                    message: format!("{hf} has shape {shape:?} but config.json implies {:?}", var.size()),
                });
            }
            source.take_into(&hf, &mut var)?;
            placed += 1;
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        let hint = if family != Family::Llama
            && missing.iter().any(|m| m.contains("predictions") || m.starts_with("lm_head"))
        {
            " (no masked-LM head: plinth imports models saved from BertForMaskedLM / RobertaForMaskedLM)"
        } else {
            ""
        };
        return Err(InteropError::Mismatch {
            path: src.to_path_buf(),
            message: format!(
                "{} tensors the {} model needs are missing{hint}: {:?}",
                missing.len(),
                family.model_type(),
                first(&missing)
            ),
        });
    }
    let (skipped, unknown): (Vec<String>, Vec<String>) =
        source.remaining().into_iter().partition(|k| weights::ignorable(family, k));
    if !unknown.is_empty() {
        return Err(InteropError::Mismatch {
            path: src.to_path_buf(),
            message: format!(
                "{} tensors have no place in plinth's {} model, so importing would drop them: {:?}",
                unknown.len(),
                family.model_type(),
                first(&unknown)
            ),
        });
    }
    let report = ImportReport {
        source: src.to_path_buf(),
        family: family.model_type(),
        parameters: cfg.num_params(),
        tensors: placed,
        skipped,
        tokenizer_tokens: tokenizer.vocab_size(),
    };
    ckpt::replace_dir(dst, |tmp| -> Result<()> {
        write_model_files(tmp, &vs, &cfg, family.objective())?;
        copy(&tok_path, &tmp.join(TOKENIZER_FILE))?;
        let settings = src.join(HF_TOKENIZER_CONFIG);
        if settings.exists() {
            copy(&settings, &tmp.join(HF_TOKENIZER_CONFIG))?;
        }
        write_json(&tmp.join(IMPORT_RECORD), &report)?;
        Ok(())
    })?;
    Ok(report)
}

/// Exports a plinth checkpoint folder as a Hugging Face model folder at `dst`:
/// `config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`
/// (and `generation_config.json` for causal models).
pub fn export_hf(src: &Path, dst: &Path, overwrite: bool) -> Result<ExportReport> {
    check_destination(dst, overwrite)?;
    let ck = Checkpoint::load(src, Device::Cpu)?;
    let cfg = ck.model.config();
    let family = config::family_of(cfg, ck.state.objective.kind).map_err(|e| match e {
        InteropError::Unsupported { field, value, why, .. } => {
            InteropError::Unsupported { path: src.join(ckpt::CONFIG_FILE), field, value, why }
        }
        other => other,
    })?;
    let named: Vec<(String, Tensor)> = ckpt::named_variables(&ck.vs)
        .into_iter()
        .map(|(name, t)| {
            hf_name(family, &name)
                .map(|hf| (hf, t))
                .ok_or_else(|| InteropError::file(src, format!("parameter {name} has no {} name", family.model_type())))
        })
        .collect::<Result<_>>()?;
    let tok = &ck.tokenizer;
    let ids =
        TokenIds { bos: tok.special(Special::Bos), eos: tok.special(Special::Eos), pad: tok.special(Special::Pad) };
    let hf_cfg = config::to_hf(cfg, family, &ids);
    ckpt::replace_dir(dst, |tmp| -> Result<()> {
        weights::write_hf_weights(&named, &tmp.join(weights::HF_WEIGHTS))?;
        write_json(&tmp.join(HF_CONFIG), &hf_cfg)?;
        tok.save(&tmp.join(TOKENIZER_FILE))?;
        let settings = src.join(HF_TOKENIZER_CONFIG);
        if settings.exists() {
            copy(&settings, &tmp.join(HF_TOKENIZER_CONFIG))?;
        } else {
            write_json(&tmp.join(HF_TOKENIZER_CONFIG), &tok.hf_tokenizer_config(cfg.max_seq_len))?;
        }
        if family == Family::Llama {
            let gen = serde_json::json!({"bos_token_id": ids.bos, "eos_token_id": ids.eos, "pad_token_id": ids.pad});
            write_json(&tmp.join("generation_config.json"), &gen)?;
        }
        Ok(())
    })?;
    Ok(ExportReport { family: family.model_type(), architecture: family.architecture(), tensors: named.len() })
}

/// Writes a plinth checkpoint folder for weights that no plinth training run
/// produced (a model built in code, a conversion): weights, config, tokenizer and
/// a training state at step 0 that records how the model runs (`objective`).
pub fn save_checkpoint(
    dir: &Path,
    vs: &nn::VarStore,
    cfg: &ModelConfig,
    tokenizer: &PlinthTokenizer,
    objective: ObjectiveKind,
    overwrite: bool,
) -> Result<()> {
    check_destination(dir, overwrite)?;
    ckpt::replace_dir(dir, |tmp| -> Result<()> {
        write_model_files(tmp, vs, cfg, objective)?;
        tokenizer.save(&tmp.join(TOKENIZER_FILE))?;
        Ok(())
    })
}

fn write_model_files(dir: &Path, vs: &nn::VarStore, cfg: &ModelConfig, objective: ObjectiveKind) -> Result<()> {
    let state = TrainingState {
        step: 0,
        sampler: SamplerState { epoch: 0, position: 0 },
        objective: ObjectiveConfig { kind: objective, mask_prob: 0.15, fim_rate: 0.0 },
        tokens_seen: 0,
        val_loss: None,
        data_fingerprint: None,
    };
    ckpt::save_tensors(&ckpt::named_variables(vs), &dir.join(ckpt::WEIGHTS_FILE))?;
    ckpt::save_config(cfg, dir)?;
    write_json(&dir.join(STATE_FILE), &state)
}

fn first(names: &[String]) -> Vec<&String> {
    names.iter().take(6).collect()
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map(|_| ()).map_err(|e| InteropError::io(from, e))
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| InteropError::file(path, e))?;
    ckpt::write_atomic(path, text.as_bytes())?;
    Ok(())
}
