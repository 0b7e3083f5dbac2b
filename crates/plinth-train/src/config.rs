//! The pretraining config: a TOML file such as `configs/pretrain/tiny-mlm.toml`.

use std::path::{Path, PathBuf};

use plinth_data::CorpusSource;
use plinth_model::ModelConfig;
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// A whole pretraining run, as written in its TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Model architecture: a path to a `configs/models/*.toml` preset, relative
    /// to this file, or an inline table.
    pub model: ModelSpec,
    /// Where checkpoints, metrics and the loss curve go (relative to the working directory).
    pub out_dir: PathBuf,
    pub tokenizer: TokenizerConfig,
    pub data: DataConfig,
    pub objective: ObjectiveConfig,
    pub train: TrainConfig,
}

/// A model preset by path, or the architecture inline.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ModelSpec {
    Preset(PathBuf),
    Inline(ModelConfig),
}

/// A string is a preset path; a table is a `ModelConfig`, whose own error (an
/// unknown or missing key, a wrong type) reaches the user instead of serde's
/// "did not match any variant" for untagged enums.
impl<'de> Deserialize<'de> for ModelSpec {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        struct Spec;
        impl<'de> serde::de::Visitor<'de> for Spec {
            type Value = ModelSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a model preset path such as \"../models/tiny.toml\", or a [model] table")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<ModelSpec, E> {
                Ok(ModelSpec::Preset(PathBuf::from(v)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> std::result::Result<ModelSpec, A::Error> {
                ModelConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ModelSpec::Inline)
            }
        }
        de.deserialize_any(Spec)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerConfig {
    /// Vocabulary size of the byte-level BPE trained on the training split
    /// (required unless `plugin` is set).
    #[serde(default)]
    pub vocab_size: usize,
    /// Minimum pair frequency for a merge, default 2.
    #[serde(default = "two")]
    pub min_frequency: u64,
    /// Take the tokenizer from a plugin's tokenizer component instead:
    /// `{ id = "example", component = "bytes" }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<plinth_data::PluginComponent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `"wordnet"`, `{ text_files = ["a.txt", ...] }` or
    /// `{ plugin = { id = "example", component = "greetings" } }`.
    pub corpus: CorpusSource,
    /// Fraction of documents held out for validation, default 0.02.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// Use only the first N documents (0: all), default 0.
    #[serde(default)]
    pub max_documents: usize,
    /// Synthetic documents mixed into the training split (never validation):
    /// `{ path = "synthetic.jsonl", field = "text", share = 0.2 }`.
    #[serde(default)]
    pub synthetic: Option<plinth_data::SyntheticMix>,
}

pub use plinth_checkpoint::{ObjectiveConfig, ObjectiveKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Tokens per training sequence.
    pub seq_len: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer step, default 1.
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Optimizer steps in the whole run (the cosine schedule ends here).
    pub max_steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of `lr`, default 0.1.
    #[serde(default = "default_min_lr_ratio")]
    pub min_lr_ratio: f64,
    /// Linear warmup steps, default 100.
    #[serde(default = "default_warmup")]
    pub warmup_steps: u64,
    /// Decoupled weight decay on matrices (not on norms, biases or embeddings), default 0.1.
    #[serde(default = "default_wd")]
    pub weight_decay: f64,
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Global gradient-norm clip (0: off), default 1.0.
    #[serde(default = "one_f")]
    pub clip_norm: f64,
    /// Evaluate on the held-out split every N steps, default 100.
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Held-out batches per evaluation, default 10.
    #[serde(default = "default_eval_batches")]
    pub eval_batches: usize,
    /// Save a checkpoint every N steps (and at the end), default 500.
    #[serde(default = "default_save_every")]
    pub save_every: u64,
    /// Seed for initialisation, data order and masking, default 1234.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// libtorch intra-op threads (0: libtorch's default), default 0.
    #[serde(default)]
    pub threads: usize,
}

fn one() -> usize {
    1
}
fn two() -> u64 {
    2
}
fn one_f() -> f64 {
    1.0
}
fn default_val_fraction() -> f64 {
    0.02
}
fn default_min_lr_ratio() -> f64 {
    0.1
}
fn default_warmup() -> u64 {
    100
}
fn default_wd() -> f64 {
    0.1
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_eps() -> f64 {
    1e-8
}
fn default_eval_every() -> u64 {
    100
}
fn default_eval_batches() -> usize {
    10
}
fn default_save_every() -> u64 {
    500
}
fn default_seed() -> u64 {
    1234
}

/// Keys a resumed run may change, because they say how far it runs and how often
/// it reports, not what it computes (`max_steps` also stretches the cosine
/// schedule from the step it resumes at), or name files whose contents the
/// data fingerprint checks, so a path spelled or placed differently is no change.
pub const RESUMABLE_KEYS: &[&str] = &[
    "out_dir",
    "train.max_steps",
    "train.eval_every",
    "train.eval_batches",
    "train.save_every",
    "train.threads",
    "data.corpus.text_files",
    "data.synthetic.path",
];

/// Every key whose value differs between two configs of one type, as
/// `key: saved → now` (dotted paths, sorted), leaving out the keys in `allowed`.
fn config_changes<T: Serialize>(saved: &T, now: &T, allowed: &[&str]) -> Result<Vec<String>> {
    let value = |c: &T| toml::Value::try_from(c).map_err(|e| TrainError::Invalid(format!("config as TOML: {e}")));
    let mut out = Vec::new();
    diff_values("", &value(saved)?, &value(now)?, &mut out);
    out.retain(|(key, _)| !allowed.contains(&key.as_str()));
    Ok(out.into_iter().map(|(key, change)| format!("{key}: {change}")).collect())
}

/// A resume's config check, for pretraining and finetuning alike: when `dir` holds
/// `config_copy` (the config its run was started with), the refusal message that
/// names every key of `now` that differs from it, except those in `allowed`, where
/// the original values are, and the way out. `None` when nothing changed, or when
/// there is no copy to compare with (a checkpoint the trainer did not write).
pub fn resume_refusal<T: Serialize + serde::de::DeserializeOwned>(
    now: &T,
    dir: &Path,
    config_copy: &str,
    allowed: &[&str],
) -> Result<Option<String>> {
    let path = dir.join(config_copy);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
    let saved: T =
        toml::from_str(&text).map_err(|e| TrainError::Config { path: path.clone(), message: e.to_string() })?;
    let changes = config_changes(&saved, now, allowed)?;
    Ok((!changes.is_empty()).then(|| {
        format!(
            "{} was started with another config, so resuming would not continue it (saved → now):\n  {}\n\
             Resume with the values it was started with (its {config_copy} has them; only {} may change), \
             or choose another out_dir for a new run",
            dir.display(),
            changes.join("\n  "),
            allowed.join(", ")
        )
    }))
}

/// Collects `(dotted key, "old → new")` for every leaf where `a` and `b` differ;
/// a key present on one side only shows as `(absent)` on the other.
fn diff_values(prefix: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match (a, b) {
        (toml::Value::Table(ta), toml::Value::Table(tb)) => {
            let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
            for k in keys {
                match (ta.get(k), tb.get(k)) {
                    (Some(va), Some(vb)) => diff_values(&key(k), va, vb, out),
                    (va, vb) => out.push((key(k), format!("{} → {}", shown(va), shown(vb)))),
                }
            }
        }
        _ if a != b => out.push((prefix.to_string(), format!("{a} → {b}"))),
        _ => {}
    }
}

fn shown(v: Option<&toml::Value>) -> String {
    v.map_or_else(|| "(absent)".to_string(), ToString::to_string)
}

impl PretrainConfig {
    /// Reads a config file; the error names the file, line and key. A model
    /// preset path is resolved against the file's directory and inlined, so the
    /// returned config stands on its own.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        plinth_model::check_finite_numbers(&text)
            .map_err(|e| TrainError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        let mut cfg: PretrainConfig = toml::from_str(&text)
            .map_err(|e| TrainError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        if let ModelSpec::Preset(preset) = &cfg.model {
            let base = path.parent().unwrap_or(Path::new("."));
            let model = ModelConfig::from_toml_file(&base.join(preset))?;
            cfg.model = ModelSpec::Inline(model);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The model architecture (after [`PretrainConfig::from_file`], always inline).
    pub fn model_config(&self) -> Result<ModelConfig> {
        match &self.model {
            ModelSpec::Inline(m) => Ok(m.clone()),
            ModelSpec::Preset(p) => Err(TrainError::Invalid(format!(
                "model preset {} was not resolved; load the config with from_file",
                p.display()
            ))),
        }
    }

    /// Settings that are legal but probably not meant; the trainer logs each.
    pub fn warnings(&self) -> Vec<String> {
        let t = &self.train;
        let mut out = Vec::new();
        if t.warmup_steps >= t.max_steps {
            out.push(format!(
                "train.warmup_steps ({}; 100 when not set) is not below max_steps ({}): the learning rate ramps up \
                 for the whole run and never decays; set warmup_steps lower",
                t.warmup_steps, t.max_steps
            ));
        }
        out
    }

    /// Checks values in the user's terms.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Invalid(m));
        let t = &self.train;
        if t.seq_len < 2 || t.batch_size == 0 || t.grad_accum == 0 || t.max_steps == 0 {
            return bad("train.seq_len must be at least 2, and batch_size, grad_accum and max_steps positive".into());
        }
        let lr_ok = t.lr > 0.0 && t.lr.is_finite() && (0.0..=1.0).contains(&t.min_lr_ratio);
        if !lr_ok {
            return bad(format!(
                "train.lr must be positive and train.min_lr_ratio in [0, 1], got {} and {}",
                t.lr, t.min_lr_ratio
            ));
        }
        let finite_non_negative = |x: f64| x >= 0.0 && x.is_finite();
        let optimizer_ok = (0.0..1.0).contains(&t.beta1)
            && (0.0..1.0).contains(&t.beta2)
            && t.eps > 0.0
            && t.eps.is_finite()
            && finite_non_negative(t.weight_decay)
            && finite_non_negative(t.clip_norm);
        if !optimizer_ok {
            return bad(format!(
                "train.beta1 and beta2 must be in [0, 1), eps positive, weight_decay and clip_norm non-negative, all finite; got beta1 {}, beta2 {}, eps {}, weight_decay {}, clip_norm {}",
                t.beta1, t.beta2, t.eps, t.weight_decay, t.clip_norm
            ));
        }
        if t.eval_every == 0 || t.save_every == 0 || t.eval_batches == 0 {
            return bad("train.eval_every, eval_batches and save_every must be positive".into());
        }
        if !(0.0 < self.objective.mask_prob && self.objective.mask_prob < 1.0) {
            return bad(format!("objective.mask_prob must be in (0, 1), got {}", self.objective.mask_prob));
        }
        if !(0.0..=1.0).contains(&self.objective.fim_rate) {
            return bad(format!("objective.fim_rate must be in [0, 1], got {}", self.objective.fim_rate));
        }
        if self.objective.kind == ObjectiveKind::Mlm && self.objective.fim_rate > 0.0 {
            return bad(
                "objective.fim_rate applies to causal models only; set kind = \"causal\" or fim_rate = 0".into()
            );
        }
        if !(0.0 < self.data.val_fraction && self.data.val_fraction < 1.0) {
            return bad(format!("data.val_fraction must be in (0, 1), got {}", self.data.val_fraction));
        }
        if self.tokenizer.plugin.is_some() && self.tokenizer.vocab_size != 0 {
            return bad("set either tokenizer.vocab_size or tokenizer.plugin, not both".into());
        }
        if self.tokenizer.plugin.is_some() && self.tokenizer.min_frequency != two() {
            return bad(
                "tokenizer.min_frequency applies to the BPE trained here, not to a plugin's tokenizer; drop it (a plugin's training recipe sets its own)"
                    .into(),
            );
        }
        if self.tokenizer.plugin.is_none() && self.tokenizer.vocab_size < 300 {
            return bad(format!(
                "tokenizer.vocab_size must be at least 300 (256 bytes plus specials), got {}",
                self.tokenizer.vocab_size
            ));
        }
        let model = self.model_config()?;
        // Checked here, before the corpus is read and the tokenizer trained; a preset
        // leaves vocab_size to the tokenizer, so stand in for it.
        ModelConfig { vocab_size: model.vocab_size.max(1), ..model.clone() }.validate()?;
        if t.seq_len as i64 > model.max_seq_len {
            return bad(format!("train.seq_len {} exceeds the model's max_seq_len {}", t.seq_len, model.max_seq_len));
        }
        Ok(())
    }
}
