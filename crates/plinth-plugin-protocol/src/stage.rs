//! Pipeline stages: a stage declares the record fields it reads and adds
//! ([`StageSpec`], derived by the SDK from its typed input and output), is opened
//! once with its params, and then takes batches of records ([`StageBatch`]),
//! answering one [`Outcome`] per record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A pipeline record: a flat JSON object.
pub type Record = serde_json::Map<String, serde_json::Value>;

/// A record field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Bool,
}

impl FieldType {
    /// The type of a JSON value a record can carry (strings, numbers, booleans).
    pub fn of(v: &serde_json::Value) -> Option<Self> {
        match v {
            serde_json::Value::String(_) => Some(FieldType::String),
            serde_json::Value::Number(_) => Some(FieldType::Number),
            serde_json::Value::Bool(_) => Some(FieldType::Bool),
            _ => None,
        }
    }
}

/// Field name → type.
pub type Schema = BTreeMap<String, FieldType>;

/// What a stage reads and adds, checked by the host before a pipeline runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Fields every input record must carry.
    pub requires: Schema,
    /// Fields the stage reads when present.
    #[serde(default)]
    pub optional: Schema,
    /// Fields the stage adds (or overwrites) on a record it keeps.
    pub adds: Schema,
    /// JSON Schema of the stage's params, for `plinth plugins inspect`.
    #[serde(default)]
    pub params: serde_json::Value,
}

impl StageSpec {
    /// Every field the stage may read: a record is cut to these before it crosses.
    pub fn reads(&self) -> impl Iterator<Item = &String> {
        self.requires.keys().chain(self.optional.keys())
    }
}

/// Records for an open stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageBatch {
    pub records: Vec<Record>,
}

/// A stage's answer for one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Keep the record with these fields added (or overwritten).
    Add(Record),
    /// Drop the record, for this reason (it goes to `rejects.jsonl`).
    Reject(String),
}
