//! Generation tasks: next-token cross-entropy of a causal base (with a LoRA adapter)
//! on a task's texts, and perplexity over a split.

use plinth_model::lora::LoraAdapter;
use plinth_model::{AttentionMode, ForwardOptions, Transformer};
use tch::{Device, Kind, Reduction, Tensor};

use crate::data::{batch, learn_mask};
use crate::metrics::Metrics;
use crate::Result;

/// Mean next-token cross-entropy of a right-padded batch (ids and real-token mask
/// (B, T)) over the tokens `learn` marks (the real ones, or only a prompted row's
/// answer), and how many tokens it averages.
pub fn lm_loss(
    model: &Transformer,
    ids: &Tensor,
    valid: &Tensor,
    learn: &Tensor,
    adapter: Option<&LoraAdapter>,
) -> Result<(Tensor, i64)> {
    let opts = ForwardOptions { mode: AttentionMode::Causal, adapter, padding: Some(valid) };
    let logits = model.forward_with(ids, None, &opts)?; // (B, T, V)
    let t = ids.size()[1];
    let v = logits.size()[2];
    let real = learn.narrow(1, 1, t - 1); // (B, T-1): positions whose token is predicted
    let targets = ids.narrow(1, 1, t - 1).masked_fill(&real.logical_not(), -100);
    let loss = logits.narrow(1, 0, t - 1).reshape([-1, v]).to_kind(Kind::Float).f_cross_entropy_loss::<Tensor>(
        &targets.reshape([-1]),
        None,
        Reduction::Mean,
        -100,
        0.0,
    )?;
    let n = real.sum(Kind::Int64).int64_value(&[]);
    Ok((loss, n))
}

/// Perplexity (exp of the mean per-token cross-entropy) and that mean (`loss`) over
/// sequences, counting tokens from each one's `learn_from` (see [`learn_mask`]).
pub fn perplexity(
    model: &Transformer,
    adapter: Option<&LoraAdapter>,
    seqs: &[Vec<u32>],
    learn_from: &[usize],
    pad: u32,
    batch_size: usize,
    device: Device,
) -> Result<Metrics> {
    let (mut sum, mut count) = (0.0f64, 0i64);
    let bs = batch_size.max(1);
    tch::no_grad(|| -> Result<()> {
        for (chunk, from) in seqs.chunks(bs).zip(learn_from.chunks(bs)) {
            let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            let (ids, valid) = batch(&refs, pad, device);
            let learn = learn_mask(&refs, from, device);
            let (loss, n) = lm_loss(model, &ids, &valid, &learn, adapter)?;
            sum += loss.double_value(&[]) * n as f64;
            count += n;
        }
        Ok(())
    })?;
    let mean = sum / count.max(1) as f64;
    Ok([("loss".to_string(), mean), ("perplexity".to_string(), mean.exp())].into_iter().collect())
}
