//! `collect`: all records become one, `field`'s values joined by `separator`, with
//! `records`, how many were joined; a barrier.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{CheckCx, Checked, Env, Flow, OpRun, Operator};
use crate::records::{plain, Record};
use crate::StageError;
use crate::{FieldType, Schema};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectToml {
    field: String,
    /// Default: a newline.
    separator: Option<String>,
}

impl CollectToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        cx.require(&self.field, Some(FieldType::String))?;
        let schema =
            Schema::from([(self.field.clone(), FieldType::String), ("records".to_string(), FieldType::Number)]);
        let separator = self.separator.unwrap_or_else(|| "\n".into());
        Ok((Arc::new(Collect { field: self.field, separator }), schema))
    }
}

#[derive(Debug)]
struct Collect {
    field: String,
    separator: String,
}

impl Operator for Collect {
    fn name(&self) -> String {
        "collect".into()
    }

    fn flow(&self) -> Flow {
        Flow::Barrier
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(self))
    }
}

impl OpRun for &Collect {
    fn all(&mut self, records: Vec<Record>) -> Vec<Record> {
        if records.is_empty() {
            return records;
        }
        let joined: Vec<String> = records.iter().filter_map(|r| r.get(&self.field).map(plain)).collect();
        let mut one = Record::new();
        one.insert(self.field.clone(), Value::from(joined.join(&self.separator)));
        one.insert("records".into(), Value::from(records.len()));
        vec![one]
    }
}
