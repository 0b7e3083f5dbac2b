//! `read`: a pipeline's records from a CSV, TSV, JSON Lines or plain-lines file,
//! with columns renamed to the fields later stages read (`rename`).

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
    /// `csv`, `tsv`, `jsonl` or `lines` (default: by the path's extension).
    format: Option<String>,
    /// The field of a plain line (default `text`).
    field: Option<String>,
    /// Columns renamed as they are read: `{ "SMILES" = "smiles" }` (file column = field).
    #[serde(default)]
    rename: std::collections::BTreeMap<String, String>,
}

/// Applies `rename` (file column -> field) to a record.
fn renamed(mut r: Record, rename: &std::collections::BTreeMap<String, String>) -> Record {
    for (from, to) in rename {
        if let Some(v) = r.remove(from) {
            r.insert(to.clone(), v);
        }
    }
    r
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
        if let Some(missing) = self.rename.keys().find(|k| !first.contains_key(*k)) {
            let have: Vec<&str> = first.keys().map(String::as_str).collect();
            return Err(format!(
                "rename: {} has no column {missing:?} (it has {})",
                self.path.display(),
                have.join(", ")
            )
            .into());
        }
        let first = renamed(first, &self.rename);
        let schema = first.iter().filter_map(|(k, v)| FieldType::of(v).map(|t| (k.clone(), t))).collect();
        Ok((Arc::new(Read { path: self.path, format, field, rename: self.rename }), schema))
    }
}

#[derive(Debug)]
struct Read {
    path: PathBuf,
    format: Format,
    field: String,
    rename: std::collections::BTreeMap<String, String>,
}

impl Operator for Read {
    fn name(&self) -> String {
        "read".into()
    }

    fn source(&self) -> Result<Option<Vec<Record>>, StageError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let records = parse_records(&text, self.format, &self.field, usize::MAX)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(Some(records.into_iter().map(|r| renamed(r, &self.rename)).collect()))
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
