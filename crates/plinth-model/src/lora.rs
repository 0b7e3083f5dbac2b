//! LoRA adapters (Hu et al. 2021) on a frozen base: low-rank updates to chosen
//! projections, kept in their own `VarStore`, applied at run time
//! ([`crate::Transformer::forward_with`]) or merged into the base weights and
//! taken out again. Several adapters can be resident on one copy of the base;
//! each request picks one.
//!
//! Parameter paths extend the projection's own path: `blocks.3.attn.q_proj.lora_a`
//! (r, in) and `.lora_b` (out, r). `B` starts at zero, so attaching changes nothing.

use std::path::{Path, PathBuf};

use plinth_layers::{BlockLora, LoraPair, MlpKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{nn, Tensor};

use crate::checkpoint::{save_tensors, write_atomic};
use crate::{ModelConfig, ModelError, Result};

pub const ADAPTER_WEIGHTS: &str = "adapter.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter.json";

/// Which projections get an adapter, and its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r of the update.
    pub rank: i64,
    /// The update is scaled by alpha / r.
    pub alpha: f64,
    /// Dropout on the adapter's input while training, default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Projection name patterns, matched against the end of paths such as
    /// `blocks.0.attn.q_proj`; `*` matches one segment (`q_proj`, `attn.*`, `blocks.3.mlp.*`).
    pub targets: Vec<String>,
}

impl LoraConfig {
    pub fn validate(&self) -> Result<()> {
        if self.rank <= 0
            || !(self.alpha > 0.0 && self.alpha.is_finite())
            || !(0.0..1.0).contains(&self.dropout)
            || self.targets.is_empty()
        {
            return Err(ModelError::Config(format!(
                "lora needs rank > 0, alpha > 0, dropout in [0, 1) and at least one target; got rank {}, alpha {}, dropout {}, {} targets",
                self.rank,
                self.alpha,
                self.dropout,
                self.targets.len()
            )));
        }
        Ok(())
    }
}

/// A LoRA adapter for one model: an update per adapted projection of each block.
#[derive(Debug)]
pub struct LoraAdapter {
    cfg: LoraConfig,
    blocks: Vec<BlockLora>,
    /// Paths of the adapted projections, e.g. `blocks.0.attn.q_proj`.
    adapted: Vec<String>,
    /// For a per-row mix ([`LoraAdapter::per_row`]): the batch size it was built for.
    rows: Option<i64>,
}

/// Input and output width of each projection in [`BlockLora::PROJECTIONS`] order;
/// `None` for a projection the model does not have (no gate without SwiGLU).
fn projection_dims(m: &ModelConfig) -> [Option<(i64, i64)>; 7] {
    let (c, f, q, kv) = (m.d_model, m.d_ff, m.q_dim(), m.kv_heads() * m.head_dim());
    let gate = (m.mlp == MlpKind::SwiGlu).then_some((c, f));
    [Some((c, q)), Some((c, kv)), Some((c, kv)), Some((q, c)), gate, Some((c, f)), Some((f, c))]
}

/// Every projection an adapter can target in `model`, as paths block by block
/// (`blocks.0.attn.q_proj`, ..., `blocks.0.mlp.down_proj`, `blocks.1.attn.q_proj`, ...).
pub fn projection_paths(model: &ModelConfig) -> Vec<String> {
    (0..model.n_layers)
        .flat_map(|i| {
            BlockLora::PROJECTIONS
                .iter()
                .zip(projection_dims(model))
                .filter(|(_, dims)| dims.is_some())
                .map(move |(name, _)| format!("blocks.{i}.{name}"))
        })
        .collect()
}

/// True when `pattern` matches the end of `path`, segment by segment, `*` matching any one.
fn matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('.').collect();
    let segs: Vec<&str> = path.split('.').collect();
    pat.len() <= segs.len() && pat.iter().rev().zip(segs.iter().rev()).all(|(p, s)| *p == "*" || p == s)
}

impl LoraAdapter {
    /// Creates adapter parameters under `p` for the projections `cfg.targets` names.
    pub fn new(p: &nn::Path, model: &ModelConfig, cfg: &LoraConfig) -> Result<Self> {
        cfg.validate()?;
        let scale = cfg.alpha / cfg.rank as f64;
        let mut blocks = Vec::new();
        let mut adapted = Vec::new();
        let mut used = vec![false; cfg.targets.len()];
        for i in 0..model.n_layers {
            let mut block = BlockLora::default();
            for (name, dims) in BlockLora::PROJECTIONS.iter().zip(projection_dims(model)) {
                let Some((fan_in, fan_out)) = dims else { continue };
                let path = format!("blocks.{i}.{name}");
                let hits: Vec<usize> = (0..cfg.targets.len()).filter(|&t| matches(&cfg.targets[t], &path)).collect();
                if hits.is_empty() {
                    continue;
                }
                hits.iter().for_each(|&t| used[t] = true);
                let mut vp = p.clone();
                for seg in path.split('.') {
                    vp = &vp / seg;
                }
                // PEFT's initialisation: A ~ U(±1/√in) (Kaiming-uniform, a = √5), B = 0.
                let bound = 1.0 / (fan_in as f64).sqrt();
                let a = vp.var("lora_a", &[cfg.rank, fan_in], nn::Init::Uniform { lo: -bound, up: bound });
                let b = vp.var("lora_b", &[fan_out, cfg.rank], nn::Init::Const(0.0));
                if let Some(slot) = block.slot_mut(name) {
                    *slot = Some(LoraPair { a, b, scale, dropout: cfg.dropout });
                }
                adapted.push(path);
            }
            blocks.push(block);
        }
        if let Some(t) = used.iter().position(|u| !u) {
            return Err(ModelError::Config(format!(
                "lora target {:?} matches no projection; projections are named like blocks.0.attn.q_proj or blocks.0.mlp.up_proj",
                cfg.targets[t]
            )));
        }
        Ok(LoraAdapter { cfg: cfg.clone(), blocks, adapted, rows: None })
    }

    /// An inference-only adapter that applies `adapters[choice[b]]` to row `b` of a
    /// batch (S-LoRA's idea without its custom kernels): for each projection the
    /// chosen rows' `A` and `scale · B` are gathered into (B, r, in) and (B, out, r),
    /// zero-padded to the largest rank, zero where an adapter leaves the projection
    /// alone, and applied by two batched matmuls. Every row gets exactly its own
    /// adapter's output; the base weights are read once for the whole batch.
    pub fn per_row(adapters: &[&LoraAdapter], choice: &[usize]) -> Result<Self> {
        let first = adapters.first().ok_or_else(|| ModelError::Input("per_row needs at least one adapter".into()))?;
        let n_layers = first.blocks.len();
        if let Some(a) = adapters.iter().find(|a| a.blocks.len() != n_layers || a.rows.is_some()) {
            return Err(ModelError::Input(format!(
                "per_row mixes trained adapters of one model; got one with {} layers{} beside one with {n_layers}",
                a.blocks.len(),
                if a.rows.is_some() { " that is itself a per-row mix" } else { "" }
            )));
        }
        if let Some(&c) = choice.iter().find(|&&c| c >= adapters.len()) {
            return Err(ModelError::Input(format!("row asks for adapter {c} but only {} were given", adapters.len())));
        }
        if choice.is_empty() {
            return Err(ModelError::Input("per_row needs one adapter choice per batch row".into()));
        }
        let index = Tensor::from_slice(&choice.iter().map(|&c| c as i64).collect::<Vec<_>>());
        let mut blocks = Vec::with_capacity(n_layers);
        let mut adapted = Vec::new();
        tch::no_grad(|| {
            for i in 0..n_layers {
                let mut block = BlockLora::default();
                for name in BlockLora::PROJECTIONS {
                    let pairs: Vec<Option<&LoraPair>> =
                        adapters.iter().map(|a| a.blocks[i].slot(name).and_then(|s| s.as_ref())).collect();
                    let Some(some) = pairs.iter().flatten().next() else { continue };
                    let (r_max, fan_in, fan_out) = (
                        pairs.iter().flatten().map(|p| p.a.size()[0]).max().unwrap_or(1),
                        some.a.size()[1],
                        some.b.size()[0],
                    );
                    let opts = (some.a.kind(), some.a.device());
                    let (mut a_bank, mut b_bank) = (Vec::new(), Vec::new());
                    for p in &pairs {
                        let a = Tensor::zeros([r_max, fan_in], opts);
                        let b = Tensor::zeros([fan_out, r_max], opts);
                        if let Some(p) = p {
                            let r = p.a.size()[0];
                            a.narrow(0, 0, r).copy_(&p.a);
                            b.narrow(1, 0, r).copy_(&(&p.b * p.scale));
                        }
                        a_bank.push(a);
                        b_bank.push(b);
                    }
                    let idx = index.to_device(some.a.device());
                    let a = Tensor::stack(&a_bank, 0).index_select(0, &idx); // (B, r, in)
                    let b = Tensor::stack(&b_bank, 0).index_select(0, &idx); // (B, out, r)
                    if let Some(slot) = block.slot_mut(name) {
                        *slot = Some(LoraPair { a, b, scale: 1.0, dropout: 0.0 });
                    }
                    adapted.push(format!("blocks.{i}.{name}"));
                }
                blocks.push(block);
            }
        });
        Ok(LoraAdapter { cfg: first.cfg.clone(), blocks, adapted, rows: Some(choice.len() as i64) })
    }

    /// The batch size a per-row mix was built for (`None` for an ordinary adapter).
    pub fn rows(&self) -> Option<i64> {
        self.rows
    }

    pub fn config(&self) -> &LoraConfig {
        &self.cfg
    }

    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    /// The paths of the adapted projections.
    pub fn adapted(&self) -> &[String] {
        &self.adapted
    }

    pub(crate) fn block(&self, i: usize) -> &BlockLora {
        &self.blocks[i]
    }

    /// Dropout on while training, off for inference.
    pub fn set_training(&mut self, train: bool) {
        self.blocks.iter_mut().for_each(|b| b.train = train);
    }

    /// Adds every update into the base weights in `base` (then run without the adapter).
    pub fn merge_into(&self, base: &nn::VarStore) -> Result<()> {
        if self.rows.is_some() {
            return Err(ModelError::Input("a per-row adapter mix cannot be merged into shared base weights".into()));
        }
        self.apply(base, 1.0)
    }

    /// Subtracts what [`LoraAdapter::merge_into`] added (equal up to float rounding).
    pub fn unmerge_from(&self, base: &nn::VarStore) -> Result<()> {
        if self.rows.is_some() {
            return Err(ModelError::Input("a per-row adapter mix cannot be merged into shared base weights".into()));
        }
        self.apply(base, -1.0)
    }

    fn apply(&self, base: &nn::VarStore, sign: f64) -> Result<()> {
        let vars = base.variables();
        tch::no_grad(|| {
            for (i, block) in self.blocks.iter().enumerate() {
                for name in BlockLora::PROJECTIONS {
                    let Some(Some(pair)) = block.slot(name) else { continue };
                    let key = format!("blocks.{i}.{name}.weight");
                    let mut w = vars
                        .get(&key)
                        .ok_or_else(|| ModelError::Config(format!("base has no weight {key} to merge into")))?
                        .shallow_clone();
                    let _ = w.f_add_(&(pair.weight_delta() * sign))?;
                }
            }
            Ok(())
        })
    }
}

/// What `adapter.json` records: the LoRA settings and the base it was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterMeta {
    pub lora: LoraConfig,
    /// SHA-256 of the base checkpoint's `model.safetensors`.
    pub base_sha256: String,
}

/// SHA-256 of a base weights file, the identity an adapter is bound to.
pub fn weights_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Writes an adapter-only checkpoint: `adapter.safetensors` and `adapter.json`.
pub fn save_adapter(dir: &Path, adapter_vs: &nn::VarStore, meta: &AdapterMeta) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
    save_tensors(&crate::checkpoint::named_variables(adapter_vs), &dir.join(ADAPTER_WEIGHTS))?;
    let json = serde_json::to_string_pretty(meta).map_err(|e| ModelError::Config(e.to_string()))?;
    write_atomic(&dir.join(ADAPTER_CONFIG), json.as_bytes())
}

/// Loads an adapter for the base whose weights file is `base_weights`; refuses an
/// adapter trained on another base, naming both hashes.
pub fn load_adapter(
    dir: &Path,
    model: &ModelConfig,
    base_weights: &Path,
    device: tch::Device,
) -> Result<(nn::VarStore, LoraAdapter)> {
    let meta_path: PathBuf = dir.join(ADAPTER_CONFIG);
    let text =
        std::fs::read_to_string(&meta_path).map_err(|source| ModelError::Io { path: meta_path.clone(), source })?;
    let meta: AdapterMeta = serde_json::from_str(&text)
        .map_err(|e| ModelError::ConfigFile { path: meta_path.clone(), message: e.to_string() })?;
    let base = weights_sha256(base_weights)?;
    if base != meta.base_sha256 {
        return Err(ModelError::Checkpoint {
            path: dir.to_path_buf(),
            message: format!(
                "this adapter was trained on the base with weights SHA-256 {} but {} has {base}; load it on the base checkpoint it was trained on",
                meta.base_sha256,
                base_weights.display()
            ),
        });
    }
    let mut vs = nn::VarStore::new(device);
    let adapter = LoraAdapter::new(&vs.root(), model, &meta.lora)?;
    crate::checkpoint::load_into(&mut vs, &dir.join(ADAPTER_WEIGHTS))?;
    Ok((vs, adapter))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_path_suffixes_by_segment() {
        assert!(matches("q_proj", "blocks.0.attn.q_proj"));
        assert!(matches("attn.*", "blocks.3.attn.o_proj"));
        assert!(matches("blocks.3.mlp.*", "blocks.3.mlp.up_proj"));
        assert!(!matches("blocks.3.mlp.*", "blocks.13.mlp.up_proj"));
        assert!(!matches("proj", "blocks.0.attn.q_proj"));
        assert!(!matches("mlp.*", "blocks.0.attn.q_proj"));
    }
}
