//! Finetuning: what changes and what must not, exact resume, refusing the wrong
//! base, several tasks on one base, and the three modes.

use std::path::{Path, PathBuf};

use plinth_finetune::{
    AdapterSettings, FinetuneConfig, FinetuneOptions, FinetuneTrain, FinetunedTask, Finetuner, HeadSettings, Mode,
    TaskRef,
};
use plinth_model::checkpoint::named_variables;
use plinth_plugin_protocol::{
    CompletionSpec, GuideRequest, LabelledExample, Metrics, ScoreRequest, Split, Step, TaskKind, TaskSpec,
};
use plinth_plugin_sdk::{Component, Error, NoParams, Plugin};
use plinth_plugin_test_support::PluginTest;
use plinth_tests::{dir_digest, micro_config, options, torch_lock};
use plinth_train::{Checkpoint, ObjectiveKind, Pretrainer};
use tch::{Device, Tensor};

/// An in-process task plugin, written with the SDK and driven through the test
/// kit: `long` (is a sentence longer than 8 words), `words` (its word count),
/// `story` (language modelling) and the prompted `echo` (first word → next word),
/// over the fixture corpus's sentences. `guided` adds a guide to `echo`, as a
/// plugin update after a run was made would: it allows exactly " guided", then the end.
struct Fixture {
    guided: bool,
}

fn sentences() -> Vec<String> {
    let text = std::fs::read_to_string(plinth_tests::fixture_corpus()).expect("fixture");
    text.split(['.', '\n']).map(str::trim).filter(|s| s.split_whitespace().count() >= 2).map(String::from).collect()
}

fn rows(component: &str, split: Split) -> Vec<LabelledExample> {
    sentences()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| match split {
            Split::Validation => i % 5 == 3,
            Split::Test => i % 5 == 4,
            Split::Train => i % 5 < 3,
        })
        .map(|(_, s)| {
            let n = s.split_whitespace().count() as f64;
            let label = if component == "long-data" { f64::from(n > 8.0) } else { n };
            if component == "echo-data" {
                // The first word is the prompt; the answer is the next one.
                let words: Vec<&str> = s.split_whitespace().collect();
                let prompt = Some(words[0].to_string());
                return LabelledExample { prompt, ..LabelledExample::new(format!(" {}", words[1]), 0.0) };
            }
            LabelledExample::new(s, label)
        })
        .collect()
}

fn spec(kind: TaskKind, labels: &[&str], data: &str, metric: &str) -> TaskSpec {
    TaskSpec {
        kind,
        labels: labels.iter().map(|l| l.to_string()).collect(),
        targets: vec![],
        data: data.into(),
        metric: metric.into(),
        source: String::new(),
        features: None,
        input_check: None,
        completion: None,
        head: None,
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Request {
    input: String,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct Prompt {
    prompt: String,
}

impl Plugin for Fixture {
    fn components(&self) -> Vec<Component> {
        let mut echo = spec(TaskKind::Generation, &[], "echo-data", "perplexity");
        echo.completion = Some(CompletionSpec {
            prompt_stage: "frame".into(),
            scorer: "echo-score".into(),
            metric: "exact".into(),
            output_check: None,
            guide: self.guided.then(|| "echo-guide".to_string()),
            max_new_tokens: if self.guided { 16 } else { 3 },
            stop: vec![],
            repetition_penalty: 1.0,
        });
        let data = |name: &'static str| {
            Component::task_data(name, "", move |_task: &str, split, _: NoParams| Ok::<_, Error>(rows(name, split)))
        };
        vec![
            Component::task("long", "", spec(TaskKind::Classification, &["short", "long"], "long-data", "roc_auc")),
            data("long-data"),
            Component::task("words", "", spec(TaskKind::Regression, &[], "words-data", "rmse")),
            data("words-data"),
            Component::task("story", "", spec(TaskKind::Generation, &[], "story-data", "perplexity")),
            data("story-data"),
            Component::task("echo", "", echo),
            data("echo-data"),
            // Prompted generation: frame a request, score completions by exact match.
            Component::stage_fn("frame", "", |r: Request| Ok::<_, Error>(Prompt { prompt: r.input })),
            Component::scorer("echo-score", "", |req: ScoreRequest| {
                let exact = req.rows.iter().filter(|r| r.prediction == r.reference).count();
                let n = req.rows.len() as f64;
                Ok(Metrics::from([("exact".to_string(), exact as f64 / n.max(1.0)), ("n".to_string(), n)]))
            }),
            Component::guide("echo-guide", "", |req: GuideRequest| {
                if req.prompt.is_empty() {
                    return Err(Error::new("the guide request lacks its prompt"));
                }
                let done = req.completion.as_str();
                let options: Vec<String> = [" guided"]
                    .iter()
                    .filter_map(|o| o.strip_prefix(done))
                    .filter(|r| !r.is_empty())
                    .map(String::from)
                    .collect();
                Ok(Step::Allow { options, eos: done == " guided", next_lines: vec![] })
            }),
        ]
    }
}

fn tasks() -> PluginTest {
    PluginTest::new("fixture", Fixture { guided: false }).expect("the fixture plugin starts")
}

fn guided() -> PluginTest {
    PluginTest::new("fixture", Fixture { guided: true }).expect("the guided fixture starts")
}

/// Pretrains a micro base in `dir` and returns its checkpoint folder.
fn base(dir: &Path, seed: u64) -> PathBuf {
    base_of(dir, seed, ObjectiveKind::Mlm)
}

fn base_of(dir: &Path, seed: u64, kind: ObjectiveKind) -> PathBuf {
    let mut cfg = micro_config(dir, kind);
    cfg.train.seed = seed;
    cfg.train.max_steps = 4;
    let mut t = Pretrainer::new(cfg, &options(false)).expect("pretrainer");
    t.run().expect("pretrain");
    t.checkpoint_dir()
}

fn config(base: &Path, out: &Path, task: &str, mode: Mode) -> FinetuneConfig {
    FinetuneConfig {
        base: base.to_path_buf(),
        out_dir: out.to_path_buf(),
        task: TaskRef {
            plugin: "fixture".into(),
            name: task.into(),
            data: None,
            request: Default::default(),
            max_train: 0,
        },
        adapter: AdapterSettings { mode, rank: 4, dropout: 0.1, ..AdapterSettings::default() },
        head: HeadSettings::default(),
        train: FinetuneTrain {
            batch_size: 8,
            lr: 1e-2,
            max_steps: 12,
            warmup_steps: 2,
            eval_every: 4,
            patience: 0,
            max_len: 32,
            ..FinetuneTrain::default()
        },
        score: Default::default(),
    }
}

fn opts(resume: bool) -> FinetuneOptions {
    FinetuneOptions { resume, device: Device::Cpu, group: None, progress: false }
}

fn bits(t: &Tensor) -> Vec<u32> {
    let values = Vec::<f32>::try_from(t.detach().to_kind(tch::Kind::Float).flatten(0, -1)).expect("floats");
    values.into_iter().map(f32::to_bits).collect()
}

#[test]
fn lora_finetune_changes_only_the_adapter_and_head() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_dir = base(&tmp.path().join("base"), 7);
    let before = Checkpoint::load(&base_dir, Device::Cpu).expect("base");
    let mut ft = Finetuner::new(config(&base_dir, &tmp.path().join("ft"), "long", Mode::Lora), &tasks(), opts(false))
        .expect("finetuner");
    let fresh_task: Vec<(String, Tensor)> =
        named_variables(&ft.parts().vs).into_iter().map(|(k, v)| (k, v.detach().copy())).collect();
    let report = ft.run(&tasks()).expect("run");
    for (name, original) in named_variables(&before.vs) {
        let now = &named_variables(&ft.base().vs).into_iter().find(|(k, _)| *k == name).expect("same names").1;
        assert_eq!(bits(&original), bits(now), "base weight {name} changed during a LoRA run");
    }
    let trained = named_variables(&ft.parts().vs);
    assert!(
        trained.iter().all(|(k, _)| k.starts_with("lora.") || k.starts_with("head.")),
        "only adapter and head train"
    );
    for (name, old) in &fresh_task {
        let new = &trained.iter().find(|(k, _)| k == name).expect("same names").1;
        if name.ends_with("lora_b") || name.starts_with("head.") {
            assert_ne!(bits(old), bits(new), "{name} did not train");
        }
    }
    assert_eq!(report.trainable_params, trained.iter().map(|(_, t)| t.numel() as i64).sum::<i64>());
    let out = tmp.path().join("ft");
    assert!(out.join("best/task.safetensors").exists() && out.join("best/task.json").exists());
    assert!(!out.join("best/base.safetensors").exists(), "a LoRA task never stores the base");
    assert!(out.join("report.json").exists() && out.join("curves.png").exists());
    assert!(report.baselines.contains_key("majority") && report.baselines.contains_key("bag_of_tokens"));
    assert!(report.test.contains_key("roc_auc"));
}

#[test]
fn interrupted_finetune_resumes_exactly() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_dir = base(&tmp.path().join("base"), 7);
    let straight = tmp.path().join("straight");
    let split = tmp.path().join("split");
    Finetuner::new(config(&base_dir, &straight, "long", Mode::Lora), &tasks(), opts(false))
        .expect("a")
        .train_until(12)
        .expect("train a");
    let mut b = Finetuner::new(config(&base_dir, &split, "long", Mode::Lora), &tasks(), opts(false)).expect("b");
    b.train_until(8).expect("train b");
    drop(b);
    let err = Finetuner::new(config(&base_dir, &split, "long", Mode::Lora), &tasks(), opts(false)).expect_err("exists");
    assert!(err.to_string().contains("--resume"), "{err}");
    let mut c = Finetuner::new(config(&base_dir, &split, "long", Mode::Lora), &tasks(), opts(true)).expect("resume");
    assert_eq!(c.progress().step, 8);
    c.train_until(12).expect("train c");
    for dir in ["state", "best"] {
        let files = |root: &Path| {
            dir_digest(&root.join(dir)).into_iter().filter(|(n, _)| n.ends_with(".safetensors")).collect::<Vec<_>>()
        };
        assert!(!files(&straight).is_empty());
        assert_eq!(
            files(&straight),
            files(&split),
            "{dir}: 8 steps + resume + 4 steps must equal 12 steps bit for bit"
        );
    }
    drop(c); // one writer per run folder: the next attempts need c's lock
    let mut other = config(&base_dir, &split, "long", Mode::Lora);
    other.adapter.rank = 2;
    other.train.lr *= 2.0;
    let saved = dir_digest(&split.join("state"));
    let err = Finetuner::new(other, &tasks(), opts(true)).expect_err("different settings").to_string();
    assert!(err.contains("adapter.rank: ") && err.contains(" → 2"), "names the changed key: {err}");
    assert!(err.contains("train.lr: "), "{err}");
    assert_eq!(dir_digest(&split.join("state")), saved, "a refused resume changes nothing");
    // How long it runs may change, and where the base lies (its SHA-256 is what counts).
    let link = tmp.path().join("base-elsewhere");
    std::os::unix::fs::symlink(&base_dir, &link).expect("symlink");
    let mut longer = config(&link, &split, "long", Mode::Lora);
    longer.train.max_steps += 4;
    longer.train.patience += 1;
    let resumed = Finetuner::new(longer, &tasks(), opts(true)).expect("a longer run from a moved base resumes");
    assert_eq!(resumed.progress().step, 12);
}

#[test]
fn a_task_refuses_a_different_base() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_a = base(&tmp.path().join("a"), 7);
    let base_b = base(&tmp.path().join("b"), 8);
    let out = tmp.path().join("ft");
    Finetuner::new(config(&base_a, &out, "words", Mode::Lora), &tasks(), opts(false))
        .expect("ft")
        .run(&tasks())
        .expect("run");
    let other = Checkpoint::load(&base_b, Device::Cpu).expect("b");
    let err = FinetunedTask::load(&out, &other).expect_err("wrong base");
    let msg = err.to_string();
    assert!(msg.contains("SHA-256") && msg.contains("load it on the base it was trained on"), "{msg}");
}

#[test]
fn several_tasks_share_one_base_and_each_answers_as_its_own() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_dir = base(&tmp.path().join("base"), 7);
    let (long, words) = (tmp.path().join("long"), tmp.path().join("words"));
    Finetuner::new(config(&base_dir, &long, "long", Mode::Lora), &tasks(), opts(false))
        .expect("a")
        .run(&tasks())
        .expect("a");
    let mut w = config(&base_dir, &words, "words", Mode::Lora);
    w.train.seed = 3;
    Finetuner::new(w, &tasks(), opts(false)).expect("b").run(&tasks()).expect("b");
    let texts: Vec<String> = sentences().into_iter().take(6).collect();
    let ck = Checkpoint::load(&base_dir, Device::Cpu).expect("base");
    let alone_long = FinetunedTask::load(&long, &ck).expect("long").predict(&ck, &texts, 4).expect("p");
    let alone_words = FinetunedTask::load(&words, &ck).expect("words").predict(&ck, &texts, 4).expect("p");
    // Both resident on the one base, asked in alternation.
    let both = [FinetunedTask::load(&long, &ck).expect("long"), FinetunedTask::load(&words, &ck).expect("words")];
    for _ in 0..2 {
        let a = both[0].predict(&ck, &texts, 3).expect("a");
        let b = both[1].predict(&ck, &texts, 3).expect("b");
        assert_eq!(a.size(), [6, 2]);
        assert_eq!(b.size(), [6, 1]);
        assert!(a.allclose(&alone_long, 1e-5, 1e-6, false), "task long answers as when loaded alone");
        assert!(b.allclose(&alone_words, 1e-5, 1e-6, false), "task words answers as when loaded alone");
    }
    let probs_sum = alone_long.sum_dim_intlist(1, false, tch::Kind::Float);
    assert!(probs_sum.allclose(&Tensor::ones([6], (tch::Kind::Float, Device::Cpu)), 1e-5, 1e-5, false));
}

#[test]
fn head_only_and_full_modes_train_what_they_say() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_dir = base(&tmp.path().join("base"), 7);
    let before = Checkpoint::load(&base_dir, Device::Cpu).expect("base");
    let d = before.model.config().d_model;

    let head_out = tmp.path().join("head");
    let mut head =
        Finetuner::new(config(&base_dir, &head_out, "long", Mode::Head), &tasks(), opts(false)).expect("head");
    let report = head.run(&tasks()).expect("head run");
    assert_eq!(report.trainable_params, d * 2 + 2, "a linear probe trains d_model x classes + classes");
    let same = named_variables(&before.vs)
        .iter()
        .zip(named_variables(&head.base().vs))
        .all(|((_, a), (_, b))| bits(a) == bits(&b));
    assert!(same, "head-only training leaves the base untouched");

    let full_out = tmp.path().join("full");
    let mut full = config(&base_dir, &full_out, "long", Mode::Full);
    full.train.lr = 1e-3;
    let mut ft = Finetuner::new(full, &tasks(), opts(false)).expect("full");
    let report = ft.run(&tasks()).expect("full run");
    assert_eq!(report.trainable_params, before.model.config().num_params() + d * 2 + 2);
    let changed = named_variables(&before.vs)
        .iter()
        .zip(named_variables(&ft.base().vs))
        .filter(|((_, a), (_, b))| bits(a) != bits(b))
        .count();
    assert!(changed > 0, "full finetuning changes base weights");
    assert!(full_out.join("best/base.safetensors").exists(), "a full task carries its own weights");
    let on_disk = Checkpoint::load(&base_dir, Device::Cpu).expect("base");
    assert_eq!(
        plinth_tests::dir_digest(&base_dir),
        plinth_tests::dir_digest(&on_disk.dir),
        "the base checkpoint on disk is never written"
    );
    let task = FinetunedTask::load(&full_out, &on_disk).expect("load full task");
    let m = task.evaluate(&on_disk, &tasks(), Split::Test, 8, 0, None).expect("eval");
    let reported = report.test["roc_auc"];
    assert!((m["roc_auc"] - reported).abs() < 1e-6, "eval {} equals the report's {reported}", m["roc_auc"]);
}

#[test]
fn generation_finetune_lowers_perplexity_and_leaves_the_base() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_dir = base_of(&tmp.path().join("base"), 7, ObjectiveKind::Causal);
    let before = Checkpoint::load(&base_dir, Device::Cpu).expect("base");
    let out = tmp.path().join("story");
    let mut cfg = config(&base_dir, &out, "story", Mode::Lora);
    cfg.train.max_steps = 24;
    let mut ft = Finetuner::new(cfg, &tasks(), opts(false)).expect("finetuner");
    let start = ft.evaluate_split(Split::Validation).expect("eval")["perplexity"];
    let report = ft.run(&tasks()).expect("run");
    let end = report.validation["perplexity"];
    assert!(end < start, "validation perplexity {start} -> {end}");
    assert!(report.baselines.contains_key("unigram") && report.test.contains_key("perplexity"), "{report:?}");
    for (name, original) in named_variables(&before.vs) {
        let now = &named_variables(&ft.base().vs).into_iter().find(|(k, _)| *k == name).expect("same names").1;
        assert_eq!(bits(&original), bits(now), "base weight {name} changed");
    }
    let task = FinetunedTask::load(&out, &before).expect("load");
    let cfg = plinth_generate::SamplingConfig { max_new_tokens: 8, ..Default::default() };
    let with = task.generate(&before, "the", &cfg).expect("generate");
    assert!(!with.ids.is_empty() || with.finish == plinth_generate::FinishReason::EndOfText);
    let m = task.evaluate(&before, &tasks(), Split::Validation, 8, 0, None).expect("eval");
    assert!((m["perplexity"] - end).abs() < 1e-3 * end, "{} vs {end}", m["perplexity"]);
    assert!(task.predict(&before, &["x".to_string()], 1).is_err(), "a generation task does not predict");

    // A masked base cannot learn a generation task, and a generation task has no head alone.
    let mlm = base(&tmp.path().join("mlm"), 7);
    let err = Finetuner::new(config(&mlm, &tmp.path().join("x"), "story", Mode::Lora), &tasks(), opts(false))
        .expect_err("masked base");
    assert!(err.to_string().contains("needs a causal base"), "{err}");
    let err = Finetuner::new(config(&base_dir, &tmp.path().join("y"), "story", Mode::Head), &tasks(), opts(false))
        .expect_err("head mode");
    assert!(err.to_string().contains("no head"), "{err}");
}

#[test]
fn prompted_generation_learns_answers_and_is_scored_beside_retrieval() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base_dir = base_of(&tmp.path().join("base"), 7, ObjectiveKind::Causal);
    let base = Checkpoint::load(&base_dir, Device::Cpu).expect("base");
    let out = tmp.path().join("echo");
    let mut cfg = config(&base_dir, &out, "echo", Mode::Lora);
    cfg.score.max_examples = 5;
    let mut ft = Finetuner::new(cfg, &tasks(), opts(false)).expect("finetuner");
    let report = ft.run(&tasks()).expect("run");
    // The scorer's metrics join the test metrics; retrieval is scored the same way.
    assert_eq!(report.test["n"], 5.0, "{report:?}");
    assert!(report.test.contains_key("exact") && report.test.contains_key("perplexity"), "{report:?}");
    assert_eq!(report.baselines["retrieval"]["n"], 5.0, "{report:?}");
    let lines = std::fs::read_to_string(out.join(plinth_finetune::COMPLETIONS_FILE)).expect("completions");
    assert_eq!(lines.lines().count(), 5);
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().expect("line")).expect("json");
    assert!(first["prompt"].is_string() && first["prediction"].is_string() && first["reference"].is_string());

    // The loaded task answers a request through the plugin's prompt stage.
    let task = FinetunedTask::load(&out, &base).expect("load");
    let sampling = plinth_generate::SamplingConfig { temperature: 0.8, ..Default::default() };
    let (prompt, completion, complaint) = task.answer(&base, &tasks(), "the", &sampling, 2).expect("answer");
    assert_eq!(prompt, "the");
    assert!(complaint.is_none());
    assert_eq!(
        completion,
        task.generate(
            &base,
            "the",
            &plinth_finetune::complete::greedy(task.meta.spec.completion.as_ref().expect("spec"))
        )
        .expect("gen")
        .text,
        "the first try is greedy"
    );
    let m = task.evaluate(&base, &tasks(), Split::Test, 8, 3, None).expect("eval");
    assert_eq!((m["n"], m["retrieval.n"]), (3.0, 3.0), "{m:?}");
    // The plugin now guides the task: evaluation and answers decode under the
    // guide (the run's saved spec has none), and the completions are written.
    let written = tmp.path().join("guided.jsonl");
    task.evaluate(&base, &guided(), Split::Test, 8, 3, Some(&written)).expect("guided eval");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&written)
        .expect("completions")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r["prediction"] == " guided"), "{rows:?}");
    let (_, completion, _) = task.answer(&base, &guided(), "the", &sampling, 1).expect("guided answer");
    assert_eq!(completion, " guided");
    // A task without prompts does not answer requests.
    let words = tmp.path().join("words");
    Finetuner::new(config(&base_dir, &words, "story", Mode::Lora), &tasks(), opts(false))
        .expect("ft")
        .run(&tasks())
        .expect("run");
    let story = FinetunedTask::load(&words, &base).expect("load");
    let err = story.answer(&base, &tasks(), "x", &sampling, 1).expect_err("not prompted");
    assert!(err.to_string().contains("not a prompted generation task"), "{err}");
}

/// A domain served through the SDK (`Component::domain`): the SDK refuses a split
/// the spec does not list and a reply of the wrong length before the host sees it.
struct Words {
    short_reply: bool,
}

impl Plugin for Words {
    fn components(&self) -> Vec<Component> {
        let spec = plinth_plugin_protocol::DomainSpec {
            value: "a word".into(),
            splits: vec![plinth_plugin_protocol::DomainSplitSpec {
                name: "initial".into(),
                description: String::new(),
            }],
            features: None,
        };
        let short = self.short_reply;
        vec![Component::domain("domain", "words", spec, move |req: plinth_plugin_protocol::DomainRequest| {
            let n = if short { req.values.len() - 1 } else { req.values.len() };
            Ok::<_, Error>(
                req.values[..n]
                    .iter()
                    .map(|v| plinth_plugin_protocol::DomainValue {
                        split: req.split.as_ref().map(|_| if v.starts_with('a') { Split::Test } else { Split::Train }),
                        ..plinth_plugin_protocol::DomainValue::accepted(v.to_uppercase())
                    })
                    .collect(),
            )
        })]
    }
}

#[test]
fn a_domain_through_the_sdk_is_checked_on_both_sides() {
    use plinth_finetune::file_task::{load, FileTaskConfig, FileTaskKind, Labels};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut body = String::from("word,n\n");
    for (i, w) in
        ["apple", "avocado", "banana", "cherry", "blueberry", "cranberry", "apricot", "date"].iter().enumerate()
    {
        body.push_str(&format!("{w},{i}\n"));
    }
    std::fs::write(dir.path().join("w.csv"), body).expect("write");
    let mut cfg = FileTaskConfig {
        input: "word".into(),
        domain: Some("words".into()),
        label: Labels::One("n".into()),
        split: "initial".into(),
        ..FileTaskConfig::new(dir.path().join("w.csv"), FileTaskKind::Regression)
    };
    let plugins = PluginTest::new("words", Words { short_reply: false }).expect("plugin");
    let err = load(&cfg, Some(&plugins)).expect_err("no validation rows").to_string();
    assert!(err.contains("validation split is empty"), "the domain's split is used as given: {err}");
    cfg.split = "random".into();
    let t = load(&cfg, Some(&plugins)).expect("random split");
    assert!(t.train.iter().chain(&t.test).all(|r| r.text == r.text.to_uppercase()), "canonical values are read");
    let short = PluginTest::new("words", Words { short_reply: true }).expect("plugin");
    let err = load(&cfg, Some(&short)).expect_err("short reply").to_string();
    assert!(err.contains("answered 7 values for 8"), "{err}");
    let request = plinth_plugin_protocol::DomainRequest {
        values: vec!["a".into()],
        features: false,
        split: Some(plinth_plugin_protocol::DomainSplit {
            name: "alphabet".into(),
            validation_fraction: 0.1,
            test_fraction: 0.1,
            seed: 0,
        }),
    };
    use plinth_plugin_protocol::PluginsExt;
    let err = plugins.ask("words", "domain", &request).expect_err("unknown split").to_string();
    assert!(err.contains("no split \"alphabet\"") && err.contains("initial"), "{err}");
}
