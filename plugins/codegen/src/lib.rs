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
//!   and arguments against the catalogue, with "did you mean"), `check-completion`
//!   (the same on a prompt and its completion: the task's output check) and
//!   `playbook` (wrap a task in a play).

pub mod catalogue;
pub mod extract;
pub mod guide;
pub mod metrics;
pub mod pyliteral;

use std::sync::{Arc, OnceLock};

use plinth_data::PypiPackage;
use plinth_plugin_sdk::protocol::{CompletionSpec, LabelledExample, Metrics, ScoreRequest, Split, TaskKind, TaskSpec};
use plinth_plugin_sdk::{export_plugin, Component, Error, NoParams, Plugin, Stage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitBy {
    /// The module file whose EXAMPLES held the task.
    #[default]
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

/// What the `ansible-corpus` and `ansible-data` requests may say.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// `ansible-corpus` only: which split's modules (train by default).
    #[serde(default = "train")]
    pub split: Split,
    #[serde(default)]
    pub split_by: SplitBy,
    /// Add the documentation pairs (training split only).
    #[serde(default)]
    pub documentation: bool,
    /// At most this many documents or rows.
    #[serde(default)]
    pub max: Option<usize>,
    /// The guide's settings (`{candidates, prior_weight}`), read by the guide.
    #[serde(default)]
    pub guide: Option<Value>,
}

fn train() -> Split {
    Split::Train
}

/// The pairs of one split.
pub fn pairs(split: Split, by: SplitBy) -> Result<Vec<Pair>, String> {
    Ok(extracted()?.pairs.iter().filter(|p| by.split_of(&p.source) == split).cloned().collect())
}

fn answer_corpus(o: Options) -> Result<Vec<String>, Error> {
    let (split, by) = (o.split, o.split_by);
    let ex = extracted()?;
    let mut docs: Vec<String> =
        ex.blocks.iter().filter(|(m, _)| by.split_of(m) == split).map(|(_, t)| t.clone()).collect();
    if o.documentation && split == Split::Train {
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
    docs.truncate(o.max.unwrap_or(usize::MAX));
    Ok(docs)
}

fn answer_data(split: Split, o: Options) -> Result<Vec<LabelledExample>, Error> {
    let mut rows = pairs(split, o.split_by)?;
    if o.documentation && split == Split::Train {
        rows.extend(extract::documentation_pairs(&extracted()?.catalogue));
    }
    Ok(rows
        .into_iter()
        .take(o.max.unwrap_or(usize::MAX))
        .map(|p| LabelledExample { prompt: Some(p.prompt), ..LabelledExample::new(p.completion, 0.0) })
        .collect())
}

fn answer_score(req: ScoreRequest) -> Result<Metrics, Error> {
    let ex = extracted()?;
    let scores = serde_json::to_value(metrics::score(&req.rows, &ex.catalogue)).map_err(Error::new)?;
    Ok(scores.as_object().into_iter().flatten().filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x))).collect())
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

/// An `ansible-module` request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleRequest {
    pub module: String,
}

fn answer_module(req: ModuleRequest) -> Result<Value, Error> {
    let ex = extracted()?;
    let m = ex.catalogue.resolve(&req.module, None)?;
    serde_json::to_value(m).map_err(Error::new)
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct Request {
    /// A request in plain words.
    pub input: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Prompt {
    pub prompt: String,
}

/// `input` (a request) → `prompt`: `- name: <request>`.
pub fn stage_prompt(r: Request) -> Result<Prompt, Error> {
    if r.input.trim().is_empty() {
        return Err("the request is empty: say what the task should do".into());
    }
    Ok(Prompt { prompt: extract::prompt_for(&r.input) })
}

/// A prompt and what a generate stage continued it with.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct Completed {
    pub prompt: String,
    pub completion: String,
}

/// One Ansible task's YAML text.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct TaskText {
    pub task: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Parsed {
    pub task: String,
    pub name: String,
}

/// Joins `prompt` and `completion` into `task`; rejects text that is not one YAML
/// task mapping; adds its `name`.
pub fn stage_parse(r: Completed) -> Result<Parsed, Error> {
    let text = format!("{}{}", r.prompt, r.completion);
    let task = catalogue::parse_task(&text)?;
    let name = task.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_string();
    Ok(Parsed { task: text, name })
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Module {
    /// The module's fully qualified name.
    pub module: String,
}

fn check_text(text: &str) -> Result<String, Error> {
    let ex = extracted()?;
    let check = check_task(text, &ex.catalogue, None);
    if let Some(e) = check.error() {
        return Err(Error::new(e));
    }
    // A task without a schema error names exactly one known module.
    check.module.ok_or_else(|| Error::new("the task names no module"))
}

/// Rejects a task whose module is unknown (with a "did you mean") or whose
/// arguments do not fit the module's documentation; adds the module's FQCN.
pub fn stage_check(r: TaskText) -> Result<Module, Error> {
    Ok(Module { module: check_text(&r.task)? })
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckedTask {
    pub task: String,
    pub module: String,
}

/// [`stage_check`] on a prompt and its completion (the task's output check);
/// adds the joined `task` too.
pub fn stage_check_completion(r: Completed) -> Result<CheckedTask, Error> {
    let task = format!("{}{}", r.prompt, r.completion);
    Ok(CheckedTask { module: check_text(&task)?, task })
}

/// Wraps the record's task, or list of tasks (a pipeline's `collect` of checked
/// tasks), in a playbook of one play. Every task must be a mapping.
pub struct Playbook;

/// `params` of the playbook stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayParams {
    /// The play's `hosts` (default `all`).
    #[serde(default = "all")]
    pub hosts: String,
    /// Whether the play escalates privileges (default false).
    #[serde(default, rename = "become")]
    pub become_: bool,
}

fn all() -> String {
    "all".into()
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlaybookText {
    pub playbook: String,
}

impl Stage for Playbook {
    type Params = PlayParams;
    type Input = TaskText;
    type Output = PlaybookText;
    type State = PlayParams;

    fn open(&self, params: PlayParams) -> Result<PlayParams, Error> {
        Ok(params)
    }

    fn process(&self, params: &PlayParams, r: TaskText) -> Result<PlaybookText, Error> {
        let tasks = match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&r.task)
            .map_err(|e| Error::new(format!("not valid YAML: {e}")))?
        {
            serde_yaml_ng::Value::Mapping(m) => vec![serde_yaml_ng::Value::Mapping(m)],
            serde_yaml_ng::Value::Sequence(items) if !items.is_empty() && items.iter().all(|t| t.is_mapping()) => items,
            _ => return Err("a playbook needs one task mapping or a list of them".into()),
        };
        let mut play = serde_yaml_ng::Mapping::new();
        play.insert("hosts".into(), params.hosts.clone().into());
        if params.become_ {
            play.insert("become".into(), true.into());
        }
        play.insert("tasks".into(), serde_yaml_ng::Value::Sequence(tasks));
        let yaml = serde_yaml_ng::to_string(&serde_yaml_ng::Value::Sequence(vec![serde_yaml_ng::Value::Mapping(play)]))
            .map_err(Error::new)?;
        Ok(PlaybookText { playbook: format!("---\n{yaml}") })
    }
}

/// The `ansible` task's spec.
pub fn task_spec() -> TaskSpec {
    TaskSpec {
        kind: TaskKind::Generation,
        labels: Vec::new(),
        targets: vec![],
        data: "ansible-data".into(),
        metric: "perplexity".into(),
        source: "EXAMPLES of ansible 14.5.0 and ansible-core 2.21.5 (PyPI), (name -> task) pairs split 80/10/10 by module file".into(),
        features: None,
        input_check: None,
        completion: Some(CompletionSpec {
            prompt_stage: "prompt".into(),
            scorer: "ansible-score".into(),
            metric: "ansible_aware".into(),
            output_check: Some("check-completion".into()),
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
        vec![
            Component::corpus(
                "ansible-corpus",
                "EXAMPLES blocks (YAML) of a split's module files: {\"split\", \"split_by\", \"documentation\", \"max\"}",
                answer_corpus,
            ),
            Component::task("ansible", "natural language to one Ansible task (completion from `- name:`)", task_spec()),
            Component::task_data(
                "ansible-data",
                "(name -> task) rows: {\"split_by\": \"module\"|\"collection\", \"documentation\", \"max\"}",
                |_task: &str, split, o: Options| answer_data(split, o),
            ),
            Component::scorer(
                "ansible-score",
                "exact match, BLEU, schema-correct, Ansible-aware of scored completions",
                answer_score,
            ),
            Component::query("ansible-stats", "extraction counts, split sizes, skipped blocks", |_: NoParams| {
                Ok(stats_json(&*extracted()?))
            }),
            Component::guide(
                "guide",
                "catalogue-guided decoding: {prompt, completion, request} -> the next step (pick, allow, free)",
                guide::answer,
            ),
            Component::query("ansible-module", "a module's documented options: {\"module\": NAME}", answer_module),
            Component::stage_fn("prompt", "request -> `- name:` prompt", stage_prompt),
            Component::stage_fn(
                "parse",
                "join prompt and completion into `task`; reject text that is not one YAML task",
                stage_parse,
            ),
            Component::stage_fn("check", "reject unknown modules and undocumented or missing options", stage_check),
            Component::stage_fn(
                "check-completion",
                "`check` on a prompt and its completion (the task's output check); adds the joined task",
                stage_check_completion,
            ),
            Component::stage(
                "playbook",
                "wrap the task (or list of tasks) in a play (params.hosts, params.become)",
                Playbook,
            ),
        ]
    }
}

export_plugin!(id: "codegen", version: "0.1.0", create: Codegen);

#[cfg(test)]
mod tests {
    use plinth_plugin_test_support::{added, record, PluginTest};

    use super::*;

    fn plugin() -> PluginTest {
        PluginTest::new("codegen", Codegen).expect("starts; the ansible task's components are consistent")
    }

    #[test]
    fn playbook_wraps_one_or_many_tasks_in_a_play() {
        let t = plugin();
        let one = json!({"task": "- name: a\n  ansible.builtin.ping:\n"});
        let out = t.run_stage("playbook", json!({"hosts": "web", "become": true}), vec![one]).expect("runs");
        assert_eq!(
            added(&out[0]),
            Ok(&record(json!({
                "playbook": "---\n- hosts: web\n  become: true\n  tasks:\n  - name: a\n    ansible.builtin.ping: null\n"
            })))
        );
        let many = json!({"task": "- name: a\n  ansible.builtin.ping:\n- name: b\n  ansible.builtin.ping:\n"});
        let bad = json!({"task": "- just a string\n"});
        let out = t.run_stage("playbook", Value::Null, vec![many, bad]).expect("runs");
        let play = added(&out[0]).expect("kept")["playbook"].as_str().expect("text").to_string();
        assert!(play.starts_with("---\n- hosts: all\n  tasks:\n") && play.contains("  - name: b\n"), "{play}");
        assert_eq!(added(&out[1]), Err("a playbook needs one task mapping or a list of them"));
        let err = t.run_stage("playbook", json!({"become": "yes"}), vec![]).expect_err("a string for a bool");
        assert!(err.message.contains("invalid type: string"), "{err}");
    }

    #[test]
    fn prompt_stage_frames_a_request() {
        let t = plugin();
        let out = t.run_stage("prompt", Value::Null, vec![json!({"input": "Install nginx"}), json!({"input": "  "})]);
        let out = out.expect("runs");
        assert_eq!(added(&out[0]), Ok(&record(json!({"prompt": "- name: Install nginx"}))));
        assert!(added(&out[1]).expect_err("empty").contains("empty"));
    }

    #[test]
    fn stage_schemas_and_the_output_check_fit_the_task() {
        let t = plugin();
        let check = t.stage_spec("check-completion").expect("stage");
        assert_eq!(check.requires.keys().collect::<Vec<_>>(), ["completion", "prompt"]);
        assert_eq!(check.adds.keys().collect::<Vec<_>>(), ["module", "task"]);
        assert_eq!(t.stage_spec("check").expect("stage").requires.keys().collect::<Vec<_>>(), ["task"]);
        let spec = task_spec();
        assert_eq!(spec.completion.expect("prompted").output_check.as_deref(), Some("check-completion"));
    }
}
