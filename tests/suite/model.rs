//! The Transformer's invariants across the architecture knobs.

use plinth_model::{
    checkpoint, AttentionMode, MlpKind, ModelConfig, NormKind, NormPlacement, PositionKind, Transformer,
};
use plinth_tests::{micro_model, torch_lock, with_and_without_kernels};
use tch::{nn, Device, Kind, Tensor};

/// Llama-style, BERT/GPT-2-style and a mix, so every knob is exercised.
fn variants() -> Vec<ModelConfig> {
    let llama = ModelConfig { vocab_size: 97, ..micro_model() };
    let bert_like = ModelConfig {
        norm: NormKind::LayerNorm,
        mlp: MlpKind::Gelu,
        position: PositionKind::Learned,
        bias: true,
        tie_embeddings: false,
        n_kv_heads: None,
        ..llama.clone()
    };
    let mixed = ModelConfig { n_kv_heads: Some(1), tie_embeddings: false, ..llama.clone() };
    // BERT exactly: post-norm, a token-type row, RoBERTa's position offset, BERT's head.
    let bert = ModelConfig {
        norm_placement: NormPlacement::Post,
        type_vocab_size: 2,
        position_offset: 2,
        head_transform: true,
        head_bias: true,
        tie_embeddings: true,
        ..bert_like.clone()
    };
    // Heads wider than d_model / n_heads (Llama 3.2 and Gemma configs).
    let wide_heads = ModelConfig { head_dim: Some(12), ..llama.clone() };
    vec![llama, bert_like, mixed, bert, wide_heads]
}

fn build(cfg: &ModelConfig, seed: i64) -> (nn::VarStore, Transformer) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Transformer::new(&vs.root(), cfg).expect("valid config");
    (vs, model)
}

fn random_ids(vocab: i64, len: i64) -> Tensor {
    Tensor::randint_low(7, vocab, [1, len], (Kind::Int64, Device::Cpu))
}

#[test]
fn causal_attention_never_sees_future_tokens() {
    let _g = torch_lock();
    for cfg in variants() {
        let (_vs, model) = build(&cfg, 1);
        let ids = random_ids(cfg.vocab_size, 20);
        let changed = ids.copy();
        let _ = changed.get(0).get(12).fill_((ids.int64_value(&[0, 12]) + 1 - 7) % (cfg.vocab_size - 7) + 7);
        let a = model.forward(&ids, AttentionMode::Causal, None).expect("forward");
        let b = model.forward(&changed, AttentionMode::Causal, None).expect("forward");
        let before = (a.narrow(1, 0, 12) - b.narrow(1, 0, 12)).abs().max().double_value(&[]);
        let after = (a.narrow(1, 12, 8) - b.narrow(1, 12, 8)).abs().max().double_value(&[]);
        assert_eq!(before, 0.0, "{cfg:?}: a future token changed an earlier logit");
        assert!(after > 0.0, "{cfg:?}: the changed token must change its own logits");
        // The same weights run bidirectionally: now earlier positions do see it.
        let c = model.forward(&ids, AttentionMode::Bidirectional, None).expect("forward");
        let d = model.forward(&changed, AttentionMode::Bidirectional, None).expect("forward");
        assert!((c.narrow(1, 0, 12) - d.narrow(1, 0, 12)).abs().max().double_value(&[]) > 0.0);
    }
}

#[test]
fn kv_cache_in_chunks_matches_full_recompute() {
    let _g = torch_lock();
    for cfg in variants() {
        let (_vs, model) = build(&cfg, 2);
        let ids = random_ids(cfg.vocab_size, 20);
        let full = model.forward(&ids, AttentionMode::Causal, None).expect("forward"); // (1, 20, V)
        let mut cache = model.new_cache(1);
        let mut parts = Vec::new();
        for (start, len) in [(0, 7), (7, 5), (12, 1), (13, 1), (14, 6)] {
            parts.push(
                model.forward(&ids.narrow(1, start, len), AttentionMode::Causal, Some(&mut cache)).expect("cached"),
            );
        }
        assert_eq!(cache.len(), 20);
        let cached = Tensor::cat(&parts, 1);
        let diff = (full - cached).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{cfg:?}: cached logits differ by {diff}");
    }
}

#[test]
fn safetensors_round_trip_gives_bit_identical_logits() {
    let _g = torch_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, cfg) in variants().into_iter().enumerate() {
        let (vs, model) = build(&cfg, 3);
        let path = dir.path().join(format!("m{i}.safetensors"));
        checkpoint::save_tensors(&checkpoint::named_variables(&vs), &path).expect("save");
        let (mut vs2, model2) = build(&cfg, 99);
        checkpoint::load_into(&mut vs2, &path).expect("load");
        let ids = random_ids(cfg.vocab_size, 16);
        let a = model.forward(&ids, AttentionMode::Causal, None).expect("a");
        let b = model2.forward(&ids, AttentionMode::Causal, None).expect("b");
        assert!(a.equal(&b), "{cfg:?}: logits changed after save and load");
    }
}

#[test]
fn loading_into_another_shape_names_the_tensor() {
    let _g = torch_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ModelConfig { vocab_size: 97, ..micro_model() };
    let (vs, _m) = build(&cfg, 4);
    let path = dir.path().join("m.safetensors");
    checkpoint::save_tensors(&checkpoint::named_variables(&vs), &path).expect("save");
    let wider = ModelConfig { d_ff: 96, ..cfg };
    let (mut vs2, _m2) = build(&wider, 4);
    let err = checkpoint::load_into(&mut vs2, &path).expect_err("shape mismatch").to_string();
    assert!(err.contains("mlp") && err.contains("shape"), "{err}");
}

#[test]
fn bad_token_ids_and_overlong_inputs_are_refused() {
    let _g = torch_lock();
    let cfg = ModelConfig { vocab_size: 97, ..micro_model() };
    let (_vs, model) = build(&cfg, 5);
    let too_big = Tensor::from_slice(&[1i64, 97]).view([1, 2]);
    let err = model.forward(&too_big, AttentionMode::Causal, None).expect_err("id out of range").to_string();
    assert!(err.contains("97") && err.contains("vocabulary"), "{err}");
    let too_long = random_ids(97, 65);
    let err = model.forward(&too_long, AttentionMode::Causal, None).expect_err("too long").to_string();
    assert!(err.contains("65") && err.contains("context"), "{err}");
}

#[test]
fn parameter_count_matches_the_weights_for_every_variant() {
    for cfg in variants() {
        let (vs, _model) = build(&cfg, 1);
        let numel: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
        assert_eq!(cfg.num_params(), numel, "{cfg:?}");
    }
}

/// The model with plinth's CPU kernels (fused RMSNorm, SwiGLU and rotary, oneDNN
/// GEMMs) computes what it computes on ATen's own ops: logits and every
/// parameter's gradient, for every variant, both attention modes, at enough
/// rows (2 × 24) that the kernels are used.
#[test]
fn cpu_kernels_match_aten_ops_in_logits_and_gradients() {
    let _g = torch_lock();
    let mut engaged = 0;
    for cfg in variants() {
        for mode in [AttentionMode::Causal, AttentionMode::Bidirectional] {
            let (vs, model) = build(&cfg, 11);
            let ids = Tensor::randint_low(7, cfg.vocab_size, [2, 24], (Kind::Int64, Device::Cpu));
            let weights = Tensor::randn([2, 24, cfg.vocab_size], (Kind::Float, Device::Cpu));
            let params: Vec<Tensor> = vs.trainable_variables();
            let run = || {
                let logits = model.forward(&ids, mode, None).expect("forward");
                let grads = Tensor::run_backward(&[(&logits * &weights).sum(Kind::Float)], &params, false, false);
                (logits, grads)
            };
            let ((fast, fast_grads), (plain, plain_grads)) = with_and_without_kernels(run);
            let rel = |a: &Tensor, b: &Tensor| {
                (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-6)
            };
            assert!(rel(&fast, &plain) < 1e-4, "{mode:?} {cfg:?}: logits differ by {}", rel(&fast, &plain));
            engaged += usize::from(!fast.equal(&plain));
            for (i, (a, b)) in fast_grads.iter().zip(&plain_grads).enumerate() {
                assert!(rel(a, b) < 1e-3, "{mode:?}: gradient {i} differs by {} (relative)", rel(a, b));
            }
        }
    }
    // Rounding differs between the two paths, so identical logits everywhere would
    // mean the kernels never ran.
    if plinth_layers::kernels::fast() || plinth_layers::kernels::onednn_usable() {
        assert!(engaged > 0, "the CPU kernels are available here but no forward used them");
    }
}
