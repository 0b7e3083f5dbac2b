//! A plugin's stage: opened once per run with its params (checked when the
//! pipeline is checked), then sent each batch in one call; what it adds is merged
//! into the records it keeps.

use std::sync::Arc;

use plinth_plugin_protocol::{Outcome, Plugins, PluginsExt, StageSession};
use serde::Deserialize;

use super::{Batch, CheckCx, Checked, Env, OpRun, Operator};
use crate::records::Record;
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginToml {
    plugin: String,
    stage: String,
    /// The stage's own params, checked against its type.
    params: Option<toml::Table>,
}

impl PluginToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        let (plugin, stage) = (self.plugin, self.stage);
        let params = match self.params {
            Some(t) => serde_json::to_value(t).map_err(|e| e.to_string())?,
            None => serde_json::Value::Null,
        };
        // Opening checks the params against the stage's own type, before any work.
        let session = cx.plugins.open_stage(&plugin, &stage, &params).map_err(|e| e.message)?;
        let spec = session.spec();
        for (f, t) in &spec.requires {
            cx.require(f, Some(*t)).map_err(|e| format!("plugin stage {plugin}/{stage} {e}"))?;
        }
        for (f, t) in &spec.optional {
            if let Some(have) = cx.schema.get(f).filter(|have| *have != t) {
                return Err(format!("plugin stage {plugin}/{stage} reads {f:?} as {t:?} but it is {have:?}").into());
            }
        }
        let mut schema = cx.schema.clone();
        schema.extend(spec.adds.iter().map(|(f, t)| (f.clone(), *t)));
        Ok((Arc::new(PluginStage { plugin, stage, params }), schema))
    }
}

#[derive(Debug)]
struct PluginStage {
    plugin: String,
    stage: String,
    params: serde_json::Value,
}

impl Operator for PluginStage {
    fn name(&self) -> String {
        format!("{}/{}", self.plugin, self.stage)
    }

    fn open<'a>(&'a self, env: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        let plugins: &'a dyn Plugins = env.plugins;
        let session = plugins.open_stage(&self.plugin, &self.stage, &self.params).map_err(|e| e.to_string())?;
        Ok(Box::new(Session(session)))
    }
}

struct Session<'a>(StageSession<'a, dyn Plugins + 'a>);

impl OpRun for Session<'_> {
    fn batch(&mut self, _: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        let (mut kept, mut rejected) = (Vec::new(), Vec::new());
        // One call per batch; a failed call (a panic, a poisoned plugin) rejects the
        // batch's records with its reason, as a failed record would be.
        match self.0.run(&records) {
            Ok(outcomes) => {
                for (mut r, o) in records.into_iter().zip(outcomes) {
                    match o {
                        Outcome::Add(added) => {
                            r.extend(added);
                            kept.push(r);
                        }
                        Outcome::Reject(reason) => rejected.push((r, reason)),
                    }
                }
            }
            Err(e) => rejected.extend(records.into_iter().map(|r| (r, e.to_string()))),
        }
        Ok((kept, rejected))
    }
}
