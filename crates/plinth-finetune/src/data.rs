//! Labelled rows from a plugin, tokenized and batched for the base model.

use crate::FinetuneError;
use plinth_plugin_protocol::{LabelledExample, Plugins, PluginsExt, Split, TaskKind, TaskRequest, TaskSpec};
use plinth_tokenizer::{PlinthTokenizer, Special};
use tch::{Device, Kind, Tensor};

use crate::config::TaskRef;
use crate::Result;

/// One split of a task: token ids (with `<bos>` and `<eos>`) and labels.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    /// Each row's targets: `[class index]` or `[value]`, or one entry per the
    /// spec's `targets` with NaN where the row has none.
    pub labels: Vec<Vec<f64>>,
    pub texts: Vec<String>,
    /// Domain feature indices per row (empty when the task declares none).
    pub features: Vec<Vec<u32>>,
    /// Prompted generation: each row's prompt (empty for other tasks).
    pub prompts: Vec<String>,
    /// Index in `ids` of each row's first loss target: past `<bos>` and the
    /// prompt for prompted generation, else 0 (every real token is a target).
    pub learn_from: Vec<usize>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Reads a task's spec from its plugin (or its file) and checks it.
pub fn task_spec(plugins: &dyn Plugins, task: &TaskRef) -> Result<TaskSpec> {
    if let Some(d) = &task.data {
        return Ok(crate::file_task::load(d, Some(plugins))?.spec);
    }
    plugins.task(&task.plugin, &task.name).map_err(|e| {
        FinetuneError::Plugin(format!("task {e}; `plinth plugins inspect {}` lists its components", task.plugin))
    })
}

/// Asks the task's data component for one split; checks every label.
pub fn fetch_split(
    plugins: &dyn Plugins,
    task: &TaskRef,
    spec: &TaskSpec,
    split: Split,
) -> Result<Vec<LabelledExample>> {
    if let Some(d) = &task.data {
        return Ok(crate::file_task::load(d, Some(plugins))?.split(split).to_vec());
    }
    // The host sets `task` and `split`; a config's request cannot override them.
    let mut options = task.request.clone();
    options.retain(|k, _| k != "task" && k != "split");
    let request = TaskRequest { task: task.name.clone(), split, options };
    let rows = plugins
        .ask(&task.plugin, &spec.data, &request)
        .map_err(|e| FinetuneError::Plugin(format!("data {e} (asked for {split:?})")))?;
    for (i, row) in rows.iter().enumerate() {
        let problem = row_problem(spec, row);
        if let Some(problem) = problem {
            return Err(FinetuneError::Invalid(format!(
                "data {}/{} {split:?} row {i}: {problem}",
                task.plugin, spec.data
            )));
        }
    }
    if rows.is_empty() {
        return Err(FinetuneError::Invalid(format!("data {}/{} has no {split:?} rows", task.plugin, spec.data)));
    }
    Ok(rows)
}

/// What is wrong with a row's label(s) or features for `spec`, if anything.
fn row_problem(spec: &TaskSpec, row: &LabelledExample) -> Option<String> {
    if let Some(f) = spec.features.as_ref().filter(|f| row.features.iter().any(|&i| (i as usize) >= f.size)) {
        return Some(format!("a feature index is past the {} {} dimensions", f.size, f.name));
    }
    if spec.multi_target() {
        if row.targets.len() != spec.targets.len() {
            return Some(format!("{} targets, the task has {}", row.targets.len(), spec.targets.len()));
        }
        let bad = |v: f64| match spec.kind {
            TaskKind::MultiLabel => v != 0.0 && v != 1.0,
            _ => !v.is_finite(),
        };
        return row
            .targets
            .iter()
            .flatten()
            .find(|&&v| bad(v))
            .map(|v| format!("target {v} is not valid for {:?}", spec.kind));
    }
    let ok = match spec.kind {
        TaskKind::Classification => {
            row.label.fract() == 0.0 && row.label >= 0.0 && (row.label as usize) < spec.labels.len()
        }
        TaskKind::Regression => row.label.is_finite(),
        TaskKind::MultiLabel => false, // a multi-label spec always has targets
        TaskKind::Generation => true,
    };
    (!ok).then(|| format!("label {} is not valid for {:?} with {} labels", row.label, spec.kind, spec.labels.len()))
}

/// A row's targets as [`Encoded::labels`] holds them.
pub fn row_targets(row: &LabelledExample) -> Vec<f64> {
    if row.targets.is_empty() {
        vec![row.label]
    } else {
        row.targets.iter().map(|t| t.unwrap_or(f64::NAN)).collect()
    }
}

/// Tokenizes rows as `<bos> text <eos>`, cutting the text to fit `max_len`; a
/// row with a prompt becomes `<bos> prompt text <eos>` with the loss on `text <eos>`
/// (the prompt is kept whole; the text is cut). Prompted rows whose prompt leaves
/// no room for an answer are left out with a warning; none left is an error.
pub fn encode(tokenizer: &PlinthTokenizer, rows: &[LabelledExample], max_len: usize) -> Result<Encoded> {
    let prompted = rows.iter().any(|r| r.prompt.is_some());
    let prompt_ids = if prompted {
        let prompts: Vec<String> = rows.iter().map(|r| r.prompt.clone().unwrap_or_default()).collect();
        tokenizer.encode_batch(&prompts)?
    } else {
        vec![Vec::new(); rows.len()]
    };
    let fits: Vec<bool> = prompt_ids.iter().map(|p| p.len() + 3 <= max_len).collect();
    let too_long = fits.iter().filter(|f| !**f).count();
    if too_long > 0 {
        tracing::warn!(
            rows = too_long,
            max_len,
            "left out rows whose prompt leaves no room for an answer; raise [train] max_len to keep them"
        );
        if too_long == rows.len() {
            return Err(FinetuneError::Invalid(format!(
                "every prompt is longer than max_len = {max_len} allows (prompt + answer + <bos>/<eos>); raise [train] max_len"
            )));
        }
    }
    let rows: Vec<&LabelledExample> = rows.iter().zip(&fits).filter(|(_, f)| **f).map(|(r, _)| r).collect();
    let prompt_ids: Vec<Vec<u32>> = prompt_ids.into_iter().zip(&fits).filter(|(_, f)| **f).map(|(p, _)| p).collect();
    let texts: Vec<String> = rows.iter().map(|r| r.text.clone()).collect();
    let prompts: Vec<String> = rows.iter().map(|r| r.prompt.clone().unwrap_or_default()).collect();
    let (bos, eos) = (tokenizer.id(Special::Bos), tokenizer.id(Special::Eos));
    let mut learn_from = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    let mut cut = 0;
    for (mut t, p) in tokenizer.encode_batch(&texts)?.into_iter().zip(prompt_ids) {
        cut += usize::from(t.len() > max_len - 2 - p.len());
        t.truncate(max_len - 2 - p.len());
        let mut seq = Vec::with_capacity(p.len() + t.len() + 2);
        seq.push(bos);
        seq.extend(&p);
        learn_from.push(if prompted { seq.len() } else { 0 });
        seq.extend(t);
        seq.push(eos);
        ids.push(seq);
    }
    if cut > 0 {
        tracing::warn!(
            rows = cut,
            max_len,
            "rows longer than max_len tokens are cut to fit; raise [train] max_len to keep them whole"
        );
    }
    Ok(Encoded {
        ids,
        labels: rows.iter().map(|r| row_targets(r)).collect(),
        texts,
        features: rows.iter().map(|r| r.features.clone()).collect(),
        prompts: if prompted { prompts } else { Vec::new() },
        learn_from,
    })
}

/// The loss-target mask (B, T) for a right-padded batch: real tokens at or past
/// each row's `learn_from`.
pub fn learn_mask(seqs: &[&[u32]], learn_from: &[usize], device: Device) -> Tensor {
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut mask = Vec::with_capacity(seqs.len() * t);
    for (s, &from) in seqs.iter().zip(learn_from) {
        mask.extend((0..t).map(|j| j >= from && j < s.len()));
    }
    Tensor::from_slice(&mask).view([seqs.len() as i64, t as i64]).to_device(device)
}

/// A right-padded batch: ids (B, T) int64 and the real-token mask (B, T) bool.
pub fn batch(seqs: &[&[u32]], pad: u32, device: Device) -> (Tensor, Tensor) {
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut flat = Vec::with_capacity(seqs.len() * t);
    let mut valid = Vec::with_capacity(seqs.len() * t);
    for s in seqs {
        flat.extend(s.iter().map(|&x| x as i64));
        flat.extend(std::iter::repeat_n(pad as i64, t - s.len()));
        valid.extend(std::iter::repeat_n(true, s.len()));
        valid.extend(std::iter::repeat_n(false, t - s.len()));
    }
    let b = seqs.len() as i64;
    let ids = Tensor::from_slice(&flat).view([b, t as i64]).to_device(device);
    let mask = Tensor::from_slice(&valid).view([b, t as i64]).to_device(device);
    (ids, mask)
}

/// Label tensor for a loss: class ids (B,) int64; or (B, outputs) float, values
/// standardised by each output's `(mean, std)` in `scales` (regression) or 0/1
/// (multi-label), NaN where a row lacks the entry.
pub fn label_tensor(labels: &[Vec<f64>], kind: TaskKind, scales: &[(f64, f64)], device: Device) -> Tensor {
    match kind {
        TaskKind::Classification => {
            Tensor::from_slice(&labels.iter().map(|l| l[0] as i64).collect::<Vec<_>>()).to_device(device)
        }
        TaskKind::Regression | TaskKind::MultiLabel => {
            let width = labels.first().map_or(1, Vec::len) as i64;
            let flat: Vec<f32> = labels
                .iter()
                .flat_map(|row| {
                    row.iter().enumerate().map(|(j, &v)| match scales.get(j) {
                        Some(&(mean, std)) if kind == TaskKind::Regression => ((v - mean) / std) as f32,
                        _ => v as f32,
                    })
                })
                .collect();
            Tensor::from_slice(&flat).view([-1, width]).to_device(device)
        }
        TaskKind::Generation => Tensor::zeros([labels.len() as i64], (Kind::Float, device)),
    }
}

/// Each output's `(mean, std)` over the rows that have it (std 1 when constant or
/// absent): regression learns standardised targets and predicts in their units.
pub fn label_scales(labels: &[Vec<f64>]) -> Vec<(f64, f64)> {
    let width = labels.first().map_or(1, Vec::len);
    (0..width)
        .map(|j| {
            let known: Vec<f64> = labels.iter().map(|r| r[j]).filter(|v| !v.is_nan()).collect();
            let n = known.len().max(1) as f64;
            let mean = known.iter().sum::<f64>() / n;
            let std = (known.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt();
            (mean, if std > 0.0 { std } else { 1.0 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompted_rows_learn_only_their_answer() {
        let mask = learn_mask(&[&[1, 5, 6, 7, 2], &[1, 8, 2]], &[3, 0], Device::Cpu);
        let got = Vec::<bool>::try_from(mask.view([-1])).expect("mask");
        assert_eq!(got, [false, false, false, true, true, true, true, true, false, false]);
    }

    #[test]
    fn batches_pad_right_and_mask_padding() {
        let (ids, mask) = batch(&[&[1, 5, 2], &[1, 2]], 0, Device::Cpu);
        assert_eq!(ids.size(), [2, 3]);
        assert_eq!(Vec::<i64>::try_from(ids.view([-1])).expect("ids"), [1, 5, 2, 1, 2, 0]);
        assert_eq!(Vec::<bool>::try_from(mask.view([-1])).expect("mask"), [true, true, true, true, true, false]);
    }
}
