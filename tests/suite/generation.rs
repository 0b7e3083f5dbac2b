//! Generation and fill-in-the-blank on small trained models.

use std::path::Path;

use plinth_generate::{fill_masked, fill_middle, generate, FinishReason, Request, SamplingConfig, Step};
use plinth_model::ModelConfig;
use plinth_tests::{micro_config, micro_model, options, torch_lock};
use plinth_train::{ModelSpec, ObjectiveKind, Pretrainer};

fn trained(dir: &Path, kind: ObjectiveKind, steps: u64) -> Pretrainer {
    let mut cfg = micro_config(dir, kind);
    cfg.train.max_steps = steps;
    cfg.train.eval_every = steps;
    let mut t = Pretrainer::new(cfg, &options(false)).expect("trainer");
    t.run().expect("run");
    t
}

#[test]
fn cached_generation_equals_full_recompute_token_for_token() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = trained(tmp.path(), ObjectiveKind::Causal, 20);
    for (temperature, top_k, top_p) in [(0.0, 0, 1.0), (1.0, 0, 1.0), (0.8, 20, 0.9)] {
        let base = SamplingConfig { max_new_tokens: 40, temperature, top_k, top_p, seed: 11, ..Default::default() };
        let cached = generate(t.model(), t.tokenizer(), Request::text("The dog", &base)).expect("cached");
        let full = generate(
            t.model(),
            t.tokenizer(),
            Request::text("The dog", &SamplingConfig { use_cache: false, ..base.clone() }),
        )
        .expect("full");
        assert!(!cached.ids.is_empty());
        assert_eq!(cached.ids, full.ids, "temperature {temperature}: the KV cache changed the tokens");
    }
}

#[test]
fn stop_strings_end_generation_before_the_string() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = trained(tmp.path(), ObjectiveKind::Causal, 20);
    let cfg = SamplingConfig { max_new_tokens: 30, temperature: 1.0, seed: 3, ..Default::default() };
    let free = generate(t.model(), t.tokenizer(), Request::text("The", &cfg)).expect("free");
    let chars: Vec<char> = free.text.chars().collect();
    assert!(chars.len() > 6, "need some text to cut: {:?}", free.text);
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let cut = free.text.find(&stop).expect("stop occurs");
    let stopped = generate(
        t.model(),
        t.tokenizer(),
        Request::text("The", &SamplingConfig { stop: vec![stop.clone()], ..cfg.clone() }),
    )
    .expect("stopped");
    assert_eq!(stopped.finish, FinishReason::Stop);
    assert_eq!(stopped.text, free.text[..cut], "stop string {stop:?}");
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = trained(tmp.path(), ObjectiveKind::Causal, 1);
    let long = "the cat sat on the mat ".repeat(40);
    let err = generate(t.model(), t.tokenizer(), Request::text(&long, &SamplingConfig::default()))
        .expect_err("too long")
        .to_string();
    assert!(err.contains("context") && err.contains("shorten"), "{err}");
}

#[test]
fn a_masked_fill_tries_only_the_blanks_the_context_leaves_room_for() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mlm = trained(tmp.path(), ObjectiveKind::Mlm, 1);
    let context = mlm.model().config().max_seq_len as usize;
    let (tok, model) = (mlm.tokenizer(), mlm.model());
    // Grow the text before the blank until bos + text + eos leave one position for it.
    let mut words = String::from("a");
    while tok.encode(&words).expect("encode").len() + 2 < context - 1 {
        words.push_str(" a");
    }
    assert_eq!(tok.encode(&words).expect("encode").len() + 2, context - 1, "fixture: one position left");
    let fill =
        fill_masked(model, tok, &format!("{words} ___"), 3).expect("the one-token blank fits though 3 were allowed");
    assert!(fill.text.starts_with(&words) && !fill.answer.is_empty(), "{}", fill.text);
    let err = fill_masked(model, tok, &format!("{words} a ___"), 3).expect_err("no room").to_string();
    assert!(err.contains("leaving none") && err.contains("shorten"), "{err}");
}

#[test]
fn fills_keep_the_text_around_the_blank() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mlm = trained(&tmp.path().join("mlm"), ObjectiveKind::Mlm, 10);
    let fill = fill_masked(mlm.model(), mlm.tokenizer(), "The cat sat on the ___ and slept.", 2).expect("fill");
    assert!(fill.text.starts_with("The cat sat on the") && fill.text.ends_with(" and slept."), "{}", fill.text);
    assert!(!fill.answer.is_empty());
    assert_eq!(fill.candidates.len(), 5);
    let fim = trained(&tmp.path().join("fim"), ObjectiveKind::Causal, 10);
    let cfg = SamplingConfig { max_new_tokens: 8, ..Default::default() };
    let fill = fill_middle(fim.model(), fim.tokenizer(), "The cat sat on the ___ and slept.", &cfg).expect("fim");
    assert!(fill.text.starts_with("The cat sat on the") && fill.text.ends_with(" and slept."), "{}", fill.text);
}

/// A fixed-seed model at temperature 0 must print exactly the checked-in string.
/// Float rounding, and so the string, depends on the CPU's code paths, so there is
/// one golden file per path: `onednn` (x86-64 with AVX-512: the fused kernels and
/// oneDNN GEMMs), `avx2` (the fused kernels, ATen's GEMMs) and `aten` (neither).
/// Regenerate the one for this machine's path with `PLINTH_BLESS=1 just test`
/// after an intended change.
#[test]
fn golden_greedy_generation() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = micro_config(tmp.path(), ObjectiveKind::Causal);
    cfg.objective.fim_rate = 0.0;
    cfg.model = ModelSpec::Inline(ModelConfig { d_model: 64, d_ff: 128, ..micro_model() });
    cfg.train.lr = 1e-2;
    cfg.train.max_steps = 200;
    cfg.train.eval_every = 200;
    let mut t = Pretrainer::new(cfg, &options(false)).expect("trainer");
    t.run().expect("run");
    let cfg = SamplingConfig { max_new_tokens: 24, ..Default::default() };
    let text = generate(t.model(), t.tokenizer(), Request::text("The cat", &cfg)).expect("generate").text;
    let path = match (plinth_layers::kernels::onednn_usable(), plinth_layers::kernels::fast()) {
        (true, _) => "onednn",
        (false, true) => "avx2",
        (false, false) => "aten",
    };
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("golden/generate.{path}.txt"));
    if std::env::var_os("PLINTH_BLESS").is_some() {
        std::fs::write(&golden, &text).expect("bless");
    }
    let want = std::fs::read_to_string(&golden)
        .unwrap_or_else(|_| panic!("no golden for the {path} code path; run once with PLINTH_BLESS=1 on such a CPU"));
    assert_eq!(text, want);
}

#[test]
fn a_guide_confines_generation_to_what_it_allows() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = trained(tmp.path(), ObjectiveKind::Causal, 20);
    let (model, tok) = (t.model(), t.tokenizer());
    let words = [" cat sat", " dog ran"];
    // `allow`: whatever the sampler draws, the text becomes one option, then ends.
    for seed in 0..4 {
        let mut guide = |done: &str| -> Result<Step, String> {
            let options = words.iter().filter_map(|o| o.strip_prefix(done)).filter(|r| !r.is_empty());
            let options = options.map(String::from).collect();
            Ok(Step::Allow { options, eos: words.contains(&done), next_lines: vec![] })
        };
        let cfg = SamplingConfig { max_new_tokens: 30, temperature: 1.0, seed, ..Default::default() };
        let g = generate(model, tok, Request::text("The", &cfg).guide(Some(&mut guide))).expect("guided");
        assert!(words.contains(&g.text.as_str()), "seed {seed}: {:?}", g.text);
        assert_eq!(g.finish, FinishReason::EndOfText);
    }
    // `pick`: the prior decides between otherwise-scored options, appended whole.
    for (prior, expected) in [([0.0, 1e4], " dog ran"), ([1e4, 0.0], " cat sat")] {
        let mut guide = |done: &str| -> Result<Step, String> {
            Ok(if done.is_empty() {
                Step::Pick { options: words.iter().map(|w| w.to_string()).collect(), prior: prior.to_vec() }
            } else {
                Step::Allow { options: vec![], eos: true, next_lines: vec![] }
            })
        };
        let g = generate(model, tok, Request::text("The", &SamplingConfig::default()).guide(Some(&mut guide)))
            .expect("pick");
        assert_eq!(g.text, expected);
    }
    // `free` with `line_end: false`: no newline anywhere.
    let mut one_line = |_: &str| -> Result<Step, String> {
        Ok(Step::Free { eos: true, single_line: true, next_lines: vec![], line_end: false })
    };
    let cfg = SamplingConfig { max_new_tokens: 40, temperature: 1.0, seed: 9, ..Default::default() };
    let g = generate(model, tok, Request::text("The", &cfg).guide(Some(&mut one_line))).expect("free");
    assert!(!g.text.contains('\n') && !g.ids.is_empty(), "{:?}", g.text);
    // A guide's refusal stops generation with its reason.
    let mut refuse = |_: &str| -> Result<Step, String> { Err("no way forward".into()) };
    let err =
        generate(model, tok, Request::text("The", &cfg).guide(Some(&mut refuse))).expect_err("refused").to_string();
    assert!(err.contains("the guide: no way forward"), "{err}");
}
