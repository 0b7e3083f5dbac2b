//! `read`: a pipeline's records from a CSV, JSON Lines or plain-lines file.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::{Batch, CheckCx, Checked, Env, OpRun, Operator};
use crate::records::{format_of, parse_records, Format, Record};
use crate::FieldType;
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadToml {
    path: PathBuf,
    /// `csv`, `jsonl` or `lines` (default: by the path's extension).
    format: Option<String>,
    /// The field of a plain line (default `text`).
    field: Option<String>,
}

impl ReadToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        cx.source_only("read")?;
        let format = format_of(&self.path, self.format.as_deref())?;
        let field = self.field.unwrap_or_else(|| "text".into());
        // The schema is the first record's fields, read now.
        let text =
            std::fs::read_to_string(&self.path).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let first = parse_records(&text, format, &field, 1).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let first = first.into_iter().next().ok_or_else(|| format!("{} has no records", self.path.display()))?;
        let schema = first.iter().filter_map(|(k, v)| FieldType::of(v).map(|t| (k.clone(), t))).collect();
        Ok((Arc::new(Read { path: self.path, format, field }), schema))
    }
}

#[derive(Debug)]
struct Read {
    path: PathBuf,
    format: Format,
    field: String,
}

impl Operator for Read {
    fn name(&self) -> String {
        "read".into()
    }

    fn source(&self) -> Result<Option<Vec<Record>>, StageError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let records = parse_records(&text, self.format, &self.field, usize::MAX)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(Some(records))
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(PassThrough))
    }
}

/// The source's batches were read from its file; they pass as they are.
struct PassThrough;

impl OpRun for PassThrough {
    fn batch(&mut self, _: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        Ok((records, Vec::new()))
    }
}
