//! LoRA adapters on a frozen base: attaching, merging, training only the adapter,
//! binding to the base, and several adapters on one base.

use plinth_model::checkpoint::{named_variables, save_tensors, WEIGHTS_FILE};
use plinth_model::lora::{load_adapter, save_adapter, weights_sha256, AdapterMeta, LoraAdapter, LoraConfig};
use plinth_model::{AttentionMode, ForwardOptions, ModelConfig, Transformer};
use plinth_tests::{micro_model, torch_lock, with_and_without_kernels};
use plinth_train::optim::{gradients, AdamW, AdamWConfig};
use tch::{nn, Device, Kind, Tensor};

fn base(seed: i64) -> (nn::VarStore, Transformer, ModelConfig) {
    tch::manual_seed(seed);
    let cfg = ModelConfig { vocab_size: 61, ..micro_model() };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Transformer::new(&vs.root(), &cfg).expect("model");
    (vs, model, cfg)
}

fn lora_cfg() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["attn.*".into(), "mlp.up_proj".into(), "down_proj".into()],
    }
}

/// An adapter with random (non-zero) B, as if trained.
fn trained_adapter(cfg: &ModelConfig, seed: i64) -> (nn::VarStore, LoraAdapter) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let adapter = LoraAdapter::new(&vs.root(), cfg, &lora_cfg()).expect("adapter");
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.ends_with("lora_b") {
                t.copy_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.1));
            }
        }
    });
    (vs, adapter)
}

fn lora_opts(adapter: &LoraAdapter) -> ForwardOptions<'_> {
    ForwardOptions { adapter: Some(adapter), ..ForwardOptions::new(AttentionMode::Causal) }
}

fn ids() -> Tensor {
    Tensor::from_slice(&[1i64, 9, 17, 33, 40, 12, 8, 2]).view([1, 8])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn attaching_a_fresh_adapter_changes_nothing() {
    let _g = torch_lock();
    let (_vs, model, cfg) = base(1);
    let avs = nn::VarStore::new(Device::Cpu);
    let adapter = LoraAdapter::new(&avs.root(), &cfg, &lora_cfg()).expect("adapter");
    assert_eq!(adapter.adapted().len(), 2 * (4 + 2), "attn q/k/v/o + up + down in each of 2 blocks");
    let plain = model.forward(&ids(), AttentionMode::Causal, None).expect("plain");
    let with = model.forward_with(&ids(), None, &lora_opts(&adapter)).expect("with");
    assert!(plain.equal(&with), "B = 0 must leave the logits bit-identical");
}

#[test]
fn merged_and_unmerged_give_the_same_logits() {
    let _g = torch_lock();
    let (vs, model, cfg) = base(2);
    let (_avs, adapter) = trained_adapter(&cfg, 3);
    let before: Vec<(String, Tensor)> = named_variables(&vs).into_iter().map(|(n, t)| (n, t.copy())).collect();
    let unmerged = model.forward_with(&ids(), None, &lora_opts(&adapter)).expect("unmerged");
    let plain = model.forward(&ids(), AttentionMode::Causal, None).expect("plain");
    assert!(max_diff(&unmerged, &plain) > 1e-3, "a trained adapter changes the output");
    adapter.merge_into(&vs).expect("merge");
    let merged = model.forward(&ids(), AttentionMode::Causal, None).expect("merged");
    assert!(max_diff(&merged, &unmerged) < 1e-4, "merged {}", max_diff(&merged, &unmerged));
    adapter.unmerge_from(&vs).expect("unmerge");
    for ((name, old), (_, new)) in before.iter().zip(named_variables(&vs)) {
        assert!(max_diff(old, &new) < 1e-6, "{name} not restored by unmerge");
    }
}

#[test]
fn lora_training_changes_only_the_adapter() {
    let _g = torch_lock();
    let (mut vs, model, cfg) = base(4);
    vs.freeze();
    let before: Vec<(String, Tensor)> = named_variables(&vs).into_iter().map(|(n, t)| (n, t.copy())).collect();
    let avs = nn::VarStore::new(Device::Cpu);
    let mut adapter = LoraAdapter::new(&avs.root(), &cfg, &LoraConfig { dropout: 0.1, ..lora_cfg() }).expect("adapter");
    adapter.set_training(true);
    let mut opt =
        AdamW::new(named_variables(&avs), AdamWConfig { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.0 });
    let data = Tensor::randint_low(7, 61, [4, 9], (Kind::Int64, Device::Cpu));
    let mut losses = Vec::new();
    for _ in 0..20 {
        let logits = model.forward_with(&data.narrow(1, 0, 8), None, &lora_opts(&adapter)).expect("fwd");
        let loss = logits.view([-1, 61]).cross_entropy_for_logits(&data.narrow(1, 1, 8).reshape([-1]));
        losses.push(loss.double_value(&[]));
        let grads = gradients(&loss, &opt.params());
        opt.step(&grads, 1e-2).expect("step");
    }
    assert!(losses[19] < losses[0], "the adapter learns: {losses:?}");
    for ((name, old), (_, new)) in before.iter().zip(named_variables(&vs)) {
        assert!(old.equal(&new), "base weight {name} changed");
    }
    let b_norm: f64 = named_variables(&avs)
        .iter()
        .filter(|(n, _)| n.ends_with("lora_b"))
        .map(|(_, t)| t.norm().double_value(&[]))
        .sum();
    assert!(b_norm > 0.0, "lora_b moved away from zero");
}

#[test]
fn an_adapter_refuses_a_different_base() {
    let _g = torch_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let (vs, _model, cfg) = base(5);
    let (other_vs, _other, _) = base(6);
    let base_file = dir.path().join("base").join(WEIGHTS_FILE);
    let other_file = dir.path().join("other").join(WEIGHTS_FILE);
    for (v, f) in [(&vs, &base_file), (&other_vs, &other_file)] {
        std::fs::create_dir_all(f.parent().expect("dir")).expect("mkdir");
        save_tensors(&named_variables(v), f).expect("save base");
    }
    let (avs, _adapter) = trained_adapter(&cfg, 7);
    let meta = AdapterMeta { lora: lora_cfg(), base_sha256: weights_sha256(&base_file).expect("hash") };
    save_adapter(&dir.path().join("adapter"), &avs, &meta).expect("save adapter");
    let (loaded_vs, _) =
        load_adapter(&dir.path().join("adapter"), &cfg, &base_file, Device::Cpu).expect("same base loads");
    for ((n, a), (_, b)) in named_variables(&avs).iter().zip(named_variables(&loaded_vs)) {
        assert!(a.equal(&b), "{n} round-trips");
    }
    let err =
        load_adapter(&dir.path().join("adapter"), &cfg, &other_file, Device::Cpu).expect_err("other base").to_string();
    assert!(err.contains(&meta.base_sha256) && err.contains(&weights_sha256(&other_file).expect("h")), "{err}");
}

#[test]
fn each_request_gets_its_own_adapter_on_one_base() {
    let _g = torch_lock();
    let (vs, model, cfg) = base(8);
    let (_a1vs, a1) = trained_adapter(&cfg, 9);
    let (_a2vs, a2) = trained_adapter(&cfg, 10);
    let y1 = model.forward_with(&ids(), None, &lora_opts(&a1)).expect("a1");
    let y2 = model.forward_with(&ids(), None, &lora_opts(&a2)).expect("a2");
    let y1_again = model.forward_with(&ids(), None, &lora_opts(&a1)).expect("a1 again");
    assert!(max_diff(&y1, &y2) > 1e-3, "two adapters give two outputs");
    assert!(y1.equal(&y1_again), "switching back gives adapter 1's output exactly");
    // Each equals its own merged model.
    for (a, y) in [(&a1, &y1), (&a2, &y2)] {
        a.merge_into(&vs).expect("merge");
        let merged = model.forward(&ids(), AttentionMode::Causal, None).expect("merged");
        a.unmerge_from(&vs).expect("unmerge");
        assert!(max_diff(&merged, y) < 1e-4);
    }
    let err = LoraAdapter::new(
        &nn::VarStore::new(Device::Cpu).root(),
        &cfg,
        &LoraConfig { targets: vec!["qproj".into()], ..lora_cfg() },
    )
    .expect_err("bad target")
    .to_string();
    assert!(err.contains("qproj") && err.contains("blocks.0.attn.q_proj"), "{err}");
}

#[test]
fn one_batch_mixes_adapters_row_by_row() {
    let _g = torch_lock();
    let (_vs, model, cfg) = base(11);
    let (_a1vs, a1) = trained_adapter(&cfg, 12);
    // A second adapter of another rank on other projections: the mix pads ranks and
    // leaves rows alone where their adapter does not touch a projection.
    tch::manual_seed(13);
    let a2vs = nn::VarStore::new(Device::Cpu);
    let a2_cfg = LoraConfig { rank: 2, alpha: 2.0, dropout: 0.0, targets: vec!["q_proj".into(), "mlp.*".into()] };
    let a2 = LoraAdapter::new(&a2vs.root(), &cfg, &a2_cfg).expect("a2");
    tch::no_grad(|| {
        for (name, mut t) in a2vs.variables() {
            if name.ends_with("lora_b") {
                t.copy_(&(Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.1));
            }
        }
    });
    let batch = Tensor::from_slice(&[1i64, 9, 17, 33, 40, 12, 8, 2, 5, 6, 7, 30, 31, 32, 3, 4]).view([4, 4]);
    let choice = [0usize, 1, 1, 0];
    let mix = LoraAdapter::per_row(&[&a1, &a2], &choice).expect("mix");
    for mode in [AttentionMode::Causal, AttentionMode::Bidirectional] {
        let opts = |a| ForwardOptions { adapter: Some(a), ..ForwardOptions::new(mode) };
        let mixed = model.forward_with(&batch, None, &opts(&mix)).expect("mixed");
        for (row, &c) in choice.iter().enumerate() {
            let own = model.forward_with(&batch.narrow(0, row as i64, 1), None, &opts([&a1, &a2][c])).expect("own");
            let d = max_diff(&mixed.narrow(0, row as i64, 1), &own);
            assert!(d < 1e-5, "{mode:?} row {row} differs from adapter {c} alone by {d}");
        }
    }
    let err = model
        .forward_with(&batch.narrow(0, 0, 2), None, &ForwardOptions { adapter: Some(&mix), ..lora_opts(&a1) })
        .expect_err("wrong batch")
        .to_string();
    assert!(err.contains("built for 4 rows"), "{err}");
    assert!(LoraAdapter::per_row(&[&a1], &[0, 1]).is_err(), "a choice past the adapters is refused");
    assert!(mix.merge_into(&nn::VarStore::new(Device::Cpu)).is_err());
}

/// At 2 × 24 rows the layers run the fused kernels with the adapter's updates
/// added into the fused GEMMs' output columns (q, k, v adapted; up but not gate,
/// so the gate's columns get zeros). That must equal the composed per-projection
/// path in logits and in the adapter's gradients, and equal the merged model.
#[test]
fn fused_kernels_apply_adapter_updates_like_the_composed_path() {
    let _g = torch_lock();
    let (vs, model, cfg) = base(4);
    let (avs, adapter) = trained_adapter(&cfg, 5);
    let ids = Tensor::randint_low(3, cfg.vocab_size, [2, 24], (Kind::Int64, Device::Cpu));
    let weights = Tensor::randn([2, 24, cfg.vocab_size], (Kind::Float, Device::Cpu));
    let params = avs.trainable_variables();
    let run = || {
        let logits = model.forward_with(&ids, None, &lora_opts(&adapter)).expect("forward");
        let grads = Tensor::run_backward(&[(&logits * &weights).sum(Kind::Float)], &params, false, false);
        (logits, grads)
    };
    let ((fused, fused_grads), (composed, composed_grads)) = with_and_without_kernels(run);
    assert!(max_diff(&fused, &composed) < 1e-4, "logits differ by {}", max_diff(&fused, &composed));
    if plinth_layers::kernels::fast() {
        assert!(!fused.equal(&composed), "the kernels are available here but the forward did not use them");
    }
    for (i, (a, b)) in fused_grads.iter().zip(&composed_grads).enumerate() {
        let scale = b.abs().max().double_value(&[]).max(1e-6);
        assert!(max_diff(a, b) / scale < 1e-3, "adapter gradient {i} differs by {} (relative)", max_diff(a, b) / scale);
    }
    adapter.merge_into(&vs).expect("merge");
    let merged = model.forward(&ids, AttentionMode::Causal, None).expect("merged");
    assert!(max_diff(&merged, &fused) < 1e-4, "merged {}", max_diff(&merged, &fused));
}
