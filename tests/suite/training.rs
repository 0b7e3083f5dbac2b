//! Pretraining: learning, exact resume, checkpoint round trips, safe failures.

use plinth_model::AttentionMode;
use plinth_tests::{dir_digest, micro_config, options, torch_lock};
use plinth_train::{Checkpoint, ObjectiveKind, Pretrainer};
use tch::{Device, Tensor};

fn digest_of(dir: &std::path::Path, names: &[&str]) -> Vec<(String, String)> {
    dir_digest(dir).into_iter().filter(|(n, _)| names.contains(&n.as_str())).collect()
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let _g = torch_lock();
    for kind in [ObjectiveKind::Mlm, ObjectiveKind::Causal] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let straight = micro_config(&tmp.path().join("straight"), kind);
        let split = micro_config(&tmp.path().join("split"), kind);
        let mut a = Pretrainer::new(straight, &options(false)).expect("a");
        a.train_until(12).expect("train a");
        let mut b = Pretrainer::new(split.clone(), &options(false)).expect("b");
        b.train_until(5).expect("train b");
        assert_eq!(b.state().step, 5);
        drop(b);
        let mut c = Pretrainer::new(split, &options(true)).expect("resume");
        assert_eq!(c.state().step, 5, "resume must start where the checkpoint stopped");
        c.train_until(12).expect("train c");
        let files = ["model.safetensors", "optimizer.safetensors", "training.json"];
        let da = digest_of(&a.checkpoint_dir(), &files);
        let dc = digest_of(&c.checkpoint_dir(), &files);
        assert_eq!(da.len(), 3);
        assert_eq!(da, dc, "{kind:?}: k steps + resume + (N-k) steps must equal N steps bit for bit");
    }
}

#[test]
fn training_lowers_the_held_out_loss() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = micro_config(tmp.path(), ObjectiveKind::Causal);
    cfg.train.max_steps = 30;
    let mut t = Pretrainer::new(cfg, &options(false)).expect("trainer");
    let before = t.evaluate().expect("eval");
    t.run().expect("run");
    let after = t.evaluate().expect("eval");
    assert!(after < before - 0.5, "held-out loss went from {before} to {after}");
    assert!(tmp.path().join("loss.png").exists(), "a loss curve is written beside the checkpoint");
    let lines = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).expect("metrics");
    assert_eq!(lines.lines().count(), 30, "one metrics line per step");
}

#[test]
fn loaded_checkpoint_gives_bit_identical_logits() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut t = Pretrainer::new(micro_config(tmp.path(), ObjectiveKind::Mlm), &options(false)).expect("trainer");
    t.train_until(4).expect("train");
    let ck = Checkpoint::load(&t.checkpoint_dir(), Device::Cpu).expect("load");
    assert_eq!(ck.mode(), AttentionMode::Bidirectional);
    assert_eq!(ck.state.step, 4);
    let ids = Tensor::from_slice(&[1i64, 20, 30, 40, 50, 2]).view([1, 6]);
    let a = t.model().forward(&ids, AttentionMode::Bidirectional, None).expect("a");
    let b = ck.model.forward(&ids, AttentionMode::Bidirectional, None).expect("b");
    assert!(a.equal(&b));
    assert_eq!(ck.tokenizer.encode("the cat").expect("x"), t.tokenizer().encode("the cat").expect("y"));
}

/// A two-step run with its checkpoint saved: the config, the trainer and the
/// checkpoint's fingerprint.
fn saved_run(dir: &std::path::Path) -> (plinth_train::PretrainConfig, Pretrainer, Vec<(String, String)>) {
    let cfg = micro_config(dir, ObjectiveKind::Mlm);
    let mut t = Pretrainer::new(cfg.clone(), &options(false)).expect("trainer");
    t.train_until(2).expect("train");
    let saved = dir_digest(&t.checkpoint_dir());
    (cfg, t, saved)
}

#[test]
fn a_new_run_never_overwrites_a_saved_checkpoint() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cfg, t, saved) = saved_run(tmp.path());
    let checkpoint = t.checkpoint_dir();
    drop(t); // one writer per run folder: the next attempts need its lock
    let err = Pretrainer::new(cfg.clone(), &options(false)).expect_err("must refuse").to_string();
    assert!(err.contains("--resume"), "{err}");
    // Resuming with a different objective is refused too.
    let mut other = cfg;
    other.objective.mask_prob = 0.3;
    let err = Pretrainer::new(other, &options(true)).expect_err("objective changed").to_string();
    assert!(err.contains("objective"), "{err}");
    assert_eq!(dir_digest(&checkpoint), saved, "the saved checkpoint must be untouched");
}

/// A two-step run on its own copy of the fixture corpus, so a test may change it.
fn saved_run_on_own_corpus(
    dir: &std::path::Path,
) -> (plinth_train::PretrainConfig, std::path::PathBuf, Vec<(String, String)>) {
    let corpus = dir.join("corpus.txt");
    std::fs::copy(plinth_tests::fixture_corpus(), &corpus).expect("copy corpus");
    let mut cfg = micro_config(&dir.join("run"), ObjectiveKind::Mlm);
    cfg.data.corpus = plinth_data::CorpusSource::TextFiles(vec![corpus.clone()]);
    let mut t = Pretrainer::new(cfg.clone(), &options(false)).expect("trainer");
    t.train_until(2).expect("train");
    let saved = dir_digest(&t.checkpoint_dir());
    (cfg, corpus, saved)
}

#[test]
fn empty_corpus_is_a_clear_error_and_keeps_the_checkpoint() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cfg, corpus, saved) = saved_run_on_own_corpus(tmp.path());
    std::fs::write(&corpus, "\n\n").expect("empty the corpus");
    let ckpt = cfg.out_dir.join("checkpoint");
    let err = Pretrainer::new(cfg, &options(true)).expect_err("empty corpus").to_string();
    assert!(err.contains("no documents"), "{err}");
    assert_eq!(dir_digest(&ckpt), saved);
}

#[test]
fn resume_refuses_a_changed_config_and_names_each_key() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cfg, t, saved) = saved_run(tmp.path());
    let checkpoint = t.checkpoint_dir();
    drop(t); // one writer per run folder: the next attempts need its lock
    let mut changed = cfg.clone();
    changed.train.seq_len = 16; // packs the corpus into more blocks: the old sampler position would mislead
    changed.train.lr = 1e-3;
    let err = Pretrainer::new(changed, &options(true)).expect_err("changed config").to_string();
    assert!(err.contains("train.seq_len: 32 → 16"), "{err}");
    assert!(err.contains("train.lr: 0.003 → 0.001"), "{err}");
    assert!(err.contains("another out_dir"), "says what to do: {err}");
    assert_eq!(dir_digest(&checkpoint), saved, "the saved checkpoint must be untouched");

    // How long it runs and how often it reports may change.
    // How long it runs and how often it reports may change, and a corpus path spelled
    // differently (the data fingerprint checks what it holds).
    let link = tmp.path().join("same-corpus.txt");
    std::os::unix::fs::symlink(plinth_tests::fixture_corpus(), &link).expect("symlink");
    let mut longer = cfg;
    longer.train.max_steps = 16;
    longer.train.eval_every = 3;
    longer.data.corpus = plinth_data::CorpusSource::TextFiles(vec![link]);
    let resumed = Pretrainer::new(longer, &options(true)).expect("a longer run resumes");
    assert_eq!(resumed.state().step, 2);
}

#[test]
fn resume_refuses_data_that_changed_under_the_same_config() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cfg, corpus, saved) = saved_run_on_own_corpus(tmp.path());
    let text = std::fs::read_to_string(&corpus).expect("read");
    std::fs::write(&corpus, text.replacen("the", "a", 3)).expect("edit the corpus");
    let ckpt = cfg.out_dir.join("checkpoint");
    let err = Pretrainer::new(cfg, &options(true)).expect_err("changed data").to_string();
    assert!(err.contains("not the data this run was started with"), "{err}");
    assert_eq!(dir_digest(&ckpt), saved, "the saved checkpoint must be untouched");
}

#[test]
fn chunked_cross_entropy_equals_the_plain_loss_and_its_gradient() {
    let _g = torch_lock();
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let cfg = plinth_model::ModelConfig { vocab_size: 50, ..plinth_tests::micro_model() };
    let model = plinth_model::Transformer::new(&vs.root(), &cfg).expect("model");
    let hidden = Tensor::randn([600, cfg.d_model], (tch::Kind::Float, Device::Cpu)).set_requires_grad(true);
    let targets = Tensor::randint(50, [600], (tch::Kind::Int64, Device::Cpu));
    let _ = targets.narrow(0, 10, 20).fill_(plinth_train::objectives::IGNORE); // ignored rows count for neither
    let chunked = plinth_train::objectives::chunked_cross_entropy(&model, &hidden, &targets).expect("chunked");
    let plain = model.logits(&hidden).cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, -100, 0.0);
    assert!((chunked.double_value(&[]) - plain.double_value(&[])).abs() < 1e-5);
    let g1 = Tensor::run_backward(&[&chunked], &[&hidden], true, false);
    let g2 = Tensor::run_backward(&[&plain], &[&hidden], true, false);
    assert!((&g1[0] - &g2[0]).abs().max().double_value(&[]) < 1e-6);
}

#[test]
fn max_documents_limits_the_corpus() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = micro_config(tmp.path(), ObjectiveKind::Mlm);
    cfg.data.max_documents = 3; // 30 in the fixture: 2 train + 1 validation documents left
    let err = Pretrainer::new(cfg, &options(false)).expect_err("too little data").to_string();
    assert!(err.contains("training split packs into"), "{err}");
}

#[test]
fn gradient_accumulation_equals_the_larger_batch() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = |name: &str, batch_size: usize, grad_accum: usize| {
        let mut cfg = micro_config(&tmp.path().join(name), ObjectiveKind::Causal);
        cfg.train.batch_size = batch_size;
        cfg.train.grad_accum = grad_accum;
        // A large eps makes AdamW's update about lr * m / (1 + sqrt v), smooth in the
        // gradient; with the usual 1e-8 the first update is ±lr for any gradient, so
        // rounding noise in a near-zero gradient could flip it.
        cfg.train.eps = 1.0;
        let mut t = Pretrainer::new(cfg, &options(false)).expect("trainer");
        t.train_until(3).expect("train");
        let mut vars: Vec<(String, Tensor)> = t.var_store().variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    };
    let max_diff = |a: &[(String, Tensor)], b: &[(String, Tensor)]| {
        a.iter()
            .zip(b)
            .map(|((na, ta), (nb, tb))| {
                assert_eq!(na, nb);
                (ta - tb).abs().max().double_value(&[])
            })
            .fold(0.0f64, f64::max)
    };
    let accumulated = run("accum", 4, 2);
    let large = run("large", 8, 1);
    let small = run("small", 4, 1);
    let same = max_diff(&accumulated, &large);
    assert!(same < 1e-6, "4 x 2 accumulated differs from a batch of 8 by {same}");
    let other = max_diff(&accumulated, &small);
    assert!(other > 100.0 * same.max(1e-7), "a batch of 4 alone should differ visibly ({other} vs {same})");
}
