//! A finetuned task on disk and in memory: the adapter and head (or, for `full`
//! mode, a whole copy of the weights) bound to its base by the base's SHA-256.
//!
//! ```text
//! best/                     (and state/, which adds optimizer.safetensors and progress.json)
//!   task.json               FinetuneMeta: task spec, mode, LoRA settings, head, base hash
//!   task.safetensors        lora.blocks.{i}.{proj}.lora_{a,b}, head.proj.{weight,bias}
//!   base.safetensors        full mode only: every base weight
//! ```
//!
//! Several tasks load onto one [`Checkpoint`]: each keeps its own adapter and head
//! and borrows the base weights, so switching task per request costs nothing.

use std::path::{Path, PathBuf};

use plinth_checkpoint::Checkpoint;
use plinth_model::checkpoint::load_into;
use plinth_model::heads::{HeadConfig, TaskHead};
use plinth_model::lora::{LoraAdapter, LoraConfig};
use plinth_model::{AttentionMode, ForwardOptions, Transformer};
use plinth_plugin_protocol::{CompletionSpec, Outcome, Plugins, PluginsExt, Record, TaskKind, TaskSpec};
use plinth_tokenizer::Special;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::config::Mode;
use crate::data::batch;
use crate::FinetuneError;
use crate::Result;

pub const TASK_META: &str = "task.json";
/// The folder of a finetune run that holds its best task (what eval and predict load).
pub const BEST_DIR: &str = "best";
pub const TASK_WEIGHTS: &str = "task.safetensors";
pub const BASE_WEIGHTS: &str = "base.safetensors";

/// What `task.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneMeta {
    pub plugin: String,
    pub task: String,
    pub spec: TaskSpec,
    /// Extra data-request fields the run used (`[task] request`), so `eval` asks for the same split.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub request: serde_json::Map<String, serde_json::Value>,
    /// A file task's data settings, so `eval` reads the same file the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<crate::file_task::FileTaskConfig>,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraConfig>,
    /// The task head; none for generation tasks (the LM head is the base's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadConfig>,
    /// The base checkpoint folder the run used (informative; the hash is what binds).
    pub base: PathBuf,
    /// SHA-256 of the base's `model.safetensors`.
    pub base_sha256: String,
    pub max_len: usize,
    /// Regression targets are learnt standardised: each output's (mean, std) over
    /// the training labels (one pair per output; a single pair reads as one output).
    #[serde(deserialize_with = "scales")]
    pub label_scale: Vec<(f64, f64)>,
    pub step: u64,
    /// Validation value of `spec.metric` at `step`; none before the first
    /// validation, and for tasks that were not trained here (an imported adapter).
    #[serde(default)]
    pub metric_value: Option<f64>,
}

/// Reads `label_scale` as a list of `[mean, std]` pairs, or as the one pair that
/// single-output tasks wrote before multi-output regression.
fn scales<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<(f64, f64)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scales {
        One((f64, f64)),
        Many(Vec<(f64, f64)>),
    }
    Ok(match Scales::deserialize(d)? {
        Scales::One(pair) => vec![pair],
        Scales::Many(pairs) => pairs,
    })
}

/// The trainable part of a task, built on a base model's config.
#[derive(Debug)]
pub struct TaskParts {
    pub vs: nn::VarStore,
    pub adapter: Option<LoraAdapter>,
    pub head: Option<TaskHead>,
}

impl TaskParts {
    pub fn new(
        base: &Transformer,
        mode: Mode,
        lora: Option<&LoraConfig>,
        head: Option<&HeadConfig>,
        device: Device,
    ) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let adapter = match (mode, lora) {
            (Mode::Lora, Some(cfg)) => Some(LoraAdapter::new(&(vs.root() / "lora"), base.config(), cfg)?),
            (Mode::Lora, None) => return Err(FinetuneError::Invalid("lora mode needs LoRA settings".into())),
            _ => None,
        };
        let head = head.map(|h| TaskHead::new(&(vs.root() / "head"), base.config().d_model, h)).transpose()?;
        Ok(TaskParts { vs, adapter, head })
    }
}

/// Predictions for token sequences: class probabilities (N, K), label
/// probabilities (N, labels), or values (N, outputs) in the labels' own units.
/// Rows are run shortest first (less padding) and returned in input order.
#[allow(clippy::too_many_arguments)]
pub fn predict_ids(
    model: &Transformer,
    mode: AttentionMode,
    parts: &TaskParts,
    kind: TaskKind,
    scale: &[(f64, f64)],
    ids: &[Vec<u32>],
    pad: u32,
    batch_size: usize,
) -> Result<Tensor> {
    let device = model.device();
    let head = parts.head.as_ref().ok_or_else(|| {
        FinetuneError::Invalid("a generation task has no prediction head; generate with it instead".into())
    })?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let column = |f: fn(&(f64, f64)) -> f64| {
        Tensor::from_slice(&scale.iter().map(f).collect::<Vec<f64>>())
            .to_kind(Kind::Float)
            .to_device(device)
            .view([1, -1])
    };
    let (mean, std) = (column(|s| s.0), column(|s| s.1));
    let mut outs = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for chunk in order.chunks(batch_size.max(1)) {
            let seqs: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let (x, valid) = batch(&seqs, pad, device);
            let opts = ForwardOptions { mode, adapter: parts.adapter.as_ref(), padding: Some(&valid) };
            let hidden = model.hidden_with(&x, None, &opts)?;
            let out = head.forward(&hidden, &valid).to_kind(Kind::Float);
            outs.push(match kind {
                TaskKind::Classification => out.softmax(-1, Kind::Float),
                TaskKind::MultiLabel => out.sigmoid(),
                TaskKind::Regression | TaskKind::Generation => out * &std + &mean,
            });
        }
        Ok(())
    })?;
    if outs.is_empty() {
        return Ok(Tensor::zeros([0, 1], (Kind::Float, Device::Cpu)));
    }
    let sorted = Tensor::cat(&outs, 0).to_device(Device::Cpu);
    let mut inverse = vec![0i64; order.len()];
    for (pos, &i) in order.iter().enumerate() {
        inverse[i] = pos as i64;
    }
    Ok(sorted.index_select(0, &Tensor::from_slice(&inverse)))
}

/// Metrics of a task's current weights on encoded rows: perplexity for generation,
/// otherwise the task's classification or regression metrics of its predictions.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_encoded(
    model: &Transformer,
    mode: AttentionMode,
    parts: &TaskParts,
    spec: &TaskSpec,
    scale: &[(f64, f64)],
    data: &crate::data::Encoded,
    pad: u32,
    batch_size: usize,
) -> Result<crate::metrics::Metrics> {
    if spec.kind == TaskKind::Generation {
        let adapter = parts.adapter.as_ref();
        return crate::lm::perplexity(model, adapter, &data.ids, &data.learn_from, pad, batch_size, model.device());
    }
    let pred = predict_ids(model, mode, parts, spec.kind, scale, &data.ids, pad, batch_size)?;
    Ok(crate::baselines::score(spec, &pred, data))
}

/// A finetuned task's answer for one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// Regression: the value, in the task's units.
    Value(f64),
    /// Classification: the most probable label, its probability, and every label's
    /// probability in the spec's label order.
    Label { label: String, probability: f64, probabilities: Vec<(String, f64)> },
    /// Multi-output regression: each target's value; multi-label: each label's
    /// probability; in the spec's target order.
    Targets(Vec<(String, f64)>),
}

/// A finetuned task loaded for inference on a base checkpoint.
#[derive(Debug)]
pub struct FinetunedTask {
    pub meta: FinetuneMeta,
    pub dir: PathBuf,
    parts: TaskParts,
    /// Full finetuning: this task's own copy of the base weights.
    own_base: Option<(nn::VarStore, Transformer)>,
}

/// The folder holding `task.json`: `dir` itself or `dir/best`.
pub fn resolve_dir(dir: &Path) -> Result<PathBuf> {
    for d in [dir.to_path_buf(), dir.join(BEST_DIR)] {
        if d.join(TASK_META).exists() {
            return Ok(d);
        }
    }
    Err(FinetuneError::Checkpoint(format!(
        "{} holds no finetuned task ({TASK_META} in it or in its best/ folder); pass a finetune run's out_dir",
        dir.display()
    )))
}

pub fn read_meta(dir: &Path) -> Result<FinetuneMeta> {
    let path = dir.join(TASK_META);
    let text = std::fs::read_to_string(&path).map_err(|source| FinetuneError::Io { path: path.clone(), source })?;
    serde_json::from_str(&text).map_err(|e| FinetuneError::Config { path, message: e.to_string() })
}

impl FinetunedTask {
    /// Loads the task in `dir` (a run's out_dir or its `best/`) onto `base`,
    /// refusing a task trained on different base weights.
    pub fn load(dir: &Path, base: &Checkpoint) -> Result<Self> {
        let dir = resolve_dir(dir)?;
        let meta = read_meta(&dir)?;
        let sha = plinth_checkpoint::checkpoint_sha256(&base.dir)?;
        if sha != meta.base_sha256 {
            return Err(FinetuneError::Checkpoint(format!(
                "{} was finetuned on the base with weights SHA-256 {} but {} has {sha}; load it on the base it was trained on ({})",
                dir.display(),
                meta.base_sha256,
                base.dir.display(),
                meta.base.display()
            )));
        }
        let device = base.model.device();
        let mut parts = TaskParts::new(&base.model, meta.mode, meta.lora.as_ref(), meta.head.as_ref(), device)?;
        load_into(&mut parts.vs, &dir.join(TASK_WEIGHTS))?;
        parts.vs.freeze();
        if let Some(a) = parts.adapter.as_mut() {
            a.set_training(false);
        }
        let own_base = match meta.mode {
            Mode::Full => {
                let mut vs = nn::VarStore::new(device);
                let model = Transformer::new(&vs.root(), base.model.config())?;
                load_into(&mut vs, &dir.join(BASE_WEIGHTS))?;
                vs.freeze();
                Some((vs, model))
            }
            _ => None,
        };
        Ok(FinetunedTask { meta, dir, parts, own_base })
    }

    /// Predictions for texts: class probabilities (N, K) or values (N, 1).
    pub fn predict(&self, base: &Checkpoint, texts: &[String], batch_size: usize) -> Result<Tensor> {
        let rows: Vec<plinth_plugin_protocol::LabelledExample> =
            texts.iter().map(|t| plinth_plugin_protocol::LabelledExample::new(t.clone(), 0.0)).collect();
        let enc = crate::data::encode(&base.tokenizer, &rows, self.meta.max_len)?;
        self.predict_ids(base, &enc.ids, batch_size)
    }

    /// Each input as the task reads it, or why it cannot: a file task whose input
    /// has a domain gets the domain's canonical form (a molecule's canonical
    /// SMILES, as it was trained on) or its reason; a plugin task with an input
    /// check gets the input unchanged or the check's reason; other inputs pass.
    pub fn prepare_inputs(
        &self,
        plugins: &dyn Plugins,
        inputs: &[String],
    ) -> Result<Vec<std::result::Result<String, String>>> {
        if let Some(component) = self.meta.data.as_ref().and_then(|d| d.domain_component()) {
            let (plugin, name) = (component.0.as_str(), component.1.as_str());
            let answers = crate::file_task::ask_domain(plugins, (plugin, name), inputs.to_vec(), false, None)?;
            return Ok(answers.into_iter().map(|a| a.reject.map_or(Ok(a.value), Err)).collect());
        }
        match &self.meta.spec.input_check {
            Some(check) => Ok(plugins
                .check_inputs(&self.meta.plugin, check, inputs)
                .map_err(|e| FinetuneError::Plugin(e.to_string()))?
                .into_iter()
                .zip(inputs)
                .map(|(verdict, input)| verdict.map_or(Ok(input.clone()), Err))
                .collect()),
            None => Ok(inputs.iter().cloned().map(Ok).collect()),
        }
    }

    /// True when [`Self::prepare_inputs`] asks a plugin (a domain or an input check).
    pub fn needs_plugins(&self) -> bool {
        self.meta.spec.input_check.is_some() || self.meta.data.as_ref().is_some_and(|d| d.domain.is_some())
    }

    /// How many tokens each of `texts` takes and how many the task reads
    /// (`max_len` less `<bos>` and `<eos>`); [`Self::predict`] cuts a longer text.
    pub fn input_tokens(&self, base: &Checkpoint, texts: &[String]) -> Result<(Vec<usize>, usize)> {
        let lens = base.tokenizer.encode_batch(texts)?.iter().map(Vec::len).collect();
        Ok((lens, self.meta.max_len.saturating_sub(2)))
    }

    /// The task's answer for each of `texts`: a value (regression) or the most
    /// probable label with every label's probability (classification).
    pub fn predict_labelled(&self, base: &Checkpoint, texts: &[String], batch_size: usize) -> Result<Vec<Prediction>> {
        let out = self.predict(base, texts, batch_size)?;
        let rows = Vec::<Vec<f64>>::try_from(out.to_kind(tch::Kind::Double))?;
        let labels = &self.meta.spec.labels;
        Ok(rows
            .into_iter()
            .map(|row| match self.meta.spec.kind {
                TaskKind::Classification => {
                    // The first of equally probable labels wins.
                    let (best, p) =
                        row.iter().enumerate().fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
                    Prediction::Label {
                        label: labels[best].clone(),
                        probability: p,
                        probabilities: labels.iter().cloned().zip(row).collect(),
                    }
                }
                _ if self.meta.spec.multi_target() => {
                    Prediction::Targets(self.meta.spec.targets.iter().cloned().zip(row).collect())
                }
                TaskKind::Regression | TaskKind::MultiLabel | TaskKind::Generation => Prediction::Value(row[0]),
            })
            .collect())
    }

    pub fn predict_ids(&self, base: &Checkpoint, ids: &[Vec<u32>], batch_size: usize) -> Result<Tensor> {
        let model = self.own_base.as_ref().map_or(&base.model, |(_, m)| m);
        predict_ids(
            model,
            base.mode(),
            &self.parts,
            self.meta.spec.kind,
            &self.meta.label_scale,
            ids,
            base.tokenizer.id(Special::Pad),
            batch_size,
        )
    }

    /// Metrics on labelled rows from elsewhere (an external test file): the task's
    /// own metrics, as `evaluate` reports them for a split.
    pub fn evaluate_rows(
        &self,
        base: &Checkpoint,
        rows: &[plinth_plugin_protocol::LabelledExample],
        batch_size: usize,
    ) -> Result<crate::metrics::Metrics> {
        let enc = crate::data::encode(&base.tokenizer, rows, self.meta.max_len)?;
        let m = &self.meta;
        let pad = base.tokenizer.id(Special::Pad);
        evaluate_encoded(self.model(base), base.mode(), &self.parts, &m.spec, &m.label_scale, &enc, pad, batch_size)
    }

    /// Metrics on one split of the task's data, asked from its plugin with the
    /// request the run used. A prompted generation task also completes
    /// `max_completions` prompts spread through the split (0: all) and reports the plugin's scores, with
    /// the retrieval baseline's as `retrieval.<metric>`, and writes the
    /// completions to `completions` (JSON lines) when given.
    pub fn evaluate(
        &self,
        base: &Checkpoint,
        plugins: &dyn Plugins,
        split: plinth_plugin_protocol::Split,
        batch_size: usize,
        max_completions: usize,
        completions: Option<&std::path::Path>,
    ) -> Result<crate::metrics::Metrics> {
        let task = crate::config::TaskRef {
            plugin: self.meta.plugin.clone(),
            name: self.meta.task.clone(),
            data: self.meta.data.clone(),
            request: self.meta.request.clone(),
            max_train: 0,
        };
        let encoded = |split| -> Result<crate::data::Encoded> {
            let rows = crate::data::fetch_split(plugins, &task, &self.meta.spec, split)?;
            crate::data::encode(&base.tokenizer, &rows, self.meta.max_len)
        };
        let enc = encoded(split)?;
        let model = self.model(base);
        let m = &self.meta;
        let pad = base.tokenizer.id(Special::Pad);
        let mut metrics =
            evaluate_encoded(model, base.mode(), &self.parts, &m.spec, &m.label_scale, &enc, pad, batch_size)?;
        if let Some(spec) = &self.completion_spec(plugins) {
            let adapter = self.parts.adapter.as_ref();
            let task = self.prompted(plugins, spec);
            let (scores, rows) =
                crate::complete::evaluate(model, &base.tokenizer, adapter, task, &enc, max_completions)?;
            if let Some(path) = completions {
                crate::complete::write_completions(path, &rows)?;
            }
            metrics.extend(scores);
            let train = encoded(plinth_plugin_protocol::Split::Train)?;
            let retrieval =
                crate::complete::retrieval_baseline(plugins, &m.plugin, spec, &train, &enc, max_completions)?;
            metrics.extend(retrieval.into_iter().map(|(k, v)| (format!("retrieval.{k}"), v)));
        }
        Ok(metrics)
    }

    /// How a prompted task decodes: the plugin's current settings (budget,
    /// stops, guide: not part of what was trained, so a plugin update reaches
    /// runs made before it), else those the run saved.
    fn completion_spec(&self, plugins: &dyn Plugins) -> Option<CompletionSpec> {
        let saved = self.meta.spec.completion.clone()?;
        let current = plugins.task(&self.meta.plugin, &self.meta.task).ok().and_then(|s| s.completion);
        Some(current.unwrap_or(saved))
    }

    /// This task as the host completes it with `spec`.
    fn prompted<'a>(&'a self, plugins: &'a dyn Plugins, spec: &'a CompletionSpec) -> crate::complete::Prompted<'a> {
        crate::complete::Prompted { plugins, plugin: &self.meta.plugin, spec, request: &self.meta.request }
    }

    fn model<'a>(&'a self, base: &'a Checkpoint) -> &'a Transformer {
        self.own_base.as_ref().map_or(&base.model, |(_, m)| m)
    }

    /// Logits (B, T, V) of the task's model for token ids: the base with this
    /// task's LoRA adapter (or its own weights in full mode).
    pub fn logits(&self, base: &Checkpoint, ids: &Tensor) -> Result<Tensor> {
        let opts = ForwardOptions { adapter: self.parts.adapter.as_ref(), ..ForwardOptions::new(base.mode()) };
        Ok(tch::no_grad(|| self.model(base).forward_with(ids, None, &opts))?)
    }

    /// A prompted generation task's answer to a request: the plugin's prompt stage
    /// frames it, the adapter completes it greedily; with `tries` > 1 and an
    /// output check, further sampled completions (`sampling`, seeds counting up
    /// from its seed) are drawn until one passes. Returns the prompt, the
    /// completion, and the check's complaint about it (None: it passed or there is
    /// no check).
    pub fn answer(
        &self,
        base: &Checkpoint,
        plugins: &dyn Plugins,
        request: &str,
        sampling: &plinth_generate::SamplingConfig,
        tries: usize,
    ) -> Result<(String, String, Option<String>)> {
        let m = &self.meta;
        let Some(spec) = &self.completion_spec(plugins) else {
            return Err(FinetuneError::Invalid(format!(
                "{}/{} is not a prompted generation task; use `plinth predict` or `plinth generate --adapter`",
                m.plugin, m.task
            )));
        };
        let prompt = self.frame(plugins, spec, request)?;
        let (model, adapter) = (self.model(base), self.parts.adapter.as_ref());
        let mut first: Option<(String, Option<String>)> = None;
        for attempt in 0..tries.max(1) {
            let cfg = if attempt == 0 {
                crate::complete::greedy(spec)
            } else {
                plinth_generate::SamplingConfig {
                    max_new_tokens: spec.max_new_tokens,
                    stop: spec.stop.clone(),
                    repetition_penalty: spec.repetition_penalty.max(sampling.repetition_penalty),
                    seed: sampling.seed.wrapping_add(attempt as u64),
                    ..sampling.clone()
                }
            };
            let task = self.prompted(plugins, spec);
            let text = crate::complete::complete(model, &base.tokenizer, adapter, task, &prompt, &cfg)?;
            let complaint = match &spec.output_check {
                None => None,
                Some(stage) => crate::complete::check_completions(task, stage, &prompt, &[&text]).swap_remove(0),
            };
            if complaint.is_none() {
                return Ok((prompt, text, None));
            }
            first.get_or_insert((text, complaint));
        }
        let (text, complaint) = first.unwrap_or_default();
        Ok((prompt, text, complaint))
    }

    /// The task's prompt for a request, from the plugin's prompt stage.
    fn frame(&self, plugins: &dyn Plugins, spec: &CompletionSpec, request: &str) -> Result<String> {
        let m = &self.meta;
        let bad = |e: String| FinetuneError::Plugin(format!("{}/{}: {e}", m.plugin, spec.prompt_stage));
        let record = Record::from_iter([("input".to_string(), serde_json::Value::from(request))]);
        let session =
            plugins.open_stage(&m.plugin, &spec.prompt_stage, &serde_json::Value::Null).map_err(|e| bad(e.message))?;
        match session.run(&[record]).map_err(|e| bad(e.message))?.pop() {
            Some(Outcome::Add(added)) => added
                .get("prompt")
                .and_then(|p| p.as_str())
                .map(String::from)
                .ok_or_else(|| bad("added no \"prompt\" string".into())),
            Some(Outcome::Reject(why)) => Err(bad(why)),
            None => Err(bad("answered nothing".into())),
        }
    }

    /// Continues `prompt` with the task's adapter on the base (generation tasks).
    pub fn generate(
        &self,
        base: &Checkpoint,
        prompt: &str,
        cfg: &plinth_generate::SamplingConfig,
    ) -> Result<plinth_generate::Generation> {
        if self.meta.spec.kind != TaskKind::Generation {
            return Err(FinetuneError::Invalid(format!(
                "{} is a {:?} task; generate with a generation task, predict with this one",
                self.meta.task, self.meta.spec.kind
            )));
        }
        let model = self.model(base);
        plinth_generate::generate(
            model,
            &base.tokenizer,
            plinth_generate::Request::text(prompt, cfg).adapter(self.parts.adapter.as_ref()),
        )
        .map_err(|e| FinetuneError::Invalid(e.to_string()))
    }

    /// Continues `prompt` with the task: a prompted task as its evaluation and
    /// `plinth generate --plugin` do (under its guide, when it has one), any
    /// other generation task as [`FinetunedTask::generate`].
    pub fn complete(
        &self,
        base: &Checkpoint,
        plugins: &dyn Plugins,
        prompt: &str,
        cfg: &plinth_generate::SamplingConfig,
    ) -> Result<String> {
        match self.completion_spec(plugins) {
            Some(spec) if self.meta.spec.kind == TaskKind::Generation => {
                let adapter = self.parts.adapter.as_ref();
                let task = self.prompted(plugins, &spec);
                crate::complete::complete(self.model(base), &base.tokenizer, adapter, task, prompt, cfg)
            }
            _ => Ok(self.generate(base, prompt, cfg)?.text),
        }
    }

    /// Fills the blank in `text` with the task's adapter on a masked base
    /// (generation tasks: the base's own LM head, adapted).
    pub fn fill(&self, base: &Checkpoint, text: &str, max_span: usize) -> Result<plinth_generate::Fill> {
        if self.meta.spec.kind != TaskKind::Generation {
            return Err(FinetuneError::Invalid(format!(
                "{} is a {:?} task; fill with a generation task, predict with this one",
                self.meta.task, self.meta.spec.kind
            )));
        }
        let model = self.model(base);
        plinth_generate::fill_masked_with(model, &base.tokenizer, text, max_span, self.parts.adapter.as_ref())
            .map_err(|e| FinetuneError::Invalid(e.to_string()))
    }

    pub fn resident_bytes(&self) -> usize {
        let count = |vs: &nn::VarStore| {
            vs.variables().values().map(|t| t.numel() * t.kind().elt_size_in_bytes()).sum::<usize>()
        };
        count(&self.parts.vs) + self.own_base.as_ref().map_or(0, |(vs, _)| count(vs))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_scales_read_as_one_pair_or_a_list() {
        #[derive(serde::Deserialize)]
        struct Scales {
            #[serde(deserialize_with = "super::scales")]
            label_scale: Vec<(f64, f64)>,
        }
        let one: Scales = serde_json::from_str(r#"{"label_scale": [1.5, 2.0]}"#).expect("one pair");
        assert_eq!(one.label_scale, [(1.5, 2.0)], "task.json files written before multi-output regression");
        let many: Scales = serde_json::from_str(r#"{"label_scale": [[1.5, 2.0], [0.0, 1.0]]}"#).expect("pairs");
        assert_eq!(many.label_scale, [(1.5, 2.0), (0.0, 1.0)]);
    }
}
