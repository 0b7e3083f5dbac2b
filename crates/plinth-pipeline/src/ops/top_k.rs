//! `top_k`: the first `k` records to arrive (after a `sort`: the best `k`).

use std::sync::Arc;

use serde::Deserialize;

use super::{Batch, CheckCx, Checked, Env, OpRun, Operator};
use crate::records::Record;
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopKToml {
    k: usize,
}

impl TopKToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        Ok((Arc::new(TopK { k: self.k }), cx.schema.clone()))
    }
}

#[derive(Debug)]
struct TopK {
    k: usize,
}

impl Operator for TopK {
    fn name(&self) -> String {
        "top_k".into()
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(Taken { k: self.k, taken: 0 }))
    }
}

/// How many records have passed so far, across batches.
struct Taken {
    k: usize,
    taken: usize,
}

impl OpRun for Taken {
    fn batch(&mut self, _: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        let room = self.k - self.taken.min(self.k);
        let kept: Vec<Record> = records.into_iter().take(room).collect();
        self.taken += kept.len();
        Ok((kept, Vec::new()))
    }
}
