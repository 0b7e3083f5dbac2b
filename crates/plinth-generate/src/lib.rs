//! Inference on a plinth model: autoregressive generation with a KV cache
//! (greedy, temperature, top-k, top-p, seed, token budget, stop strings) and
//! filling a blank, either by iterative unmasking (masked models) or by
//! fill-in-the-middle generation (causal models trained with FIM).

use plinth_data::SplitMix64;
use plinth_model::{AttentionMode, ModelError, Transformer};
use plinth_tokenizer::{PlinthTokenizer, Special, TokenizerError};
use tch::{Kind, Tensor};

pub mod guide;
pub use guide::{Guide, GuideStopped, Step};

/// The marker for the blank in `fill` inputs.
pub const BLANK: &str = "___";

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

pub type Result<T, E = GenerateError> = std::result::Result<T, E>;

/// How to pick each next token.
#[derive(Debug, Clone)]
pub struct SamplingConfig {
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// 0 picks the most likely token (greedy); higher values flatten the distribution.
    pub temperature: f64,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1: all).
    pub top_p: f64,
    /// Seed of the sampler; the same seed gives the same text.
    pub seed: u64,
    /// Generation stops at the first of these strings, which is not returned.
    pub stop: Vec<String>,
    /// Reuse keys and values of earlier positions (the default); off recomputes
    /// the whole prefix at every step, which is only useful to check the cache.
    pub use_cache: bool,
    /// CTRL's repetition penalty (Keskar et al., 2019) on tokens already generated
    /// (not the prompt's): a positive logit is divided by it, a negative one
    /// multiplied; 1 is off (the default). Small greedy models loop without it.
    pub repetition_penalty: f64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            max_new_tokens: 64,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
            use_cache: true,
            repetition_penalty: 1.0,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced `<eos>`.
    EndOfText,
    /// A stop string appeared.
    Stop,
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The context window is full.
    ContextFull,
}

/// Generated tokens and text.
#[derive(Debug, Clone)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
}

/// The prompt of a [`Request`].
#[derive(Debug, Clone, Copy)]
pub enum Prompt<'a> {
    /// Text, framed as a document start (`<bos>` + its tokens).
    Text(&'a str),
    /// Token ids, used as given.
    Ids(&'a [u32]),
}

/// What to generate: a prompt, how to sample, and optionally a LoRA adapter on
/// top of the base (a finetuned generation task; the base weights are not
/// touched) and a [`Guide`] that says before every token what may come next.
pub struct Request<'a> {
    pub prompt: Prompt<'a>,
    pub sampling: &'a SamplingConfig,
    pub adapter: Option<&'a plinth_model::lora::LoraAdapter>,
    pub guide: Option<&'a mut dyn Guide>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("prompt", &self.prompt)
            .field("sampling", self.sampling)
            .field("adapter", &self.adapter.is_some())
            .field("guide", &self.guide.is_some())
            .finish()
    }
}

impl<'a> Request<'a> {
    /// A text prompt with `sampling`, no adapter, no guide.
    pub fn text(prompt: &'a str, sampling: &'a SamplingConfig) -> Self {
        Request { prompt: Prompt::Text(prompt), sampling, adapter: None, guide: None }
    }

    /// A prompt of token ids with `sampling`, no adapter, no guide.
    pub fn ids(prompt: &'a [u32], sampling: &'a SamplingConfig) -> Self {
        Request { prompt: Prompt::Ids(prompt), sampling, adapter: None, guide: None }
    }

    pub fn adapter(self, adapter: Option<&'a plinth_model::lora::LoraAdapter>) -> Self {
        Request { adapter, ..self }
    }

    pub fn guide(self, guide: Option<&'a mut dyn Guide>) -> Self {
        Request { guide, ..self }
    }
}

/// Continues the request's prompt with a causal model; stops at `<eos>`, a stop
/// string, the token budget or the context length.
pub fn generate(model: &Transformer, tok: &PlinthTokenizer, req: Request<'_>) -> Result<Generation> {
    let Request { prompt, sampling: cfg, adapter, mut guide } = req;
    let framed: Vec<u32>;
    let prompt: &[u32] = match prompt {
        Prompt::Ids(ids) => ids,
        Prompt::Text(text) => {
            let mut ids: Vec<u32> = tok.special(Special::Bos).into_iter().collect();
            ids.extend(tok.encode(text)?);
            framed = ids;
            &framed
        }
    };
    check_sampling(cfg)?;
    let opts = plinth_model::ForwardOptions { adapter, ..plinth_model::ForwardOptions::new(AttentionMode::Causal) };
    let ctx = model.config().max_seq_len as usize;
    if prompt.is_empty() {
        return Err(GenerateError::Input("the prompt is empty".into()));
    }
    if prompt.len() >= ctx {
        return Err(GenerateError::Input(format!(
            "the prompt has {} tokens but the model's context is {ctx}; shorten the prompt to leave room for an answer",
            prompt.len()
        )));
    }
    let device = model_device(model);
    let eos = tok.special(Special::Eos);
    let table = match guide {
        Some(_) => Some(guide::TokenTable::new(tok, model.config().vocab_size as usize)?),
        None => None,
    };
    let mut rng = SplitMix64::new(cfg.seed);
    let mut cache = cfg.use_cache.then(|| model.new_cache(1));
    let mut all: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
    let mut new: Vec<u32> = Vec::new();
    let mut next_input = all.clone();
    let mut finish = FinishReason::MaxTokens;
    let mut text = String::new();
    tch::no_grad(|| -> Result<()> {
        while new.len() < cfg.max_new_tokens {
            if all.len() > ctx {
                finish = FinishReason::ContextFull;
                break;
            }
            let step = match guide.as_mut() {
                Some(g) => Some(g.next(&text).map_err(|e| GenerateError::Input(format!("the guide: {e}")))?),
                None => None,
            };
            let appended: Vec<u32> = if let Some(Step::Pick { options, prior }) = &step {
                let best = pick(model, tok, &all, options, prior, &opts)?;
                let room = cfg.max_new_tokens - new.len();
                best.into_iter().take(room).collect()
            } else {
                let logits = match cache.as_mut() {
                    Some(c) => {
                        let ids = Tensor::from_slice(&next_input).view([1, -1]).to_device(device);
                        model.forward_with(&ids, Some(c), &opts)?
                    }
                    None => {
                        let ids = Tensor::from_slice(&all).view([1, -1]).to_device(device);
                        model.forward_with(&ids, None, &opts)?
                    }
                }; // (1, T, V)
                next_input.clear();
                let last = logits.select(1, -1).squeeze_dim(0); // (V,)
                let mut last = penalize(last, &new, cfg.repetition_penalty);
                if let (Some(step), Some(table)) = (&step, &table) {
                    last = mask(last, table, step, eos)
                        .map_err(|e| GenerateError::Input(format!("{e}, after {text:?}")))?;
                }
                let id = sample(&last, cfg, &mut rng);
                if Some(id) == eos {
                    finish = FinishReason::EndOfText;
                    break;
                }
                vec![id]
            };
            new.extend(&appended);
            all.extend(appended.iter().map(|&t| i64::from(t)));
            next_input.extend(appended.iter().map(|&t| i64::from(t)));
            if guide.is_some() || !cfg.stop.is_empty() {
                text = tok.decode(&new)?;
            }
            if let Some(cut) = cfg.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(cut);
                finish = FinishReason::Stop;
                break;
            }
            if all.len() >= ctx && new.len() < cfg.max_new_tokens {
                finish = FinishReason::ContextFull;
                break;
            }
        }
        Ok(())
    })?;
    if finish != FinishReason::Stop {
        text = tok.decode(&new)?;
    }
    Ok(Generation { ids: new, text, finish })
}

/// Keeps only what `step` allows of last-position logits (V,).
fn mask(logits: Tensor, table: &guide::TokenTable, step: &Step, eos: Option<u32>) -> Result<Tensor> {
    let mut ids = table.allowed(step);
    let eos_ok = match step {
        Step::Free { eos: may_end, .. } | Step::Allow { eos: may_end, .. } => *may_end && eos.is_some(),
        Step::Pick { .. } => false,
    };
    if ids.is_empty() {
        let why = match step {
            Step::Allow { options, .. } if !options.is_empty() => {
                format!("no token of the tokenizer writes the start of any of {options:?}")
            }
            _ => "it allowed nothing to follow".into(),
        };
        if !eos_ok {
            return Err(GenerateError::Input(format!("the guide: {why}")));
        }
    }
    if eos_ok {
        ids.extend(eos);
    }
    let mut bias = vec![f32::NEG_INFINITY; table.vocab];
    for id in ids {
        if let Some(b) = bias.get_mut(id as usize) {
            *b = 0.0;
        }
    }
    let bias = Tensor::from_slice(&bias).to_device(logits.device()).to_kind(logits.kind());
    Ok(logits + bias)
}

/// The token ids of the best of `options` after `context`: the largest sum of
/// log-probabilities of its tokens plus its `prior`.
fn pick(
    model: &Transformer,
    tok: &PlinthTokenizer,
    context: &[i64],
    options: &[String],
    prior: &[f64],
    opts: &plinth_model::ForwardOptions,
) -> Result<Vec<u32>> {
    if !prior.is_empty() && prior.len() != options.len() {
        return Err(GenerateError::Input(format!(
            "the guide gave {} priors for {} options; give one per option or none",
            prior.len(),
            options.len()
        )));
    }
    let (scores, mut encoded) = option_logprobs(model, tok, context, options, opts)?;
    let best = scores
        .iter()
        .enumerate()
        .map(|(i, s)| (s + prior.get(i).copied().unwrap_or(0.0), i))
        .fold((f64::NEG_INFINITY, 0), |a, b| if b.0 > a.0 { b } else { a });
    Ok(encoded.swap_remove(best.1))
}

/// Each option's summed token log-probability after `context` (one batch),
/// with the options' token ids.
fn option_logprobs(
    model: &Transformer,
    tok: &PlinthTokenizer,
    context: &[i64],
    options: &[String],
    opts: &plinth_model::ForwardOptions,
) -> Result<(Vec<f64>, Vec<Vec<u32>>)> {
    if options.is_empty() {
        return Err(GenerateError::Input("the guide offered nothing to pick from".into()));
    }
    let encoded = tok.encode_batch(options)?;
    Ok((continuation_logprobs(model, context, &encoded, opts)?, encoded))
}

/// A filled blank.
#[derive(Debug, Clone)]
pub struct Fill {
    /// The input with the blank replaced.
    pub text: String,
    /// What went into the blank.
    pub answer: String,
    /// Joint log-probability of the filled tokens (masked models) or mean
    /// log-probability per token of the generated middle (FIM); higher is more confident.
    pub score: f64,
    /// For masked models, the most likely single tokens for a one-token blank
    /// with their probabilities.
    pub candidates: Vec<(String, f64)>,
}

/// Splits `text` at its single `___`.
pub fn split_blank(text: &str) -> Result<(&str, &str)> {
    let parts: Vec<&str> = text.split(BLANK).collect();
    if parts.len() != 2 {
        return Err(GenerateError::Input(format!(
            "put exactly one {BLANK} in the text to mark the blank (found {})",
            parts.len() - 1
        )));
    }
    Ok((parts[0], parts[1]))
}

/// Fills the blank with a masked (bidirectional) model: for each span length
/// 1..=`max_span` the blank becomes that many mask tokens, which are filled
/// one at a time, most confident first (as in Mask-Predict, Ghazvininejad et al.
/// 2019); the span with the highest joint log-probability wins. When text comes
/// before the blank, the blank starts a new word: its first token must be a
/// word-initial token ([`PlinthTokenizer::starts_word`]), so `___` is never filled
/// with the tail of the previous word. Special tokens are never candidates. Works
/// with plinth's tokenizers and with imported ones (BERT's WordPiece, RoBERTa's BPE)
/// that have a mask token.
pub fn fill_masked(model: &Transformer, tok: &PlinthTokenizer, text: &str, max_span: usize) -> Result<Fill> {
    fill_masked_with(model, tok, text, max_span, None)
}

/// [`fill_masked`] with a LoRA adapter on top of the base.
pub fn fill_masked_with(
    model: &Transformer,
    tok: &PlinthTokenizer,
    text: &str,
    max_span: usize,
    adapter: Option<&plinth_model::lora::LoraAdapter>,
) -> Result<Fill> {
    let opts =
        plinth_model::ForwardOptions { adapter, ..plinth_model::ForwardOptions::new(AttentionMode::Bidirectional) };
    let (before, after) = split_blank(text)?;
    if max_span == 0 {
        return Err(GenerateError::Input("the blank must allow at least one token".into()));
    }
    let mask_id = tok.special(Special::Mask).ok_or_else(|| {
        GenerateError::Input("this tokenizer has no mask token, so a masked model cannot fill a blank with it".into())
    })?;
    let before = before.trim_end();
    let prefix = tok.encode(before)?;
    let suffix = tok.encode(after)?;
    let device = model_device(model);
    let vocab = model.config().vocab_size;
    let known = tok.vocab_size() as i64;
    // Additive masks over the vocabulary: specials and embedding rows past the
    // tokenizer are never candidates; after text, only word-initial tokens start the blank.
    let never: Vec<f32> =
        (0..vocab).map(|id| if id >= known || tok.is_special(id as u32) { f32::NEG_INFINITY } else { 0.0 }).collect();
    let never = Tensor::from_slice(&never).to_device(device);
    let word_start = (!before.is_empty()).then(|| {
        let allowed: Vec<f32> = (0..vocab)
            .map(|id| if id < known && tok.starts_word(id as u32) { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        Tensor::from_slice(&allowed).to_device(device)
    });
    let (bos, eos) = (tok.special(Special::Bos), tok.special(Special::Eos));
    let start = usize::from(bos.is_some()) + prefix.len();
    // Blanks longer than the context leaves are not tried; none fitting is the error.
    let fixed = start + suffix.len() + usize::from(eos.is_some());
    let context = model.config().max_seq_len.max(0) as usize;
    let room = context.saturating_sub(fixed);
    if room == 0 {
        return Err(GenerateError::Input(format!(
            "the text around the blank takes {fixed} tokens of the model's {context}-token context, leaving none \
             for the blank; shorten the text"
        )));
    }
    let max_span = max_span.min(room);
    let mut best: Option<(f64, Vec<u32>)> = None;
    let mut candidates = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for span in 1..=max_span {
            let mut ids: Vec<i64> = bos
                .into_iter()
                .chain(prefix.iter().copied())
                .chain(std::iter::repeat_n(mask_id, span))
                .chain(suffix.iter().copied())
                .chain(eos)
                .map(i64::from)
                .collect();
            let mut open: Vec<usize> = (start..start + span).collect();
            let mut total = 0.0;
            while !open.is_empty() {
                let input = Tensor::from_slice(&ids).view([1, -1]).to_device(device);
                let logits = model.forward_with(&input, None, &opts)?.squeeze_dim(0); // (T, V)
                let logp = (logits.to_kind(Kind::Float) + &never).log_softmax(-1, Kind::Float); // (T, V)
                if let Some(mask) = &word_start {
                    let _ = logp.get(start as i64).g_add_(mask);
                }
                if span == 1 {
                    let (p, i) = logp.get(start as i64).exp().topk(5, -1, true, true);
                    let probs: Vec<f64> = Vec::try_from(p.to_kind(Kind::Double)).unwrap_or_default();
                    let idx: Vec<i64> = Vec::try_from(i).unwrap_or_default();
                    candidates = idx
                        .iter()
                        .zip(probs)
                        .map(|(&id, p)| Ok((tok.decode(&[id as u32])?, p)))
                        .collect::<Result<Vec<_>>>()?;
                }
                let (mut choice, mut choice_lp, mut choice_id) = (0, f64::NEG_INFINITY, 0i64);
                for (k, &pos) in open.iter().enumerate() {
                    let (lp, id) = logp.get(pos as i64).max_dim(-1, false);
                    let lp = lp.double_value(&[]);
                    if lp > choice_lp {
                        (choice, choice_lp, choice_id) = (k, lp, id.int64_value(&[]));
                    }
                }
                ids[open[choice]] = choice_id;
                total += choice_lp;
                open.remove(choice);
            }
            let score = total;
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, ids[start..start + span].iter().map(|&t| t as u32).collect()));
            }
        }
        Ok(())
    })?;
    let (score, span_ids) = best.ok_or_else(|| GenerateError::Input("no fill found".into()))?;
    let answer = tok.decode(&span_ids)?;
    // Byte-level tokens carry their leading space; WordPiece words do not.
    let sep = if before.is_empty() || answer.starts_with(char::is_whitespace) { "" } else { " " };
    Ok(Fill { text: format!("{before}{sep}{answer}{after}"), answer: answer.trim().to_string(), score, candidates })
}

/// Fills the blank with a causal model trained with fill-in-the-middle: the
/// prompt is `<fim_prefix> before <fim_suffix> after <fim_middle>` and the
/// middle is generated until `<eos>`.
pub fn fill_middle(model: &Transformer, tok: &PlinthTokenizer, text: &str, cfg: &SamplingConfig) -> Result<Fill> {
    let (before, after) = split_blank(text)?;
    let before = before.trim_end();
    let (Some(fim_prefix), Some(fim_suffix), Some(fim_middle)) =
        (tok.special(Special::FimPrefix), tok.special(Special::FimSuffix), tok.special(Special::FimMiddle))
    else {
        return Err(GenerateError::Input(
            "this tokenizer has no fill-in-the-middle sentinels, so the model cannot fill a blank; use `plinth generate`".into(),
        ));
    };
    let mut ids = vec![fim_prefix];
    ids.extend(tok.encode(before)?);
    ids.push(fim_suffix);
    ids.extend(tok.encode(after)?);
    ids.push(fim_middle);
    let gen = generate(model, tok, Request::ids(&ids, cfg))?;
    let score = score_continuation(model, &ids, &gen.ids)?;
    let middle = gen.text.trim_end().to_string();
    let sep = if middle.starts_with(' ') || before.is_empty() { "" } else { " " };
    Ok(Fill {
        text: format!("{before}{sep}{middle}{after}"),
        answer: middle.trim().to_string(),
        score,
        candidates: Vec::new(),
    })
}

/// Mean log-probability of `cont` after `prompt` under a causal model.
fn score_continuation(model: &Transformer, prompt: &[u32], cont: &[u32]) -> Result<f64> {
    if cont.is_empty() {
        return Ok(0.0);
    }
    let context: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
    let opts = plinth_model::ForwardOptions::new(AttentionMode::Causal);
    let total = continuation_logprobs(model, &context, &[cont.to_vec()], &opts)?[0];
    Ok(total / cont.len() as f64)
}

/// Each continuation's summed token log-probability after `context`, in one
/// padded batch; only the continuations' own entries leave the device.
fn continuation_logprobs(
    model: &Transformer,
    context: &[i64],
    conts: &[Vec<u32>],
    opts: &plinth_model::ForwardOptions,
) -> Result<Vec<f64>> {
    let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
    let width = context.len() + longest;
    let ctx = model.config().max_seq_len as usize;
    if width > ctx {
        return Err(GenerateError::Input(format!(
            "a continuation to score does not fit the model's context ({width} > {ctx} tokens)"
        )));
    }
    if longest == 0 || context.is_empty() {
        return Ok(vec![0.0; conts.len()]);
    }
    let (mut batch, mut targets, mut valid) = (Vec::new(), Vec::new(), Vec::new());
    for ids in conts {
        let pad = longest - ids.len();
        batch.extend_from_slice(context);
        batch.extend(ids.iter().map(|&t| i64::from(t)));
        batch.extend(std::iter::repeat_n(0, pad));
        targets.extend(ids.iter().map(|&t| i64::from(t)).chain(std::iter::repeat_n(0, pad)));
        valid.extend(std::iter::repeat_n(1f32, ids.len()).chain(std::iter::repeat_n(0.0, pad)));
    }
    let (n, longest) = (conts.len() as i64, longest as i64);
    let device = model_device(model);
    tch::no_grad(|| {
        let input = Tensor::from_slice(&batch).view([n, width as i64]).to_device(device);
        // Position context.len() - 1 + k predicts the continuation's k-th token.
        let logp = model
            .forward_with(&input, None, opts)?
            .narrow(1, context.len() as i64 - 1, longest)
            .log_softmax(-1, Kind::Float); // (n, longest, V)
        let targets = Tensor::from_slice(&targets).view([n, longest, 1]).to_device(device);
        let valid = Tensor::from_slice(&valid).view([n, longest]).to_device(device);
        let picked = logp.gather(2, &targets, false).squeeze_dim(2) * valid; // (n, longest)
        let sums = picked.sum_dim_intlist(1, false, Kind::Double).to_device(tch::Device::Cpu);
        Vec::<f64>::try_from(sums).map_err(|e| GenerateError::Input(e.to_string()))
    })
}

fn check_sampling(cfg: &SamplingConfig) -> Result<()> {
    cfg.validate().map_err(GenerateError::Input)
}

impl SamplingConfig {
    /// Settings sampling cannot use, in words that name the option: every number
    /// finite and in range, and no empty stop string (it would stop at once).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(self.repetition_penalty >= 1.0 && self.repetition_penalty.is_finite()) {
            return Err(format!("repetition_penalty must be 1 (off) or more, got {}", self.repetition_penalty));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be 0 (greedy) or positive and finite, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err("a stop string is empty, which would end every text before it starts; drop it".into());
        }
        Ok(())
    }
}

fn model_device(model: &Transformer) -> tch::Device {
    model.device()
}

/// Picks a token id from last-position logits (V,).
/// Applies the repetition penalty to the logits (V,) of tokens in `seen`.
fn penalize(logits: Tensor, seen: &[u32], penalty: f64) -> Tensor {
    if penalty == 1.0 || seen.is_empty() {
        return logits;
    }
    let mut ids: Vec<i64> = seen.iter().map(|&t| i64::from(t)).collect();
    ids.sort_unstable();
    ids.dedup();
    let idx = Tensor::from_slice(&ids).to_device(logits.device());
    let picked = logits.index_select(0, &idx);
    let scaled = (&picked * penalty).where_self(&picked.lt(0.0), &(&picked / penalty));
    logits.index_copy(0, &idx, &scaled)
}

fn sample(logits: &Tensor, cfg: &SamplingConfig, rng: &mut SplitMix64) -> u32 {
    if cfg.temperature == 0.0 {
        return logits.argmax(-1, false).int64_value(&[]) as u32;
    }
    let mut scaled = logits.to_kind(Kind::Float) / cfg.temperature; // (V,)
    let v = scaled.size()[0];
    if cfg.top_k > 0 && (cfg.top_k as i64) < v {
        let (kth, _) = scaled.topk(cfg.top_k as i64, -1, true, true);
        let threshold = kth.select(0, cfg.top_k as i64 - 1);
        scaled = scaled.masked_fill(&scaled.lt_tensor(&threshold), f64::NEG_INFINITY);
    }
    let probs = scaled.softmax(-1, Kind::Float); // (V,)
    let (sorted, order) = probs.sort(-1, true);
    let sorted: Vec<f32> = Vec::try_from(sorted.to_device(tch::Device::Cpu)).unwrap_or_default();
    let order: Vec<i64> = Vec::try_from(order.to_device(tch::Device::Cpu)).unwrap_or_default();
    // Nucleus: the smallest prefix of the sorted distribution reaching top_p.
    let mut keep = sorted.len();
    let mut cum = 0.0f64;
    for (i, p) in sorted.iter().enumerate() {
        cum += f64::from(*p);
        if cum >= cfg.top_p {
            keep = i + 1;
            break;
        }
    }
    let mass: f64 = sorted[..keep].iter().map(|&p| f64::from(p)).sum();
    let mut u = rng.next_f64() * mass;
    for i in 0..keep {
        u -= f64::from(sorted[i]);
        if u <= 0.0 {
            return order[i] as u32;
        }
    }
    order[keep.saturating_sub(1)] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_penalty_scales_only_seen_tokens_toward_zero_and_below() {
        let logits = Tensor::from_slice(&[2.0f32, -1.0, 3.0, 0.5]);
        let out = Vec::<f32>::try_from(penalize(logits.shallow_clone(), &[0, 1, 1], 2.0)).expect("floats");
        assert_eq!(out, [1.0, -2.0, 3.0, 0.5]);
        let same = Vec::<f32>::try_from(penalize(logits, &[0], 1.0)).expect("floats");
        assert_eq!(same, [2.0, -1.0, 3.0, 0.5]);
    }

    #[test]
    fn top_k_one_is_greedy_and_sampling_is_seeded() {
        let logits = Tensor::from_slice(&[0.1f32, 2.0, 1.5, -1.0]);
        let mut rng = SplitMix64::new(1);
        let cfg = SamplingConfig { temperature: 1.0, top_k: 1, ..Default::default() };
        for _ in 0..10 {
            assert_eq!(sample(&logits, &cfg, &mut rng), 1);
        }
        let cfg = SamplingConfig { temperature: 1.0, ..Default::default() };
        let a: Vec<u32> = (0..20).map(|_| sample(&logits, &cfg, &mut SplitMix64::new(9))).collect();
        let b: Vec<u32> = (0..20).map(|_| sample(&logits, &cfg, &mut SplitMix64::new(9))).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.5 keeps only the first.
        let logits = Tensor::from_slice(&[3.0f32, 2.0, 1.0, 0.0]);
        let cfg = SamplingConfig { temperature: 1.0, top_p: 0.5, ..Default::default() };
        let mut rng = SplitMix64::new(3);
        assert!((0..50).all(|_| sample(&logits, &cfg, &mut rng) == 0));
    }

    #[test]
    fn blank_must_appear_once() {
        assert!(split_blank("no blank").is_err());
        assert!(split_blank("___ and ___").is_err());
        assert_eq!(split_blank("cats and ___.").expect("one blank"), ("cats and ", "."));
    }
}
