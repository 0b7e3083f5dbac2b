//! Prompted generation tasks (a task spec with `completion`): greedy completion
//! of each test prompt with the task's adapter, scored by the plugin's scorer,
//! beside a retrieval baseline scored the same way (the training answer whose
//! prompt is nearest by TF-IDF cosine over the base tokenizer's tokens).

use std::collections::HashMap;

use crate::FinetuneError;
use plinth_model::lora::LoraAdapter;
use plinth_model::Transformer;
use plinth_plugin_protocol::{
    CompletionSpec, GuideRequest, Outcome, Plugins, PluginsExt, Record, ScoreRequest, Scored,
};
use plinth_tokenizer::PlinthTokenizer;

use crate::data::Encoded;
use crate::metrics::Metrics;
use crate::Result;

/// A scored completion: (prompt, prediction, reference).
pub type Completion = (String, String, String);

/// A prompted generation task as the host completes it: the plugin that
/// frames, guides and scores it, and the data request the run used (the guide
/// is told it, so it knows which split the model was trained on).
#[derive(Clone, Copy)]
pub struct Prompted<'a> {
    pub plugins: &'a dyn Plugins,
    pub plugin: &'a str,
    pub spec: &'a CompletionSpec,
    pub request: &'a serde_json::Map<String, serde_json::Value>,
}

/// Continues `prompt` with `cfg` until `<eos>`, a stop string or the budget,
/// under the task's guide when it has one.
pub fn complete(
    model: &Transformer,
    tok: &PlinthTokenizer,
    adapter: Option<&LoraAdapter>,
    task: Prompted<'_>,
    prompt: &str,
    cfg: &plinth_generate::SamplingConfig,
) -> Result<String> {
    let mut guide = task.spec.guide.as_deref().map(|component| {
        move |completion: &str| -> std::result::Result<plinth_generate::Step, String> {
            let request = GuideRequest {
                prompt: prompt.to_string(),
                completion: completion.to_string(),
                request: task.request.clone(),
            };
            task.plugins.ask(task.plugin, component, &request).map_err(|e| e.to_string())
        }
    });
    let guided = guide.is_some();
    let guide = guide.as_mut().map(|g| g as &mut dyn plinth_generate::Guide);
    let gen = plinth_generate::generate(
        model,
        tok,
        plinth_generate::Request::text(prompt, cfg).adapter(adapter).guide(guide),
    )
    .map_err(|e| FinetuneError::Invalid(e.to_string()))?;
    match (&task.spec.output_check, guided) {
        (Some(stage), true) => Ok(longest_passing_prefix(task, stage, prompt, gen.text)),
        _ => Ok(gen.text),
    }
}

/// A guided completion that fails the task's output check, cut back to its
/// longest prefix of whole lines that passes (unchanged when none does): the
/// guide keeps every line start valid, but a value the model writes freely
/// can still break the text, usually near the end of the token budget.
fn longest_passing_prefix(task: Prompted<'_>, stage: &str, prompt: &str, text: String) -> String {
    if check_completions(task, stage, prompt, &[&text])[0].is_none() {
        return text;
    }
    let mut ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    ends.reverse();
    let cuts: Vec<&str> = ends.into_iter().map(|end| &text[..end]).collect();
    // One batch: every cut, longest first; the first that passes wins.
    let verdicts = check_completions(task, stage, prompt, &cuts);
    cuts.iter().zip(verdicts).find(|(_, v)| v.is_none()).map_or(text.clone(), |(cut, _)| cut.to_string())
}

/// The task's output check on each completion of `prompt`: None where it passes,
/// the stage's complaint where it does not (or the call's error for all).
pub fn check_completions(task: Prompted<'_>, stage: &str, prompt: &str, completions: &[&str]) -> Vec<Option<String>> {
    let records: Vec<Record> = completions
        .iter()
        .map(|c| Record::from_iter([("prompt".into(), prompt.into()), ("completion".into(), (*c).into())]))
        .collect();
    let outcomes = task.plugins.open_stage(task.plugin, stage, &serde_json::Value::Null).and_then(|s| s.run(&records));
    match outcomes {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Add(_) => None,
                Outcome::Reject(why) => Some(why),
            })
            .collect(),
        Err(e) => vec![Some(e.to_string()); completions.len()],
    }
}

/// Sampling settings for a task's completions: greedy, its budget and stops.
pub fn greedy(spec: &CompletionSpec) -> plinth_generate::SamplingConfig {
    plinth_generate::SamplingConfig {
        max_new_tokens: spec.max_new_tokens,
        temperature: 0.0,
        stop: spec.stop.clone(),
        repetition_penalty: spec.repetition_penalty,
        ..Default::default()
    }
}

/// Asks the plugin's scorer for metrics of `(prompt, prediction, reference)` rows.
pub fn score(plugins: &dyn Plugins, plugin: &str, spec: &CompletionSpec, rows: &[Completion]) -> Result<Metrics> {
    let rows = rows
        .iter()
        .map(|(p, pred, gold)| Scored { prompt: p.clone(), prediction: pred.clone(), reference: gold.clone() })
        .collect();
    let metrics: Metrics = plugins
        .ask(plugin, &spec.scorer, &ScoreRequest { rows })
        .map_err(|e| FinetuneError::Plugin(format!("scorer {e}")))?
        .into_iter()
        .collect();
    if !metrics.contains_key(&spec.metric) {
        return Err(FinetuneError::Invalid(format!(
            "scorer {plugin}/{} did not report the task's metric {:?} (got {:?})",
            spec.scorer,
            spec.metric,
            metrics.keys().collect::<Vec<_>>()
        )));
    }
    Ok(metrics)
}

/// `max` rows (0: all) of a prompted split, evenly spaced through it (plugins
/// order rows by source, so the first rows would all come from a few sources).
pub fn sample_rows(len: usize, max: usize) -> Vec<usize> {
    let n = if max == 0 { len } else { max.min(len) };
    (0..n).map(|k| k * len / n.max(1)).collect()
}

/// The (prompt, reference) pairs of [`sample_rows`].
pub fn prompts(data: &Encoded, max: usize) -> Vec<(String, String)> {
    sample_rows(data.len(), max).into_iter().map(|i| (data.prompts[i].clone(), data.texts[i].clone())).collect()
}

/// Completes and scores the first `max` rows of `data`; also returns the predictions.
pub fn evaluate(
    model: &Transformer,
    tok: &PlinthTokenizer,
    adapter: Option<&LoraAdapter>,
    task: Prompted<'_>,
    data: &Encoded,
    max: usize,
) -> Result<(Metrics, Vec<Completion>)> {
    let (plugin, spec) = (task.plugin, task.spec);
    if data.prompts.is_empty() {
        return Err(FinetuneError::Invalid(format!(
            "the task declares `completion` but its {plugin} data rows carry no \"prompt\""
        )));
    }
    let mut rows = Vec::new();
    for (prompt, reference) in prompts(data, max) {
        let prediction = complete(model, tok, adapter, task, &prompt, &greedy(spec))?;
        rows.push((prompt, prediction, reference));
    }
    Ok((score(task.plugins, plugin, spec, &rows)?, rows))
}

/// Writes completions as JSON lines `{"prompt", "prediction", "reference"}`, in one step.
pub fn write_completions(path: &std::path::Path, rows: &[Completion]) -> Result<()> {
    let mut text = String::new();
    for (prompt, prediction, reference) in rows {
        let line = serde_json::json!({"prompt": prompt, "prediction": prediction, "reference": reference});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    Ok(plinth_model::checkpoint::write_atomic(path, text.as_bytes())?)
}

/// For the rows `which` of `query`, the training row whose prompt is nearest:
/// cosine of TF-IDF vectors over prompt tokens (ties: the earlier training row).
/// Uses the encoded ids between `<bos>` and each row's `learn_from`.
pub fn nearest_prompts(train: &Encoded, query: &Encoded, which: &[usize]) -> Vec<usize> {
    let prompt_tokens = |d: &Encoded, i: usize| -> Vec<u32> {
        let mut t = d.ids[i][1..d.learn_from[i].max(1)].to_vec();
        t.sort_unstable();
        t.dedup();
        t
    };
    let train_toks: Vec<Vec<u32>> = (0..train.len()).map(|i| prompt_tokens(train, i)).collect();
    let mut df: HashMap<u32, f64> = HashMap::new();
    for t in train_toks.iter().flatten() {
        *df.entry(*t).or_insert(0.0) += 1.0;
    }
    let n = train.len() as f64;
    let idf = |t: u32| ((n + 1.0) / (df.get(&t).copied().unwrap_or(0.0) + 1.0)).ln() + 1.0;
    let mut postings: HashMap<u32, Vec<(usize, f64)>> = HashMap::new();
    let mut norms = vec![0.0f64; train.len()];
    for (i, toks) in train_toks.iter().enumerate() {
        for &t in toks {
            let w = idf(t);
            norms[i] += w * w;
            postings.entry(t).or_default().push((i, w));
        }
    }
    let mut out = Vec::with_capacity(which.len());
    let mut scores = vec![0.0f64; train.len()];
    for &q in which {
        scores.iter_mut().for_each(|s| *s = 0.0);
        let toks = prompt_tokens(query, q);
        for &t in &toks {
            let wq = idf(t);
            for &(i, w) in postings.get(&t).map_or(&[][..], Vec::as_slice) {
                scores[i] += wq * w;
            }
        }
        let best = (0..train.len())
            .map(|i| (if norms[i] > 0.0 { scores[i] / norms[i].sqrt() } else { 0.0 }, i))
            .fold((f64::NEG_INFINITY, 0), |acc, x| if x.0 > acc.0 { x } else { acc });
        out.push(best.1);
    }
    out
}

/// The retrieval baseline on the first `max` rows of `test`: each prompt answered
/// with the training answer of the nearest training prompt, scored by the plugin.
pub fn retrieval_baseline(
    plugins: &dyn Plugins,
    plugin: &str,
    spec: &CompletionSpec,
    train: &Encoded,
    test: &Encoded,
    max: usize,
) -> Result<Metrics> {
    let picked = sample_rows(test.len(), max);
    let nearest = nearest_prompts(train, test, &picked);
    let rows: Vec<Completion> = picked
        .iter()
        .zip(nearest)
        .map(|(&i, j)| (test.prompts[i].clone(), train.texts[j].clone(), test.texts[i].clone()))
        .collect();
    score(plugins, plugin, spec, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(prompts: &[&[u32]]) -> Encoded {
        let mut e = Encoded::default();
        for (i, p) in prompts.iter().enumerate() {
            let mut ids = vec![1u32];
            ids.extend(*p);
            e.learn_from.push(ids.len());
            ids.extend([90 + i as u32, 2]);
            e.ids.push(ids);
            e.texts.push(format!("answer {i}"));
            e.prompts.push(format!("prompt {i}"));
            e.labels.push(vec![0.0]);
        }
        e
    }

    #[test]
    fn retrieval_finds_the_prompt_sharing_the_rarest_tokens() {
        // Token 5 is in every training prompt (low IDF); 7 and 8 each in one.
        let train = rows(&[&[5, 7], &[5, 8], &[5, 9, 10]]);
        let query = rows(&[&[5, 8], &[7, 11], &[12]]);
        assert_eq!(nearest_prompts(&train, &query, &[0, 1, 2]), [1, 0, 0]);
        assert_eq!(nearest_prompts(&train, &query, &[2, 0]), [0, 1]);
    }

    #[test]
    fn samples_are_spread_through_the_split() {
        assert_eq!(sample_rows(10, 3), [0, 3, 6]);
        assert_eq!(sample_rows(4, 0), [0, 1, 2, 3]);
        assert_eq!(sample_rows(2, 5), [0, 1]);
    }
}
