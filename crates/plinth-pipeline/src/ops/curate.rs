//! `curate`: a text field through plinth-curate's stages (rewritten in place; a
//! dropped record is rejected with the stage and reason), duplicates included.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{Batch, CheckCx, Checked, Env, OpRun, Operator};
use crate::records::{plain, Record};
use crate::FieldType;
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurateToml {
    field: String,
    /// A `plinth_curate::CurateConfig` (default: its defaults).
    #[serde(default)]
    settings: toml::Table,
}

impl CurateToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        cx.require(&self.field, Some(FieldType::String))?;
        let cfg: plinth_curate::CurateConfig =
            self.settings.try_into().map_err(|e: toml::de::Error| format!("settings: {}", e.message()))?;
        let curator = plinth_curate::Curator::new(cfg, &plinth_data::cache_dir()).map_err(|e| e.to_string())?;
        Ok((Arc::new(Curate { field: self.field, curator }), cx.schema.clone()))
    }
}

#[derive(Debug)]
struct Curate {
    field: String,
    curator: plinth_curate::Curator,
}

impl Operator for Curate {
    fn name(&self) -> String {
        "curate".into()
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(Curating { op: self, duplicates: self.curator.duplicates() }))
    }
}

/// The duplicate memories across batches.
struct Curating<'a> {
    op: &'a Curate,
    duplicates: plinth_curate::Duplicates,
}

impl OpRun for Curating<'_> {
    fn batch(&mut self, _: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        let (mut kept, mut rejected) = (Vec::new(), Vec::new());
        for mut r in records {
            let text = r.get(&self.op.field).map(plain).unwrap_or_default();
            match self.op.curator.document(&text).and_then(|clean| self.duplicates.check(&clean).map(|()| clean)) {
                Ok(clean) => {
                    r.insert(self.op.field.clone(), Value::from(clean));
                    kept.push(r);
                }
                Err(dropped) => rejected.push((r, dropped.0)),
            }
        }
        Ok((kept, rejected))
    }
}
