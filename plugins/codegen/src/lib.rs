//! `codegen`: natural language to Ansible tasks, as IBM's Ansible Wisdom framed it
//! (completion from the `- name:` line).
//!
//! Data comes from the pinned `ansible==14.5.0` and `ansible-core==2.21.5` wheels,
//! read by this plugin's own code (no Python runs): every module file's `EXAMPLES`
//! (YAML tasks) and `DOCUMENTATION` (options, with documentation fragments merged).
//!
//! * data `ansible-corpus`: the EXAMPLES blocks of one split's module files (for
//!   pretraining: `{"split": "train"}`, the default, never sees a held-out module);
//! * task `ansible` (generation, prompted) and its data `ansible-data`: rows
//!   `{"prompt": "- name: ...", "text": "\n  <module>: ..."}`, split 80/10/10 by
//!   module file (`"split_by": "collection"` for the stricter split), exact
//!   duplicates removed;
//! * `ansible-score`: exact match, BLEU, schema-correct and Ansible-aware over
//!   `{"rows": [{"prompt", "prediction", "reference"}]}`;
//! * `ansible-stats`: extraction counts, split sizes and the skipped blocks;
//! * `ansible-module`: one module's catalogue entry (options, required ones);
//! * `guide`: catalogue-guided decoding (see [`guide`]): the module picked among
//!   the retrieved candidates, argument keys only from the module's options;
//! * stages `prompt` (request → prompt), `parse` (one YAML task), `check` (module
//!   and arguments against the catalogue, with "did you mean") and `playbook`
//!   (wrap a task in a play).

pub mod catalogue;
pub mod extract;
pub mod guide;
pub mod metrics;
pub mod pyliteral;

use std::sync::{Arc, OnceLock};

use plinth_data::{stage_answer as with, stage_record as record};
use plinth_data::{CompletionSpec, LabelledExample, PypiPackage, Split, TaskKind, TaskSpec};
use plinth_plugin_sdk::{export_plugin, Component, Plugin};
use serde_json::{json, Map, Value};

use catalogue::check_task;
use extract::{Extracted, Pair};

pub const ANSIBLE: PypiPackage = PypiPackage {
    name: "ansible",
    version: "14.5.0",
    file: "ansible-14.5.0-py3-none-any.whl",
    sha256: "245623ccc2d31d0f6f4bdb63168d550cad305fb032cc43d96e8f61ce8ab0ba84",
    licence: "GPL-3.0-or-later (Ansible community package: collections' modules and their EXAMPLES)",
    requires_python: Some("3.12"),
};

pub const ANSIBLE_CORE: PypiPackage = PypiPackage {
    name: "ansible-core",
    version: "2.21.5",
    file: "ansible_core-2.21.5-py3-none-any.whl",
    sha256: "08886f9f3e23d129aa98a01271c4a47833516e1cb7c737a246788cb474f41222",
    licence: "GPL-3.0-or-later (ansible-core: ansible.builtin modules and documentation fragments)",
    requires_python: Some("3.12"),
};

/// The extraction, done once per process.
pub fn extracted() -> Result<Arc<Extracted>, String> {
    static CACHE: OnceLock<Result<Arc<Extracted>, String>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let cache = plinth_data::cache_dir();
            let wheels = [ANSIBLE_CORE, ANSIBLE]
                .iter()
                .map(|p| plinth_data::fetch_pypi(p, &cache).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            let (modules, fragments) = extract::read_wheels(&wheels)?;
            Ok(Arc::new(extract::extract(&modules, &fragments)))
        })
        .clone()
}

/// What must not straddle the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBy {
    /// The module file whose EXAMPLES held the task.
    Module,
    /// Its whole collection (`community.general`).
    Collection,
}

impl SplitBy {
    pub fn from_request(req: &Value) -> Result<Self, String> {
        match req.get("split_by").and_then(Value::as_str) {
            None | Some("module") => Ok(SplitBy::Module),
            Some("collection") => Ok(SplitBy::Collection),
            Some(other) => Err(format!("split_by {other:?} is not \"module\" or \"collection\"")),
        }
    }

    /// The split of the module file `fqcn`.
    pub fn split_of(self, fqcn: &str) -> Split {
        match self {
            SplitBy::Module => Split::of_group(fqcn),
            SplitBy::Collection => Split::of_group(fqcn.rsplit_once('.').map_or(fqcn, |(c, _)| c)),
        }
    }
}

fn parse_request(request: &str) -> Result<Value, String> {
    let req: Value = if request.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(request).map_err(|e| format!("request is not JSON: {e}"))?
    };
    if !req.is_object() {
        return Err("request must be a JSON object".into());
    }
    Ok(req)
}

fn requested_split(req: &Value, default: Split) -> Result<Split, String> {
    match req.get("split") {
        None => Ok(default),
        Some(s) => serde_json::from_value(s.clone())
            .map_err(|_| format!("split {s} is not \"train\", \"validation\" or \"test\"")),
    }
}

fn max_of(req: &Value) -> usize {
    req.get("max").and_then(Value::as_u64).map_or(usize::MAX, |m| m as usize)
}

/// The pairs of one split.
pub fn pairs(split: Split, by: SplitBy) -> Result<Vec<Pair>, String> {
    Ok(extracted()?.pairs.iter().filter(|p| by.split_of(&p.source) == split).cloned().collect())
}

/// `{"documentation": true}` asks for the documentation pairs too.
fn with_documentation(req: &Value) -> Result<bool, String> {
    match req.get("documentation") {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("documentation must be true or false, got {other}")),
    }
}

fn answer_corpus(request: &str) -> Result<String, String> {
    let req = parse_request(request)?;
    let (split, by) = (requested_split(&req, Split::Train)?, SplitBy::from_request(&req)?);
    let ex = extracted()?;
    let mut docs: Vec<String> =
        ex.blocks.iter().filter(|(m, _)| by.split_of(m) == split).map(|(_, t)| t.clone()).collect();
    if with_documentation(&req)? && split == Split::Train {
        // One document per collection: its modules' documentation tasks.
        let mut by_collection: std::collections::BTreeMap<String, String> = Default::default();
        for p in extract::documentation_pairs(&ex.catalogue) {
            let coll = p.module.rsplit_once('.').map_or("", |(c, _)| c).to_string();
            by_collection.entry(coll).or_default().push_str(&p.text());
        }
        let pairs: Vec<String> = by_collection.into_values().collect();
        // Interleave so `max` takes from both kinds.
        let examples = std::mem::take(&mut docs);
        let (mut a, mut b) = (examples.into_iter(), pairs.into_iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => break,
                (x, y) => docs.extend(x.into_iter().chain(y)),
            }
        }
    }
    docs.truncate(max_of(&req));
    serde_json::to_string(&docs).map_err(|e| e.to_string())
}

fn answer_data(request: &str) -> Result<String, String> {
    let req = parse_request(request)?;
    let (split, by) = (requested_split(&req, Split::Train)?, SplitBy::from_request(&req)?);
    let mut rows = pairs(split, by)?;
    if with_documentation(&req)? && split == Split::Train {
        rows.extend(extract::documentation_pairs(&extracted()?.catalogue));
    }
    let rows: Vec<LabelledExample> = rows
        .into_iter()
        .take(max_of(&req))
        .map(|p| LabelledExample { prompt: Some(p.prompt), ..LabelledExample::new(p.completion, 0.0) })
        .collect();
    serde_json::to_string(&rows).map_err(|e| e.to_string())
}

fn answer_score(request: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Req {
        rows: Vec<metrics::Scored>,
    }
    let req: Req = serde_json::from_str(request).map_err(|e| {
        format!("score request must be {{\"rows\": [{{\"prompt\", \"prediction\", \"reference\"}}]}}: {e}")
    })?;
    let ex = extracted()?;
    serde_json::to_string(&metrics::score(&req.rows, &ex.catalogue)).map_err(|e| e.to_string())
}

/// Extraction counts, split sizes and the first skipped blocks.
pub fn stats_json(ex: &Extracted) -> Value {
    let sizes = |by: SplitBy| extract::split_sizes(&ex.pairs, |p| by.split_of(&p.source));
    let corpus_chars: usize =
        ex.blocks.iter().filter(|(m, _)| SplitBy::Module.split_of(m) == Split::Train).map(|(_, t)| t.len()).sum();
    json!({
        "counts": ex.counts,
        "split_by_module": sizes(SplitBy::Module),
        "split_by_collection": sizes(SplitBy::Collection),
        "train_corpus_chars": corpus_chars,
        "documentation_pairs": extract::documentation_pairs(&ex.catalogue).len(),
        "problems": ex.problems.len(),
        "first_problems": ex.problems.iter().take(20).collect::<Vec<_>>(),
    })
}

fn answer_stats(_request: &str) -> Result<String, String> {
    serde_json::to_string(&stats_json(&*extracted()?)).map_err(|e| e.to_string())
}

fn answer_module(request: &str) -> Result<String, String> {
    let req = parse_request(request)?;
    let name = req.get("module").and_then(Value::as_str).ok_or("request needs {\"module\": NAME}")?;
    let ex = extracted()?;
    let m = ex.catalogue.resolve(name, None)?;
    serde_json::to_string(m).map_err(|e| e.to_string())
}

/// `{"input": request}` → adds `"prompt": "- name: <request>"`.
pub fn stage_prompt(input: &str) -> Result<String, String> {
    let (map, request) = record(input, "input")?;
    if request.trim().is_empty() {
        return Err("the request is empty: say what the task should do".into());
    }
    with(map, json!({"prompt": extract::prompt_for(&request)}))
}

/// A record's task text: `task`, or `prompt` + `completion` (what generation adds).
fn task_text(input: &str) -> Result<(Map<String, Value>, String), String> {
    if let Ok(r) = record(input, "task") {
        return Ok(r);
    }
    let (map, prompt) = record(input, "prompt")
        .map_err(|_| "record has no \"task\" (or \"prompt\" and \"completion\") string".to_string())?;
    let completion =
        map.get("completion").and_then(Value::as_str).ok_or("record has no \"completion\" string")?.to_string();
    Ok((map, format!("{prompt}{completion}")))
}

/// Joins `prompt` and `completion` (what a generate stage adds) into `task`, or
/// reads `task`; rejects text that is not one YAML task mapping; adds its `name`.
pub fn stage_parse(input: &str) -> Result<String, String> {
    let (map, text) = task_text(input)?;
    let task = catalogue::parse_task(&text)?;
    let name = task.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
    with(map, json!({"task": text, "name": name}))
}

/// Rejects a task whose module is unknown (with a "did you mean") or whose
/// arguments do not fit the module's documentation; adds the module's FQCN.
pub fn stage_check(input: &str) -> Result<String, String> {
    let (map, text) = task_text(input)?;
    let ex = extracted()?;
    let check = check_task(&text, &ex.catalogue, None);
    if let Some(e) = check.error() {
        return Err(e.to_string());
    }
    with(map, json!({"task": text, "module": check.module}))
}

/// Wraps the record's task, or list of tasks (a pipeline's `collect` of checked
/// tasks), in a playbook of one play: `params.hosts` (default `all`) and
/// `params.become` (default false). Every task must be a mapping.
pub fn stage_playbook(input: &str) -> Result<String, String> {
    let (map, text) = task_text(input)?;
    let tasks =
        match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).map_err(|e| format!("not valid YAML: {e}"))? {
            serde_yaml_ng::Value::Mapping(m) => vec![serde_yaml_ng::Value::Mapping(m)],
            serde_yaml_ng::Value::Sequence(items) if !items.is_empty() && items.iter().all(|t| t.is_mapping()) => items,
            _ => return Err("a playbook needs one task mapping or a list of them".into()),
        };
    let params = map.get("params").cloned().unwrap_or(Value::Null);
    let hosts = params.get("hosts").and_then(Value::as_str).unwrap_or("all").to_string();
    let become_ = params.get("become").and_then(Value::as_bool).unwrap_or(false);
    let mut play = serde_yaml_ng::Mapping::new();
    play.insert("hosts".into(), hosts.into());
    if become_ {
        play.insert("become".into(), true.into());
    }
    play.insert("tasks".into(), serde_yaml_ng::Value::Sequence(tasks));
    let yaml = serde_yaml_ng::to_string(&serde_yaml_ng::Value::Sequence(vec![serde_yaml_ng::Value::Mapping(play)]))
        .map_err(|e| e.to_string())?;
    with(map, json!({"playbook": format!("---\n{yaml}")}))
}

/// The `ansible` task's spec.
pub fn task_spec() -> TaskSpec {
    TaskSpec {
        kind: TaskKind::Generation,
        labels: Vec::new(),
        data: "ansible-data".into(),
        metric: "perplexity".into(),
        source: "EXAMPLES of ansible 14.5.0 and ansible-core 2.21.5 (PyPI), (name -> task) pairs split 80/10/10 by module file".into(),
        features: None,
        input_check: None,
        completion: Some(CompletionSpec {
            prompt_stage: "prompt".into(),
            scorer: "ansible-score".into(),
            metric: "ansible_aware".into(),
            output_check: Some("check".into()),
            guide: Some("guide".into()),
            max_new_tokens: 160,
            stop: vec!["\n- ".into()],
            // Measured on 150 held-out prompts with the tiny base: schema-correct
            // 0.17 greedy, 0.56 with 1.3 (BENCHMARKS.md).
            repetition_penalty: 1.3,
        }),
        head: None,
    }
}

struct Codegen;

impl Plugin for Codegen {
    fn components(&self) -> Vec<Component> {
        let spec = serde_json::to_string(&task_spec()).unwrap_or_default();
        let task_schema = r#"{"requires": {"task": "string"}, "adds": {"module": "string"}}"#;
        vec![
            Component::data(
                "ansible-corpus",
                "EXAMPLES blocks (YAML) of a split's module files: {\"split\", \"split_by\", \"max\"}",
                answer_corpus,
            ),
            Component::task("ansible", "natural language to one Ansible task (completion from `- name:`)", &spec),
            Component::data(
                "ansible-data",
                "(name -> task) rows: {\"split\", \"split_by\": \"module\"|\"collection\", \"max\"}",
                answer_data,
            ),
            Component::data(
                "ansible-score",
                "exact match, BLEU, schema-correct, Ansible-aware of {\"rows\": [{prompt, prediction, reference}]}",
                answer_score,
            ),
            Component::data("ansible-stats", "extraction counts, split sizes, skipped blocks", answer_stats),
            Component::data(
                "guide",
                "catalogue-guided decoding: {prompt, completion, request} -> the next step (pick, allow, free)",
                guide::answer,
            ),
            Component::data("ansible-module", "a module's documented options: {\"module\": NAME}", answer_module),
            Component::stage_with_schema(
                "prompt",
                "request -> `- name:` prompt",
                r#"{"requires": {"input": "string"}, "adds": {"prompt": "string"}}"#,
                stage_prompt,
            ),
            Component::stage_with_schema(
                "parse",
                "join prompt and completion into `task`; reject text that is not one YAML task",
                r#"{"requires": {"prompt": "string", "completion": "string"}, "adds": {"task": "string", "name": "string"}}"#,
                stage_parse,
            ),
            Component::stage_with_schema(
                "check",
                "reject unknown modules and undocumented or missing options",
                task_schema,
                stage_check,
            ),
            Component::stage_with_schema(
                "playbook",
                "wrap the task (or list of tasks) in a play (params.hosts, params.become)",
                r#"{"requires": {"task": "string"}, "adds": {"playbook": "string"}}"#,
                stage_playbook,
            ),
        ]
    }
}

export_plugin!(id: "codegen", version: "0.1.0", create: Codegen);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playbook_wraps_one_or_many_tasks_in_a_play() {
        let one = r#"{"task": "- name: a\n  ansible.builtin.ping:\n", "params": {"hosts": "web", "become": true}}"#;
        let out: Value = serde_json::from_str(&stage_playbook(one).expect("one")).expect("json");
        assert_eq!(
            out["playbook"],
            "---\n- hosts: web\n  become: true\n  tasks:\n  - name: a\n    ansible.builtin.ping: null\n"
        );
        assert!(out.get("params").is_none());
        let many = r#"{"task": "- name: a\n  ansible.builtin.ping:\n- name: b\n  ansible.builtin.ping:\n"}"#;
        let out: Value = serde_json::from_str(&stage_playbook(many).expect("many")).expect("json");
        assert!(out["playbook"].as_str().expect("text").contains("  - name: b\n"), "{out}");
        let err = stage_playbook(r#"{"task": "- just a string\n"}"#).expect_err("not a task");
        assert_eq!(err, "a playbook needs one task mapping or a list of them");
    }

    #[test]
    fn prompt_stage_frames_a_request() {
        let out: Value =
            serde_json::from_str(&stage_prompt(r#"{"input": "Install nginx"}"#).expect("prompt")).expect("json");
        assert_eq!(out["prompt"], "- name: Install nginx");
        assert!(stage_prompt(r#"{"input": "  "}"#).expect_err("empty").contains("empty"));
    }
}
