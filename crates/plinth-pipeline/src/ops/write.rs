//! `write`: the records that reach it, to a file (relative paths land in the
//! pipeline's `out_dir`) when its streaming segment ends; they pass on unchanged.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{Batch, CheckCx, Checked, Env, OpRun, Operator};
use crate::records::{format_of, write_records, Format, Record};
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteToml {
    path: PathBuf,
    format: Option<String>,
    /// `lines` only: the field written (default: each record's first field).
    field: Option<String>,
}

impl WriteToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        let format = format_of(&self.path, self.format.as_deref())?;
        if let Some(f) = &self.field {
            if format != Format::Lines {
                return Err("`field` picks what a `lines` write writes; csv and jsonl write every field".into());
            }
            cx.require(f, None)?;
        }
        Ok((Arc::new(Write { path: self.path, format, field: self.field }), cx.schema.clone()))
    }
}

#[derive(Debug)]
struct Write {
    path: PathBuf,
    format: Format,
    field: Option<String>,
}

impl Operator for Write {
    fn name(&self) -> String {
        "write".into()
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(Written { op: self, records: Vec::new() }))
    }
}

struct Written<'a> {
    op: &'a Write,
    records: Vec<Record>,
}

impl OpRun for Written<'_> {
    fn batch(&mut self, _: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        self.records.extend(records.iter().cloned());
        Ok((records, Vec::new()))
    }

    fn finish(&mut self, env: &Env<'_>) -> Result<(), StageError> {
        let op = self.op;
        let target = if op.path.is_absolute() { op.path.clone() } else { env.pipeline.out_dir.join(&op.path) };
        write_records(&target, op.format, op.field.as_deref(), &std::mem::take(&mut self.records))
    }
}
