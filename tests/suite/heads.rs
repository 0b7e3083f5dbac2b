//! Task heads and padded batches.

use plinth_model::heads::{HeadConfig, HeadKind, Pooling, TaskHead};
use plinth_model::{AttentionMode, ForwardOptions, ModelConfig, Transformer};
use plinth_tests::{micro_model, torch_lock};
use tch::{nn, Device, Kind, Tensor};

fn model(seed: i64) -> (nn::VarStore, Transformer) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = Transformer::new(&vs.root(), &ModelConfig { vocab_size: 50, ..micro_model() }).expect("model");
    (vs, m)
}

/// A short sequence gives the same hidden states alone and right-padded in a batch
/// with a longer one, in both attention modes, and so the same head output.
#[test]
fn padding_does_not_change_real_positions() {
    let _g = torch_lock();
    let (vs, m) = model(1);
    let short = Tensor::from_slice(&[1i64, 20, 21, 22, 2]).view([1, 5]);
    let batch = Tensor::from_slice(&[1i64, 20, 21, 22, 2, 0, 0, 0, 1, 30, 31, 32, 33, 34, 35, 2]).view([2, 8]);
    let valid = batch.ne(0); // pad id 0
    for mode in [AttentionMode::Bidirectional, AttentionMode::Causal] {
        let alone = m.hidden(&short, mode, None).expect("alone");
        let opts = ForwardOptions { padding: Some(&valid), ..ForwardOptions::new(mode) };
        let padded = m.hidden_with(&batch, None, &opts).expect("padded");
        let diff = (padded.get(0).narrow(0, 0, 5) - alone.get(0)).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{mode:?}: padding changed real positions by {diff}");
        for pooling in [Pooling::Mean, Pooling::First, Pooling::Last] {
            let head = TaskHead::new(
                &(vs.root() / "head"),
                32,
                &HeadConfig { task: HeadKind::Regression { outputs: 1 }, pooling, hidden: vec![] },
            )
            .expect("head");
            let a = head.forward(&alone, &short.ne(0));
            let b = head.forward(&padded, &valid).get(0).unsqueeze(0);
            assert!((a - b).abs().max().double_value(&[]) < 1e-5, "{mode:?} {pooling:?}");
        }
    }
    let bad = m.hidden_with(
        &batch,
        None,
        &ForwardOptions { padding: Some(&valid.narrow(1, 0, 4)), ..ForwardOptions::new(AttentionMode::Causal) },
    );
    assert!(bad.expect_err("wrong mask shape").to_string().contains("padding mask"));
}

#[test]
fn pooling_picks_what_it_says() {
    let vs = nn::VarStore::new(Device::Cpu);
    let hidden = Tensor::arange(2 * 3 * 2, (Kind::Float, Device::Cpu)).view([2, 3, 2]); // rows 0..5
    let valid = Tensor::from_slice(&[true, true, false, true, true, true]).view([2, 3]);
    let pooled = |pooling| {
        TaskHead::new(
            &vs.root(),
            2,
            &HeadConfig { task: HeadKind::Classification { classes: 3 }, pooling, hidden: vec![] },
        )
        .expect("head")
        .pool(&hidden, &valid)
    };
    let v = |t: Tensor| Vec::<f32>::try_from(t.reshape([-1])).expect("vec");
    assert_eq!(v(pooled(Pooling::First)), vec![0.0, 1.0, 6.0, 7.0]);
    assert_eq!(v(pooled(Pooling::Last)), vec![2.0, 3.0, 10.0, 11.0]);
    assert_eq!(v(pooled(Pooling::Mean)), vec![1.0, 2.0, 8.0, 9.0]);
}

#[test]
fn losses_and_bad_heads() {
    let vs = nn::VarStore::new(Device::Cpu);
    let reg = TaskHead::new(
        &vs.root(),
        2,
        &HeadConfig { task: HeadKind::Regression { outputs: 1 }, pooling: Pooling::Mean, hidden: vec![] },
    )
    .expect("reg");
    let l = reg
        .loss(&Tensor::from_slice(&[1.0f32, 3.0]).view([2, 1]), &Tensor::from_slice(&[0.0f64, 1.0]).view([2, 1]))
        .expect("mse");
    assert!((l.double_value(&[]) - 2.5).abs() < 1e-6, "mse of (1, 2) errors is 2.5");
    let cls = TaskHead::new(
        &vs.root(),
        2,
        &HeadConfig { task: HeadKind::Classification { classes: 2 }, pooling: Pooling::First, hidden: vec![] },
    )
    .expect("cls");
    let l = cls.loss(&Tensor::from_slice(&[0.0f32, 0.0]).view([1, 2]), &Tensor::from_slice(&[1i64])).expect("ce");
    assert!((l.double_value(&[]) - std::f64::consts::LN_2).abs() < 1e-6, "uniform logits over 2 classes give ln 2");
    let err = TaskHead::new(
        &vs.root(),
        2,
        &HeadConfig { task: HeadKind::Classification { classes: 1 }, pooling: Pooling::First, hidden: vec![] },
    );
    assert!(err.expect_err("one class").to_string().contains("2 classes"));
    let cfg: HeadConfig =
        toml::from_str("task = { kind = \"classification\", classes = 5 }\npooling = \"mean\"\n").expect("toml");
    assert_eq!(cfg.task, HeadKind::Classification { classes: 5 });
    let err = toml::from_str::<HeadConfig>("task = { kind = \"regression\", classes = 5 }\npooling = \"mean\"\n");
    assert!(err.expect_err("classes is not a regression key").to_string().contains("classes"));
}

#[test]
fn hidden_layers_sit_between_pooling_and_the_output_layer() {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = HeadConfig { task: HeadKind::Classification { classes: 3 }, pooling: Pooling::Mean, hidden: vec![8, 5] };
    let head = TaskHead::new(&(vs.root() / "head"), 4, &cfg).expect("mlp head");
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "head.hidden.0.bias",
            "head.hidden.0.weight",
            "head.hidden.1.bias",
            "head.hidden.1.weight",
            "head.proj.bias",
            "head.proj.weight"
        ]
    );
    assert_eq!(vs.variables()["head.proj.weight"].size(), [3, 5]);
    let hidden = Tensor::randn([2, 6, 4], (tch::Kind::Float, Device::Cpu));
    let valid = Tensor::ones([2, 6], (tch::Kind::Bool, Device::Cpu));
    assert_eq!(head.forward(&hidden, &valid).size(), [2, 3]);
    let bad = HeadConfig { hidden: vec![8, 0], ..cfg };
    assert!(TaskHead::new(&vs.root(), 4, &bad).expect_err("zero width").to_string().contains("positive"));
}
