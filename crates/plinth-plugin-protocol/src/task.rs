//! Tasks: a task component's spec ([`TaskSpec`]) and the labelled rows its data
//! component returns ([`LabelledExample`]) for a [`TaskRequest`].
//!
//! The host asks the data component with `{"task": NAME, "split": "train" |
//! "validation" | "test"}` plus any options the finetuning config adds (for example
//! `{"split_kind": "scaffold"}`). The plugin owns the split: it knows what must not
//! leak across it (a movie's reviews, a molecule's scaffold, a module's examples).

use serde::{Deserialize, Serialize};

/// What a task predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// One of `labels`; the label is the class index.
    Classification,
    /// One real value, or one per `targets` (multi-output; a row may lack some).
    Regression,
    /// Several independent yes/no labels, one per `targets` (Tox21-style); a row
    /// may lack some, which are left out of the loss and the metrics.
    #[serde(alias = "multi_label", alias = "multi-label")]
    MultiLabel,
    /// Language modelling on the rows' texts (labels ignored): a LoRA adapter that
    /// shifts what a causal base generates toward the task's data.
    Generation,
}

/// A task component's spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub kind: TaskKind,
    /// Class names, in label-index order (classification only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Names of the outputs of a multi-output regression or a multi-label task, in
    /// the order rows list their `targets`; empty for a single value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// The data component that serves this task's rows.
    pub data: String,
    /// The validation metric that picks the best checkpoint and stops early:
    /// `accuracy`, `macro_f1`, `roc_auc` (binary), `rmse`, `mae`, `r2`, or
    /// `perplexity` (generation).
    pub metric: String,
    /// One line on where the data comes from and how it is split.
    #[serde(default)]
    pub source: String,
    /// Domain features the rows carry (for example ECFP4 bits), which the host's
    /// baselines use beside its bag-of-tokens one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureSpec>,
    /// A stage of the same plugin that checks one input before prediction: it gets
    /// a record `{FIELD: input}`; an input it rejects is refused with its reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_check: Option<InputCheck>,
    /// A prompted generation task (rows carry a `prompt`): how to turn a request
    /// into a prompt, how to score completions, how to check one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<CompletionSpec>,
    /// The head the plugin recommends for its task (classification and regression);
    /// a finetune config's `[head]` settings override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadSpec>,
}

/// A task head as a plugin describes it; the host builds and trains it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// Widths of hidden layers before the output layer, each followed by GELU;
    /// empty (the default) is a linear head on the pooled hidden state.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// `mean`, `first` or `last`; default: by the base (mean for masked, last for causal).
    #[serde(default)]
    pub pooling: Option<String>,
}

/// Why a [`TaskSpec`] cannot be used, in words that say what to change.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidSpec(pub String);

impl std::fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidSpec {}

/// Pooling names a [`HeadSpec`] may use.
pub const POOLINGS: [&str; 3] = ["mean", "first", "last"];

/// How the host generates and judges completions for a prompted generation task.
/// The host trains on `prompt + text` with the loss on `text` only; at test time it
/// continues each prompt (greedy) and asks the plugin's `scorer` for metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionSpec {
    /// Stage reading `input` (the request) and adding `prompt`.
    pub prompt_stage: String,
    /// Scorer component answering a [`crate::ScoreRequest`] with metrics.
    pub scorer: String,
    /// The scorer's headline metric (higher is better), reported first.
    pub metric: String,
    /// Stage that rejects a bad completion: it reads `prompt` and `completion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_check: Option<String>,
    /// Token budget for one completion.
    pub max_new_tokens: usize,
    /// Text that ends a completion (cut before it).
    #[serde(default)]
    pub stop: Vec<String>,
    /// Guide component asked before every token with a [`crate::GuideRequest`]
    /// (the completion so far and the task's data request); it answers what may
    /// come next as a [`crate::Step`]. None: unguided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guide: Option<String>,
    /// Repetition penalty of the greedy completion (1: off), default 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repetition_penalty: f64,
}

fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
}

/// Names the stage (and the record field it reads) that validates task inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputCheck {
    pub stage: String,
    pub field: String,
}

/// Names a sparse binary feature vector of `size` dimensions that rows list by index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    pub size: usize,
}

impl TaskSpec {
    /// Number of head outputs: classes, targets (multi-label), values (regression).
    pub fn outputs(&self) -> usize {
        match self.kind {
            TaskKind::Classification => self.labels.len(),
            TaskKind::Regression => self.targets.len().max(1),
            TaskKind::MultiLabel => self.targets.len(),
            TaskKind::Generation => 0,
        }
    }

    /// True when rows carry `targets` (several values, some possibly missing)
    /// rather than one `label`.
    pub fn multi_target(&self) -> bool {
        !self.targets.is_empty()
    }

    /// The name of each output: the targets, or the task's single value.
    pub fn output_names(&self) -> Vec<String> {
        match self.kind {
            TaskKind::Classification => self.labels.clone(),
            _ if self.multi_target() => self.targets.clone(),
            _ => vec!["value".into()],
        }
    }

    /// Checks the spec is usable; the message names what to change.
    pub fn validate(&self) -> Result<(), InvalidSpec> {
        self.problem().map_or(Ok(()), |m| Err(InvalidSpec(m)))
    }

    fn problem(&self) -> Option<String> {
        let known = match self.kind {
            TaskKind::Classification => &["accuracy", "macro_f1", "roc_auc"][..],
            TaskKind::Regression => &["rmse", "mae", "r2"][..],
            TaskKind::MultiLabel => &["roc_auc", "accuracy", "macro_f1"][..],
            TaskKind::Generation => &["perplexity"][..],
        };
        if !known.contains(&self.metric.as_str()) {
            return Some(format!("metric {:?} is not one of {known:?} for a {:?} task", self.metric, self.kind));
        }
        if self.kind == TaskKind::Classification && self.labels.len() < 2 {
            return Some(format!("a classification task needs at least 2 labels, got {:?}", self.labels));
        }
        if self.kind == TaskKind::MultiLabel && self.targets.is_empty() {
            return Some("a multi-label task needs `targets`, the name of each label".into());
        }
        if self.multi_target() && !matches!(self.kind, TaskKind::Regression | TaskKind::MultiLabel) {
            return Some("`targets` belongs to regression and multi-label tasks".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(t) = self.targets.iter().find(|t| t.is_empty() || !seen.insert(t.as_str())) {
            return Some(format!("target names must be distinct and non-empty; {t:?} is not"));
        }
        if let Some(h) = &self.head {
            if self.kind == TaskKind::Generation {
                return Some(
                    "`head` belongs to classification and regression tasks; generation uses the LM head".into(),
                );
            }
            if h.hidden.contains(&0) {
                return Some(format!("head.hidden widths must be positive, got {:?}", h.hidden));
            }
            if let Some(p) = h.pooling.as_deref().filter(|p| !POOLINGS.contains(p)) {
                return Some(format!("head.pooling {p:?} is not one of {POOLINGS:?}"));
            }
        }
        if self.completion.is_some() && self.kind != TaskKind::Generation {
            return Some("`completion` belongs to generation tasks only".into());
        }
        if self.metric == "roc_auc" && self.kind == TaskKind::Classification && self.labels.len() != 2 {
            return Some("roc_auc needs a binary task (2 labels)".into());
        }
        None
    }
}

/// One labelled row: the input text and its label (class index or value), and
/// the indices of its set domain features when the task declares some.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledExample {
    pub text: String,
    /// The class index or value; unused when the task has `targets`.
    #[serde(default)]
    pub label: f64,
    /// Multi-output and multi-label tasks: one entry per the spec's `targets`
    /// (a value, or 0/1), `null` where the row has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Option<f64>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<u32>,
    /// For prompted generation: what the model is given; `text` is what it
    /// should continue with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

impl LabelledExample {
    pub fn new(text: impl Into<String>, label: f64) -> Self {
        LabelledExample { text: text.into(), label, targets: Vec::new(), features: Vec::new(), prompt: None }
    }
}

/// Which part of a task's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    /// 80/10/10 by a stable hash of `group` (the unit that must not straddle splits).
    pub fn of_group(group: &str) -> Split {
        match fnv1a(group.bytes()) % 10 {
            0 => Split::Validation,
            1 => Split::Test,
            _ => Split::Train,
        }
    }
}

/// FNV-1a, 64-bit, over any bytes: a stable hash for split assignment and data fingerprints
/// (std's hasher is not stable across releases).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64 of `seed` and `x`: a fixed pseudo-random key for ordering rows under
/// a seed (random splits, here and in plugins).
pub fn splitmix64(seed: u64, x: u64) -> u64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A data request for a task's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequest {
    pub task: String,
    pub split: Split,
    /// The finetuning config's extra request fields (`split_kind`, `max`, ...),
    /// which the plugin reads into its own typed options.
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl TaskRequest {
    pub fn new(task: impl Into<String>, split: Split) -> Self {
        TaskRequest { task: task.into(), split, options: serde_json::Map::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked() {
        let mut spec = TaskSpec {
            kind: TaskKind::Classification,
            labels: vec!["no".into(), "yes".into()],
            targets: vec![],
            data: "d".into(),
            metric: "roc_auc".into(),
            source: String::new(),
            features: None,
            input_check: None,
            completion: None,
            head: None,
        };
        assert!(spec.validate().is_ok());
        spec.metric = "rmse".into();
        assert!(spec.validate().expect_err("wrong metric").0.contains("not one of"));
        spec.metric = "accuracy".into();
        spec.labels.pop();
        assert!(spec.validate().is_err());
        spec.kind = TaskKind::MultiLabel;
        spec.metric = "roc_auc".into();
        assert!(spec.validate().expect_err("no targets").0.contains("targets"));
        spec.targets = vec!["NR-AR".into(), "SR-MMP".into()];
        assert!(spec.validate().is_ok());
        assert_eq!((spec.outputs(), spec.output_names()), (2, spec.targets.clone()));
        spec.targets.push("NR-AR".into());
        assert!(spec.validate().expect_err("twice").0.contains("distinct"));
        let row: LabelledExample = serde_json::from_str(r#"{"text": "C", "targets": [1, null]}"#).expect("row");
        assert_eq!(row.targets, [Some(1.0), None]);
    }

    #[test]
    fn group_split_is_stable_and_roughly_80_10_10() {
        let splits: Vec<Split> = (0..10_000).map(|i| Split::of_group(&format!("movie {i}"))).collect();
        let count = |s: Split| splits.iter().filter(|&&x| x == s).count();
        assert!((700..1300).contains(&count(Split::Validation)));
        assert!((700..1300).contains(&count(Split::Test)));
        assert_eq!(Split::of_group("movie 7"), splits[7]);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
