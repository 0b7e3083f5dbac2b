//! `example`: one component of each kind, written in safe Rust against the SDK.
//!
//! * tokenizer `bytes`: a training recipe the host builds (byte-level BPE);
//! * corpus `greetings`: a tiny unlabelled corpus (`{"split": "validation"}` for
//!   the held-out part);
//! * task `length` + task data `lengths`: sequence regression of a phrase's length
//!   in words;
//! * module `scale`: `y = x * w` with a plugin-owned parameter `w` (autograd flows
//!   through), and module `identity`, which returns its input so tests can check
//!   zero-copy hand-over (both from `plinth-plugin-tensors`, so this plugin links
//!   libtorch and says so in `export_plugin!`);
//! * stage `shout`: upper-cases a record's `text`;
//! * stage `explode`: panics when `text` contains `boom` (tests panic containment);
//! * domain `phrases`: a user's text column as phrases: whitespace collapsed and
//!   lower-cased, an empty one rejected, each word's first letter a feature, and a
//!   `first-word` split that keeps phrases sharing a first word together.

use plinth_plugin_sdk::protocol::{
    DomainRequest, DomainSpec, DomainSplitSpec, DomainValue, FeatureSpec, HeadSpec, LabelledExample, Split, TaskKind,
    TaskSpec, TokenizerSpec,
};
use plinth_plugin_sdk::{export_plugin, Component, Error, NoParams, Plugin};
use plinth_plugin_tensors::tch::{Device, Kind, Tensor};
use plinth_plugin_tensors::{module, TensorModule, LIBTORCH};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub struct Example;

fn phrases_spec() -> DomainSpec {
    DomainSpec {
        value: "a phrase (whitespace collapsed, lower case)".into(),
        splits: vec![DomainSplitSpec {
            name: "first-word".into(),
            description:
                "phrases sharing a first word stay together; every tenth such group is test, the next validation".into(),
        }],
        features: Some(FeatureSpec { name: "letters".into(), size: 26 }),
    }
}

/// The `phrases` domain: see the crate docs.
fn phrases(req: DomainRequest) -> Result<Vec<DomainValue>, Error> {
    Ok(req
        .values
        .iter()
        .map(|v| {
            let phrase = v.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            if phrase.is_empty() {
                return DomainValue::rejected("an empty phrase");
            }
            let mut features: Vec<u32> = phrase
                .split(' ')
                .filter_map(|w| w.bytes().next().filter(u8::is_ascii_lowercase).map(|b| u32::from(b - b'a')))
                .collect();
            features.sort_unstable();
            features.dedup();
            let split = req.split.as_ref().map(|_| {
                let first = phrase.split(' ').next().unwrap_or("");
                match plinth_plugin_sdk::protocol::fnv1a(first.bytes()) % 10 {
                    0 => Split::Test,
                    1 => Split::Validation,
                    _ => Split::Train,
                }
            });
            DomainValue {
                features: if req.features { features } else { Vec::new() },
                split,
                ..DomainValue::accepted(phrase)
            }
        })
        .collect())
}

struct Scale {
    w: Tensor,
}

impl TensorModule for Scale {
    fn forward(&self, input: &Tensor) -> Result<Tensor, Error> {
        input.f_mul(&self.w).map_err(Error::new)
    }

    fn parameters(&self) -> Vec<Tensor> {
        vec![self.w.shallow_clone()]
    }
}

struct Identity;

impl TensorModule for Identity {
    fn forward(&self, input: &Tensor) -> Result<Tensor, Error> {
        Ok(input.shallow_clone())
    }

    fn parameters(&self) -> Vec<Tensor> {
        Vec::new()
    }
}

/// A record's text: the input and the output of `shout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Text {
    pub text: String,
}

/// Upper-cases `text`.
pub fn shout(r: Text) -> Result<Text, Error> {
    Ok(Text { text: r.text.to_uppercase() })
}

/// Options of the `greetings` corpus.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreetingsOptions {
    #[serde(default)]
    pub split: Option<Split>,
}

/// Generated phrases of 1 to 12 words labelled with their length, per split.
pub fn lengths(split: Split) -> Vec<LabelledExample> {
    let (offset, count) = match split {
        Split::Train => (0, 96),
        Split::Validation => (1000, 24),
        Split::Test => (2000, 24),
    };
    const WORDS: [&str; 8] = ["good", "morning", "hello", "world", "there", "friend", "day", "again"];
    (0..count)
        .map(|i: usize| {
            let n = (i * 7 + offset) % 12 + 1;
            let text: Vec<&str> = (0..n).map(|k| WORDS[(i + k * 3 + offset) % WORDS.len()]).collect();
            LabelledExample::new(text.join(" "), n as f64)
        })
        .collect()
}

fn length_spec() -> TaskSpec {
    TaskSpec {
        kind: TaskKind::Regression,
        labels: Vec::new(),
        targets: vec![],
        data: "lengths".into(),
        metric: "rmse".into(),
        source: "generated phrases".into(),
        features: None,
        input_check: None,
        completion: None,
        head: Some(HeadSpec { hidden: vec![16], pooling: Some("mean".into()) }),
    }
}

impl Plugin for Example {
    fn components(&self) -> Vec<Component> {
        vec![
            Component::tokenizer(
                "bytes",
                "byte-level BPE recipe: the host trains it on the run's training split",
                TokenizerSpec::Train { vocab_size: 300, min_frequency: 1 },
            ),
            Component::corpus("greetings", "a tiny corpus of greetings", |o: GreetingsOptions| {
                Ok(match o.split {
                    Some(Split::Validation) => vec!["good evening".to_string()],
                    _ => [
                        "hello world",
                        "good morning",
                        "hi there",
                        "good afternoon to you",
                        "hello again, old friend",
                        "good day",
                        "hi, how are you",
                        "hello there, good morning",
                        "morning, everyone",
                        "hello, world, again",
                    ]
                    .map(String::from)
                    .to_vec(),
                })
            }),
            Component::task("length", "predict a text's length in words", length_spec()),
            Component::task_data(
                "lengths",
                "phrases labelled with their length in words",
                |task: &str, split, _: NoParams| {
                    if task != "length" {
                        return Err(Error::new(format!("lengths serves the task \"length\", not {task:?}")));
                    }
                    Ok(lengths(split))
                },
            ),
            module(
                "scale",
                "y = x * w, w learned",
                serde_json::json!({"init": 2.0}),
                Scale { w: Tensor::full([1], 2.0, (Kind::Float, Device::Cpu)).set_requires_grad(true) },
            ),
            module("identity", "returns its input unchanged", serde_json::json!({}), Identity),
            Component::domain("phrases", "a text column as phrases (see the crate docs)", phrases_spec(), phrases),
            Component::stage_fn("shout", "upper-cases the text field", shout),
            Component::stage_fn("explode", "panics on records whose text contains boom", |r: Text| {
                if r.text.contains("boom") {
                    panic!("explode was asked to blow up");
                }
                Ok::<_, Error>(r)
            }),
        ]
    }
}

export_plugin!(id: "example", version: "0.1.0", create: Example, libtorch: LIBTORCH);

#[cfg(test)]
mod tests {
    use plinth_plugin_test_support::{added, record, PluginTest};
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn lengths_label_each_phrase_with_its_word_count() {
        let t = PluginTest::new("example", Example).expect("starts");
        let rows = t.rows("length", Split::Validation, Value::Null).expect("rows");
        assert_eq!(rows.len(), 24);
        assert!(rows.iter().all(|r| r.text.split(' ').count() as f64 == r.label));
        let err = t.rows("length", Split::Test, json!({"split_kind": "random"})).expect_err("no options");
        assert!(err.message.contains("unknown field"), "{err}");
    }

    #[test]
    fn shout_upper_cases_text_and_a_missing_field_is_refused() {
        let t = PluginTest::new("example", Example).expect("starts");
        let out = t.run_stage("shout", Value::Null, vec![json!({"text": "hi there", "id": 1})]).expect("runs");
        assert_eq!(added(&out[0]), Ok(&record(json!({"text": "HI THERE"}))));
        let err = t.run_stage("shout", Value::Null, vec![json!({"id": 1})]).expect_err("no text");
        assert!(err.message.contains("\"text\""), "{err}");
        let err = t.run_stage("shout", json!({"loud": true}), vec![]).expect_err("no params");
        assert!(err.message.contains("unknown field `loud`"), "{err}");
    }

    #[test]
    fn a_panic_poisons_the_plugin_but_not_the_test() {
        let t = PluginTest::new("example", Example).expect("starts");
        assert!(t.run_stage("explode", Value::Null, vec![json!({"text": "calm"})]).is_ok());
        let err = t.run_stage("explode", Value::Null, vec![json!({"text": "boom"})]).expect_err("panics");
        assert!(err.message.contains("Panicked") && err.message.contains("blow up"), "{err}");
        assert!(t.is_poisoned());
        let err = t.run_stage("shout", Value::Null, vec![json!({"text": "a"})]).expect_err("poisoned");
        assert!(err.message.contains("Poisoned"), "{err}");
    }
}
