//! Task heads on top of the base model's hidden states: sequence regression and
//! sequence classification (binary or multi-class), with a choice of pooling.
//! Generation tasks use the language-model head itself and need none of this.
//!
//! Parameters live under the `nn::Path` the head is built at (`head.hidden.{i}.*`
//! for optional hidden layers, then `head.proj.weight`, `head.proj.bias`), normally
//! in the adapter's store, so a finetuned task is the adapter plus its head.

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Reduction, Tensor};

use crate::{ModelError, Result};

/// How a sequence of hidden states becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over real (unpadded) tokens.
    Mean,
    /// The first token (`<bos>`, BERT's `[CLS]` position).
    First,
    /// The last real token (what a causal model has seen the whole sequence at).
    Last,
}

/// What the head predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum HeadKind {
    /// `outputs` real values, mean-squared-error loss.
    Regression { outputs: i64 },
    /// One of `classes` labels (2 for binary), cross-entropy loss.
    Classification { classes: i64 },
    /// `labels` independent yes/no labels (logits), binary cross-entropy loss.
    #[serde(rename = "multilabel")]
    MultiLabel { labels: i64 },
}

/// A head's configuration, as written in a finetuning config:
/// `task = { kind = "classification", classes = 2 }`, `pooling = "mean"` and
/// optionally `hidden = [256]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    pub task: HeadKind,
    pub pooling: Pooling,
    /// Widths of hidden layers (each followed by GELU) before the output layer;
    /// empty: a linear head.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<i64>,
}

/// A pooled head: optional GELU hidden layers, then a linear output layer.
#[derive(Debug)]
pub struct TaskHead {
    cfg: HeadConfig,
    hidden: Vec<nn::Linear>,
    proj: nn::Linear,
}

impl TaskHead {
    pub fn new(p: &nn::Path, d_model: i64, cfg: &HeadConfig) -> Result<Self> {
        let out = match cfg.task {
            HeadKind::Regression { outputs } => outputs,
            HeadKind::Classification { classes } => classes,
            HeadKind::MultiLabel { labels } => labels,
        };
        if out < 1 || matches!(cfg.task, HeadKind::Classification { classes } if classes < 2) {
            return Err(ModelError::Config(format!(
                "a head needs at least 1 regression output or 2 classes, got {:?}",
                cfg.task
            )));
        }
        if let Some(w) = cfg.hidden.iter().find(|&&w| w < 1) {
            return Err(ModelError::Config(format!("head hidden widths must be positive, got {w}")));
        }
        let mut width = d_model;
        let hidden = cfg
            .hidden
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let layer = plinth_layers::linear(p / "hidden" / i, width, w, true);
                width = w;
                layer
            })
            .collect();
        Ok(TaskHead { cfg: cfg.clone(), hidden, proj: plinth_layers::linear(p / "proj", width, out, true) })
    }

    /// Pools hidden states (B, T, C) over the real tokens in `valid` (B, T) bool.
    pub fn pool(&self, hidden: &Tensor, valid: &Tensor) -> Tensor {
        match self.cfg.pooling {
            Pooling::First => hidden.select(1, 0), // (B, C)
            Pooling::Mean => {
                let w = valid.to_kind(hidden.kind()).unsqueeze(-1); // (B, T, 1)
                (hidden * &w).sum_dim_intlist(1, false, hidden.kind())
                    / w.sum_dim_intlist(1, false, hidden.kind()).clamp_min(1.0)
            }
            Pooling::Last => {
                let last = (valid.to_kind(Kind::Int64).sum_dim_intlist(1, false, Kind::Int64) - 1).clamp_min(0); // (B,)
                let c = hidden.size()[2];
                let idx = last.view([-1, 1, 1]).expand([-1, 1, c], false); // (B, 1, C)
                hidden.gather(1, &idx, false).squeeze_dim(1) // (B, C)
            }
        }
    }

    /// Predictions (B, outputs or classes) from hidden states and the padding mask.
    pub fn forward(&self, hidden: &Tensor, valid: &Tensor) -> Tensor {
        let x = self.hidden.iter().fold(self.pool(hidden, valid), |x, l| l.forward(&x).gelu("none")); // (B, H)
        self.proj.forward(&x)
    }

    /// Mean loss: cross-entropy against int64 class ids (B,); or, against float
    /// targets (B, outputs) where NaN marks an entry the row lacks, MSE
    /// (regression) or binary cross-entropy on logits (multi-label) over the
    /// entries present only. A batch with no entry present has loss 0.
    pub fn loss(&self, predictions: &Tensor, targets: &Tensor) -> Result<Tensor> {
        if let HeadKind::Classification { .. } = self.cfg.task {
            return Ok(predictions.f_cross_entropy_loss::<Tensor>(targets, None, Reduction::Mean, -100, 0.0)?);
        }
        let targets = targets.to_kind(predictions.kind());
        let known = targets.isnan().logical_not();
        let y = targets.nan_to_num(0.0, None::<f64>, None::<f64>);
        let each = match self.cfg.task {
            HeadKind::MultiLabel { .. } => {
                predictions.f_binary_cross_entropy_with_logits::<Tensor>(&y, None, None, Reduction::None)?
            }
            _ => (predictions - &y).square(),
        };
        let w = known.to_kind(predictions.kind());
        Ok((each * &w).sum(predictions.kind()) / w.sum(predictions.kind()).clamp_min(1.0))
    }
}
