//! The typed contract between plinth and its plugins. Every value that crosses the
//! plugin ABI is one of these types, encoded as JSON by the SDK on the plugin side
//! and by the host on the other, so neither side parses by hand and both agree on
//! every field name.
//!
//! * [`ComponentSpec`]: what a component declares when the plugin loads (a
//!   tokenizer, a task, a data role, a stage's record schema, a module);
//! * [`Request`]: a data request and the reply type it gets ([`TaskRequest`] →
//!   rows, [`CorpusRequest`] → documents, [`ScoreRequest`] → metrics,
//!   [`GuideRequest`] → [`Step`], [`DomainRequest`] → one [`DomainValue`] per value);
//! * stages: typed params sent once when a stage opens, then batches of
//!   [`Record`]s in and one [`Outcome`] per record out;
//! * [`Plugins`]: what host code asks of loaded plugins, implemented over the C ABI
//!   by `plinth-plugin-host` and in-process by `plinth-plugin-test-support`.
//!
//! This crate depends on serde alone and knows nothing of tensors or of the host.

mod domain;
mod guide;
mod plugins;
mod stage;
mod task;

pub use domain::{DomainRequest, DomainSpec, DomainSplit, DomainSplitSpec, DomainValue};
pub use guide::{GuideRequest, Step};
pub use plugins::{decode, CallError, Plugins, PluginsExt, StageSession};
pub use stage::{FieldType, Outcome, Record, Schema, StageBatch, StageSpec};
pub use task::{
    fnv1a, splitmix64, CompletionSpec, FeatureSpec, HeadSpec, InputCheck, InvalidSpec, LabelledExample, Split,
    TaskKind, TaskRequest, TaskSpec, POOLINGS,
};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a component is, as its plugin declares it (the ABI's `ComponentInfo.spec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", content = "spec", rename_all = "snake_case")]
pub enum ComponentSpec {
    /// A tokenizer the host loads or trains.
    Tokenizer(TokenizerSpec),
    /// A finetuning task; its `data` names a [`ComponentSpec::TaskData`] component.
    Task(Box<TaskSpec>),
    /// Answers [`CorpusRequest`]s with documents for pretraining.
    Corpus,
    /// Answers [`TaskRequest`]s with labelled rows.
    TaskData,
    /// Answers [`ScoreRequest`]s with metrics.
    Scorer,
    /// Answers [`GuideRequest`]s with the next decoding [`Step`].
    Guide,
    /// A plugin-specific question: any JSON request, any JSON reply.
    Query,
    /// Answers [`DomainRequest`]s: checks, canonicalises, featurises and splits the
    /// values of a user's data column of its kind (ABI minor 1).
    Domain(DomainSpec),
    /// A pipeline stage: the record fields it reads and adds, and its params.
    Stage(StageSpec),
    /// A tensor module (adapter or head) with JSON defaults; only in plugins built
    /// with `plinth-plugin-tensors`, which link libtorch.
    Module(serde_json::Value),
}

impl ComponentSpec {
    /// The ABI minor that introduced this role: a host speaking an older minor
    /// cannot read it, so the SDK leaves such components out for that host.
    pub fn since_minor(&self) -> u32 {
        match self {
            ComponentSpec::Domain(_) => 1,
            _ => 0,
        }
    }

    /// The role's name as `plinth plugins inspect` shows it.
    pub fn role(&self) -> &'static str {
        match self {
            ComponentSpec::Tokenizer(_) => "tokenizer",
            ComponentSpec::Task(_) => "task",
            ComponentSpec::Corpus => "corpus",
            ComponentSpec::TaskData => "task data",
            ComponentSpec::Scorer => "scorer",
            ComponentSpec::Guide => "guide",
            ComponentSpec::Query => "query",
            ComponentSpec::Domain(_) => "domain",
            ComponentSpec::Stage(_) => "stage",
            ComponentSpec::Module(_) => "module",
        }
    }
}

/// A tokenizer component: a finished `tokenizer.json`, or a recipe the host trains
/// on the run's training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenizerSpec {
    /// The text of a Hugging Face `tokenizer.json`.
    File(String),
    /// Byte-level BPE trained by the host.
    Train {
        vocab_size: usize,
        #[serde(default = "two")]
        min_frequency: u64,
    },
}

fn two() -> u64 {
    2
}

/// A data request and the reply it gets: the request type fixes the reply type on
/// both sides of the ABI.
pub trait Request: Serialize + DeserializeOwned {
    type Reply: Serialize + DeserializeOwned;
    /// The component role that answers this request.
    const ROLE: &'static str;
}

/// Documents for pretraining. `options` are the corpus's own (a split, sources,
/// a maximum); the config's `request` supplies them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CorpusRequest {
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl Request for CorpusRequest {
    type Reply = Vec<String>;
    const ROLE: &'static str = "corpus";
}

impl Request for TaskRequest {
    type Reply = Vec<LabelledExample>;
    const ROLE: &'static str = "task data";
}

/// One completion to score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub prompt: String,
    pub prediction: String,
    pub reference: String,
}

/// Completions to score; the reply maps metric names to values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    pub rows: Vec<Scored>,
}

/// Metric name → value, as a scorer reports them.
pub type Metrics = std::collections::BTreeMap<String, f64>;

impl Request for ScoreRequest {
    type Reply = Metrics;
    const ROLE: &'static str = "scorer";
}

impl Request for GuideRequest {
    type Reply = Step;
    const ROLE: &'static str = "guide";
}

impl Request for serde_json::Value {
    type Reply = serde_json::Value;
    const ROLE: &'static str = "query";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_specs_round_trip_with_their_role() {
        let specs = [
            ComponentSpec::Tokenizer(TokenizerSpec::Train { vocab_size: 300, min_frequency: 1 }),
            ComponentSpec::Corpus,
            ComponentSpec::Stage(StageSpec {
                requires: Schema::from([("smiles".into(), FieldType::String)]),
                optional: Schema::new(),
                adds: Schema::from([("valid".into(), FieldType::Bool)]),
                params: serde_json::json!({}),
            }),
        ];
        for s in specs {
            let text = serde_json::to_string(&s).expect("encode");
            assert!(text.starts_with(&format!("{{\"role\":\"{}\"", s.role().replace(' ', "_"))), "{text}");
            assert_eq!(serde_json::from_str::<ComponentSpec>(&text).expect("decode"), s);
        }
        let recipe: TokenizerSpec = serde_json::from_str(r#"{"train": {"vocab_size": 8}}"#).expect("recipe");
        assert_eq!(recipe, TokenizerSpec::Train { vocab_size: 8, min_frequency: 2 });
    }
}
