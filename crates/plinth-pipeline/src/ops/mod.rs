//! Pipeline operators: one module per op, each with its TOML table (a struct that
//! refuses unknown keys), its check (schema in, schema out, before any work) and
//! its run (state across the batches that stream through it).
//!
//! To add an op: write `ops/<op>.rs` with its table, `check` and [`Operator`],
//! and add its variant to [`HostOp`] (and to [`HostOp::NAMES`]).

mod collect;
mod curate;
mod dedupe;
mod filter;
mod generate;
mod plugin;
mod predict;
mod read;
mod sort;
mod top_k;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use plinth_checkpoint::Checkpoint;
use plinth_plugin_protocol::Plugins;
use serde::Deserialize;

use crate::records::Record;
use crate::StageError;
use crate::{FieldType, Pipeline, Schema};

pub use plugin::PluginToml;

/// Records a stage kept, and those it rejected with the reason.
pub type Batch = (Vec<Record>, Vec<(Record, String)>);

/// Whether an op passes batches along as they come or needs all its input first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Stream,
    /// Ends a streaming segment: sees every record at once.
    Barrier,
}

/// A checked stage's operation.
pub trait Operator: std::fmt::Debug + Send + Sync {
    /// How the summary names it (`sort`, `molecule/validate`).
    fn name(&self) -> String;

    fn flow(&self) -> Flow {
        Flow::Stream
    }

    /// A source's records (a file's; empty ones for `generate` to fill). `None`:
    /// the op takes the records before it.
    fn source(&self) -> Result<Option<Vec<Record>>, StageError> {
        Ok(None)
    }

    /// Its state for one run.
    fn open<'a>(&'a self, env: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError>;
}

/// An op during a run.
pub trait OpRun {
    /// One batch through a streaming op (a barrier's whole input, for barriers).
    fn batch(&mut self, _env: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        Ok((self.all(records), Vec::new()))
    }

    /// A barrier's whole input at once.
    fn all(&mut self, records: Vec<Record>) -> Vec<Record> {
        records
    }

    /// The end of the op's streaming segment (`write` writes its file here).
    fn finish(&mut self, _env: &Env<'_>) -> Result<(), StageError> {
        Ok(())
    }
}

/// What every op can reach while it runs.
pub struct Env<'a> {
    pub pipeline: &'a Pipeline,
    pub plugins: &'a dyn Plugins,
    pub device: tch::Device,
    models: Models,
}

impl<'a> Env<'a> {
    pub fn new(pipeline: &'a Pipeline, plugins: &'a dyn Plugins, device: tch::Device) -> Self {
        Env { pipeline, plugins, device, models: Models::default() }
    }

    /// The base checkpoint in `dir`, loaded once per run however many stages use it.
    pub fn base(&mut self, dir: &Path) -> Result<Rc<Checkpoint>, StageError> {
        self.models.base(dir, self.device)
    }
}

/// One resident base per checkpoint folder, so several adapters on one base load it once.
#[derive(Default)]
struct Models {
    bases: HashMap<PathBuf, Rc<Checkpoint>>,
}

impl Models {
    fn base(&mut self, dir: &Path, device: tch::Device) -> Result<Rc<Checkpoint>, StageError> {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if let Some(c) = self.bases.get(&key) {
            return Ok(c.clone());
        }
        let c = Rc::new(Checkpoint::load(dir, device).map_err(|e| format!("loading {}: {e}", dir.display()))?);
        self.bases.insert(key, c.clone());
        Ok(c)
    }
}

/// What a check sees: the schema so far, whether the stage comes first, the plugins.
pub struct CheckCx<'a> {
    pub schema: &'a Schema,
    pub first: bool,
    pub plugins: &'a dyn Plugins,
}

impl CheckCx<'_> {
    /// `field` must be there (as `ty`, when given).
    pub fn require(&self, field: &str, ty: Option<FieldType>) -> Result<(), StageError> {
        match (self.schema.get(field), ty) {
            (None, _) => Err(format!(
                "reads field {field:?}, which no earlier stage provides (fields here: {:?})",
                self.schema.keys().collect::<Vec<_>>()
            )
            .into()),
            (Some(t), Some(want)) if *t != want => {
                Err(format!("needs field {field:?} as {want:?} but it is {t:?}").into())
            }
            _ => Ok(()),
        }
    }

    /// A stage without an input field must start the pipeline.
    pub fn source_only(&self, op: &str) -> Result<(), StageError> {
        if self.first {
            Ok(())
        } else {
            Err(format!("`{op}` without an input field starts a pipeline; put it first").into())
        }
    }
}

/// A checked op and the schema after it.
pub type Checked = (Arc<dyn Operator>, Schema);

/// A host operation's table, tagged by `op`.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HostOp {
    Read(read::ReadToml),
    Generate(generate::GenerateToml),
    Predict(predict::PredictToml),
    Filter(filter::FilterToml),
    Sort(sort::SortToml),
    TopK(top_k::TopKToml),
    Dedupe(dedupe::DedupeToml),
    Curate(curate::CurateToml),
    Collect(collect::CollectToml),
    Write(write::WriteToml),
}

impl HostOp {
    /// Every `op` name, for messages (a test keeps it in step with the enum).
    pub const NAMES: [&'static str; 10] =
        ["read", "generate", "predict", "filter", "sort", "top_k", "dedupe", "curate", "collect", "write"];

    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        match self {
            HostOp::Read(t) => t.check(cx),
            HostOp::Generate(t) => t.check(cx),
            HostOp::Predict(t) => t.check(cx),
            HostOp::Filter(t) => t.check(cx),
            HostOp::Sort(t) => t.check(cx),
            HostOp::TopK(t) => t.check(cx),
            HostOp::Dedupe(t) => t.check(cx),
            HostOp::Curate(t) => t.check(cx),
            HostOp::Collect(t) => t.check(cx),
            HostOp::Write(t) => t.check(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_name_is_a_variant_and_every_variant_is_named() {
        for name in HostOp::NAMES {
            let err = toml::from_str::<HostOp>(&format!("op = \"{name}\"\nno_such_key = 1\n"))
                .expect_err("a key no op has")
                .to_string();
            assert!(!err.contains("unknown variant"), "{name}: {err}");
        }
        let err = toml::from_str::<HostOp>("op = \"explode\"\n").expect_err("unknown op").to_string();
        for name in HostOp::NAMES {
            assert!(err.contains(&format!("`{name}`")), "serde's list of ops names {name}: {err}");
        }
        assert_eq!(err.matches('`').count() / 2, HostOp::NAMES.len() + 1, "no op is missing from NAMES: {err}");
    }
}
