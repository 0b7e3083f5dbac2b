//! Unlabelled corpora as lists of documents.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::packages::{fetch_debian, WORDNET};
use crate::rng::SplitMix64;
use crate::{DataError, Result};

/// Where a pretraining corpus comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorpusSource {
    /// WordNet 3.0's 117k glosses (Debian `wordnet-base`), one document per synset:
    /// `lemma, lemma: gloss; "example"`.
    Wordnet,
    /// Plain UTF-8 text files; a blank line separates documents.
    TextFiles(Vec<PathBuf>),
    /// A data component of a run-time plugin: `{ plugin = { id = "...", component = "..." } }`.
    Plugin(PluginCorpus),
}

/// Which plugin component supplies the documents, and what to ask it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginCorpus {
    /// Plugin id (`plinth plugins list`).
    pub id: String,
    /// Name of its data component.
    pub component: String,
    /// JSON request passed to the component, default `{}`.
    #[serde(default = "empty_request")]
    pub request: String,
}

fn empty_request() -> String {
    "{}".into()
}

/// A component of a run-time plugin, named in a config: `{ id = "...", component = "..." }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginComponent {
    pub id: String,
    pub component: String,
}

/// What training needs from run-time plugins. The data crate knows no plugins;
/// the host (the CLI) implements this over its loaded plugins and hands it in.
pub trait PluginData: std::fmt::Debug + Send + Sync {
    /// A data component's JSON answer to a JSON `request`.
    fn call(&self, plugin: &str, component: &str, request: &str) -> Result<String, String>;
    /// Documents from a data component: its answer must be a JSON array of strings.
    fn documents(&self, plugin: &str, component: &str, request: &str) -> Result<Vec<String>, String> {
        let reply = self.call(plugin, component, request)?;
        serde_json::from_str::<Vec<String>>(&reply).map_err(|e| format!("expected a JSON array of strings: {e}"))
    }
    /// The JSON spec a component declares (for a tokenizer: a `tokenizer.json` or a recipe).
    fn spec(&self, plugin: &str, component: &str) -> Result<String, String>;
}

/// A list of non-empty documents.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub documents: Vec<String>,
}

/// Loads a corpus, fetching its package into `cache` on first use; plugin corpora
/// come from `plugins`.
pub fn load_corpus(source: &CorpusSource, cache: &Path, plugins: Option<&dyn PluginData>) -> Result<Corpus> {
    let documents = match source {
        CorpusSource::Wordnet => {
            let root = fetch_debian(&WORDNET, cache)?;
            let dir = root.join("usr/share/wordnet");
            let mut docs = Vec::new();
            for part in ["noun", "verb", "adj", "adv"] {
                docs.extend(read_wordnet_data(&dir.join(format!("data.{part}")))?);
            }
            docs
        }
        CorpusSource::TextFiles(paths) => {
            let mut docs = Vec::new();
            for path in paths {
                let text =
                    std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.clone(), source })?;
                docs.extend(paragraphs(&text));
            }
            docs
        }
        CorpusSource::Plugin(p) => {
            let plugins = plugins.ok_or_else(|| {
                DataError::Fetch(format!(
                    "corpus from plugin {} needs the plugin host; run it through the plinth command",
                    p.id
                ))
            })?;
            plugins
                .documents(&p.id, &p.component, &p.request)
                .map_err(|e| DataError::Fetch(format!("plugin {} component {}: {e}", p.id, p.component)))?
                .into_iter()
                .filter(|d| !d.trim().is_empty())
                .collect()
        }
    };
    if documents.is_empty() {
        return Err(DataError::Empty(format!(
            "the corpus {source:?} has no documents; point `data.corpus` at non-empty text"
        )));
    }
    Ok(Corpus { documents })
}

/// Splits documents into (train, validation) by a seeded shuffle; both sides are
/// non-empty whenever there are at least two documents.
pub fn split_train_val(corpus: &Corpus, val_fraction: f64, seed: u64) -> Result<(Vec<String>, Vec<String>)> {
    let n = corpus.documents.len();
    if n < 2 {
        return Err(DataError::Empty(format!("need at least 2 documents to hold out a validation split, found {n}")));
    }
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed ^ 0x5EED_5917).shuffle(&mut order);
    let n_val = ((n as f64 * val_fraction).round() as usize).clamp(1, n - 1);
    let val = order[..n_val].iter().map(|&i| corpus.documents[i].clone()).collect();
    let train = order[n_val..].iter().map(|&i| corpus.documents[i].clone()).collect();
    Ok((train, val))
}

fn paragraphs(text: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            if !current.is_empty() {
                docs.push(std::mem::take(&mut current));
            }
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line);
        }
    }
    if !current.is_empty() {
        docs.push(current);
    }
    docs
}

/// Parses a WordNet `data.*` file (wndb(5WN)): `offset lex_filenum ss_type w_cnt
/// (word lex_id){w_cnt} ... | gloss`. Licence header lines start with spaces.
fn read_wordnet_data(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with(' ') || line.trim().is_empty() {
            continue;
        }
        let parse_err =
            |message: &str| DataError::Parse { path: path.to_path_buf(), line: i + 1, message: message.to_string() };
        let (head, gloss) = line.split_once(" | ").ok_or_else(|| parse_err("no ` | ` before the gloss"))?;
        let fields: Vec<&str> = head.split(' ').collect();
        let count = fields
            .get(3)
            .and_then(|c| usize::from_str_radix(c, 16).ok())
            .ok_or_else(|| parse_err("word count is not hexadecimal"))?;
        let words: Vec<String> = (0..count)
            .filter_map(|k| fields.get(4 + 2 * k))
            .map(|w| {
                let w = w.split('(').next().unwrap_or(w); // drop adjective markers such as `(a)`
                w.replace('_', " ")
            })
            .collect();
        if words.is_empty() {
            return Err(parse_err("synset lists no words"));
        }
        docs.push(format!("{}: {}", words.join(", "), gloss.trim()));
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wordnet_lines_become_lemma_and_gloss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.noun");
        std::fs::write(
            &path,
            "  1 This software and database is being provided\n02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 001 @ 02083346 n 0000 | a member of the genus Canis; \"the dog barked all night\"  \n",
        )
        .expect("write");
        let docs = read_wordnet_data(&path).expect("parse");
        assert_eq!(
            docs,
            vec!["dog, domestic dog, Canis familiaris: a member of the genus Canis; \"the dog barked all night\""
                .to_string()]
        );
    }

    #[test]
    fn malformed_wordnet_line_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.verb");
        std::fs::write(&path, "00001740 29 v zz breathe 0\n").expect("write");
        let err = read_wordnet_data(&path).expect_err("malformed");
        assert!(err.to_string().contains("data.verb:1"), "{err}");
    }

    #[test]
    fn split_is_deterministic_disjoint_and_complete() {
        let corpus = Corpus { documents: (0..100).map(|i| format!("doc {i}")).collect() };
        let (a, b) = split_train_val(&corpus, 0.1, 7).expect("split");
        let (a2, b2) = split_train_val(&corpus, 0.1, 7).expect("split");
        assert_eq!((a.len(), b.len()), (90, 10));
        assert_eq!((&a, &b), (&a2, &b2));
        let mut all: Vec<_> = a.iter().chain(&b).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
    }

    #[test]
    fn empty_text_corpus_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.txt");
        std::fs::write(&path, "\n\n  \n").expect("write");
        let err = load_corpus(&CorpusSource::TextFiles(vec![path]), dir.path(), None).expect_err("empty");
        assert!(err.to_string().contains("no documents"), "{err}");
    }
}

/// Synthetic documents mixed into a training split: the `field` of each record of
/// a JSONL file (for example a synthesis pipeline's results, which carry their
/// provenance), making up `share` of the training documents after mixing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticMix {
    pub path: PathBuf,
    pub field: String,
    pub share: f64,
}

impl SyntheticMix {
    /// Reads the synthetic documents; a line that is not a JSON object with a string
    /// `field` is an error naming the line.
    pub fn documents(&self) -> Result<Vec<String>> {
        let text =
            std::fs::read_to_string(&self.path).map_err(|source| DataError::Io { path: self.path.clone(), source })?;
        let mut docs = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| DataError::Empty(format!("{} line {}: not JSON: {e}", self.path.display(), i + 1)))?;
            let doc = v.get(&self.field).and_then(|d| d.as_str()).ok_or_else(|| {
                DataError::Empty(format!("{} line {}: no string field {:?}", self.path.display(), i + 1, self.field))
            })?;
            docs.push(doc.to_string());
        }
        if docs.is_empty() {
            return Err(DataError::Empty(format!("{} holds no synthetic documents", self.path.display())));
        }
        Ok(docs)
    }

    /// Adds synthetic documents to `train` until they are `share` of it: drawn in a
    /// seeded shuffled order, cycling when there are fewer than needed. Returns how
    /// many were added.
    pub fn mix_into(&self, train: &mut Vec<String>, seed: u64) -> Result<usize> {
        if !(0.0..1.0).contains(&self.share) {
            return Err(DataError::Empty(format!("synthetic share must be in [0, 1), got {}", self.share)));
        }
        let mut docs = self.documents()?;
        crate::SplitMix64::new(seed ^ 0x5157_4e54).shuffle(&mut docs);
        let wanted = (self.share / (1.0 - self.share) * train.len() as f64).round() as usize;
        train.extend(docs.iter().cycle().take(wanted).cloned());
        Ok(wanted)
    }
}

#[cfg(test)]
mod synthetic_tests {
    use super::*;

    #[test]
    fn synthetic_documents_make_up_their_share() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("syn.jsonl");
        std::fs::write(&path, "{\"text\": \"s1\", \"provenance\": \"x\"}\n{\"text\": \"s2\"}\n").expect("write");
        let mix = SyntheticMix { path: path.clone(), field: "text".into(), share: 0.2 };
        let mut train: Vec<String> = (0..8).map(|i| format!("real {i}")).collect();
        assert_eq!(mix.mix_into(&mut train, 1).expect("mix"), 2);
        assert_eq!(train.len(), 10);
        assert_eq!(train.iter().filter(|d| d.starts_with('s')).count(), 2);
        let bad = SyntheticMix { field: "smiles".into(), ..mix.clone() };
        assert!(bad.documents().expect_err("no field").to_string().contains("line 1: no string field"));
        let bad = SyntheticMix { share: 1.0, ..mix };
        assert!(bad.mix_into(&mut train, 1).is_err());
    }
}
