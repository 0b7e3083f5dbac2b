//! The finetuning config: a TOML file such as `configs/finetune/sentiment.toml`.

use std::path::{Path, PathBuf};

use crate::FinetuneError;
use plinth_model::heads::Pooling;
use plinth_model::lora::LoraConfig;
use serde::{Deserialize, Serialize};

use crate::Result;

/// One finetuning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// The pretrained base checkpoint folder (relative to the working directory).
    pub base: PathBuf,
    /// Where the best task checkpoint, the resumable state, metrics and the report go.
    pub out_dir: PathBuf,
    pub task: TaskRef,
    #[serde(default)]
    pub adapter: AdapterSettings,
    #[serde(default)]
    pub head: HeadSettings,
    #[serde(default)]
    pub train: FinetuneTrain,
    #[serde(default)]
    pub score: ScoreSettings,
}

/// Prompted generation tasks: how many test prompts the final report completes
/// and scores (greedy completion is the slow part of their evaluation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreSettings {
    /// Complete and score N test rows spread evenly through the split (0: all), default 0.
    #[serde(default)]
    pub max_examples: usize,
}

/// Which task to learn: a plugin's task (`plugin` and `name`), or a user's own
/// file (`data`; `name` defaults to the file's stem).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    /// Plugin id (`plinth plugins list`); `file` for a file task.
    #[serde(default)]
    pub plugin: String,
    /// The plugin's task component (a file task's name).
    #[serde(default)]
    pub name: String,
    /// A task from a CSV, TSV or JSON Lines file instead of a plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<crate::file_task::FileTaskConfig>,
    /// Extra fields for the data request, e.g. `{ split_kind = "scaffold" }`.
    #[serde(default)]
    pub request: serde_json::Map<String, serde_json::Value>,
    /// Use at most this many training rows (0: all), default 0.
    #[serde(default)]
    pub max_train: usize,
}

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// LoRA adapters and the head; the base stays frozen.
    Lora,
    /// Every base weight and the head.
    Full,
    /// The head only (a linear probe on frozen features).
    Head,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterSettings {
    /// `lora` (default), `full` or `head`.
    #[serde(default = "lora_mode")]
    pub mode: Mode,
    /// LoRA rank, default 8.
    #[serde(default = "default_rank")]
    pub rank: i64,
    /// LoRA scale numerator (the update is scaled by alpha / rank), default 16.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the adapter input while training, default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Projection patterns, default `["attn.*", "mlp.*"]` (every projection).
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
}

impl Default for AdapterSettings {
    fn default() -> Self {
        AdapterSettings {
            mode: Mode::Lora,
            rank: default_rank(),
            alpha: default_alpha(),
            dropout: 0.0,
            targets: default_targets(),
        }
    }
}

impl AdapterSettings {
    pub fn lora(&self) -> LoraConfig {
        LoraConfig { rank: self.rank, alpha: self.alpha, dropout: self.dropout, targets: self.targets.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HeadSettings {
    /// `mean` over real tokens, `first` (the `<bos>` position) or `last`; default:
    /// the plugin's recommendation, else `mean` for masked bases and `last` for causal ones.
    #[serde(default)]
    pub pooling: Option<Pooling>,
    /// Widths of hidden layers before the output layer (`[]` for a linear head);
    /// default: the plugin's recommendation (the task spec's `head`), else linear.
    #[serde(default)]
    pub hidden: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneTrain {
    /// Rows per step, default 32.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Peak learning rate, default 1e-3 (LoRA and head; use about 1e-4 for `full`).
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Passes over the training rows, default 10 (early stopping usually ends sooner).
    #[serde(default = "default_epochs")]
    pub max_epochs: usize,
    /// Cap on optimizer steps (0: none), default 0.
    #[serde(default)]
    pub max_steps: u64,
    /// Linear warmup steps, default 50.
    #[serde(default = "default_warmup")]
    pub warmup_steps: u64,
    /// Final learning rate as a fraction of `lr` (cosine decay), default 0.1.
    #[serde(default = "default_min_lr_ratio")]
    pub min_lr_ratio: f64,
    /// Decoupled weight decay on matrices, default 0.
    #[serde(default)]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: off), default 1.
    #[serde(default = "one")]
    pub clip_norm: f64,
    /// Evaluate on the validation split (and save the resumable state) every N steps, default 100.
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// Stop after this many evaluations without a better validation metric, default 5 (0: never).
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Longest input in tokens, `<bos>` and `<eos>` included (longer inputs are
    /// cut), default 128 and at most the base's context.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    #[serde(default)]
    pub seed: u64,
}

impl Default for FinetuneTrain {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

fn lora_mode() -> Mode {
    Mode::Lora
}
fn default_rank() -> i64 {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["attn.*".into(), "mlp.*".into()]
}
fn default_batch() -> usize {
    32
}
fn default_lr() -> f64 {
    1e-3
}
fn default_epochs() -> usize {
    10
}
fn default_warmup() -> u64 {
    50
}
fn default_min_lr_ratio() -> f64 {
    0.1
}
fn one() -> f64 {
    1.0
}
fn default_eval_every() -> u64 {
    100
}
fn default_patience() -> usize {
    5
}
fn default_max_len() -> usize {
    128
}

impl FinetuneConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| FinetuneError::Io { path: path.into(), source })?;
        plinth_model::check_finite_numbers(&text)
            .map_err(|e| FinetuneError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        let mut cfg: FinetuneConfig = toml::from_str(&text)
            .map_err(|e| FinetuneError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        cfg.resolve_task();
        cfg.problems().map_err(|message| FinetuneError::Config { path: path.to_path_buf(), message })?;
        Ok(cfg)
    }

    /// Checks values a run cannot use; the message names the key.
    /// Checks the settings before any work; the message says what to change.
    pub fn validate(&self) -> crate::Result<()> {
        self.problems().map_err(crate::FinetuneError::Settings)
    }

    /// Fills what a file task leaves out: `plugin = "file"`, `name` = the file's stem.
    pub fn resolve_task(&mut self) {
        if let Some(d) = &self.task.data {
            if self.task.plugin.is_empty() {
                self.task.plugin = crate::file_task::FILE_SOURCE.into();
            }
            if self.task.name.is_empty() {
                self.task.name = d.default_name();
            }
        }
    }

    fn problems(&self) -> std::result::Result<(), String> {
        match &self.task.data {
            Some(d) => {
                if self.task.plugin != crate::file_task::FILE_SOURCE {
                    return Err(format!(
                        "[task] names both a plugin ({}) and a data file; a file task needs no plugin",
                        self.task.plugin
                    ));
                }
                if !self.task.request.is_empty() {
                    return Err("[task] request is for plugin tasks; a file task's settings go in data".into());
                }
                d.problems()?;
            }
            None if self.task.plugin.is_empty() || self.task.name.is_empty() => {
                return Err(
                    "[task] needs `plugin` and `name` (a plugin's task), or `data = { path, input, label, kind }` (your own file)"
                        .into(),
                )
            }
            None if self.task.plugin == crate::file_task::FILE_SOURCE => {
                return Err("[task] plugin = \"file\" needs `data = { path, input, label, kind }`".into())
            }
            None => {}
        }
        let t = &self.train;
        if t.batch_size == 0 || t.max_epochs == 0 || t.eval_every == 0 {
            return Err("train.batch_size, max_epochs and eval_every must be positive".into());
        }
        let finite_non_negative = |x: f64| x >= 0.0 && x.is_finite();
        let ok = t.lr > 0.0
            && t.lr.is_finite()
            && (0.0..=1.0).contains(&t.min_lr_ratio)
            && finite_non_negative(t.weight_decay)
            && finite_non_negative(t.clip_norm);
        if !ok {
            return Err(format!(
                "train.lr must be positive, min_lr_ratio in [0, 1], weight_decay and clip_norm non-negative; got lr {}, min_lr_ratio {}, weight_decay {}, clip_norm {}",
                t.lr, t.min_lr_ratio, t.weight_decay, t.clip_norm
            ));
        }
        if t.max_len < 3 {
            return Err(format!("train.max_len must be at least 3 (<bos>, one token, <eos>), got {}", t.max_len));
        }
        if self.adapter.mode == Mode::Lora {
            self.adapter.lora().validate().map_err(|e| format!("[adapter]: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_takes_defaults() {
        let cfg: FinetuneConfig = toml::from_str(
            "base = \"runs/tiny-mlm/checkpoint\"\nout_dir = \"runs/ft\"\n[task]\nplugin = \"language\"\nname = \"sentiment\"\n",
        )
        .expect("parse");
        assert_eq!(cfg.adapter.mode, Mode::Lora);
        assert_eq!(cfg.train.batch_size, 32);
        assert_eq!(cfg.train.patience, 5);
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn a_file_task_needs_no_plugin_and_is_named_after_its_file() {
        let file = "base = \"b\"\nout_dir = \"o\"\n[task]\ndata = { path = \"data/assay.csv\", input = \"smiles\", label = \"pIC50\", kind = \"regression\" }\n";
        let mut cfg: FinetuneConfig = toml::from_str(file).expect("parse");
        cfg.resolve_task();
        assert_eq!((cfg.task.plugin.as_str(), cfg.task.name.as_str()), ("file", "assay"));
        cfg.validate().expect("valid");
        let both = file.replace("[task]\n", "[task]\nplugin = \"molecule\"\n");
        let mut cfg: FinetuneConfig = toml::from_str(&both).expect("parse");
        cfg.resolve_task();
        assert!(cfg.validate().expect_err("both").to_string().contains("names both a plugin"));
        let mut cfg: FinetuneConfig =
            toml::from_str("base = \"b\"\nout_dir = \"o\"\n[task]\nname = \"t\"\n").expect("parse");
        cfg.resolve_task();
        assert!(cfg.validate().expect_err("neither").to_string().contains("`data = { path, input, label, kind }`"));
        let split = file.replace("kind = \"regression\"", "kind = \"regression\", split = \"scaffold\"");
        let mut cfg: FinetuneConfig = toml::from_str(&split).expect("parse");
        cfg.resolve_task();
        assert!(cfg.validate().expect_err("split").to_string().contains("column:NAME"));
    }

    #[test]
    fn bad_values_are_named() {
        let mut cfg: FinetuneConfig = toml::from_str(
            "base = \"b\"\nout_dir = \"o\"\n[task]\nplugin = \"p\"\nname = \"t\"\n[adapter]\nrank = 0\n",
        )
        .expect("parse");
        assert!(cfg.validate().expect_err("rank 0").to_string().contains("[adapter]"));
        cfg.adapter.mode = Mode::Head;
        cfg.train.lr = 0.0;
        assert!(cfg.validate().expect_err("lr").to_string().contains("train.lr"));
        let err = toml::from_str::<FinetuneConfig>(
            "base = \"b\"\nout_dir = \"o\"\nepochs = 3\n[task]\nplugin = \"p\"\nname = \"t\"\n",
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("epochs"), "{err}");
    }
}
