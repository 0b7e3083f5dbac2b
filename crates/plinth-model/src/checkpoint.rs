//! Weights as safetensors, keyed by parameter path, written atomically.
//!
//! A checkpoint directory holds `model.safetensors` and `model.json` (the
//! [`ModelConfig`]); the trainer adds the tokenizer and its own state beside them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tch::{nn, Tensor};

use crate::{ModelConfig, ModelError, Result};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "model.json";

/// Writes every variable of `vs` to `path` as safetensors. The file appears
/// complete or not at all: it is written beside its destination and renamed.
pub fn save_tensors(named: &[(String, Tensor)], path: &Path) -> Result<()> {
    let tmp = tmp_path(path);
    Tensor::write_safetensors(named, &tmp)
        .map_err(|e| ModelError::Checkpoint { path: path.to_path_buf(), message: e.to_string() })?;
    std::fs::rename(&tmp, path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })
}

/// All variables of a store, sorted by name.
pub fn named_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Loads `path` into the variables of `vs`, requiring the same names and shapes:
/// a missing, unexpected or mis-shaped tensor is an error that names it.
pub fn load_into(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    let err = |message: String| ModelError::Checkpoint { path: path.to_path_buf(), message };
    if !path.exists() {
        return Err(err("file not found".into()));
    }
    let tensors = Tensor::read_safetensors(path).map_err(|e| err(format!("not a readable safetensors file: {e}")))?;
    let mut vars = vs.variables();
    let file_keys: BTreeSet<&str> = tensors.iter().map(|(k, _)| k.as_str()).collect();
    let missing: Vec<&String> = vars.keys().filter(|k| !file_keys.contains(k.as_str())).collect();
    if !missing.is_empty() {
        return Err(err(format!("missing tensors {missing:?}; was it saved from a model with this config?")));
    }
    let unexpected: Vec<&str> = file_keys.iter().copied().filter(|k| !vars.contains_key(*k)).collect();
    if !unexpected.is_empty() {
        return Err(err(format!("unexpected tensors {unexpected:?}; was it saved from a model with this config?")));
    }
    tch::no_grad(|| {
        for (name, src) in &tensors {
            let Some(dst) = vars.get_mut(name) else {
                continue;
            };
            if dst.size() != src.size() {
                return Err(err(format!(
                    "tensor {name} has shape {:?}, the model expects {:?}",
                    src.size(),
                    dst.size()
                )));
            }
            dst.f_copy_(src)?;
        }
        Ok(())
    })
}

/// Writes a model config as pretty JSON, atomically.
pub fn save_config(cfg: &ModelConfig, dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(cfg).map_err(|e| ModelError::Config(e.to_string()))?;
    write_atomic(&dir.join(CONFIG_FILE), json.as_bytes())
}

/// Reads a checkpoint's model config.
pub fn load_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
    let cfg: ModelConfig =
        serde_json::from_str(&text).map_err(|e| ModelError::ConfigFile { path, message: e.to_string() })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash
/// never leaves a half-written file where a good one was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|source| ModelError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })
}

/// Replaces the directory `dir` as one unit: `fill` writes the new contents into a
/// sibling temporary directory, which is then swapped in by renames, so the previous
/// directory stays intact until the new one is complete (and a failed `fill` leaves
/// it untouched).
pub fn replace_dir<E: From<ModelError>>(dir: &Path, fill: impl FnOnce(&Path) -> Result<(), E>) -> Result<(), E> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| E::from(ModelError::Io { path, source })
    };
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    fill(&tmp)?;
    let old = parent.join(format!(".{name}.old{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}
