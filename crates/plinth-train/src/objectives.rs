//! Self-supervised objectives: how a block of tokens becomes inputs and targets.

use plinth_data::SplitMix64;
use plinth_model::{AttentionMode, Transformer};
use plinth_tokenizer::Special;
use tch::{Kind, Reduction, Tensor};

use crate::config::{ObjectiveConfig, ObjectiveKind};
use crate::Result;

/// Label value ignored by the loss.
pub const IGNORE: i64 = -100;

/// BERT's masking (Devlin et al. 2019, §3.1): each non-special token is selected
/// with probability `mask_prob`; a selected token becomes `<mask>` 80% of the
/// time, a random non-special token 10% and stays 10%. Returns `(inputs,
/// labels)` where labels hold the original id at selected positions and
/// [`IGNORE`] elsewhere. Draws from libtorch's global generator; the trainer
/// seeds it per step so that a resumed run draws the same masks.
pub fn mask_tokens(ids: &Tensor, mask_prob: f64, vocab_size: i64) -> (Tensor, Tensor) {
    let n_special = Special::ALL.len() as i64;
    let selectable = ids.ge(n_special); // (B, T)
    let uniform = || Tensor::rand(ids.size(), (Kind::Float, ids.device()));
    let mut selected = uniform().lt(mask_prob).logical_and(&selectable); // (B, T)
    if selected.sum(Kind::Int64).int64_value(&[]) == 0 {
        // An all-unselected batch has no loss; predict its first selectable token.
        let first = selectable.view([-1]).to_kind(Kind::Int64).argmax(0, false);
        selected = selected.view([-1]).index_fill(0, &first.view([1]), 1).view_as(ids).logical_and(&selectable);
    }
    let labels = ids.where_self(&selected, &Tensor::full_like(ids, IGNORE)); // (B, T)
    let roll = uniform(); // one uniform per position decides mask/random/keep
    let to_mask = selected.logical_and(&roll.lt(0.8));
    let to_random = selected.logical_and(&roll.ge(0.8).logical_and(&roll.lt(0.9)));
    let random = Tensor::randint_low(n_special, vocab_size, ids.size(), (Kind::Int64, ids.device()));
    let inputs = ids
        .where_self(&to_mask.logical_not(), &Tensor::full_like(ids, Special::Mask.id() as i64))
        .where_self(&to_random.logical_not(), &random);
    (inputs, labels)
}

/// The objective's mean loss on a batch of packed blocks (B, L): L = T tokens for
/// masked models, T + 1 for causal ones (inputs are the first T, targets the last T).
pub fn batch_loss(model: &Transformer, objective: &ObjectiveConfig, batch: &Tensor) -> Result<Tensor> {
    let cfg = model.config();
    match objective.kind {
        ObjectiveKind::Mlm => {
            let (inputs, labels) = mask_tokens(batch, objective.mask_prob, cfg.vocab_size);
            let hidden = model.hidden(&inputs, AttentionMode::Bidirectional, None)?; // (B, T, C)
                                                                                     // Only selected positions need logits: the vocabulary projection is the
                                                                                     // largest matmul, and ~85% of its rows would be thrown away.
            let picked = labels.view([-1]).ne(IGNORE).nonzero().squeeze_dim(1); // (N,)
            let h = hidden.view([-1, cfg.d_model]).index_select(0, &picked); // (N, C)
            let targets = labels.view([-1]).index_select(0, &picked); // (N,)
            chunked_cross_entropy(model, &h, &targets)
        }
        ObjectiveKind::Causal => {
            let t = batch.size()[1] - 1;
            let inputs = batch.narrow(1, 0, t); // (B, T)
            let targets = batch.narrow(1, 1, t); // (B, T)
            let hidden = model.hidden(&inputs, AttentionMode::Causal, None)?; // (B, T, C)
            chunked_cross_entropy(model, &hidden.view([-1, cfg.d_model]), &targets.reshape([-1]))
        }
    }
}

/// Rows of hidden states projected to logits at a time in [`chunked_cross_entropy`]
/// for a model of width `d_model`: twice the width, between 256 and 4096.
///
/// Small chunks keep each chunk's logits in cache through log-softmax and its
/// backward; but every chunk adds its own (V, C) gradient of the vocabulary
/// projection, and the log-softmax's share of the work shrinks as the width grows
/// (its cost is rows × V, the GEMM's rows × V × C). Measured with `plinth-bench
/// train` (two interleaved pairs each, tokens/s): tiny (C 128) best at 256; small
/// (C 256) 5037–5054 at 512 against 4956–4958 at 256 and 4882–4886 at 1024; base
/// (C 512) 1133–1142 at 1024 against 1113 at 256.
pub fn ce_chunk_rows(d_model: i64) -> i64 {
    (2 * d_model).clamp(256, 4096)
}

/// Mean cross-entropy of the vocabulary projection of `hidden` (N, C) against
/// `targets` (N,), computed [`ce_chunk_rows`] rows at a time. The result equals one
/// big `cross_entropy` up to float rounding, but each chunk's logits stay in
/// cache through log-softmax and its backward instead of streaming N × V floats
/// through memory several times: +15% training tokens/s on the small preset here
/// when introduced (`plinth-bench train`, medians of three interleaved runs: 4723 vs 4096).
pub fn chunked_cross_entropy(model: &Transformer, hidden: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, width) = (hidden.size()[0], hidden.size()[1]);
    let rows = ce_chunk_rows(width);
    let mut total: Option<Tensor> = None;
    let mut start = 0;
    while start < n {
        let len = rows.min(n - start);
        let logits = model.logits(&hidden.narrow(0, start, len)); // (len, V)
        let part =
            logits.f_cross_entropy_loss::<Tensor>(&targets.narrow(0, start, len), None, Reduction::Sum, IGNORE, 0.0)?;
        total = Some(match total {
            Some(t) => t + part,
            None => part,
        });
        start += len;
    }
    let counted = targets.ne(IGNORE).sum(Kind::Int64).int64_value(&[]).max(1);
    Ok(total.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, hidden.device()))) / counted as f64)
}

/// Frames one document's tokens for causal pretraining: `<bos> doc <eos>`, or
/// with probability `fim_rate` the prefix-suffix-middle form of Bavarian et al.
/// (2022): `<fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle <eos>`,
/// with the two cut points drawn uniformly.
pub fn frame_causal(doc: &[u32], fim_rate: f64, rng: &mut SplitMix64) -> Vec<u32> {
    let mut out = Vec::with_capacity(doc.len() + 4);
    if fim_rate > 0.0 && rng.next_f64() < fim_rate {
        let n = doc.len() as u64 + 1;
        let (a, b) = (rng.below(n) as usize, rng.below(n) as usize);
        let (lo, hi) = (a.min(b), a.max(b));
        out.push(Special::FimPrefix.id());
        out.extend_from_slice(&doc[..lo]);
        out.push(Special::FimSuffix.id());
        out.extend_from_slice(&doc[hi..]);
        out.push(Special::FimMiddle.id());
        out.extend_from_slice(&doc[lo..hi]);
    } else {
        out.push(Special::Bos.id());
        out.extend_from_slice(doc);
    }
    out.push(Special::Eos.id());
    out
}

/// Frames a document for masked pretraining: `<bos> doc <eos>`.
pub fn frame_masked(doc: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(doc.len() + 2);
    out.push(Special::Bos.id());
    out.extend_from_slice(doc);
    out.push(Special::Eos.id());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_follows_15_80_10_10() {
        tch::manual_seed(0);
        let vocab = 1000;
        // 131k tokens: every tolerance below is at least 4.5 standard deviations wide.
        let ids = Tensor::randint_low(7, vocab, [256, 512], (Kind::Int64, tch::Device::Cpu));
        let (inputs, labels) = mask_tokens(&ids, 0.15, vocab);
        let n = ids.numel() as f64;
        let selected = labels.ne(IGNORE);
        let n_sel = selected.sum(Kind::Int64).int64_value(&[]) as f64;
        assert!((n_sel / n - 0.15).abs() < 0.005, "selected {}", n_sel / n);
        let masked =
            inputs.eq(Special::Mask.id() as i64).logical_and(&selected).sum(Kind::Int64).int64_value(&[]) as f64;
        let kept = inputs.eq_tensor(&ids).logical_and(&selected).sum(Kind::Int64).int64_value(&[]) as f64;
        let changed_elsewhere =
            inputs.ne_tensor(&ids).logical_and(&selected.logical_not()).sum(Kind::Int64).int64_value(&[]);
        assert!((masked / n_sel - 0.8).abs() < 0.015, "mask {}", masked / n_sel);
        // "kept" also counts random replacements that drew the original id (p = 1/993).
        assert!((kept / n_sel - 0.1).abs() < 0.01, "keep {}", kept / n_sel);
        assert!((1.0 - masked / n_sel - kept / n_sel - 0.1).abs() < 0.01);
        assert_eq!(changed_elsewhere, 0, "unselected tokens must be untouched");
    }

    #[test]
    fn specials_are_never_selected_and_some_token_always_is() {
        tch::manual_seed(1);
        let ids = Tensor::from_slice(&[1i64, 2, 9, 2, 1]).view([1, 5]);
        let (_, labels) = mask_tokens(&ids, 1e-9, 50);
        let labels: Vec<i64> = Vec::try_from(labels.view([-1])).expect("labels");
        assert_eq!(labels, vec![IGNORE, IGNORE, 9, IGNORE, IGNORE]);
    }

    #[test]
    fn fim_keeps_every_token_exactly_once() {
        let doc: Vec<u32> = (100..140).collect();
        let mut rng = SplitMix64::new(5);
        for _ in 0..20 {
            let framed = frame_causal(&doc, 1.0, &mut rng);
            assert_eq!(framed[0], Special::FimPrefix.id());
            assert_eq!(*framed.last().expect("eos"), Special::Eos.id());
            let mut body: Vec<u32> = framed.iter().copied().filter(|&t| t >= 7).collect();
            body.sort();
            assert_eq!(body, doc);
            let s = framed.iter().position(|&t| t == Special::FimSuffix.id()).expect("suffix");
            let m = framed.iter().position(|&t| t == Special::FimMiddle.id()).expect("middle");
            // Reassembling prefix + middle + suffix gives the document back.
            let mut again = framed[1..s].to_vec();
            again.extend_from_slice(&framed[m + 1..framed.len() - 1]);
            again.extend_from_slice(&framed[s + 1..m]);
            assert_eq!(again, doc);
        }
        assert_eq!(frame_causal(&doc, 0.0, &mut rng)[0], Special::Bos.id());
    }
}
