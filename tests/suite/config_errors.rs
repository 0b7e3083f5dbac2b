//! Config files: every mistake names the file, and the line or key where it can.

use plinth_train::PretrainConfig;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

const GOOD: &str = r#"model = "tiny.toml"
out_dir = "runs/x"
[tokenizer]
vocab_size = 1000
[data]
corpus = "wordnet"
[objective]
kind = "mlm"
[train]
seq_len = 64
batch_size = 8
max_steps = 10
lr = 1e-3
"#;

const TINY: &str = "d_model = 32\nn_layers = 1\nn_heads = 2\nd_ff = 64\nmax_seq_len = 64\n";

#[test]
fn a_good_config_resolves_its_model_preset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "tiny.toml", TINY);
    let cfg = PretrainConfig::from_file(&write(tmp.path(), "p.toml", GOOD)).expect("valid");
    assert_eq!(cfg.model_config().expect("inline").d_model, 32);
    assert_eq!(cfg.train.grad_accum, 1, "documented default");
}

#[test]
fn shipped_configs_all_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/pretrain");
    let mut n = 0;
    for entry in std::fs::read_dir(&root).expect("configs/pretrain") {
        let path = entry.expect("entry").path();
        let cfg = PretrainConfig::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(cfg.warnings().is_empty(), "{}: {:?}", path.display(), cfg.warnings());
        n += 1;
    }
    assert!(n >= 2);
}

#[test]
fn missing_file_is_named() {
    let err =
        PretrainConfig::from_file(std::path::Path::new("/no/such/pretrain.toml")).expect_err("missing").to_string();
    assert!(err.contains("/no/such/pretrain.toml"), "{err}");
}

#[test]
fn malformed_toml_names_the_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = GOOD.replace("batch_size = 8", "batch_size = = 8");
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &broken)).expect_err("malformed").to_string();
    assert!(err.contains("p.toml") && err.contains("line 11"), "{err}");
}

#[test]
fn unknown_key_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "tiny.toml", TINY);
    let typo = GOOD.replace("lr = 1e-3", "lr = 1e-3\nlearning_rate = 1e-3");
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &typo)).expect_err("unknown key").to_string();
    assert!(err.contains("learning_rate"), "{err}");
    write(tmp.path(), "tiny.toml", &format!("{TINY}heads = 3\n"));
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", GOOD)).expect_err("unknown model key").to_string();
    assert!(err.contains("heads") && err.contains("tiny.toml"), "{err}");
}

#[test]
fn impossible_values_are_explained() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "tiny.toml", TINY);
    let long = GOOD.replace("seq_len = 64", "seq_len = 65");
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &long)).expect_err("too long").to_string();
    assert!(err.contains("max_seq_len"), "{err}");
    let both =
        GOOD.replace("vocab_size = 1000", "vocab_size = 1000\nplugin = { id = \"example\", component = \"bytes\" }");
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &both)).expect_err("both").to_string();
    assert!(err.contains("either tokenizer.vocab_size or tokenizer.plugin"), "{err}");
    let plugin_freq =
        GOOD.replace("vocab_size = 1000", "min_frequency = 5\nplugin = { id = \"example\", component = \"bytes\" }");
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &plugin_freq)).expect_err("freq").to_string();
    assert!(err.contains("min_frequency applies to the BPE trained here"), "{err}");
    let fim = GOOD.replace("kind = \"mlm\"", "kind = \"mlm\"\nfim_rate = 0.5");
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &fim)).expect_err("fim on mlm").to_string();
    assert!(err.contains("fim_rate"), "{err}");
}

#[test]
fn an_inline_model_table_reports_its_own_mistake() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inline = |table: &str| {
        GOOD.replace("model = \"tiny.toml\"\n", "").replace("[tokenizer]", &format!("[model]\n{table}[tokenizer]"))
    };
    let ok = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &inline(TINY))).expect("an inline table loads");
    assert_eq!(ok.model_config().expect("inline").n_heads, 2);
    let typo = inline(&TINY.replace("n_heads", "n_head"));
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &typo)).expect_err("typo").to_string();
    assert!(err.contains("n_head") && err.contains("line"), "names the key and the line: {err}");
    assert!(!err.contains("untagged"), "{err}");
    let wrong_type = inline(&TINY.replace("d_model = 32", "d_model = \"32\""));
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &wrong_type)).expect_err("type").to_string();
    assert!(err.contains("d_model") || err.contains("integer"), "{err}");
}

#[test]
fn model_mistakes_are_caught_before_any_data_is_read_and_a_short_warmup_is_flagged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "tiny.toml", &TINY.replace("n_heads = 2", "n_heads = 3"));
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", GOOD)).expect_err("heads").to_string();
    assert!(err.contains("not divisible by n_heads 3"), "{err}");
    write(tmp.path(), "tiny.toml", TINY);
    let short = PretrainConfig::from_file(&write(tmp.path(), "p.toml", GOOD)).expect("legal");
    let warnings = short.warnings();
    assert!(
        warnings.len() == 1 && warnings[0].contains("warmup_steps (100; 100 when not set) is not below max_steps (10)"),
        "{warnings:?}"
    );
    let warm = GOOD.replace("max_steps = 10", "max_steps = 10\nwarmup_steps = 2");
    let fine = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &warm)).expect("legal");
    assert!(fine.warnings().is_empty(), "{:?}", fine.warnings());
}

#[test]
fn nan_and_infinity_are_refused_naming_the_key_and_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "tiny.toml", TINY);
    for (setting, key) in [
        ("clip_norm = nan", "train.clip_norm"),
        ("clip_norm = inf", "train.clip_norm"),
        ("weight_decay = nan", "train.weight_decay"),
        ("eps = -inf", "train.eps"),
    ] {
        let cfg = GOOD.replace("lr = 1e-3", &format!("lr = 1e-3\n{setting}"));
        let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &cfg)).expect_err(setting).to_string();
        assert!(err.contains("p.toml") && err.contains("line 14") && err.contains(key), "{setting}: {err}");
        assert!(err.contains("finite"), "{err}");
    }
    let cfg = GOOD.replace("lr = 1e-3", "lr = inf");
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", &cfg)).expect_err("lr").to_string();
    assert!(err.contains("train.lr = inf") && err.contains("line 13"), "{err}");
    // The model file it points at, and finetuning configs, follow the same rule.
    write(tmp.path(), "tiny.toml", &format!("{TINY}norm_eps = nan\n"));
    let err = PretrainConfig::from_file(&write(tmp.path(), "p.toml", GOOD)).expect_err("model").to_string();
    assert!(err.contains("tiny.toml") && err.contains("norm_eps"), "{err}");
    let ft =
        "base = \"b\"\nout_dir = \"o\"\n[task]\nplugin = \"example\"\nname = \"length\"\n[train]\nweight_decay = nan\n";
    let err = plinth_finetune::FinetuneConfig::from_file(&write(tmp.path(), "f.toml", ft)).expect_err("ft").to_string();
    assert!(err.contains("f.toml") && err.contains("train.weight_decay") && err.contains("line 7"), "{err}");
    let ft = ft.replace("weight_decay = nan", "[adapter]\nmode = \"lora\"\nalpha = inf");
    let err =
        plinth_finetune::FinetuneConfig::from_file(&write(tmp.path(), "f.toml", &ft)).expect_err("ft").to_string();
    assert!(err.contains("adapter.alpha"), "{err}");
}

#[test]
fn shipped_finetune_configs_all_load() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/finetune");
    let mut files = 0;
    for entry in std::fs::read_dir(&root).expect("configs/finetune") {
        let path = entry.expect("entry").path();
        let cfg =
            plinth_finetune::FinetuneConfig::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if cfg.task.data.is_some() {
            assert_eq!(cfg.task.plugin, "file", "{}", path.display());
        }
        files += 1;
    }
    assert!(files >= 5, "{files}");
}
