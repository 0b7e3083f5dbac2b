//! Hugging Face interop against the real thing: small random-weight models made and
//! read by Python `transformers` (and `peft`) in the project's virtual environment
//! (`tests/interop/hf_side.py`), imported and exported by plinth, logits compared on
//! the same token ids (max absolute difference ≤ 1e-4 in f32).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use plinth_finetune::FinetunedTask;
use plinth_interop::peft::{export_peft, import_peft};
use plinth_interop::{export_hf, import_hf, save_checkpoint};
use plinth_model::lora::{save_adapter, AdapterMeta, LoraAdapter, LoraConfig};
use plinth_model::{checkpoint as ckpt, AttentionMode, ModelConfig, Transformer};
use plinth_tokenizer::{PlinthTokenizer, TrainOptions};
use plinth_train::{Checkpoint, ObjectiveKind};
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

fn hf_side() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/hf_side.py")
}

fn python(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(plinth_tests::venv_python())
        .arg(hf_side())
        .args(args)
        .output()
        .expect("run the project's Python; `./dev setup` creates it");
    assert!(
        out.status.success(),
        "hf_side.py failed (run `./dev setup` to install transformers and peft): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Python-made models, built once per test run.
fn hf_models() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        python(&["make".as_ref(), dir.path().as_os_str(), plinth_tests::fixture_corpus().as_os_str()]);
        dir
    })
    .path()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "logit shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

fn read(path: &Path, key: &str) -> Tensor {
    Tensor::read_safetensors(path)
        .expect("safetensors")
        .into_iter()
        .find_map(|(k, t)| (k == key).then_some(t))
        .unwrap_or_else(|| panic!("{key} in {}", path.display()))
}

fn plinth_logits(ck: &Checkpoint, ids: &Tensor) -> Tensor {
    tch::no_grad(|| ck.model.forward(ids, ck.mode(), None).expect("forward"))
}

#[test]
fn transformers_checkpoints_import_with_the_same_logits_and_token_ids() {
    let models = hf_models();
    let out = tempfile::tempdir().expect("tempdir");
    for (name, family, mode) in [
        ("llama-gqa-untied", "llama", AttentionMode::Causal),
        ("llama-tied-headdim", "llama", AttentionMode::Causal),
        ("llama-sharded", "llama", AttentionMode::Causal),
        ("bert", "bert", AttentionMode::Bidirectional),
        ("roberta", "roberta", AttentionMode::Bidirectional),
    ] {
        let dst = out.path().join(name);
        let report = import_hf(&models.join(name), &dst, false).expect("import");
        assert_eq!(report.family, family);
        let ck = Checkpoint::load(&dst, Device::Cpu).expect("an imported model loads as a plinth checkpoint");
        assert_eq!(ck.mode(), mode);
        let expected = models.join(name).join("expected.safetensors");
        let diff = max_diff(&plinth_logits(&ck, &read(&expected, "ids")), &read(&expected, "logits"));
        eprintln!("logit match | {name:<20} | transformers -> plinth | max |diff| {diff:.2e}");
        assert!(diff <= TOLERANCE, "{name}: plinth's logits differ from transformers' by {diff}");

        let sample: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(models.join(name).join("sample.json")).expect("sample"))
                .expect("json");
        let want: Vec<u32> = serde_json::from_value(sample["ids"].clone()).expect("ids");
        let text = sample["text"].as_str().expect("text");
        assert_eq!(ck.tokenizer.encode(text).expect("encode"), want, "{name}: token ids differ from Python's");

        if mode == AttentionMode::Bidirectional {
            // An imported masked model fills blanks with its own mask and word pieces.
            let fill =
                plinth_generate::fill_masked(&ck.model, &ck.tokenizer, "the cat ___ on the mat", 2).expect("fill");
            assert!(fill.text.starts_with("the cat ") && fill.text.ends_with(" on the mat"), "{name}: {fill:?}");
            assert!(
                !fill.answer.is_empty() && !fill.text.contains("[MASK]") && !fill.text.contains("<mask>"),
                "{name}: {fill:?}"
            );
            assert!(
                fill.candidates.iter().all(|(c, _)| !c.trim().is_empty()),
                "{name}: specials are never candidates: {fill:?}"
            );
        }
    }

    // PEFT LoRA adapters (B made non-zero) become plinth generation tasks with the
    // same logits: on the untied Llama (q, v, down), and on BERT with rsLoRA scaling
    // (query, value, intermediate).
    for (adapter, base, modules, alpha) in [("peft-llama", "llama-gqa-untied", 6, 8.0), ("peft-bert", "bert", 6, 16.0)]
    {
        let base = out.path().join(base);
        let task_dir = out.path().join(format!("{adapter}-task"));
        let report = import_peft(&models.join(adapter), &base, &task_dir, false).expect("import peft");
        assert_eq!((report.rank, report.modules, report.alpha), (4, modules, alpha), "{report:?}");
        let ck = Checkpoint::load(&base, Device::Cpu).expect("base");
        let task = FinetunedTask::load(&task_dir, &ck).expect("the imported adapter loads as a task");
        let expected = models.join(adapter).join("expected.safetensors");
        let ids = read(&expected, "ids");
        let diff = max_diff(&task.logits(&ck, &ids).expect("logits"), &read(&expected, "logits"));
        eprintln!("logit match | {adapter:<20} | peft -> plinth         | max |diff| {diff:.2e}");
        assert!(diff <= TOLERANCE, "{adapter}: plinth's logits differ from peft's by {diff}");
        let without = max_diff(&plinth_logits(&ck, &ids), &read(&expected, "logits"));
        assert!(without > 1e-3, "the adapter must matter for this comparison to mean anything ({without})");
        if ck.mode() == AttentionMode::Bidirectional {
            let fill = task.fill(&ck, "the cat ___ on the mat", 1).expect("fill with the adapter");
            assert!(fill.text.starts_with("the cat ") && fill.text.ends_with(" on the mat"), "{fill:?}");
        }
    }
}

/// A plinth model with every parameter random (norm scales and biases included).
fn random_model(cfg: &ModelConfig, seed: i64) -> nn::VarStore {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = Transformer::new(&vs.root(), cfg).expect("model");
    tch::no_grad(|| {
        for (_, mut t) in ckpt::named_variables(&vs) {
            let noise = t.randn_like() * if t.dim() == 1 { 0.1 } else { 0.05 };
            let _ = t.g_add_(&noise);
        }
    });
    vs
}

fn plinth_tokenizer() -> PlinthTokenizer {
    let text = std::fs::read_to_string(plinth_tests::fixture_corpus()).expect("fixture");
    let docs: Vec<&str> = text.split("\n\n").collect();
    PlinthTokenizer::train(docs.iter(), &TrainOptions { vocab_size: 400, min_frequency: 2 }).expect("train")
}

fn llama_shaped(vocab: i64) -> ModelConfig {
    ModelConfig { vocab_size: vocab, tie_embeddings: false, rope_theta: 50_000.0, ..plinth_tests::micro_model() }
}

fn bert_shaped(vocab: i64) -> ModelConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/models/bert-tiny.toml");
    let shipped = ModelConfig::from_toml_file(&path).expect("the shipped BERT-shaped preset");
    ModelConfig { vocab_size: vocab, d_model: 32, n_layers: 2, n_heads: 4, d_ff: 64, max_seq_len: 64, ..shipped }
}

#[test]
fn plinth_models_export_and_transformers_gives_the_same_logits() {
    let tok = plinth_tokenizer();
    let v = tok.vocab_size() as i64;
    let work = tempfile::tempdir().expect("tempdir");
    let sample = "It was raining cats and dogs — Ünïcödé, 42 tabs\tand  spaces.";
    for (name, cfg, objective, class) in [
        ("causal", llama_shaped(v), ObjectiveKind::Causal, "LlamaForCausalLM"),
        ("masked", bert_shaped(v), ObjectiveKind::Mlm, "BertForMaskedLM"),
    ] {
        let vs = random_model(&cfg, 3);
        let ck_dir = work.path().join(name);
        save_checkpoint(&ck_dir, &vs, &cfg, &tok, objective, false).expect("save");
        let ck = Checkpoint::load(&ck_dir, Device::Cpu).expect("load");
        let hf_dir = work.path().join(format!("{name}-hf"));
        let report = export_hf(&ck_dir, &hf_dir, false).expect("export");
        assert_eq!(report.architecture, class);

        let ids = Tensor::randint_low(7, v, [2, 20], (Kind::Int64, Device::Cpu));
        let ids_path = work.path().join(format!("{name}-ids.safetensors"));
        Tensor::write_safetensors(&[("ids", &ids)], &ids_path).expect("write ids");
        let logits_path = work.path().join(format!("{name}-logits.safetensors"));
        // Python loads the folder (with a PEFT adapter when `adapter/` exists) and
        // writes its logits on `ids`; it prints the ids of `sample` and the model class.
        let check = || {
            python(&[
                "check".as_ref(),
                hf_dir.as_os_str(),
                ids_path.as_os_str(),
                logits_path.as_os_str(),
                sample.as_ref(),
            ])
        };
        let printed = check();
        let json: serde_json::Value = serde_json::from_str(printed.trim()).expect("check prints json");
        assert_eq!(json["class"], class);
        let diff = max_diff(&plinth_logits(&ck, &ids), &read(&logits_path, "logits"));
        eprintln!("logit match | {name:<20} | plinth -> transformers | max |diff| {diff:.2e}");
        assert!(diff <= TOLERANCE, "{name}: transformers' logits differ from plinth's by {diff}");
        let python_ids: Vec<u32> = serde_json::from_value(json["ids"].clone()).expect("ids");
        assert_eq!(python_ids, tok.encode(sample).expect("encode"), "AutoTokenizer must encode as plinth does");

        if objective == ObjectiveKind::Causal {
            // A plinth LoRA adapter exported in PEFT's format: PeftModel on the
            // exported base gives plinth's adapted logits.
            let lora = LoraConfig {
                rank: 4,
                alpha: 8.0,
                dropout: 0.0,
                targets: vec!["q_proj".into(), "v_proj".into(), "blocks.1.mlp.*".into()],
            };
            tch::manual_seed(5);
            let avs = nn::VarStore::new(Device::Cpu);
            let adapter = LoraAdapter::new(&avs.root(), &cfg, &lora).expect("adapter");
            tch::no_grad(|| {
                for (_, mut t) in ckpt::named_variables(&avs) {
                    let _ = t.g_add_(&(t.randn_like() * 0.05));
                }
            });
            let adapter_dir = work.path().join("plinth-adapter");
            let sha = plinth_train::state::checkpoint_sha256(&ck_dir).expect("sha");
            save_adapter(&adapter_dir, &avs, &AdapterMeta { lora, base_sha256: sha }).expect("save adapter");
            let r = export_peft(&adapter_dir, &ck_dir, &hf_dir.join("adapter"), false).expect("export peft");
            assert!(r.target_modules.contains(&"q_proj".to_string()), "{r:?}");
            assert!(r.target_modules.iter().any(|t| t == "model.layers.1.mlp.gate_proj"), "{r:?}");
            let printed = check();
            assert!(printed.contains("PeftModel"), "{printed}");
            let opts = plinth_model::ForwardOptions {
                adapter: Some(&adapter),
                ..plinth_model::ForwardOptions::new(AttentionMode::Causal)
            };
            let ours = tch::no_grad(|| ck.model.forward_with(&ids, None, &opts).expect("forward"));
            let diff = max_diff(&ours, &read(&logits_path, "logits"));
            eprintln!("logit match | {:<20} | plinth -> peft         | max |diff| {diff:.2e}", "llama + LoRA");
            assert!(diff <= TOLERANCE, "exported adapter: peft's logits differ from plinth's by {diff}");
            std::fs::remove_dir_all(hf_dir.join("adapter")).expect("rm adapter");
        }

        // And back: importing the export reproduces the weights exactly.
        let back = work.path().join(format!("{name}-back"));
        import_hf(&hf_dir, &back, false).expect("re-import");
        let again = Checkpoint::load(&back, Device::Cpu).expect("load");
        assert_eq!(again.model.config(), ck.model.config());
        assert_eq!(max_diff(&plinth_logits(&again, &ids), &plinth_logits(&ck, &ids)), 0.0);
    }
}

fn write_hf_folder(dir: &Path, config: serde_json::Value) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
}

#[test]
fn unsupported_configs_and_pickle_files_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = serde_json::json!({
        "model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2
    });
    let cases = [
        ("rope_scaling", serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}})),
        ("hidden_act", serde_json::json!({"hidden_act": "gelu"})),
        ("rope_parameters.rope_type", serde_json::json!({"rope_parameters": {"rope_type": "yarn"}})),
        ("mlp_bias", serde_json::json!({"attention_bias": true, "mlp_bias": false})),
        ("model_type", serde_json::json!({"model_type": "gpt_neox"})),
    ];
    for (field, patch) in cases {
        let mut cfg = base.clone();
        cfg.as_object_mut().expect("object").extend(patch.as_object().expect("object").clone());
        let src = dir.path().join(field);
        write_hf_folder(&src, cfg);
        let err = import_hf(&src, &dir.path().join("out"), false).expect_err(field).to_string();
        assert!(err.contains(&format!("`{field}`")) && err.contains("not supported"), "{field}: {err}");
    }

    let bert = serde_json::json!({"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "position_embedding_type": "relative_key"});
    write_hf_folder(&dir.path().join("bert"), bert);
    let err = import_hf(&dir.path().join("bert"), &dir.path().join("out"), false).expect_err("relative").to_string();
    assert!(err.contains("position_embedding_type"), "{err}");

    // Pickle: a folder with only pytorch_model.bin, and the file itself. The bytes
    // are not a valid pickle either; plinth must refuse before reading them.
    let pk = dir.path().join("pickled");
    write_hf_folder(&pk, base.clone());
    std::fs::write(pk.join("pytorch_model.bin"), b"not read").expect("bin");
    for src in [pk.clone(), pk.join("pytorch_model.bin")] {
        let err = import_hf(&src, &dir.path().join("out"), false).expect_err("pickle").to_string();
        assert!(err.contains("pickle") && err.contains("safe_serialization=True"), "{err}");
    }
    assert!(!dir.path().join("out").exists(), "a refused import writes nothing");

    // PEFT settings plinth cannot run are named before anything is read.
    let lora =
        serde_json::json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "bias": "none"});
    for (field, patch) in [
        ("use_dora", serde_json::json!({"use_dora": true})),
        ("modules_to_save", serde_json::json!({"modules_to_save": ["lm_head"]})),
        ("rank_pattern", serde_json::json!({"rank_pattern": {"q_proj": 8}})),
        ("bias", serde_json::json!({"bias": "all"})),
        ("peft_type", serde_json::json!({"peft_type": "IA3"})),
    ] {
        let mut cfg = lora.clone();
        cfg.as_object_mut().expect("object").extend(patch.as_object().expect("object").clone());
        let src = dir.path().join(format!("peft-{field}"));
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("adapter_config.json"), cfg.to_string()).expect("write");
        let err = import_peft(&src, &dir.path().join("no-base"), &dir.path().join("out"), false)
            .expect_err(field)
            .to_string();
        assert!(err.contains(&format!("`{field}`")), "{field}: {err}");
    }
    let src = dir.path().join("peft-pickled");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("adapter_config.json"), lora.to_string()).expect("write");
    std::fs::write(src.join("adapter_model.bin"), b"not read").expect("write");
    let err =
        import_peft(&src, &dir.path().join("no-base"), &dir.path().join("out"), false).expect_err("pickle").to_string();
    assert!(err.contains("pickle"), "{err}");
}

#[test]
fn export_refuses_a_masked_llama_shaped_model_and_never_replaces_a_folder_unasked() {
    let tok = plinth_tokenizer();
    let cfg = llama_shaped(tok.vocab_size() as i64);
    let vs = random_model(&cfg, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let ck_dir = dir.path().join("mlm");
    save_checkpoint(&ck_dir, &vs, &cfg, &tok, ObjectiveKind::Mlm, false).expect("save");
    let err = export_hf(&ck_dir, &dir.path().join("hf"), false).expect_err("no bidirectional llama").to_string();
    assert!(err.contains("`position`") && err.contains("bert-tiny.toml"), "{err}");

    let keep = dir.path().join("keep");
    std::fs::create_dir_all(&keep).expect("mkdir");
    std::fs::write(keep.join("notes.txt"), "mine").expect("write");
    let err = save_checkpoint(&keep, &vs, &cfg, &tok, ObjectiveKind::Causal, false).expect_err("non-empty").to_string();
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read_to_string(keep.join("notes.txt")).expect("kept"), "mine");
}
