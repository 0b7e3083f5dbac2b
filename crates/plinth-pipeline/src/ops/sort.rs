//! `sort`: orders all records by a field (numbers numerically, the rest as text); a barrier.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{CheckCx, Checked, Env, Flow, OpRun, Operator};
use crate::records::{plain, Record};
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SortToml {
    by: String,
    #[serde(default)]
    descending: bool,
}

impl SortToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        cx.require(&self.by, None)?;
        Ok((Arc::new(Sort { by: self.by, descending: self.descending }), cx.schema.clone()))
    }
}

#[derive(Debug)]
struct Sort {
    by: String,
    descending: bool,
}

impl Operator for Sort {
    fn name(&self) -> String {
        "sort".into()
    }

    fn flow(&self) -> Flow {
        Flow::Barrier
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(self))
    }
}

impl OpRun for &Sort {
    fn all(&mut self, mut records: Vec<Record>) -> Vec<Record> {
        records.sort_by(|a, b| {
            let (x, y) = (a.get(&self.by), b.get(&self.by));
            let ord = match (x.and_then(Value::as_f64), y.and_then(Value::as_f64)) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => x.map(plain).cmp(&y.map(plain)),
            };
            if self.descending {
                ord.reverse()
            } else {
                ord
            }
        });
        records
    }
}
