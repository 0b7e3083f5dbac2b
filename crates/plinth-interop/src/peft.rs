//! LoRA adapters in PEFT's format (`adapter_config.json`,
//! `adapter_model.safetensors`), both ways.
//!
//! PEFT stores `base_model.model.{module}.lora_A.weight` (r, in) and `.lora_B.weight`
//! (out, r) and scales by `lora_alpha / r` (or `/ √r` with rsLoRA); plinth stores
//! `blocks.{i}.{attn|mlp}.{proj}.lora_a` / `lora_b` of the same shapes and scales by
//! `alpha / rank`. Modules map through [`crate::weights::hf_name`], so one table
//! serves weights and adapters.

use std::collections::BTreeMap;
use std::path::Path;

use plinth_checkpoint::Checkpoint;
use plinth_finetune::task::{self as ft, FinetuneMeta};
use plinth_finetune::Mode;
use plinth_model::checkpoint as ckpt;
use plinth_model::lora::{projection_paths, AdapterMeta, LoraAdapter, LoraConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use plinth_model::ModelConfig;
use plinth_plugin_protocol::{TaskKind, TaskSpec};
use serde::Serialize;
use serde_json::{json, Value};
use tch::{nn, Device, Tensor};

use crate::config::{self, Family};
use crate::convert::write_json;
use crate::weights::{self, hf_name};
use crate::{check_destination, read_json, InteropError, Result};

pub const PEFT_CONFIG: &str = "adapter_config.json";
pub const PEFT_WEIGHTS: &str = "adapter_model.safetensors";
const PEFT_PREFIX: &str = "base_model.model.";

/// What an adapter conversion did.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    pub family: &'static str,
    pub rank: i64,
    pub alpha: f64,
    /// Adapted modules, in the destination's naming.
    pub modules: usize,
    pub target_modules: Vec<String>,
    /// The finetuned task had a head besides its adapter; PEFT's LoRA format has no
    /// place for plinth's heads, so it was left out.
    pub head_left_out: bool,
}

/// The Hugging Face module of a plinth projection path.
fn hf_module(family: Family, projection: &str) -> Option<String> {
    hf_name(family, &format!("{projection}.weight")).and_then(|n| n.strip_suffix(".weight").map(str::to_string))
}

/// The family of a base checkpoint, for adapter naming.
fn base_family(base: &Checkpoint) -> Result<Family> {
    config::family_of(base.model.config(), base.state.objective.kind)
}

/// A plinth adapter on disk: a finetune run's task folder (`task.json`, LoRA mode)
/// or an adapter-only folder (`adapter.json`).
struct PlinthAdapter {
    lora: LoraConfig,
    base_sha256: String,
    /// `blocks.{i}.{proj}.lora_{a,b}` tensors.
    tensors: Vec<(String, Tensor)>,
    has_head: bool,
}

fn read_plinth_adapter(dir: &Path) -> Result<PlinthAdapter> {
    if dir.join(ADAPTER_CONFIG).exists() {
        let meta: AdapterMeta = serde_json::from_value(read_json(&dir.join(ADAPTER_CONFIG))?)
            .map_err(|e| InteropError::file(&dir.join(ADAPTER_CONFIG), e))?;
        let path = dir.join(ADAPTER_WEIGHTS);
        let tensors = Tensor::read_safetensors(&path).map_err(|e| InteropError::file(&path, e))?;
        return Ok(PlinthAdapter { lora: meta.lora, base_sha256: meta.base_sha256, tensors, has_head: false });
    }
    let task_dir = ft::resolve_dir(dir)?;
    let meta = ft::read_meta(&task_dir)?;
    let lora = match (meta.mode, meta.lora) {
        (Mode::Lora, Some(l)) => l,
        (mode, _) => {
            return Err(InteropError::file(
                &task_dir,
                format!(
                    "a {mode:?} task has no LoRA adapter to export (export the base with `plinth export CHECKPOINT`)"
                )
                .to_lowercase(),
            ))
        }
    };
    let path = task_dir.join(ft::TASK_WEIGHTS);
    let all = Tensor::read_safetensors(&path).map_err(|e| InteropError::file(&path, e))?;
    let has_head = all.iter().any(|(k, _)| k.starts_with("head."));
    let tensors = all.into_iter().filter_map(|(k, t)| k.strip_prefix("lora.").map(|k| (k.to_string(), t))).collect();
    Ok(PlinthAdapter { lora, base_sha256: meta.base_sha256, tensors, has_head })
}

fn check_base(base_dir: &Path, want: &str, adapter: &Path) -> Result<()> {
    let sha = plinth_checkpoint::checkpoint_sha256(base_dir)?;
    if sha != want {
        return Err(InteropError::Mismatch {
            path: adapter.to_path_buf(),
            message: format!(
                "the adapter was trained on the base with weights SHA-256 {want} but {} has {sha}; pass the base it was trained on",
                base_dir.display()
            ),
        });
    }
    Ok(())
}

/// PEFT `target_modules` for a set of adapted Hugging Face modules: the short name
/// of a projection when every layer has it and no other module shares the name,
/// else the full module names (PEFT matches either by suffix).
fn target_modules(family: Family, cfg: &ModelConfig, adapted: &[String]) -> Vec<String> {
    let all: Vec<String> = projection_paths(cfg).iter().filter_map(|p| hf_module(family, p)).collect();
    let short = |m: &str| m.rsplit('.').next().unwrap_or(m).to_string();
    let mut by_short: BTreeMap<String, (usize, usize)> = BTreeMap::new(); // short -> (in model, adapted)
    for m in &all {
        by_short.entry(short(m)).or_default().0 += 1;
    }
    for m in adapted {
        by_short.entry(short(m)).or_default().1 += 1;
    }
    // BERT's `dense` also names the output head's transform, which is never adapted.
    let head_shares = |s: &str| family != Family::Llama && s == "dense";
    let mut out: Vec<String> = Vec::new();
    for m in adapted {
        let s = short(m);
        let (n_model, n_adapted) = by_short[&s];
        let name =
            if n_model == n_adapted && n_model as i64 == cfg.n_layers && !head_shares(&s) { s } else { m.clone() };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Exports a plinth LoRA adapter (a finetune run's folder or an adapter folder)
/// trained on `base_dir` as a PEFT adapter folder at `out`.
pub fn export_peft(adapter_dir: &Path, base_dir: &Path, out: &Path, overwrite: bool) -> Result<AdapterReport> {
    check_destination(out, overwrite)?;
    let adapter = read_plinth_adapter(adapter_dir)?;
    check_base(base_dir, &adapter.base_sha256, adapter_dir)?;
    let base = Checkpoint::load(base_dir, Device::Cpu)?;
    let family = base_family(&base)?;
    let mut named = Vec::new();
    let mut modules = Vec::new();
    for (key, t) in &adapter.tensors {
        let (projection, which) = key
            .rsplit_once('.')
            .ok_or_else(|| InteropError::file(adapter_dir, format!("unexpected adapter tensor {key}")))?;
        let module = hf_module(family, projection).ok_or_else(|| {
            InteropError::file(adapter_dir, format!("{projection} has no {} module", family.model_type()))
        })?;
        let part = match which {
            "lora_a" => "lora_A",
            "lora_b" => "lora_B",
            other => {
                return Err(InteropError::file(adapter_dir, format!("unexpected adapter tensor kind {other} in {key}")))
            }
        };
        named.push((format!("{PEFT_PREFIX}{module}.{part}.weight"), t.shallow_clone()));
        if !modules.contains(&module) {
            modules.push(module);
        }
    }
    let targets = target_modules(family, base.model.config(), &modules);
    let lora = &adapter.lora;
    let cfg = json!({
        "peft_type": "LORA",
        "task_type": if family == Family::Llama { Value::from("CAUSAL_LM") } else { Value::Null },
        "base_model_name_or_path": base_dir.to_string_lossy(),
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "inference_mode": true,
        "modules_to_save": Value::Null,
    });
    ckpt::replace_dir(out, |tmp| -> Result<()> {
        weights::write_hf_weights(&named, &tmp.join(PEFT_WEIGHTS))?;
        write_json(&tmp.join(PEFT_CONFIG), &cfg)
    })?;
    Ok(AdapterReport {
        family: family.model_type(),
        rank: lora.rank,
        alpha: lora.alpha,
        modules: modules.len(),
        target_modules: targets,
        head_left_out: adapter.has_head,
    })
}

/// The settings of a PEFT `adapter_config.json` plinth can run, or the field it cannot.
fn lora_from_peft(cfg: &Value, path: &Path) -> Result<(i64, f64, f64)> {
    let refuse = |field: &str, value: &Value, why: &str| InteropError::Unsupported {
        path: path.to_path_buf(),
        field: field.into(),
        value: value.to_string(),
        why: why.into(),
    };
    let get = |k: &str| cfg.get(k).unwrap_or(&Value::Null);
    if get("peft_type").as_str() != Some("LORA") {
        return Err(refuse("peft_type", get("peft_type"), "plinth reads LoRA adapters only"));
    }
    for (field, why) in [
        ("use_dora", "DoRA's magnitude vectors have no plinth counterpart"),
        ("fan_in_fan_out", "plinth's weights are (out, in), as Llama's and BERT's are"),
        ("lora_bias", "plinth's LoRA updates have no bias"),
    ] {
        if get(field).as_bool() == Some(true) {
            return Err(refuse(field, get(field), why));
        }
    }
    if get("bias").as_str().is_some_and(|b| b != "none") {
        return Err(refuse(
            "bias",
            get("bias"),
            "plinth's LoRA updates leave the base biases frozen (bias = \"none\")",
        ));
    }
    for (field, why) in [
        ("modules_to_save", "fully trained copies of whole modules are not part of a plinth adapter"),
        ("rank_pattern", "plinth uses one rank for every adapted module"),
        ("alpha_pattern", "plinth uses one alpha for every adapted module"),
        ("target_parameters", "plinth adapts modules, not bare parameters"),
        ("layer_replication", "plinth does not replicate layers"),
    ] {
        let v = get(field);
        let empty =
            v.is_null() || v.as_array().is_some_and(Vec::is_empty) || v.as_object().is_some_and(|o| o.is_empty());
        if !empty {
            return Err(refuse(field, v, why));
        }
    }
    let r = get("r").as_i64().filter(|&r| r > 0).ok_or_else(|| refuse("r", get("r"), "expected a positive integer"))?;
    let alpha =
        get("lora_alpha").as_f64().ok_or_else(|| refuse("lora_alpha", get("lora_alpha"), "expected a number"))?;
    // rsLoRA scales by alpha / √r; plinth's alpha / r gives the same with alpha·√r.
    let alpha = if get("use_rslora").as_bool() == Some(true) { alpha * (r as f64).sqrt() } else { alpha };
    let dropout = get("lora_dropout").as_f64().unwrap_or(0.0);
    Ok((r, alpha, dropout))
}

/// Imports a PEFT LoRA adapter for the base `base_dir` as a plinth generation task
/// folder at `out` (the base's own LM head, adapted), which `plinth generate
/// --adapter` (causal bases) or `plinth fill --adapter` (masked bases) applies.
pub fn import_peft(src: &Path, base_dir: &Path, out: &Path, overwrite: bool) -> Result<AdapterReport> {
    check_destination(out, overwrite)?;
    let cfg_path = src.join(PEFT_CONFIG);
    let (rank, alpha, dropout) = lora_from_peft(&read_json(&cfg_path)?, &cfg_path)?;
    let weights_path = src.join(PEFT_WEIGHTS);
    if !weights_path.exists() {
        let bin = src.join("adapter_model.bin");
        return Err(if bin.exists() {
            weights::pickle_error(&bin)
        } else {
            InteropError::file(src, format!("no {PEFT_WEIGHTS}"))
        });
    }
    let base = Checkpoint::load(base_dir, Device::Cpu)?;
    let family = base_family(&base)?;
    let mcfg = base.model.config();
    let by_module: BTreeMap<String, String> =
        projection_paths(mcfg).into_iter().filter_map(|p| hf_module(family, &p).map(|m| (m, p))).collect();
    let mut tensors = Vec::new();
    let mut adapted: Vec<String> = Vec::new();
    for (key, t) in Tensor::read_safetensors(&weights_path).map_err(|e| InteropError::file(&weights_path, e))? {
        let rest = key.strip_prefix(PEFT_PREFIX).unwrap_or(&key);
        let (module, part) = ["lora_A", "lora_B"]
            .iter()
            .find_map(|p| rest.split_once(&format!(".{p}.")).map(|(m, _)| (m, *p)))
            .ok_or_else(|| InteropError::file(&weights_path, format!("{key} is not a LoRA A/B tensor")))?;
        let projection = by_module.get(module).ok_or_else(|| {
            InteropError::file(
                &weights_path,
                format!("{key}: plinth adapts the attention and feed-forward projections of each block, not {module}"),
            )
        })?;
        let which = if part == "lora_A" { "lora_a" } else { "lora_b" };
        tensors.push((format!("lora.{projection}.{which}"), t));
        if !adapted.contains(projection) {
            adapted.push(projection.clone());
        }
    }
    adapted.sort();
    let lora = LoraConfig { rank, alpha, dropout, targets: adapted.clone() };
    // Build the adapter plinth would build and load the tensors into it: names
    // and shapes are checked against the base's config.
    let vs = nn::VarStore::new(Device::Cpu);
    let _adapter = LoraAdapter::new(&(vs.root() / "lora"), mcfg, &lora)?;
    let mut given: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in ckpt::named_variables(&vs) {
            let t = given.remove(&name).ok_or_else(|| {
                InteropError::file(
                    &weights_path,
                    format!("{name} is missing (each adapted module needs lora_A and lora_B)"),
                )
            })?;
            if t.size() != var.size() {
                return Err(InteropError::Mismatch {
                    path: weights_path.clone(),
                    message: format!("{name} has shape {:?}; r = {rank} on this base needs {:?}", t.size(), var.size()),
                });
            }
            var.f_copy_(&t)?;
        }
        Ok(())
    })?;
    let name = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "peft".into());
    let meta = FinetuneMeta {
        plugin: "peft".into(),
        task: name,
        spec: TaskSpec {
            kind: TaskKind::Generation,
            labels: Vec::new(),
            targets: vec![],
            data: String::new(),
            metric: "perplexity".into(),
            source: format!("PEFT LoRA adapter imported from {}", src.display()),
            features: None,
            input_check: None,
            completion: None,
            head: None,
        },
        request: Default::default(),
        data: None,
        mode: Mode::Lora,
        lora: Some(lora),
        head: None,
        base: base_dir.to_path_buf(),
        base_sha256: plinth_checkpoint::checkpoint_sha256(base_dir)?,
        max_len: mcfg.max_seq_len as usize,
        label_scale: vec![(0.0, 1.0)],
        step: 0,
        metric_value: None,
    };
    ckpt::replace_dir(out, |tmp| -> Result<()> {
        ckpt::save_tensors(&ckpt::named_variables(&vs), &tmp.join(ft::TASK_WEIGHTS))?;
        write_json(&tmp.join(ft::TASK_META), &meta)
    })?;
    let modules = adapted.len();
    Ok(AdapterReport {
        family: family.model_type(),
        rank,
        alpha,
        modules,
        target_modules: adapted,
        head_left_out: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plinth_model::MlpKind;

    fn cfg(mlp: MlpKind) -> ModelConfig {
        ModelConfig {
            vocab_size: 10,
            n_layers: 2,
            d_model: 8,
            n_heads: 2,
            d_ff: 16,
            max_seq_len: 8,
            mlp,
            ..ModelConfig::tiny()
        }
    }

    #[test]
    fn short_target_names_only_where_they_say_exactly_what_is_adapted() {
        let llama = cfg(MlpKind::SwiGlu);
        let every_q: Vec<String> =
            (0..2).filter_map(|i| hf_module(Family::Llama, &format!("blocks.{i}.attn.q_proj"))).collect();
        assert_eq!(target_modules(Family::Llama, &llama, &every_q), vec!["q_proj"]);
        let one = vec!["model.layers.1.mlp.up_proj".to_string()];
        assert_eq!(target_modules(Family::Llama, &llama, &one), one, "one layer only: the full name");

        let bert = cfg(MlpKind::Gelu);
        let mods: Vec<String> = (0..2)
            .flat_map(|i| ["attn.q_proj", "attn.o_proj"].map(|p| hf_module(Family::Bert, &format!("blocks.{i}.{p}"))))
            .flatten()
            .collect();
        let t = target_modules(Family::Bert, &bert, &mods);
        assert!(t.contains(&"query".to_string()), "{t:?}");
        assert!(
            t.contains(&"bert.encoder.layer.0.attention.output.dense".to_string()),
            "`dense` is ambiguous in BERT: {t:?}"
        );
    }
}
