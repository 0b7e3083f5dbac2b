//! `dedupe`: drops records whose `field` value was seen before (across batches).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use super::{Batch, CheckCx, Checked, Env, OpRun, Operator};
use crate::records::{plain, Record};
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupeToml {
    field: String,
}

impl DedupeToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        cx.require(&self.field, None)?;
        Ok((Arc::new(Dedupe { field: self.field }), cx.schema.clone()))
    }
}

#[derive(Debug)]
struct Dedupe {
    field: String,
}

impl Operator for Dedupe {
    fn name(&self) -> String {
        "dedupe".into()
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(Seen { field: &self.field, seen: HashSet::new() }))
    }
}

struct Seen<'a> {
    field: &'a str,
    seen: HashSet<Option<String>>,
}

impl OpRun for Seen<'_> {
    fn batch(&mut self, _: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        let kept = records.into_iter().filter(|r| self.seen.insert(r.get(self.field).map(plain))).collect();
        Ok((kept, Vec::new()))
    }
}
