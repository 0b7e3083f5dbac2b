//! `generate`: texts from a base checkpoint (optionally with a finetuned
//! generation task's adapter): `samples` of them from `prompt` as a source, or one
//! per record continuing its `prompt_field`.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use plinth_checkpoint::Checkpoint;
use plinth_finetune::FinetunedTask;
use plinth_generate::SamplingConfig;
use plinth_plugin_protocol::{Plugins, TaskKind};
use serde::Deserialize;
use serde_json::Value;

use super::{Batch, CheckCx, Checked, Env, OpRun, Operator};
use crate::records::Record;
use crate::FieldType;
use crate::StageError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateToml {
    checkpoint: PathBuf,
    /// A finetuned generation task whose adapter is applied.
    adapter: Option<PathBuf>,
    /// As a source: how many texts (default 1).
    samples: Option<usize>,
    /// As a source: the prompt every text continues (default empty).
    prompt: Option<String>,
    /// Continue each record's field instead of being a source.
    prompt_field: Option<String>,
    /// Where the text goes (default `text`).
    field: Option<String>,
    temperature: Option<f64>,
    top_k: Option<usize>,
    top_p: Option<f64>,
    max_tokens: Option<usize>,
    seed: Option<u64>,
    stop: Option<Vec<String>>,
    repetition_penalty: Option<f64>,
    /// Strip surrounding whitespace (default); `false` keeps it, for continuations
    /// whose leading newline and indentation matter.
    trim: Option<bool>,
    /// Add `provenance`: JSON naming the checkpoint (path and weights SHA-256), the
    /// adapter, the prompt, the seed and the sampling settings of each text.
    provenance: Option<bool>,
}

impl GenerateToml {
    pub fn check(self, cx: &CheckCx) -> Result<Checked, StageError> {
        let mut schema = cx.schema.clone();
        let field = self.field.unwrap_or_else(|| "text".into());
        match &self.prompt_field {
            Some(pf) => cx.require(pf, Some(FieldType::String))?,
            None => cx.source_only("generate")?,
        }
        let sampling = SamplingConfig {
            max_new_tokens: self.max_tokens.unwrap_or(128),
            temperature: self.temperature.unwrap_or(1.0),
            top_k: self.top_k.unwrap_or(0),
            top_p: self.top_p.unwrap_or(1.0),
            seed: self.seed.unwrap_or(0),
            stop: self.stop.unwrap_or_default(),
            repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
            ..Default::default()
        };
        sampling.validate()?;
        if self.samples == Some(0) {
            return Err("samples must be at least 1".to_string().into());
        }
        // The base must be there now, not when the first batch reaches this stage.
        plinth_model::checkpoint::load_config(&self.checkpoint)
            .map_err(|e| format!("checkpoint {}: {e}", self.checkpoint.display()))?;
        schema.insert(field.clone(), FieldType::String);
        let provenance = self.provenance.unwrap_or(false);
        if provenance {
            schema.insert("provenance".into(), FieldType::String);
        }
        let adapter = match &self.adapter {
            Some(a) => {
                let dir = plinth_finetune::task::resolve_dir(a).map_err(|e| e.to_string())?;
                let meta = plinth_finetune::task::read_meta(&dir).map_err(|e| e.to_string())?;
                if meta.spec.kind != TaskKind::Generation {
                    return Err(format!(
                        "adapter {} is a {:?} task, not a generation task",
                        a.display(),
                        meta.spec.kind
                    )
                    .into());
                }
                Some(dir)
            }
            None => None,
        };
        let op = Generate {
            checkpoint: self.checkpoint,
            adapter,
            samples: self.samples.unwrap_or(1),
            prompt: self.prompt.unwrap_or_default(),
            prompt_field: self.prompt_field,
            field,
            sampling,
            trim: self.trim.unwrap_or(true),
            provenance,
        };
        Ok((Arc::new(op), schema))
    }
}

#[derive(Debug)]
struct Generate {
    checkpoint: PathBuf,
    adapter: Option<PathBuf>,
    samples: usize,
    prompt: String,
    prompt_field: Option<String>,
    field: String,
    sampling: SamplingConfig,
    trim: bool,
    provenance: bool,
}

impl Operator for Generate {
    fn name(&self) -> String {
        "generate".into()
    }

    fn source(&self) -> Result<Option<Vec<Record>>, StageError> {
        Ok(self.prompt_field.is_none().then(|| vec![Record::new(); self.samples]))
    }

    fn open<'a>(&'a self, _: &Env<'a>) -> Result<Box<dyn OpRun + 'a>, StageError> {
        Ok(Box::new(Generating { op: self, model: None, done: 0, weights_sha256: None }))
    }
}

struct Generating<'a> {
    op: &'a Generate,
    /// Loaded on the first batch: the base, and the task when there is an adapter.
    model: Option<(Rc<Checkpoint>, Option<FinetunedTask>)>,
    /// Records kept or rejected so far: seeds count through them.
    done: usize,
    /// The checkpoint's weights SHA-256, read once for provenance.
    weights_sha256: Option<String>,
}

impl OpRun for Generating<'_> {
    fn batch(&mut self, env: &mut Env<'_>, records: Vec<Record>) -> Result<Batch, StageError> {
        let op = self.op;
        if self.model.is_none() {
            let base = env.base(&op.checkpoint)?;
            let task =
                op.adapter.as_ref().map(|a| FinetunedTask::load(a, &base)).transpose().map_err(|e| e.to_string())?;
            self.model = Some((base, task));
        }
        let (mut kept, mut rejected) = (Vec::new(), Vec::new());
        for (i, mut r) in records.into_iter().enumerate() {
            let prompt = match &op.prompt_field {
                Some(pf) => r.get(pf).and_then(Value::as_str).unwrap_or("").to_string(),
                None => op.prompt.clone(),
            };
            let seed = op.sampling.seed.wrapping_add((self.done + i) as u64);
            let (base, task) = self.model.as_ref().ok_or("model not loaded")?;
            match generate_one(base, task.as_ref(), env.plugins, &prompt, &op.sampling, seed, op.trim) {
                Ok(text) => {
                    r.insert(op.field.clone(), Value::from(text));
                    if op.provenance {
                        r.insert("provenance".into(), self.provenance(&prompt, seed)?);
                    }
                    kept.push(r);
                }
                Err(e) => rejected.push((r, e.0)),
            }
        }
        self.done += kept.len() + rejected.len();
        Ok((kept, rejected))
    }
}

impl Generating<'_> {
    /// The `provenance` field of one generated text.
    fn provenance(&mut self, prompt: &str, seed: u64) -> Result<Value, StageError> {
        let op = self.op;
        if self.weights_sha256.is_none() {
            let sha = plinth_checkpoint::checkpoint_sha256(&op.checkpoint).map_err(|e| e.to_string())?;
            self.weights_sha256 = Some(sha);
        }
        let s = &op.sampling;
        let p = serde_json::json!({
            "checkpoint": op.checkpoint.display().to_string(),
            "weights_sha256": self.weights_sha256,
            "adapter": op.adapter.as_deref().map(|a: &Path| a.display().to_string()),
            "prompt": prompt,
            "seed": seed,
            "temperature": s.temperature,
            "top_k": s.top_k,
            "top_p": s.top_p,
            "max_tokens": s.max_new_tokens,
            "repetition_penalty": s.repetition_penalty,
        });
        Ok(Value::from(p.to_string()))
    }
}

fn generate_one(
    base: &Checkpoint,
    task: Option<&FinetunedTask>,
    plugins: &dyn Plugins,
    prompt: &str,
    sampling: &SamplingConfig,
    seed: u64,
    trim: bool,
) -> Result<String, StageError> {
    let cfg = SamplingConfig { seed, ..sampling.clone() };
    let text = match task {
        Some(t) => t.complete(base, plugins, prompt, &cfg).map_err(|e| e.to_string())?,
        None => plinth_generate::generate(&base.model, &base.tokenizer, plinth_generate::Request::text(prompt, &cfg))
            .map(|g| g.text)
            .map_err(|e| e.to_string())?,
    };
    Ok(if trim { text.trim().to_string() } else { text })
}
