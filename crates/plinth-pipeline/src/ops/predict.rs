//! `predict`: a finetuned classification or regression task's answer for a
//! record's field (inputs its plugin's check rejects are rejected with the reason).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use plinth_checkpoint::Checkpoint;
use plinth_finetune::{FinetunedTask, Prediction};
use plinth_plugin_protocol::TaskKind;
use serde::Deserialize;
use serde_json::Value;

use super::{Batch, CheckCx, Checked, Env, OpRun, Operator};
use crate::records::{plain, Record};
use crate::FieldType;
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictToml {
    /// A finetune run's folder (or its `best/`).
    run: PathBuf,
    /// The record field the task reads.
    input: String,
    /// Where the answer goes (default: the task's name); a classification adds
    /// `<output>_probability` too; several targets (multi-output regression,
    /// multi-label) go to `<output>_<target>` each.
    output: Option<String>,
}

impl PredictToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        cx.require(&self.input, Some(FieldType::String))?;
        let dir = plinth_finetune::task::resolve_dir(&self.run).map_err(|e| e.to_string())?;
        let meta = plinth_finetune::task::read_meta(&dir).map_err(|e| e.to_string())?;
        let output = self.output.unwrap_or_else(|| meta.task.clone());
        let mut schema = cx.schema.clone();
        match meta.spec.kind {
            TaskKind::Generation => {
                return Err(format!(
                    "{} is a generation task; use it as a generate stage's `adapter`",
                    self.run.display()
                )
                .into());
            }
            _ if meta.spec.multi_target() => {
                for t in &meta.spec.targets {
                    schema.insert(format!("{output}_{t}"), FieldType::Number);
                }
            }
            TaskKind::Regression | TaskKind::MultiLabel => {
                schema.insert(output.clone(), FieldType::Number);
            }
            TaskKind::Classification => {
                schema.insert(output.clone(), FieldType::String);
                schema.insert(format!("{output}_probability"), FieldType::Number);
            }
        }
        Ok((Arc::new(Predict { run: self.run, input: self.input, output }), schema))
    }
}

#[derive(Debug)]
struct Predict {
    run: PathBuf,
    input: String,
    output: String,
}

impl Operator for Predict {
    fn name(&self) -> String {
        "predict".into()
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(Predicting { op: self, model: None }))
    }
}

struct Predicting<'a> {
    op: &'a Predict,
    /// Loaded on the first batch.
    model: Option<(Rc<Checkpoint>, FinetunedTask)>,
}

/// Four decimals, as the results files show them.
fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

impl OpRun for Predicting<'_> {
    fn batch(&mut self, env: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        let op = self.op;
        if self.model.is_none() {
            let dir = plinth_finetune::task::resolve_dir(&op.run).map_err(|e| e.to_string())?;
            let base_dir = plinth_finetune::task::read_meta(&dir).map_err(|e| e.to_string())?.base;
            let base = env.base(&base_dir)?;
            let task = FinetunedTask::load(&op.run, &base).map_err(|e| e.to_string())?;
            self.model = Some((base, task));
        }
        let (base, task) = self.model.as_ref().ok_or("model not loaded")?;
        let (mut kept, mut rejected) = (Vec::new(), Vec::new());
        // The task's reading of each input (a domain's canonical form) or why it has none.
        let inputs: Vec<String> = records.iter().map(|r| r.get(&op.input).map(plain).unwrap_or_default()).collect();
        let (mut checked, mut texts) = (Vec::new(), Vec::new());
        match task.prepare_inputs(env.plugins, &inputs) {
            Ok(readings) => {
                for (r, reading) in records.into_iter().zip(readings) {
                    match reading {
                        Ok(text) => {
                            checked.push(r);
                            texts.push(text);
                        }
                        Err(reason) => rejected.push((r, reason)),
                    }
                }
            }
            // The check itself failed (a panic, a poisoned plugin): the batch is
            // rejected with the reason, as a failed plugin stage's would be.
            Err(e) => rejected.extend(records.into_iter().map(|r| (r, e.to_string()))),
        }
        if checked.is_empty() {
            return Ok((kept, rejected));
        }
        match task.predict_labelled(base, &texts, env.pipeline.batch_size) {
            Ok(predictions) => {
                for (mut r, p) in checked.into_iter().zip(predictions) {
                    match p {
                        Prediction::Value(v) => {
                            r.insert(op.output.clone(), Value::from(round4(v)));
                        }
                        Prediction::Label { label, probability, .. } => {
                            r.insert(op.output.clone(), Value::from(label));
                            r.insert(format!("{}_probability", op.output), Value::from(round4(probability)));
                        }
                        Prediction::Targets(values) => {
                            for (t, v) in values {
                                r.insert(format!("{}_{t}", op.output), Value::from(round4(v)));
                            }
                        }
                    }
                    kept.push(r);
                }
            }
            Err(e) => rejected.extend(checked.into_iter().map(|r| (r, e.to_string()))),
        }
        Ok((kept, rejected))
    }
}
