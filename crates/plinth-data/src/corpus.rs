//! Unlabelled corpora as lists of documents.

use std::path::{Path, PathBuf};

use plinth_plugin_protocol::{CorpusRequest, Plugins, PluginsExt};
use serde::{Deserialize, Serialize};

use crate::packages::{fetch_debian, GCIDE, WORDNET};
use crate::rng::SplitMix64;
use crate::{DataError, Result};

/// Where a pretraining corpus comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorpusSource {
    /// WordNet 3.0's 117k glosses (Debian `wordnet-base`), one document per synset:
    /// `lemma, lemma: gloss; "example"`.
    Wordnet,
    /// The GNU Collaborative International Dictionary of English (Debian
    /// `dict-gcide`, 40 MB): one document per dictionary entry, markup removed.
    Gcide,
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

/// A list of non-empty documents.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub documents: Vec<String>,
}

/// Loads a corpus, fetching its package into `cache` on first use; plugin corpora
/// come from `plugins`.
pub fn load_corpus(source: &CorpusSource, cache: &Path, plugins: Option<&dyn Plugins>) -> Result<Corpus> {
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
        CorpusSource::Gcide => {
            let root = fetch_debian(&GCIDE, cache)?;
            let dir = root.join("usr/share/dictd");
            read_dictd(&dir.join("gcide.index"), &dir.join("gcide.dict.dz"))?
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
            let options = match serde_json::from_str(if p.request.trim().is_empty() { "{}" } else { &p.request }) {
                Ok(serde_json::Value::Object(options)) => options,
                _ => {
                    return Err(DataError::Fetch(format!(
                        "the request for plugin {} component {} must be a JSON object, got {:?}",
                        p.id, p.component, p.request
                    )))
                }
            };
            plugins
                .ask(&p.id, &p.component, &CorpusRequest { options })
                .map_err(|e| DataError::Fetch(format!("corpus from plugin {e}")))?
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

/// Reads a dictd database: the `.index` file lists `headword TAB offset TAB length`
/// (base64 numbers, dictd's alphabet) into the gzip-compressed `.dict.dz`; several
/// headwords can point at one entry, which is read once. Entries become documents
/// with GCIDE's markup removed ([`clean_gcide`]); the `00-database-*` header
/// entries are skipped.
fn read_dictd(index: &Path, dict: &Path) -> Result<Vec<String>> {
    use std::io::Read;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path, source }
    };
    let text = std::fs::read_to_string(index).map_err(io(index))?;
    let mut data = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(dict).map_err(io(dict))?)
        .read_to_end(&mut data)
        .map_err(io(dict))?;
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let parse_err = |message: String| DataError::Parse { path: index.to_path_buf(), line: i + 1, message };
        let fields: Vec<&str> = line.split('\t').collect();
        let [word, offset, length] = fields[..] else {
            return Err(parse_err(format!("expected `headword<TAB>offset<TAB>length`, found {} fields", fields.len())));
        };
        if word.starts_with("00-database") || word.starts_with("00database") {
            continue;
        }
        let (Some(offset), Some(length)) = (dictd_number(offset), dictd_number(length)) else {
            return Err(parse_err(format!("offset {offset:?} or length {length:?} is not a dictd base64 number")));
        };
        if offset + length > data.len() {
            return Err(parse_err(format!("entry {word:?} lies past the end of {}", dict.display())));
        }
        spans.push((offset, length));
    }
    spans.sort_unstable();
    spans.dedup();
    let docs = spans
        .into_iter()
        .map(|(o, n)| clean_gcide(&String::from_utf8_lossy(&data[o..o + n])))
        .filter(|d| !d.is_empty())
        .collect();
    Ok(docs)
}

/// A dictd index number: base64 digits, most significant first.
fn dictd_number(s: &str) -> Option<usize> {
    const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    s.bytes().try_fold(0usize, |v, c| DIGITS.iter().position(|&d| d == c).map(|d| v * 64 + d))
}

/// One GCIDE entry as prose: the headword's spelling with stress marks
/// (`Sponge \\Sponge\\`) and a pronunciation right after it (`(sp[u^]nj)`) go, so
/// the entry starts `Sponge, n.`; source tags (`[1913 Webster]`, `[Webster 1913
/// Suppl.]`, `[R.]`, `[Obs.]`) go; accent codes keep their letter (`['e]ponge` ->
/// `eponge`); cross-reference braces (`{Fungus}`) keep their word; whitespace is
/// collapsed. Etymologies in brackets stay as prose.
pub fn clean_gcide(entry: &str) -> String {
    let mut out = String::with_capacity(entry.len());
    let mut rest = entry.trim();
    if let Some((head, tail)) = rest.split_once(" \\") {
        if let Some((_, after)) = tail.split_once('\\') {
            out.push_str(head.trim());
            rest = after.trim_start();
            // A pronunciation in parentheses carries stress and accent marks.
            if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
                if inner.0.contains(['"', '*', '`', '[', '\'']) {
                    rest = inner.1;
                }
            }
        }
    }
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' | '}' => {}
            '[' => {
                let inner: String = chars.clone().take_while(|&c| c != ']').collect();
                let closed = chars.clone().nth(inner.chars().count()) == Some(']');
                let letters: String = inner.chars().filter(|c| c.is_alphabetic()).collect();
                let tag = inner.contains("Webster")
                    || matches!(inner.as_str(), "R." | "Obs." | "Obs" | "Colloq." | "Prov. Eng.");
                let accent = inner.chars().count() <= 3 && letters.chars().count() == 1;
                if closed && (tag || accent) {
                    for _ in 0..=inner.chars().count() {
                        chars.next();
                    }
                    if accent {
                        out.push_str(&letters);
                    }
                } else {
                    out.push('[');
                }
            }
            c if c.is_whitespace() => {
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
            }
            c => out.push(c),
        }
    }
    out.trim().replace(" ,", ",").replace(" .", ".")
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
    fn gcide_entries_lose_their_markup_but_keep_their_prose() {
        let entry = "Sponge \\Sponge\\ (sp[u^]nj), n. [OF. esponge, F. ['e]ponge.\n   Cf. {Fungus}, {Spunk}.]\n   1. (Zool.) Any one of numerous species of Spongiae.\n      [1913 Webster]\n\n   2. The elastic fibrous skeleton.\n      [Webster 1913 Suppl.]\n";
        assert_eq!(
            clean_gcide(entry),
            "Sponge, n. [OF. esponge, F. eponge. Cf. Fungus, Spunk.] 1. (Zool.) Any one of numerous species of Spongiae. 2. The elastic fibrous skeleton."
        );
    }

    #[test]
    fn dictd_index_numbers_and_entries_are_read_once() {
        use std::io::Write;
        assert_eq!(dictd_number("Ge"), Some(6 * 64 + 30));
        assert_eq!(dictd_number("A"), Some(0));
        assert_eq!(dictd_number("*"), None);
        let dir = tempfile::tempdir().expect("tempdir");
        let body = "00-database-short\n   header\nCat \\Cat\\, n.\n   A small animal.\n   [1913 Webster]\n";
        let dict = dir.path().join("t.dict.dz");
        let mut gz =
            flate2::write::GzEncoder::new(std::fs::File::create(&dict).expect("file"), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).expect("gzip");
        gz.finish().expect("finish");
        let start = body.find("Cat").expect("cat");
        let enc = |mut v: usize| {
            let digits = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut s = Vec::new();
            loop {
                s.push(digits[v % 64]);
                v /= 64;
                if v == 0 {
                    break;
                }
            }
            s.reverse();
            String::from_utf8(s).expect("ascii")
        };
        let span = format!("{}\t{}", enc(start), enc(body.len() - start));
        let index = dir.path().join("t.index");
        std::fs::write(&index, format!("00-database-short\tA\tm\nCat\t{span}\nfelid\t{span}\n")).expect("index");
        assert_eq!(read_dictd(&index, &dict).expect("read"), vec!["Cat, n. A small animal.".to_string()]);
        std::fs::write(&index, "Cat\tA\n").expect("index");
        let err = read_dictd(&index, &dict).expect_err("two fields").to_string();
        assert!(err.contains("t.index:1:") && err.contains("headword"), "{err}");
    }

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
