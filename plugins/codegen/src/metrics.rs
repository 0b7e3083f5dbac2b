//! The Ansible Wisdom metrics (Pujar et al., 2023, arXiv 2305.02783) on
//! (prompt, prediction, reference) triples: exact match, corpus BLEU-4,
//! schema-correct and Ansible-aware.

use serde::Serialize;

use crate::catalogue::{check_task, Catalogue};

/// One scored example: the prompt (`- name: ...`) and two completions of it.
pub use plinth_plugin_sdk::protocol::Scored;

/// Means over the examples (BLEU is corpus-level, 0-100 like the paper).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scores {
    pub n: usize,
    pub exact_match: f64,
    pub bleu: f64,
    pub schema_correct: f64,
    pub ansible_aware: f64,
}

/// Trailing spaces on each line and blank lines at the ends do not count.
pub fn normalize(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_matches('\n').to_string()
}

/// Code tokens: runs of letters, digits and `_`; every other non-space character alone.
pub fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let word = c.is_alphanumeric() || c == '_';
        match (word, start) {
            (true, None) => start = Some(i),
            (true, Some(_)) => {}
            (false, s) => {
                if let Some(s) = s {
                    out.push(&text[s..i]);
                    start = None;
                }
                if !c.is_whitespace() {
                    out.push(&text[i..i + c.len_utf8()]);
                }
            }
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// Corpus BLEU-4 (uniform weights, brevity penalty, no smoothing), 0-100.
pub fn corpus_bleu(pairs: &[(Vec<&str>, Vec<&str>)]) -> f64 {
    let (mut matched, mut total) = ([0usize; 4], [0usize; 4]);
    let (mut hyp_len, mut ref_len) = (0usize, 0usize);
    for (hyp, reference) in pairs {
        hyp_len += hyp.len();
        ref_len += reference.len();
        for n in 1..=4 {
            let mut counts: std::collections::HashMap<&[&str], isize> = Default::default();
            for g in reference.windows(n) {
                *counts.entry(g).or_insert(0) += 1;
            }
            for g in hyp.windows(n) {
                total[n - 1] += 1;
                if let Some(c) = counts.get_mut(g) {
                    if *c > 0 {
                        *c -= 1;
                        matched[n - 1] += 1;
                    }
                }
            }
        }
    }
    if hyp_len == 0 || matched.contains(&0) {
        return 0.0;
    }
    let log_p: f64 = (0..4).map(|i| (matched[i] as f64 / total[i] as f64).ln()).sum::<f64>() / 4.0;
    let bp = if hyp_len >= ref_len { 1.0 } else { (1.0 - ref_len as f64 / hyp_len as f64).exp() };
    100.0 * bp * log_p.exp()
}

/// Scores predictions against references. Ansible-aware: the prediction is
/// schema-correct, uses the reference's module, and its arguments fit that
/// module's documentation.
pub fn score(rows: &[Scored], cat: &Catalogue) -> Scores {
    if rows.is_empty() {
        return Scores::default();
    }
    let n = rows.len() as f64;
    let (mut exact, mut schema, mut aware) = (0usize, 0usize, 0usize);
    let mut bleu_pairs = Vec::with_capacity(rows.len());
    for r in rows {
        let (p, g) = (normalize(&r.prediction), normalize(&r.reference));
        exact += usize::from(p == g);
        let pred = check_task(&format!("{}{}", r.prompt, r.prediction), cat, None);
        let gold = check_task(&format!("{}{}", r.prompt, r.reference), cat, None);
        schema += usize::from(pred.schema_correct());
        aware += usize::from(pred.ansible_aware() && pred.module.is_some() && pred.module == gold.module);
        bleu_pairs.push((p, g));
    }
    let toks: Vec<(Vec<&str>, Vec<&str>)> = bleu_pairs.iter().map(|(p, g)| (tokens(p), tokens(g))).collect();
    Scores {
        n: rows.len(),
        exact_match: exact as f64 / n,
        bleu: corpus_bleu(&toks),
        schema_correct: schema as f64 / n,
        ansible_aware: aware as f64 / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_words_and_punctuation() {
        assert_eq!(tokens("  apt:\n    name: nginx-1.2"), ["apt", ":", "name", ":", "nginx", "-", "1", ".", "2"]);
    }

    #[test]
    fn bleu_matches_a_hand_computed_value() {
        // Identical texts score 100.
        let a = tokens("a b c d e f");
        assert!((corpus_bleu(&[(a.clone(), a.clone())]) - 100.0).abs() < 1e-9);
        // hyp "a b c d e x" vs ref "a b c d e f": precisions 5/6, 4/5, 3/4, 2/3; equal lengths.
        let h = tokens("a b c d e x");
        let expected = 100.0 * (((5.0f64 / 6.0) * 0.8 * 0.75 * (2.0 / 3.0)).powf(0.25));
        assert!((corpus_bleu(&[(h, a.clone())]) - expected).abs() < 1e-9);
        // A shorter hypothesis pays the brevity penalty: "a b c d" vs 6 tokens, all n-grams match.
        let short = tokens("a b c d");
        let bp = (1.0f64 - 6.0 / 4.0).exp();
        assert!((corpus_bleu(&[(short, a.clone())]) - 100.0 * bp).abs() < 1e-9);
        // No 4-gram in common: 0 (unsmoothed).
        assert_eq!(corpus_bleu(&[(tokens("a x b y"), a)]), 0.0);
    }

    #[test]
    fn exact_match_ignores_trailing_space_only() {
        assert_eq!(normalize("  apt:  \n    name: x\n\n"), "  apt:\n    name: x");
        assert_ne!(normalize("  apt:\n    name: x"), normalize("  apt:\n    name: y"));
    }
}
