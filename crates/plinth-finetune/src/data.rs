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
    pub labels: Vec<f64>,
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
        return Ok(crate::file_task::load(d)?.spec);
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
        return Ok(crate::file_task::load(d)?.split(split).to_vec());
    }
    // The host sets `task` and `split`; a config's request cannot override them.
    let mut options = task.request.clone();
    options.retain(|k, _| k != "task" && k != "split");
    let request = TaskRequest { task: task.name.clone(), split, options };
    let rows = plugins
        .ask(&task.plugin, &spec.data, &request)
        .map_err(|e| FinetuneError::Plugin(format!("data {e} (asked for {split:?})")))?;
    for (i, row) in rows.iter().enumerate() {
        let ok = match spec.kind {
            TaskKind::Classification => {
                row.label.fract() == 0.0 && row.label >= 0.0 && (row.label as usize) < spec.labels.len()
            }
            TaskKind::Regression => row.label.is_finite(),
            TaskKind::Generation => true,
        } && spec.features.as_ref().is_none_or(|f| row.features.iter().all(|&i| (i as usize) < f.size));
        if !ok {
            return Err(FinetuneError::Invalid(format!(
                "data {}/{} {split:?} row {i} has label {} which is not valid for {:?} with {} labels",
                task.plugin,
                spec.data,
                row.label,
                spec.kind,
                spec.labels.len()
            )));
        }
    }
    if rows.is_empty() {
        return Err(FinetuneError::Invalid(format!("data {}/{} has no {split:?} rows", task.plugin, spec.data)));
    }
    Ok(rows)
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
        labels: rows.iter().map(|r| r.label).collect(),
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

/// Label tensor for a loss: class ids (B,) int64, or standardised values (B, 1) float.
pub fn label_tensor(labels: &[f64], kind: TaskKind, scale: (f64, f64), device: Device) -> Tensor {
    match kind {
        TaskKind::Classification => {
            Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>()).to_device(device)
        }
        TaskKind::Regression => {
            Tensor::from_slice(&labels.iter().map(|&l| ((l - scale.0) / scale.1) as f32).collect::<Vec<_>>())
                .view([-1, 1])
                .to_kind(Kind::Float)
                .to_device(device)
        }
        TaskKind::Generation => Tensor::zeros([labels.len() as i64], (Kind::Float, device)),
    }
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
