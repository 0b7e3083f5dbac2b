//! Guided decoding: at every step a [`Guide`] (for a prompted task, the plugin's
//! `guide` component) says what the completion may continue with, and the host
//! masks the model's choices to that. The guide sees only text, never token ids,
//! so one guide works with any tokenizer; this module turns its answer into a
//! token mask.
//!
//! A guide answers a [`Step`]:
//! * `free`: any token (with `single_line`, none that would begin the content of
//!   a new line, so a line-oriented guide is asked again at every line start;
//!   with `line_end: false`, none with a newline at all);
//! * `allow`: only tokens that keep the text on the way to one of `options`; a
//!   token may run past the end of an option only with whitespace. The guide is
//!   asked again after every token, so it sees a finished option as text;
//! * `pick`: the host scores every option in full (sum of the model's
//!   log-probabilities of its tokens, plus the guide's `prior` for it) and
//!   appends the best one whole: a choice among a few long alternatives
//!   (module names, say) that token-by-token greedy decoding would commit to on
//!   its first token.
//!
//! `eos` says whether the completion may end there. `next_lines` (on `free` and
//! `allow`) are the starts the next line may take: a token that carries a
//! newline and indentation must indent as one of them (a whitespace-only start
//! admits any deeper indentation), so tokens that merge a newline with the
//! following spaces cannot skip the guide's say at the start of a line.

use std::collections::HashMap;

pub use plinth_plugin_protocol::Step;

/// Says what the completion (the text generated so far, prompt excluded) may
/// continue with. `Err` stops generation with that message.
pub trait Guide {
    fn next(&mut self, completion: &str) -> Result<Step, GuideStopped>;
}

/// Why a guide stopped generation, in its own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GuideStopped(pub String);

/// A closure is a guide; its `Err` text stops generation.
impl<F: FnMut(&str) -> Result<Step, String>> Guide for F {
    fn next(&mut self, completion: &str) -> Result<Step, GuideStopped> {
        self(completion).map_err(GuideStopped)
    }
}

/// Every token's text, indexed for building masks.
pub(crate) struct TokenTable {
    /// Ids of each non-empty token text.
    by_text: HashMap<String, Vec<u32>>,
    /// Token texts made of whitespace only (a token may carry these past an option's end).
    whitespace: Vec<String>,
    /// Ids allowed in a `free` step; with `single_line`, those without a
    /// newline and those whose newline is followed by whitespace only (with
    /// that whitespace).
    free: Vec<u32>,
    inline: Vec<u32>,
    newline: Vec<(u32, String)>,
    pub(crate) vocab: usize,
}

impl TokenTable {
    pub(crate) fn new(tok: &plinth_tokenizer::PlinthTokenizer, vocab: usize) -> crate::Result<Self> {
        let mut table = TokenTable {
            by_text: HashMap::new(),
            whitespace: Vec::new(),
            free: Vec::new(),
            inline: Vec::new(),
            newline: Vec::new(),
            vocab,
        };
        for (id, text) in tok.id_texts()?.iter().enumerate().take(vocab) {
            let id = id as u32;
            if tok.is_special(id) || text.is_empty() {
                continue;
            }
            let text = text.clone();
            table.free.push(id);
            match text.rsplit_once('\n') {
                None => table.inline.push(id),
                Some((_, indent)) if !starts_a_line(&text) => table.newline.push((id, indent.to_string())),
                Some(_) => {}
            }
            if text.chars().all(char::is_whitespace) && !table.by_text.contains_key(&text) {
                table.whitespace.push(text.clone());
            }
            table.by_text.entry(text).or_default().push(id);
        }
        Ok(table)
    }

    /// Ids of the tokens a step allows (eos not included).
    pub(crate) fn allowed(&self, step: &Step) -> Vec<u32> {
        let mut ids = match step {
            Step::Free { line_end: false, .. } => self.inline.clone(),
            Step::Free { single_line: false, .. } => self.free.clone(),
            Step::Free { single_line: true, next_lines, .. } => {
                let mut ids = self.inline.clone();
                ids.extend(self.newline.iter().filter(|(_, indent)| indents_as(indent, next_lines)).map(|(id, _)| id));
                ids
            }
            Step::Allow { options, next_lines, .. } => {
                let mut ids = Vec::new();
                for o in options {
                    for (k, c) in o.char_indices() {
                        if let Some(found) = self.by_text.get(&o[..k + c.len_utf8()]) {
                            ids.extend(found);
                        }
                    }
                    let run_on = |w: &&String| match format!("{o}{w}").rsplit_once('\n') {
                        Some((_, indent)) => indents_as(indent, next_lines),
                        None => true,
                    };
                    for w in self.whitespace.iter().filter(run_on) {
                        if let Some(found) = self.by_text.get(&format!("{o}{w}")) {
                            ids.extend(found);
                        }
                    }
                }
                ids
            }
            Step::Pick { .. } => Vec::new(),
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Whether a line begun with `indent` (whitespace) can still become one of
/// `starts` (none: any).
fn indents_as(indent: &str, starts: &[String]) -> bool {
    starts.is_empty()
        || starts.iter().any(|s| s.starts_with(indent) || (s.trim().is_empty() && indent.starts_with(s.as_str())))
}

/// True when `text` holds a newline followed (within it) by a non-space
/// character: the token would begin the next line's content.
fn starts_a_line(text: &str) -> bool {
    text.split('\n').skip(1).any(|rest| rest.chars().any(|c| !c.is_whitespace()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_from_json_with_defaults() {
        let free: Step = serde_json::from_str(r#"{"kind": "free"}"#).expect("free");
        assert_eq!(free, Step::Free { eos: true, single_line: false, next_lines: vec![], line_end: true });
        let allow: Step = serde_json::from_str(r#"{"kind": "allow", "options": ["a:"]}"#).expect("allow");
        assert_eq!(allow, Step::Allow { options: vec!["a:".into()], eos: false, next_lines: vec![] });
        let pick: Step =
            serde_json::from_str(r#"{"kind": "pick", "options": ["x", "y"], "prior": [0, 1]}"#).expect("pick");
        assert_eq!(pick, Step::Pick { options: vec!["x".into(), "y".into()], prior: vec![0.0, 1.0] });
        assert!(serde_json::from_str::<Step>(r#"{"kind": "maybe"}"#).is_err());
    }

    #[test]
    fn a_token_starts_a_line_only_with_content_after_a_newline() {
        assert!(!starts_a_line("\n    "));
        assert!(!starts_a_line(" name"));
        assert!(!starts_a_line(":\n"));
        assert!(starts_a_line("\n- "));
        assert!(starts_a_line("a\nb"));
    }

    #[test]
    fn indentation_must_lead_to_a_next_line_start() {
        let starts = ["    name:".to_string(), "      ".to_string()];
        assert!(indents_as("   ", &starts));
        assert!(indents_as("    ", &starts));
        assert!(indents_as("        ", &starts), "deeper than a whitespace-only start");
        assert!(!indents_as("     ", &["    name:".to_string()]));
        assert!(indents_as("     ", &[]), "no starts: anything");
    }
}
