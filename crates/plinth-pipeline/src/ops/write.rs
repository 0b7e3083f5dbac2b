//! `write`: the records that reach it, to a file (relative paths land in the
//! pipeline's `out_dir`) when its streaming segment ends; they pass on unchanged.

use std::path::{Path, PathBuf};
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
        confined(&self.path)?;
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

/// A write lands inside the pipeline's `out_dir`: a relative path that does not
/// climb out (`..`) and is not one of the files the run writes itself.
fn confined(path: &Path) -> Result<(), String> {
    use std::path::Component;
    if path.is_absolute() || path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(format!(
            "path {} must stay inside the pipeline's out_dir: a relative path without `..` (set out_dir to choose the folder)",
            path.display()
        ));
    }
    let reserved = [
        crate::run::RESULTS_JSONL,
        crate::run::RESULTS_CSV,
        crate::run::REJECTS,
        crate::run::SUMMARY,
        crate::run::REPORT,
        plinth_model::run_dir::LOCK_FILE,
    ];
    if path.components().count() == 1 && reserved.iter().any(|r| path.as_os_str() == *r) {
        return Err(format!(
            "path {} is a file the run writes itself ({}); choose another name",
            path.display(),
            reserved.join(", ")
        ));
    }
    Ok(())
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
        let target = env.pipeline.out_dir.join(&op.path);
        write_records(&target, op.format, op.field.as_deref(), &std::mem::take(&mut self.records))
    }
}
