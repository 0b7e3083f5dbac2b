//! `example`: one component of each kind, written in safe Rust against the SDK.
//!
//! * tokenizer `bytes`: a training recipe the host builds (byte-level BPE);
//! * data `greetings`: a tiny unlabelled corpus, `{"split": "train"|"validation"}`;
//! * task `length` + data `lengths`: sequence regression of a phrase's length in words
//!   (rows `[{"text", "label"}]` for `{"task": "length", "split": ...}`);
//! * module `scale`: `y = x * w` with a plugin-owned parameter `w` (autograd flows through);
//! * module `identity`: returns its input, so tests can check zero-copy hand-over;
//! * stage `shout`: upper-cases a record's `text` field;
//! * stage `explode`: panics when the record contains `boom` (tests panic containment).

use plinth_plugin_sdk::tch::{Kind, Tensor};
use plinth_plugin_sdk::{export_plugin, Component, Plugin, TensorModule};

pub struct Example;

struct Scale {
    w: Tensor,
}

impl TensorModule for Scale {
    fn forward(&self, input: &Tensor) -> Result<Tensor, String> {
        input.f_mul(&self.w).map_err(|e| e.to_string())
    }

    fn parameters(&self) -> Vec<Tensor> {
        vec![self.w.shallow_clone()]
    }
}

struct Identity;

impl TensorModule for Identity {
    fn forward(&self, input: &Tensor) -> Result<Tensor, String> {
        Ok(input.shallow_clone())
    }

    fn parameters(&self) -> Vec<Tensor> {
        Vec::new()
    }
}

/// Upper-cases the `text` field of a flat JSON record such as `{"text": "hi"}`.
pub fn shout(record: &str) -> Result<String, String> {
    if !record.contains("\"text\"") {
        return Err("record has no \"text\" field".into());
    }
    Ok(record.replace("\"text\"", "\u{0}").to_uppercase().replace('\u{0}', "\"text\""))
}

/// Answers `{"task": "length", "split": "train" | "validation" | "test"}` with
/// generated phrases of 1 to 12 words and their lengths.
pub fn lengths(request: &str) -> Result<String, String> {
    let (offset, count) = match ["\"train\"", "\"validation\"", "\"test\""].iter().position(|s| request.contains(s)) {
        Some(0) => (0, 96),
        Some(1) => (1000, 24),
        Some(2) => (2000, 24),
        _ => return Err("ask for {\"task\": \"length\", \"split\": \"train\" | \"validation\" | \"test\"}".into()),
    };
    const WORDS: [&str; 8] = ["good", "morning", "hello", "world", "there", "friend", "day", "again"];
    let rows: Vec<String> = (0..count)
        .map(|i: usize| {
            let n = (i * 7 + offset) % 12 + 1;
            let text: Vec<&str> = (0..n).map(|k| WORDS[(i + k * 3 + offset) % WORDS.len()]).collect();
            format!(r#"{{"text": "{}", "label": {n}}}"#, text.join(" "))
        })
        .collect();
    Ok(format!("[{}]", rows.join(",")))
}

impl Plugin for Example {
    fn components(&self) -> Vec<Component> {
        vec![
            Component::tokenizer(
                "bytes",
                "byte-level BPE recipe: the host trains it on the run's training split",
                r#"{"train": {"vocab_size": 300, "min_frequency": 1}}"#,
            ),
            Component::data("greetings", "a tiny corpus of greetings", |request: &str| {
                if request.contains("validation") {
                    Ok(r#"["good evening"]"#.into())
                } else {
                    Ok(r#"["hello world", "good morning", "hi there", "good afternoon to you", "hello again, old friend",
                         "good day", "hi, how are you", "hello there, good morning", "morning, everyone", "hello, world, again"]"#
                        .into())
                }
            }),
            Component::task(
                "length",
                "predict a text's length in words",
                r#"{"kind": "regression", "data": "lengths", "metric": "rmse", "source": "generated phrases", "head": {"hidden": [16], "pooling": "mean"}}"#,
            ),
            Component::data("lengths", "phrases labelled with their length in words", lengths),
            Component::module(
                "scale",
                "y = x * w, w learned",
                r#"{"init": 2.0}"#,
                Scale {
                    w: Tensor::full([1], 2.0, (Kind::Float, plinth_plugin_sdk::tch::Device::Cpu))
                        .set_requires_grad(true),
                },
            ),
            Component::module("identity", "returns its input unchanged", "{}", Identity),
            Component::stage("shout", "upper-cases the text field", shout),
            Component::stage("explode", "panics on records containing boom", |record: &str| {
                if record.contains("boom") {
                    panic!("explode was asked to blow up");
                }
                Ok(record.to_string())
            }),
        ]
    }
}

export_plugin!(id: "example", version: "0.1.0", create: Example);

#[cfg(test)]
mod tests {
    #[test]
    fn lengths_label_each_phrase_with_its_word_count() {
        let rows = super::lengths(r#"{"task": "length", "split": "validation"}"#).expect("rows");
        assert_eq!(rows.matches("\"label\"").count(), 24);
        assert!(rows.starts_with(r#"[{"text": ""#));
        assert!(super::lengths(r#"{"split": "dev"}"#).is_err());
    }

    #[test]
    fn shout_upper_cases_values_not_keys() {
        assert_eq!(super::shout(r#"{"text": "hi there"}"#).expect("ok"), r#"{"text": "HI THERE"}"#);
        assert!(super::shout("{}").is_err());
    }
}
