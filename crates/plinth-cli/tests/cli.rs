//! The `plinth` binary end to end on the fixture corpus: pretrain, info, fill,
//! generate, resume, and the errors a user sees.

use std::path::Path;
use std::process::{Command, Output};

fn plinth(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run plinth")
}

/// `plinth args`, with `stdin` on its standard input.
fn plinth_stdin(args: &[&str], cwd: &Path, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run plinth");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn write_config(dir: &Path, kind: &str) -> std::path::PathBuf {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/corpus.txt");
    let fim = if kind == "causal" { "fim_rate = 0.5" } else { "" };
    let cfg = format!(
        r#"out_dir = "run-{kind}"
[model]
d_model = 32
n_layers = 2
n_heads = 2
d_ff = 64
max_seq_len = 64
[tokenizer]
vocab_size = 400
[data]
corpus = {{ text_files = ["{}"] }}
val_fraction = 0.2
[objective]
kind = "{kind}"
{fim}
[train]
seq_len = 32
batch_size = 4
max_steps = 6
lr = 3e-3
warmup_steps = 2
eval_every = 3
eval_batches = 1
threads = 1
"#,
        corpus.display()
    );
    let path = dir.join(format!("{kind}.toml"));
    std::fs::write(&path, cfg).expect("write config");
    path
}

#[test]
fn pretrain_info_fill_generate_and_resume() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mlm = write_config(dir, "mlm");
    let out = plinth(&["--device", "cpu", "pretrain", "--config", mlm.to_str().expect("utf8")], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pretrained 6 steps"), "{}", text(&out));
    for f in
        ["model.safetensors", "model.json", "tokenizer.json", "optimizer.safetensors", "training.json", "pretrain.toml"]
    {
        assert!(dir.join("run-mlm/checkpoint").join(f).exists(), "{f} missing");
    }
    assert!(dir.join("run-mlm/loss.png").exists() && dir.join("run-mlm/metrics.jsonl").exists());

    let out = plinth(&["info", "run-mlm/checkpoint"], dir);
    assert!(out.status.success() && text(&out).contains("Mlm") && text(&out).contains("6 steps"), "{}", text(&out));

    let out = plinth(&["fill", "--checkpoint", "run-mlm/checkpoint", "The cat sat on the ___."], dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("The cat sat on the") && stdout.trim_end().ends_with('.'),
        "{}",
        text(&out)
    );

    // A finished run resumed is a no-op that reports where it is.
    let out = plinth(&["pretrain", "--config", mlm.to_str().expect("utf8"), "--resume"], dir);
    assert!(out.status.success() && text(&out).contains("pretrained 6 steps"), "{}", text(&out));
    // Without --resume the saved checkpoint is protected.
    let out = plinth(&["pretrain", "--config", mlm.to_str().expect("utf8")], dir);
    assert!(!out.status.success() && text(&out).contains("--resume"), "{}", text(&out));

    let err = plinth(&["generate", "--checkpoint", "run-mlm/checkpoint", "The"], dir);
    assert!(!err.status.success() && text(&err).contains("plinth fill"), "{}", text(&err));

    let causal = write_config(dir, "causal");
    let out = plinth(&["pretrain", "--config", causal.to_str().expect("utf8")], dir);
    assert!(out.status.success(), "{}", text(&out));
    let out = plinth(&["generate", "--checkpoint", "run-causal/checkpoint", "--max-tokens", "5", "The dog"], dir);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("The dog"), "{}", text(&out));
    let out = plinth(&["fill", "--checkpoint", "run-causal/checkpoint", "--max-tokens", "4", "The ___ sat."], dir);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("The"), "{}", text(&out));

    // A causal model trained without fill-in-the-middle cannot fill a blank: it says which can.
    let text_of = std::fs::read_to_string(&causal).expect("read config");
    let no_fim = dir.join("nofim.toml");
    std::fs::write(&no_fim, text_of.replace("fim_rate = 0.5", "fim_rate = 0.0").replace("run-causal", "run-nofim"))
        .expect("write config");
    let out = plinth(&["pretrain", "--config", no_fim.to_str().expect("utf8")], dir);
    assert!(out.status.success(), "{}", text(&out));
    let out = plinth(&["fill", "--checkpoint", "run-nofim/checkpoint", "The ___ sat."], dir);
    assert!(!out.status.success() && text(&out).contains("without fill-in-the-middle"), "{}", text(&out));

    // Each kind of checkpoint refuses the fill options of the other kind, naming them.
    let out =
        plinth(&["fill", "--checkpoint", "run-mlm/checkpoint", "--temperature", "0.7", "--seed", "3", "a ___"], dir);
    assert!(!out.status.success() && text(&out).contains("--temperature, --seed apply to causal"), "{}", text(&out));
    let out = plinth(&["fill", "--checkpoint", "run-causal/checkpoint", "--max-span", "2", "The ___ sat."], dir);
    assert!(!out.status.success() && text(&out).contains("--max-span applies to masked"), "{}", text(&out));
    let out =
        plinth(&["fill", "--checkpoint", "run-mlm/checkpoint", "--max-span", "1", "The cat sat on the ___."], dir);
    assert!(out.status.success(), "{}", text(&out));

    // The sampling flags reach the sampler: a seed reproduces a sample, the KV cache
    // changes nothing, a stop string ends the text before it.
    let sample = |extra: &[&str]| {
        let mut args = vec!["generate", "--checkpoint", "run-causal/checkpoint", "--max-tokens", "12"];
        args.extend_from_slice(extra);
        args.push("The dog");
        let out = plinth(&args, dir);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let hot = ["--temperature", "1.0", "--top-k", "50", "--top-p", "0.95", "--seed", "5"];
    assert_eq!(sample(&hot), sample(&hot), "the same seed must give the same sample");
    assert_eq!(sample(&[]), sample(&["--no-cache"]), "greedy with and without the KV cache");
    let free = sample(&["--repetition-penalty", "1.2"]);
    let free = free.trim_end_matches('\n');
    let continuation: Vec<char> = free["The dog".len()..].chars().collect();
    assert!(continuation.len() >= 4, "need some generated text to cut: {free:?}");
    let stop: String = continuation[continuation.len() / 2..continuation.len() / 2 + 2].iter().collect();
    let cut = sample(&["--repetition-penalty", "1.2", "--stop", &stop]);
    let generated = &free["The dog".len()..];
    let expected = format!("The dog{}", &generated[..generated.find(&stop).expect("stop occurs")]);
    assert_eq!(cut.trim_end_matches('\n'), expected, "--stop {stop:?} must end the text before it");
    for (flag, value, want) in [
        ("--stop", "", "stop string is empty"),
        ("--temperature", "NaN", "temperature must be 0 (greedy) or positive and finite"),
        ("--top-p", "1.5", "top_p must be in (0, 1]"),
    ] {
        let out = plinth(&["generate", "--checkpoint", "run-causal/checkpoint", flag, value, "The dog"], dir);
        assert!(!out.status.success() && text(&out).contains(want), "{flag} {value:?}: {}", text(&out));
    }

    // A generation task from a CSV: prompt and completion templates over its columns.
    let mut csv = String::from("animal,sound\n");
    for i in 0..60 {
        let (a, b) = [("dog", "woof"), ("cat", "meow"), ("cow", "moo")][i % 3];
        csv.push_str(&format!("the {a},{b} {b}\n"));
    }
    std::fs::write(dir.join("sounds.csv"), csv).expect("write");
    std::fs::write(
        dir.join("gen.toml"),
        "base = \"run-causal/checkpoint\"\nout_dir = \"ft-gen\"\n[task]\ndata = { path = \"sounds.csv\", kind = \"generation\", prompt = \"{animal} says \", completion = \"{sound}\" }\n[train]\nbatch_size = 8\nmax_steps = 4\neval_every = 2\nmax_len = 32\n",
    )
    .expect("write");
    let out = plinth(&["finetune", "--config", "gen.toml"], dir);
    assert!(
        out.status.success() && text(&out).contains("finetuned file/sounds") && text(&out).contains("perplexity"),
        "{}",
        text(&out)
    );
    let out = plinth(&["eval", "--run", "ft-gen"], dir);
    assert!(out.status.success() && text(&out).contains("perplexity"), "{}", text(&out));
    let out = plinth(
        &[
            "generate",
            "--checkpoint",
            "run-causal/checkpoint",
            "--adapter",
            "ft-gen",
            "--max-tokens",
            "4",
            "the dog says ",
        ],
        dir,
    );
    assert!(out.status.success() && text(&out).starts_with("the dog says "), "{}", text(&out));
    // Its adapter exports as a PEFT folder like any generation task's.
    let out = plinth(&["export", "ft-gen", "--base", "run-causal/checkpoint", "--out", "peft-gen"], dir);
    assert!(out.status.success(), "{}", text(&out));
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert!(dir.join("peft-gen").join(f).exists(), "{f} missing: {}", text(&out));
    }

    // Hugging Face round trip: export as Llama, import back, generate the same text.
    let out = plinth(&["export", "run-causal/checkpoint", "--out", "hf-causal"], dir);
    assert!(out.status.success() && text(&out).contains("LlamaForCausalLM"), "{}", text(&out));
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        assert!(dir.join("hf-causal").join(f).exists(), "{f} missing");
    }
    let out = plinth(&["import", "hf-causal", "--out", "back"], dir);
    assert!(out.status.success() && text(&out).contains("imported llama"), "{}", text(&out));
    let gen =
        |ck: &str| plinth(&["generate", "--checkpoint", ck, "--max-tokens", "6", "--temperature", "0", "The dog"], dir);
    let (a, b) = (gen("run-causal/checkpoint"), gen("back"));
    assert!(b.status.success() && a.stdout == b.stdout, "{} vs {}", text(&a), text(&b));
    let out = plinth(&["import", "hf-causal", "--out", "back"], dir);
    assert!(!out.status.success() && text(&out).contains("--overwrite"), "{}", text(&out));
    // A masked model of Llama's shape has no transformers class: refused, naming the way out.
    let out = plinth(&["export", "run-mlm/checkpoint", "--out", "hf-mlm"], dir);
    assert!(!out.status.success() && text(&out).contains("bert-tiny.toml"), "{}", text(&out));
}

#[test]
fn user_errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let out = plinth(&["pretrain", "--config", "nope.toml"], dir);
    assert!(!out.status.success() && text(&out).contains("nope.toml"), "{}", text(&out));
    assert_eq!(text(&out).matches("os error 2").count(), 1, "the cause once: {}", text(&out));
    let out = plinth(&["generate", "--tries", "2", "hello"], dir);
    assert!(!out.status.success() && text(&out).contains("--plugin"), "--tries needs --plugin: {}", text(&out));
    std::fs::write(dir.join("bad.toml"), "out_dir = \"x\"\n[train\nseq_len = 3\n").expect("write");
    let out = plinth(&["pretrain", "--config", "bad.toml"], dir);
    assert!(!out.status.success() && text(&out).contains("line 2"), "{}", text(&out));
    let out = plinth(&["fill", "--checkpoint", "missing", "a ___"], dir);
    assert!(!out.status.success() && text(&out).contains("not a plinth checkpoint"), "{}", text(&out));
    std::fs::create_dir_all(dir.join("pickled")).expect("mkdir");
    std::fs::write(dir.join("pickled/pytorch_model.bin"), b"never read").expect("write");
    let out = plinth(&["import", "pickled/pytorch_model.bin", "--out", "x"], dir);
    assert!(!out.status.success() && text(&out).contains("pickle") && !dir.join("x").exists(), "{}", text(&out));
    let out = plinth(&["export", "pickled", "--out", "y"], dir);
    assert!(!out.status.success() && text(&out).contains("--base"), "{}", text(&out));
    let out = plinth(&["info", "."], dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
}

#[test]
fn plugins_list_and_inspect_show_the_workspace_plugin() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = plinth(&["plugins", "list"], tmp.path());
    assert!(
        out.status.success() && text(&out).contains("example") && text(&out).contains("9 components"),
        "{}",
        text(&out)
    );
    let out = plinth(&["plugins", "inspect", "example"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    for want in ["negotiated 2.1", "tch=0.24.0;torch=2.11.0", "stage      shout", "reads {text: string}", "sha256"] {
        assert!(text(&out).contains(want), "missing {want:?} in {}", text(&out));
    }
    let out = plinth(&["plugins", "inspect", "nope"], tmp.path());
    assert!(!out.status.success() && text(&out).contains("plinth plugins list"), "{}", text(&out));
    let out = plinth(&["plugins", "--plugins-config", "missing.toml", "list"], tmp.path());
    assert!(!out.status.success() && text(&out).contains("missing.toml"), "{}", text(&out));
}

/// A damaged plugin file in a plugin folder is listed as refused with its reason
/// and breaks no command (issue 19, item 1: it used to end every command in SIGBUS).
#[test]
fn a_truncated_plugin_breaks_no_command() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_plinth"));
    let good = std::fs::read(exe.with_file_name("libplinth_plugin_example.so")).expect("the example plugin is built");
    std::fs::write(plugins.join("libcut.so"), &good[..64 << 10]).expect("write");
    std::fs::set_permissions(plugins.join("libcut.so"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = |args: &[&str]| {
        Command::new(&exe).args(args).current_dir(tmp.path()).env("PLINTH_PLUGIN_PATH", &plugins).output().expect("run")
    };
    let out = run(&["plugins", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("libcut.so") && text(&out).contains("refused") && text(&out).contains("truncated"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("example"), "the intact plugins still load: {}", text(&out));
    let out = run(&["plugins", "inspect", "example"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A third party's plugin: scaffolded outside the workspace, built only against the
/// SDK, loaded from its own folder.
#[test]
fn scaffolded_plugin_builds_outside_the_workspace_and_loads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let out = plinth(&["plugins", "new", "scaffold-probe"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let again = plinth(&["plugins", "new", "scaffold-probe"], dir);
    assert!(!again.status.success() && text(&again).contains("already exists"), "{}", text(&again));
    let bad = plinth(&["plugins", "new", "Bad Name"], dir);
    assert!(!bad.status.success() && text(&bad).contains("must start with"), "{}", text(&bad));

    // Built with plinth's environment (the test runs inside it), sharing its target
    // folder so libtorch's wrapper is reused.
    let crate_dir = dir.join("scaffold-probe");
    let build = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet"])
        .current_dir(&crate_dir)
        .output()
        .expect("cargo");
    assert!(build.status.success(), "{}", text(&build));
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| crate_dir.join("target"));
    let built = target.join("release/libscaffold_probe.so");
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    std::fs::copy(&built, plugins.join("libscaffold_probe.so")).expect("copy");
    let _ = std::fs::remove_file(&built); // keep the shared target folder free of test plugins

    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(["plugins", "inspect", "scaffold-probe"])
        .env("PLINTH_PLUGIN_PATH", &plugins)
        .current_dir(dir)
        .output()
        .expect("run plinth");
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("stage      length") && t.contains("reads {text: string}, adds {length: number}"), "{t}");
    assert!(t.contains(&plugins.canonicalize().expect("c").display().to_string()) && t.contains("not linked"), "{t}");

    // Its stage in a pipeline: checked against its derived schema, then run in batches.
    std::fs::write(dir.join("texts.jsonl"), "{\"text\": \"héllo\"}\n{\"text\": \"\"}\n{\"text\": \"plinth\"}\n")
        .expect("write");
    let pipeline = "name = \"probe\"\nout_dir = \"probe\"\n[[stage]]\nop = \"read\"\npath = \"texts.jsonl\"\n\
                    [[stage]]\nplugin = \"scaffold-probe\"\nstage = \"length\"\n\
                    [[stage]]\nop = \"filter\"\nexpr = \"length > 5\"\n";
    std::fs::write(dir.join("probe.toml"), pipeline).expect("write");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(args)
            .env("PLINTH_PLUGIN_PATH", &plugins)
            .current_dir(dir)
            .output()
            .expect("run plinth")
    };
    let out = run(&["run", "probe.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let results = std::fs::read_to_string(dir.join("probe/results.jsonl")).expect("results");
    assert_eq!(results.trim(), r#"{"length":6,"text":"plinth"}"#, "{results}");
    let rejects = std::fs::read_to_string(dir.join("probe/rejects.jsonl")).expect("rejects");
    assert!(rejects.contains("the text is empty"), "{rejects}");
    std::fs::write(
        dir.join("bad-params.toml"),
        pipeline.replace("stage = \"length\"\n", "stage = \"length\"\nparams = { x = 1 }\n"),
    )
    .expect("write");
    let out = run(&["check", "bad-params.toml"]);
    assert!(
        !out.status.success()
            && text(&out).contains("bad-params.toml:6: stage \"length\": the stage's params: unknown field `x`"),
        "{}",
        text(&out)
    );
}

/// A plugin's tokenizer recipe and data component feed pretraining: plugins attach
/// to the base model.
#[test]
fn pretrain_reads_a_corpus_from_a_plugin() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cfg = |id: &str| {
        format!(
            r#"out_dir = "run-{id}"
[model]
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32
max_seq_len = 16
[tokenizer]
plugin = {{ id = "{id}", component = "bytes" }}
[data]
corpus = {{ plugin = {{ id = "{id}", component = "greetings" }} }}
val_fraction = 0.2
[objective]
kind = "causal"
[train]
seq_len = 4
batch_size = 2
max_steps = 3
lr = 1e-3
warmup_steps = 1
eval_every = 3
eval_batches = 1
threads = 1
"#
        )
    };
    std::fs::write(dir.join("plugin.toml"), cfg("example")).expect("write");
    let out = plinth(&["pretrain", "--config", "plugin.toml"], dir);
    assert!(out.status.success() && text(&out).contains("pretrained 3 steps"), "{}", text(&out));
    let tok = std::fs::read_to_string(dir.join("run-example/checkpoint/tokenizer.json")).expect("tokenizer saved");
    assert!(tok.contains("<fim_middle>") && tok.contains("\"BPE\""), "the host trained the plugin's BPE recipe");
    std::fs::write(dir.join("missing.toml"), cfg("nope")).expect("write");
    let out = plinth(&["pretrain", "--config", "missing.toml"], dir);
    assert!(!out.status.success() && text(&out).contains("no plugin with id nope"), "{}", text(&out));
    assert!(!dir.join("run-nope").exists(), "nothing is written for a failed start");
}

#[test]
fn finetune_eval_predict_on_a_plugin_task() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mlm = write_config(dir, "mlm");
    let out = plinth(&["pretrain", "--config", mlm.to_str().expect("utf8")], dir);
    assert!(out.status.success(), "{}", text(&out));
    let ft = |name: &str, mode: &str| {
        let cfg = format!(
            r#"base = "run-mlm/checkpoint"
out_dir = "ft-{name}"
[task]
plugin = "example"
name = "length"
[adapter]
mode = "{mode}"
rank = 4
[train]
batch_size = 16
max_steps = 12
eval_every = 4
max_len = 32
"#
        );
        std::fs::write(dir.join(format!("{name}.toml")), cfg).expect("write");
        plinth(&["finetune", "--config", &format!("{name}.toml")], dir)
    };
    let out = ft("lora", "lora");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("finetuned example/length (Lora") && t.contains("rmse") && t.contains("mean "), "{t}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ft-lora/report.json")).expect("report")).expect("json");
    assert_eq!(report["rows"]["train"], 96);
    // The example plugin recommends a head with one hidden layer of 16; the host built it.
    let names: Vec<String> = weights(&dir.join("ft-lora/best/task.safetensors")).into_iter().map(|t| t.0).collect();
    assert!(
        names.contains(&"head.hidden.0.weight".to_string()) && names.contains(&"head.proj.weight".to_string()),
        "{names:?}"
    );
    assert!(report["test"]["rmse"].as_f64().is_some() && report["baselines"]["mean"]["rmse"].as_f64().is_some());

    // Data-parallel LoRA finetuning: two ranks with batch 8 take the steps one
    // process with batch 16 takes (no dropout, so both draw nothing at random).
    for (name, batch) in [("one16", 16), ("two8", 8)] {
        let cfg = format!(
            "base = \"run-mlm/checkpoint\"\nout_dir = \"ft-{name}\"\n[task]\nplugin = \"example\"\nname = \"length\"\n\
             [adapter]\nmode = \"lora\"\nrank = 4\ndropout = 0.0\n[head]\nhidden = []\n[train]\nbatch_size = {batch}\nmax_steps = 6\neval_every = 3\nmax_len = 32\n"
        );
        std::fs::write(dir.join(format!("{name}.toml")), cfg).expect("write");
    }
    let out = plinth(&["finetune", "--config", "one16.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let out = plinth(&["launch", "--nproc", "2", "--", "plinth", "finetune", "--config", "two8.toml"], dir);
    assert!(out.status.success() && text(&out).matches("finetuned example/length").count() == 1, "{}", text(&out));
    let (a, b) =
        (weights(&dir.join("ft-one16/state/task.safetensors")), weights(&dir.join("ft-two8/state/task.safetensors")));
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(&b)
        .flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0f32, f32::max);
    eprintln!("ddp LoRA finetuning equivalence: max |difference| after 6 steps = {diff:.2e}");
    assert!(diff < 1e-5, "two ranks x 8 drifted from one process x 16 by {diff}");
    // The config's `[head] hidden = []` overrides the plugin's recommendation: a linear head.
    assert!(a.iter().all(|t| !t.0.starts_with("head.hidden")), "{:?}", a.iter().map(|t| &t.0).collect::<Vec<_>>());

    // A second run in the same out_dir must not clobber it.
    let again = ft("lora", "lora");
    assert!(!again.status.success() && text(&again).contains("--resume"), "{}", text(&again));
    assert!(dir.join("ft-lora/best/task.safetensors").exists());

    let out = plinth(&["eval", "--run", "ft-lora", "--split", "test"], dir);
    let metrics: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).expect("metrics json");
    let reported = report["test"]["rmse"].as_f64().expect("rmse");
    assert!((metrics["rmse"].as_f64().expect("rmse") - reported).abs() < 1e-6, "{metrics} vs {reported}");

    assert!(ft("head", "head").status.success());
    let out =
        plinth(&["predict", "--run", "ft-lora", "--run", "ft-head", "--json", "hello world", "good day to you"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["input"], "good day to you");
    assert!(lines[0]["length@ft-lora"].as_f64().is_some(), "{}", lines[0]);
    assert!(lines[0]["length@ft-head"].as_f64().is_some(), "{}", lines[0]);
    let out = plinth(&["predict", "--run", "ft-lora", "hello world"], dir);
    assert!(text(&out).starts_with("length "), "{}", text(&out));

    // An input longer than the task reads (max_len 32) is refused unless cutting is asked for.
    let long = "hello world ".repeat(40);
    let out = plinth(&["predict", "--run", "ft-lora", "hello world", &long], dir);
    let t = text(&out);
    assert!(!out.status.success() && out.stdout.is_empty(), "{t}");
    assert!(
        t.contains("argument 2") && t.contains("--too-long truncate") && t.contains("nothing was predicted"),
        "{t}"
    );
    let out = plinth(&["predict", "--run", "ft-lora", "--too-long", "truncate", "hello world", &long], dir);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() == 2, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("argument 2"), "the cut input is named: {}", text(&out));
    // Every bad stdin line is listed by its line number (blank lines count), and
    // --skip-invalid predicts the rest but still fails.
    let stdin = format!("hello world\n\n{long}\ngood day\n{long}\n");
    let out = plinth_stdin(&["predict", "--run", "ft-lora", "--json"], dir, &stdin);
    let t = text(&out);
    assert!(!out.status.success() && out.stdout.is_empty(), "{t}");
    assert!(t.contains("line 3:") && t.contains("line 5:") && t.contains("2 of 4 inputs are invalid"), "{t}");
    let out = plinth_stdin(&["predict", "--run", "ft-lora", "--json", "--skip-invalid"], dir, &stdin);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("skipped 2 invalid inputs of 4"), "{t}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.iter().map(|l| l["line"].as_u64().expect("line")).collect::<Vec<_>>(), [1, 4], "{t}");
    assert!(lines.iter().all(|l| l["length"].as_f64().is_some()), "{t}");

    // A task from the user's own file: no plugin; class names kept; bad rows listed.
    let corpus = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/corpus.txt"))
        .expect("corpus");
    let mut csv = String::from("text,size\n");
    let words: Vec<&str> = corpus.split_whitespace().collect();
    for i in 0..200 {
        let n = 2 + i % 7;
        let text = words[(i * 5) % (words.len() - n)..][..n].join(" ").replace('"', "'");
        csv.push_str(&format!("\"{text}\",{}\n", if n > 5 { "long" } else { "short" }));
    }
    csv.push_str("\"a row with no label\",\n");
    std::fs::write(dir.join("sizes.csv"), &csv).expect("write");
    std::fs::write(
        dir.join("file.toml"),
        "base = \"run-mlm/checkpoint\"\nout_dir = \"ft-file\"\n[task]\n\
         data = { path = \"sizes.csv\", input = \"text\", label = \"size\", kind = \"classification\" }\n\
         [train]\nbatch_size = 16\nmax_steps = 6\neval_every = 3\nmax_len = 32\n",
    )
    .expect("write");
    let out = plinth(&["finetune", "--config", "file.toml"], dir);
    let t = text(&out);
    assert!(out.status.success() && t.contains("finetuned file/sizes"), "{t}");
    assert!(t.contains("1 rows of the data file could not be used"), "{t}");
    let rejects = std::fs::read_to_string(dir.join("ft-file/rejects.jsonl")).expect("rejects");
    assert!(rejects.contains("\"line\":") && rejects.contains("no size"), "{rejects}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ft-file/report.json")).expect("report")).expect("json");
    assert!(
        report["test"]["roc_auc"].as_f64().is_some() && report["baselines"].as_object().is_some_and(|b| !b.is_empty()),
        "{report}"
    );
    let out = plinth(&["eval", "--run", "ft-file"], dir);
    assert!(out.status.success() && text(&out).contains("roc_auc"), "eval reads the same file: {}", text(&out));
    let out = plinth(&["predict", "--run", "ft-file", "--json", "a cat sat on the mat"], dir);
    let answer: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("json");
    let label = answer["sizes"]["label"].as_str().expect("a class name");
    assert!(["long", "short"].contains(&label), "{answer}");
    // An external labelled file scores the task; a class it was not trained on is a reject.
    let mut other = String::from("text,size\n");
    for i in 0..20 {
        other.push_str(if i % 2 == 0 { "the cat sat,short\n" } else { "the big dog ran far away today again,long\n" });
    }
    other.push_str("hi,medium\n");
    std::fs::write(dir.join("other.csv"), other).expect("write");
    let out = plinth(&["eval", "--run", "ft-file", "--data", "other.csv"], dir);
    let t = text(&out);
    assert!(out.status.success() && t.contains("roc_auc") && t.contains("other.csv:22: class \"medium\""), "{t}");
    // A CSV in, the same rows out with each prediction and the class probabilities added.
    std::fs::write(dir.join("in.csv"), "id,text\n7,the cat sat\n8,\"a dog, a cat and a bird\"\n").expect("write");
    let out = plinth(&["predict", "--run", "ft-file", "--input", "in.csv", "--output", "out.csv"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(dir.join("out.csv")).expect("out.csv");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "id,text,sizes,sizes_probability,sizes_p_long,sizes_p_short", "{written}");
    assert!(
        lines.len() == 3
            && lines[1].starts_with("7,the cat sat,")
            && lines[2].starts_with("8,\"a dog, a cat and a bird\","),
        "{written}"
    );
    std::fs::write(dir.join("holes.csv"), "id,text\n1,the cat\n2,\n3,a bird\n").expect("write");
    let out = plinth(&["predict", "--run", "ft-file", "--input", "holes.csv", "--output", "holes-out.csv"], dir);
    assert!(
        !out.status.success() && text(&out).contains("line 3:") && !dir.join("holes-out.csv").exists(),
        "{}",
        text(&out)
    );
    let out = plinth(
        &["predict", "--run", "ft-file", "--input", "holes.csv", "--output", "holes-out.csv", "--skip-invalid"],
        dir,
    );
    assert!(!out.status.success() && text(&out).contains("skipped 1 invalid inputs of 3"), "{}", text(&out));
    let written = std::fs::read_to_string(dir.join("holes-out.csv")).expect("written");
    let rows: Vec<&str> = written.lines().collect();
    assert!(
        rows[0].ends_with(",error") && rows[2].starts_with("2,,,") && rows[2].contains("no text") && rows.len() == 4,
        "{written}"
    );
    // A file longer than one chunk (2,048 rows) streams through in order, its header
    // written once; a file with a bad row leaves an existing output untouched.
    let many: String = std::iter::once("id,text\n".to_string())
        .chain((0..4500).map(|i| format!("{i},the cat sat {}\n", ["down", "up", "still"][i % 3])))
        .collect();
    std::fs::write(dir.join("many.csv"), many).expect("write");
    let out = plinth(&["predict", "--run", "ft-file", "--input", "many.csv", "--output", "many-out.csv"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(dir.join("many-out.csv")).expect("many-out.csv");
    let ids: Vec<&str> = written.lines().skip(1).map(|l| l.split(',').next().unwrap_or("")).collect();
    assert_eq!(ids.len(), 4500, "every row once");
    assert!(ids.iter().enumerate().all(|(i, id)| *id == i.to_string()), "rows in the input's order");
    assert_eq!(written.matches("id,text,sizes").count(), 1, "one header");
    std::fs::write(dir.join("kept.csv"), "old output\n").expect("write");
    let out = plinth(&["predict", "--run", "ft-file", "--input", "holes.csv", "--output", "kept.csv"], dir);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(dir.join("kept.csv")).expect("kept"), "old output\n");
    assert!(std::fs::read_dir(dir).expect("dir").all(|e| !e
        .expect("entry")
        .file_name()
        .to_string_lossy()
        .contains(".partial-")));
    let out = plinth(&["predict", "--run", "ft-file", "--input", "in.csv", "--output", "./in.csv"], dir);
    assert!(!out.status.success() && text(&out).contains("never overwritten"), "{}", text(&out));
    // The file task in a pipeline: a TSV read with a column renamed, then its predict stage.
    std::fs::write(dir.join("in.tsv"), "ID\tSentence\n1\tthe cat sat\n2\tthe big dog ran far away today\n")
        .expect("write");
    let pipeline = "name = \"sizes\"\nout_dir = \"sized\"\n[[stage]]\nop = \"read\"\npath = \"in.tsv\"\nrename = { Sentence = \"text\" }\n\
                    [[stage]]\nop = \"predict\"\nrun = \"ft-file\"\ninput = \"text\"\n";
    std::fs::write(dir.join("sizes.toml"), pipeline).expect("write");
    let out = plinth(&["run", "sizes.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let results = std::fs::read_to_string(dir.join("sized/results.jsonl")).expect("results");
    assert_eq!(results.lines().count(), 2, "{results}");
    assert!(results.contains("\"sizes\":\"") && results.contains("sizes_probability"), "{results}");
    std::fs::write(
        dir.join("bad-file.toml"),
        "base = \"run-mlm/checkpoint\"\nout_dir = \"ft-bad\"\n[task]\n\
        data = { path = \"sizes.csv\", input = \"words\", label = \"size\", kind = \"classification\" }\n[train]\nmax_len = 32\n",
    )
    .expect("write");
    let out = plinth(&["finetune", "--config", "bad-file.toml"], dir);
    assert!(!out.status.success() && text(&out).contains("no column \"words\""), "{}", text(&out));
    assert!(!dir.join("ft-bad").exists(), "nothing is written for a refused start");

    let out = plinth(&["eval", "--run", "nowhere"], dir);
    assert!(!out.status.success() && text(&out).contains("holds no finetuned task"), "{}", text(&out));
    let out = plinth(&["eval", "--run", "ft-lora", "--completions", "c.jsonl"], dir);
    assert!(!out.status.success() && text(&out).contains("not one"), "{}", text(&out));
    assert!(!dir.join("c.jsonl").exists());
}

/// Trains a micro causal SMILES model on fixture molecules and finetunes the example
/// plugin's `length` task on it: the models the pipeline tests run with.
fn micro_molecule_models(dir: &Path) {
    let fixture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/smiles_rdkit.tsv"))
            .expect("fixture");
    let smiles: Vec<&str> =
        fixture.lines().skip(1).filter_map(|l| l.strip_suffix("\t1")).filter(|s| s.len() < 60).take(400).collect();
    std::fs::write(dir.join("smiles.txt"), smiles.join("\n\n")).expect("write corpus");
    let cfg = r#"out_dir = "mol"
[model]
d_model = 32
n_layers = 2
n_heads = 2
d_ff = 64
max_seq_len = 96
[tokenizer]
plugin = { id = "molecule", component = "smiles" }
[data]
corpus = { text_files = ["smiles.txt"] }
val_fraction = 0.1
[objective]
kind = "causal"
[train]
seq_len = 64
batch_size = 8
max_steps = 30
lr = 3e-3
warmup_steps = 3
eval_every = 15
eval_batches = 1
threads = 1
"#;
    std::fs::write(dir.join("mol.toml"), cfg).expect("write");
    let out = plinth(&["pretrain", "--config", "mol.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let ft = r#"base = "mol/checkpoint"
out_dir = "ft-length"
[task]
plugin = "example"
name = "length"
[train]
batch_size = 16
max_steps = 8
eval_every = 4
max_len = 64
"#;
    std::fs::write(dir.join("ft.toml"), ft).expect("write");
    let out = plinth(&["finetune", "--config", "ft.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
}

/// A user's molecule files as tasks, the SMILES column declared a `molecule`
/// domain: multi-label with missing entries on DeepChem's scaffold split, a
/// multi-output regression scored on another file, invalid SMILES as rejects,
/// predictions into a CSV, and the task in a pipeline.
#[test]
fn molecule_files_run_through_the_molecule_domain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    micro_molecule_models(dir);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data");
    for f in ["alerts.tsv", "properties.csv", "solubility.csv"] {
        std::fs::copy(fixtures.join(f), dir.join(f)).expect("copy fixture");
    }
    let finetune = |name: &str, data: &str| {
        let cfg = format!(
            "base = \"mol/checkpoint\"\nout_dir = \"{name}\"\n[task]\ndata = {{ {data} }}\n\
             [train]\nbatch_size = 16\nmax_steps = 6\neval_every = 3\nmax_len = 64\n"
        );
        std::fs::write(dir.join(format!("{name}.toml")), cfg).expect("write");
        plinth(&["finetune", "--config", &format!("{name}.toml")], dir)
    };
    let out = finetune(
        "ft-alerts",
        "path = \"alerts.tsv\", input = \"smiles\", domain = \"molecule\", label = [\"nitrogen\", \"oxygen\", \"ring\"], kind = \"multilabel\", split = \"scaffold\"",
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ft-alerts/report.json")).expect("report"))
            .expect("json");
    assert!(
        report["test"]["roc_auc"].as_f64().is_some() && report["test"]["roc_auc.nitrogen"].as_f64().is_some(),
        "{report}"
    );
    for b in ["majority", "bag_of_tokens", "ecfp4_linear", "ecfp4_forest"] {
        assert!(report["baselines"][b]["roc_auc"].as_f64().is_some(), "baseline {b}: {report}");
    }
    let out = finetune(
        "ft-sol",
        "path = \"solubility.csv\", input = \"smiles\", domain = \"molecule\", label = \"logS\", kind = \"regression\"",
    );
    assert!(out.status.success(), "{}", text(&out));
    let rejects = std::fs::read_to_string(dir.join("ft-sol/rejects.jsonl")).expect("rejects");
    let lines: Vec<u64> = rejects
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, [22, 72, 122, 172], "the SMILES that are not molecules: {rejects}");
    assert!(rejects.contains("smiles \\\"C(C\\\""), "the input and the molecule plugin's reason: {rejects}");
    let out = finetune(
        "ft-props",
        "path = \"properties.csv\", input = \"smiles\", domain = \"molecule\", label = [\"size\", \"polarity\"], kind = \"regression\"",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = plinth(&["eval", "--run", "ft-props", "--data", "properties.csv"], dir);
    let t = text(&out);
    assert!(out.status.success() && t.contains("\"rmse.polarity\"") && t.contains("\"rmse\""), "{t}");
    // Predictions: the SMILES is read canonicalised; a non-molecule is refused by line.
    std::fs::write(dir.join("in.csv"), "id,smiles\n1,OCC\n2,C1CC\n3,c1ccccc1O\n").expect("write");
    let out = plinth(&["predict", "--run", "ft-alerts", "--input", "in.csv", "--output", "out.csv"], dir);
    assert!(!out.status.success() && text(&out).contains("line 3:"), "{}", text(&out));
    let out = plinth(
        &[
            "predict",
            "--run",
            "ft-alerts",
            "--run",
            "ft-props",
            "--input",
            "in.csv",
            "--output",
            "out.csv",
            "--skip-invalid",
        ],
        dir,
    );
    assert!(text(&out).contains("skipped 1 invalid inputs of 3"), "{}", text(&out));
    let written = std::fs::read_to_string(dir.join("out.csv")).expect("out.csv");
    let rows: Vec<&str> = written.lines().collect();
    assert_eq!(
        rows[0], "id,smiles,alerts_nitrogen,alerts_oxygen,alerts_ring,properties_size,properties_polarity,error",
        "{written}"
    );
    assert!(rows[1].starts_with("1,OCC,0.") && rows[2].starts_with("2,C1CC,,") && rows.len() == 4, "{written}");
    // A Parquet file of inputs: its rows come back as CSV with the predictions.
    {
        use parquet::data_type::{ByteArray, ByteArrayType};
        let schema = parquet::schema::parser::parse_message_type("message m { REQUIRED BYTE_ARRAY smiles (UTF8); }")
            .expect("schema");
        let file = std::fs::File::create(dir.join("in.parquet")).expect("create");
        let mut writer =
            parquet::file::writer::SerializedFileWriter::new(file, std::sync::Arc::new(schema), Default::default())
                .expect("writer");
        let mut group = writer.next_row_group().expect("group");
        let mut col = group.next_column().expect("column").expect("smiles");
        let values = [ByteArray::from("CCO"), ByteArray::from("c1ccccc1N")];
        col.typed::<ByteArrayType>().write_batch(&values, None, None).expect("write");
        col.close().expect("close");
        group.close().expect("close");
        writer.close().expect("close");
    }
    let out = plinth(&["predict", "--run", "ft-alerts", "--input", "in.parquet"], dir);
    let written = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && written.starts_with("smiles,alerts_nitrogen,"), "{}", text(&out));
    assert!(written.lines().count() == 3 && written.contains("\nc1ccccc1N,0."), "{written}");
    let out = plinth(&["predict", "--run", "ft-alerts", "--input", "in.parquet", "--output", "out.parquet"], dir);
    assert!(!out.status.success() && text(&out).contains("not Parquet"), "{}", text(&out));
    // The multi-label task as a pipeline stage: one field per label.
    std::fs::write(dir.join("in.smi"), "CCO\nc1ccccc1N\nC1CC\n").expect("write");
    let pipeline =
        "name = \"alerts\"\nout_dir = \"screened\"\n[[stage]]\nop = \"read\"\npath = \"in.smi\"\nfield = \"smiles\"\n\
                    [[stage]]\nop = \"predict\"\nrun = \"ft-alerts\"\ninput = \"smiles\"\n";
    std::fs::write(dir.join("alerts.toml"), pipeline).expect("write");
    let out = plinth(&["run", "alerts.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let results = std::fs::read_to_string(dir.join("screened/results.jsonl")).expect("results");
    assert!(results.lines().count() == 2 && results.contains("\"alerts_ring\":"), "{results}");
    let rejected = std::fs::read_to_string(dir.join("screened/rejects.jsonl")).expect("rejects");
    assert!(rejected.contains("C1CC"), "{rejected}");
    // A split the domain does not offer, and a domain no plugin has, are refused before any work.
    let out = finetune("ft-no", "path = \"solubility.csv\", input = \"smiles\", domain = \"molecule\", label = \"logS\", kind = \"regression\", split = \"murcko\"");
    assert!(!out.status.success() && text(&out).contains("offers [\"scaffold\"]"), "{}", text(&out));
    let out = finetune(
        "ft-no",
        "path = \"solubility.csv\", input = \"smiles\", domain = \"protein\", label = \"logS\", kind = \"regression\"",
    );
    assert!(!out.status.success() && text(&out).contains("domain = \"protein\""), "{}", text(&out));
    assert!(!dir.join("ft-no").exists());
}

#[test]
fn pipelines_check_run_and_reject_per_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    micro_molecule_models(dir);
    // The shipped molecule pipeline, pointed at the micro models, without the
    // novelty stages (they read 100,000 MOSES molecules).
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/pipelines/molecule-discovery.toml"),
    )
    .expect("shipped pipeline");
    let mut p = shipped
        .replace("runs/molecule-tiny/checkpoint", "mol/checkpoint")
        .replace("runs/finetune/esol", "ft-length")
        .replace("samples = 1000", "samples = 40")
        .replace("max_tokens = 100", "max_tokens = 60")
        .replace("out_dir = \"runs/pipelines/molecule-discovery\"", "out_dir = \"out\"")
        .replace("heavy_atoms >= 12 and mol_weight <= 450 and h_donors <= 5", "heavy_atoms >= 1");
    for cut in ["[[stage]]\nname = \"novelty\"", "[[stage]]\nname = \"new-only\""] {
        let start = p.find(cut).expect("stage present");
        let end = p[start + 9..].find("[[stage]]").map_or(p.len(), |e| start + 9 + e);
        p.replace_range(start..end, "");
    }
    std::fs::write(dir.join("discovery.toml"), &p).expect("write");
    let out = plinth(&["check", "discovery.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("+log_solubility:number"), "{}", text(&out));
    let out = plinth(&["run", "discovery.toml"], dir);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("propose") && t.contains("hazard-screen") && t.contains("report"), "{t}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/summary.json")).expect("summary")).expect("json");
    assert_eq!(summary["stages"][0]["records_out"], 40);
    assert!(dir.join("out/report.html").exists() && dir.join("out/top25.csv").exists());
    let rejects = std::fs::read_to_string(dir.join("out/rejects.jsonl")).expect("rejects");
    let n_rejected = summary["rejected"].as_u64().expect("count");
    assert_eq!(rejects.lines().count() as u64, n_rejected);
    if let Some(first) = rejects.lines().next() {
        let r: serde_json::Value = serde_json::from_str(first).expect("reject json");
        assert!(r["stage"].is_string() && r["reason"].is_string() && r["record"].is_object(), "{r}");
    }

    // Per-record failures go to rejects and the run goes on.
    std::fs::write(dir.join("in.smi"), "CCO\nC1CC\nc1ccccc1O\nCC(C)OP(C)(=O)F\n").expect("write");
    let read = r#"name = "screen"
out_dir = "screen"
[[stage]]
op = "read"
path = "in.smi"
field = "smiles"
[[stage]]
plugin = "molecule"
stage = "validate"
[[stage]]
plugin = "molecule"
stage = "hazard"
"#;
    std::fs::write(dir.join("screen.toml"), read).expect("write");
    let out = plinth(&["run", "screen.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let rejects = std::fs::read_to_string(dir.join("screen/rejects.jsonl")).expect("rejects");
    assert!(rejects.contains("\"stage\":\"validate\"") && rejects.contains("never closed"), "{rejects}");
    assert!(rejects.contains("\"stage\":\"hazard\"") && rejects.contains("P-F"), "{rejects}");
    let results = std::fs::read_to_string(dir.join("screen/results.csv")).expect("results");
    assert_eq!(results.lines().count(), 3, "header + CCO + phenol: {results}");

    // Refused before any work, naming the line.
    for (body, want) in [
        ("[[stage]]\nplugin = \"nope\"\nstage = \"validate\"\n", "no plugin with id nope"),
        ("[[stage]]\nplugin = \"molecule\"\nstage = \"nope\"\n", "nope"),
        ("[[stage]]\nop = \"filter\"\nexpr = \"smiles > 3\"\n", "cannot compare"),
        ("[[stage]]\nop = \"sort\"\nby = \"weight\"\n", "no earlier stage provides"),
        ("[[stage]]\nop = \"explode\"\n", "unknown op"),
        // A plugin stage's params are checked against its own type when it opens.
        (
            "[[stage]]\nplugin = \"molecule\"\nstage = \"hazard\"\nparams = { alert = \"x.toml\" }\n",
            "unknown field `alert`",
        ),
        (
            "[[stage]]\nplugin = \"molecule\"\nstage = \"hazard\"\nparams = { alerts = \"missing.toml\" }\n",
            "missing.toml",
        ),
        ("[[stage]]\nplugin = \"molecule\"\nstage = \"novelty\"\nparams = { max = \"all\" }\n", "invalid type: string"),
        // Two stages with one name, and writes outside out_dir or over the run's own files.
        ("[[stage]]\nname = \"read\"\nop = \"dedupe\"\nfield = \"smiles\"\n", "already used by the stage on line 3"),
        ("[[stage]]\nop = \"write\"\npath = \"/tmp/plinth-escape.csv\"\n", "must stay inside the pipeline's out_dir"),
        ("[[stage]]\nop = \"write\"\npath = \"../escape.csv\"\n", "must stay inside the pipeline's out_dir"),
        ("[[stage]]\nop = \"write\"\npath = \"summary.json\"\n", "a file the run writes itself"),
    ] {
        let bad = format!(
            "name = \"bad\"\nout_dir = \"bad\"\n[[stage]]\nop = \"read\"\npath = \"in.smi\"\nfield = \"smiles\"\n{body}"
        );
        std::fs::write(dir.join("bad.toml"), bad).expect("write");
        for cmd in ["check", "run"] {
            let out = plinth(&[cmd, "bad.toml"], dir);
            let t = text(&out);
            assert!(!out.status.success() && t.contains("bad.toml:7") && t.contains(want), "{cmd}: {t}");
        }
        assert!(!dir.join("bad").exists(), "nothing is written for a refused pipeline");
    }
    // A generate stage's sampling settings, samples and checkpoint are checked before a run.
    for (setting, want) in [
        ("temperature = -1.0", "temperature must be 0 (greedy) or positive"),
        ("top_p = 0.0", "top_p must be in (0, 1]"),
        ("samples = 0", "samples must be at least 1"),
        ("checkpoint = \"nowhere\"", "checkpoint nowhere"),
    ] {
        let stage = "[[stage]]\nop = \"generate\"\nfield = \"g\"\n";
        let checkpoint = if setting.starts_with("checkpoint") { "" } else { "checkpoint = \"mol/checkpoint\"\n" };
        let bad = format!("name = \"bad\"\nout_dir = \"bad\"\n{stage}{checkpoint}{setting}\n");
        std::fs::write(dir.join("bad.toml"), bad).expect("write");
        for cmd in ["check", "run"] {
            let out = plinth(&[cmd, "bad.toml"], dir);
            let t = text(&out);
            assert!(!out.status.success() && t.contains("bad.toml:3") && t.contains(want), "{cmd} {setting}: {t}");
        }
        assert!(!dir.join("bad").exists(), "nothing is written for a refused pipeline");
    }
    // Numbers that are not finite, and batch_size = 0, are named with their own line.
    for (bad, line, want) in [
        (
            "name = \"bad\"\nout_dir = \"bad\"\n[[stage]]\nop = \"generate\"\ncheckpoint = \"mol/checkpoint\"\nfield = \"g\"\ntemperature = nan\n",
            7,
            "stage[0].temperature = NaN",
        ),
        ("batch_size = 0\nname = \"bad\"\nout_dir = \"bad\"\n[[stage]]\nop = \"read\"\npath = \"in.smi\"\nfield = \"smiles\"\n", 1, "batch_size must be at least 1"),
    ] {
        std::fs::write(dir.join("bad.toml"), bad).expect("write");
        let out = plinth(&["check", "bad.toml"], dir);
        let t = text(&out);
        assert!(!out.status.success() && t.contains(&format!("bad.toml:{line}")) && t.contains(want), "{t}");
    }
    assert!(!Path::new("/tmp/plinth-escape.csv").exists() && !dir.join("escape.csv").exists());
    // An unknown key is named with its own line, not just its stage's.
    let bad = "name = \"bad\"\nout_dir = \"bad\"\n[[stage]]\nop = \"read\"\npath = \"in.smi\"\nfield = \"smiles\"\n\
               [[stage]]\nop = \"dedupe\"\nfield = \"smiles\"\nfeild = \"x\"\n";
    std::fs::write(dir.join("bad.toml"), bad).expect("write");
    let out = plinth(&["check", "bad.toml"], dir);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("bad.toml:10") && t.contains("unknown field `feild`"), "{t}");
}

#[test]
fn codegen_finetune_generate_and_the_ansible_assistant_pipeline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // A micro causal base on 60 EXAMPLES blocks of the training split.
    let cfg = r#"out_dir = "yaml"
[model]
d_model = 32
n_layers = 2
n_heads = 2
d_ff = 64
max_seq_len = 192
[tokenizer]
vocab_size = 400
[data]
corpus = { plugin = { id = "codegen", component = "ansible-corpus", request = '{"split": "train", "max": 60}' } }
val_fraction = 0.1
[objective]
kind = "causal"
[train]
seq_len = 96
batch_size = 8
max_steps = 12
lr = 3e-3
warmup_steps = 2
eval_every = 6
eval_batches = 1
threads = 1
"#;
    std::fs::write(dir.join("yaml.toml"), cfg).expect("write");
    let out = plinth(&["pretrain", "--config", "yaml.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let ft = r#"base = "yaml/checkpoint"
out_dir = "ft-ansible"
[task]
plugin = "codegen"
name = "ansible"
max_train = 200
[train]
batch_size = 16
max_steps = 6
eval_every = 3
max_len = 160
[score]
max_examples = 4
"#;
    std::fs::write(dir.join("ft.toml"), ft).expect("write");
    let out = plinth(&["finetune", "--config", "ft.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ft-ansible/report.json")).expect("report"))
            .expect("json");
    for key in ["exact_match", "bleu", "schema_correct", "ansible_aware", "perplexity"] {
        assert!(report["test"][key].is_number(), "test.{key} in {report}");
    }
    assert_eq!(report["test"]["n"].as_f64(), Some(4.0));
    // Decoding is guided by the catalogue, so even a micro model's answers are
    // tasks with a catalogue module and documented keys (unguided it writes none).
    let schema = report["test"]["schema_correct"].as_f64().expect("schema_correct");
    assert!(schema >= 0.75, "schema-correct {schema} under the guide: {report}");
    assert!(report["baselines"]["retrieval"]["ansible_aware"].is_number(), "{report}");
    assert_eq!(
        std::fs::read_to_string(dir.join("ft-ansible/completions.jsonl")).expect("completions").lines().count(),
        4
    );

    // `eval --completions` writes what it scored.
    let out = plinth(&["eval", "--run", "ft-ansible", "--max", "2", "--completions", "scored.jsonl"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let scored = std::fs::read_to_string(dir.join("scored.jsonl")).expect("completions written");
    assert_eq!(scored.lines().count(), 2, "{scored}");
    assert!(scored.lines().all(|l| l.contains("\"prediction\"") && l.contains("\"reference\"")), "{scored}");

    // `generate --plugin` frames the request and prints prompt + answer; an answer
    // the catalogue rejects fails with the reason (a micro model rarely passes).
    let out = plinth(&["generate", "--plugin", "codegen", "--run", "ft-ansible", "--tries", "2", "Install nginx"], dir);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.starts_with("- name: Install nginx"), "{}", text(&out));
    if !out.status.success() {
        assert!(text(&out).contains("did not pass codegen's check after 2 tries"), "{}", text(&out));
    }
    let out = plinth(&["generate", "--plugin", "codegen", "Install nginx"], dir);
    assert!(!out.status.success() && text(&out).contains("finetune it first"), "{}", text(&out));

    // The shipped assistant pipeline on the micro models: it checks, runs, and every
    // request ends in the results or in rejects with its stage.
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/pipelines/ansible-assistant.toml"),
    )
    .expect("shipped pipeline");
    let requests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/pipelines/data/ansible-requests.txt");
    let p = shipped
        .replace("runs/ansible-tiny/checkpoint", "yaml/checkpoint")
        .replace("runs/finetune/ansible", "ft-ansible")
        .replace("configs/pipelines/data/ansible-requests.txt", &requests.display().to_string())
        .replace("out_dir = \"runs/pipelines/ansible-assistant\"", "out_dir = \"assistant\"");
    std::fs::write(dir.join("assistant.toml"), &p).expect("write");
    let out = plinth(&["check", "assistant.toml"], dir);
    assert!(out.status.success() && text(&out).contains("+playbook:string"), "{}", text(&out));
    let out = plinth(&["run", "assistant.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("assistant/summary.json")).expect("summary"))
            .expect("json");
    let checked = summary["stages"][4]["records_out"].as_u64().expect("check count");
    assert_eq!(checked + summary["rejected"].as_u64().expect("rejected"), 10, "{summary}");

    // Checked tasks are assembled into one playbook.
    let tasks = [
        ("- name: Install nginx", "\n  ansible.builtin.apt:\n    name: nginx\n    state: present\n"),
        ("- name: Start nginx", "\n  ansible.builtin.service:\n    name: nginx\n    state: started\n"),
        ("- name: Broken", "\n  ansible.builtin.aptt:\n    name: nginx\n"),
    ];
    let jsonl: String =
        tasks.iter().map(|(p, c)| serde_json::json!({"prompt": p, "completion": c}).to_string() + "\n").collect();
    std::fs::write(dir.join("tasks.jsonl"), jsonl).expect("write");
    let assemble = r#"name = "assemble"
out_dir = "assemble"
[[stage]]
op = "read"
path = "tasks.jsonl"
[[stage]]
plugin = "codegen"
stage = "parse"
[[stage]]
plugin = "codegen"
stage = "check"
[[stage]]
op = "collect"
field = "task"
[[stage]]
plugin = "codegen"
stage = "playbook"
params = { hosts = "web" }
[[stage]]
op = "write"
path = "playbook.yml"
format = "lines"
field = "playbook"
"#;
    std::fs::write(dir.join("assemble.toml"), assemble).expect("write");
    let out = plinth(&["run", "assemble.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let playbook = std::fs::read_to_string(dir.join("assemble/playbook.yml")).expect("playbook");
    assert!(playbook.starts_with("---\n- hosts: web\n  tasks:\n  - name: Install nginx\n"), "{playbook}");
    assert!(playbook.contains("  - name: Start nginx\n") && !playbook.contains("Broken"), "{playbook}");
    let rejects = std::fs::read_to_string(dir.join("assemble/rejects.jsonl")).expect("rejects");
    assert!(rejects.contains("did you mean \\\"ansible.builtin.apt\\\"?"), "{rejects}");
}

#[test]
fn text_triage_pipeline_runs_two_adapters_on_one_base() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mlm = write_config(dir, "mlm");
    let out = plinth(&["pretrain", "--config", mlm.to_str().expect("utf8")], dir);
    assert!(out.status.success(), "{}", text(&out));
    // Micro adapters for the language plugin's two tasks on the micro base.
    for task in ["news-topic", "sentiment"] {
        let cfg = format!(
            r#"base = "run-mlm/checkpoint"
out_dir = "ft-{task}"
[task]
plugin = "language"
name = "{task}"
max_train = 64
[train]
batch_size = 16
max_steps = 4
eval_every = 2
max_len = 48
"#
        );
        std::fs::write(dir.join(format!("{task}.toml")), cfg).expect("write");
        let out = plinth(&["finetune", "--config", &format!("{task}.toml")], dir);
        assert!(out.status.success(), "{}", text(&out));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shipped = std::fs::read_to_string(root.join("configs/pipelines/text-triage.toml")).expect("shipped pipeline");
    let p = shipped
        .replace("runs/finetune/news-topic", "ft-news-topic")
        .replace("runs/finetune/sentiment", "ft-sentiment")
        .replace(
            "configs/pipelines/data/triage.txt",
            &root.join("configs/pipelines/data/triage.txt").display().to_string(),
        )
        .replace("out_dir = \"runs/pipelines/text-triage\"", "out_dir = \"triage\"");
    std::fs::write(dir.join("triage.toml"), &p).expect("write");
    let out = plinth(&["check", "triage.toml"], dir);
    assert!(out.status.success() && text(&out).contains("+sentiment_probability:number"), "{}", text(&out));
    let out = plinth(&["run", "triage.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let documents = std::fs::read_to_string(root.join("configs/pipelines/data/triage.txt")).expect("documents");
    let n = documents.lines().filter(|l| !l.trim().is_empty()).count();
    let results = std::fs::read_to_string(dir.join("triage/results.jsonl")).expect("results");
    assert_eq!(results.lines().count(), n);
    for line in results.lines() {
        let r: serde_json::Value = serde_json::from_str(line).expect("json");
        let topic = r["topic"].as_str().expect("topic");
        assert!(["business", "entertainment", "politics", "sports", "tech"].contains(&topic), "{r}");
        assert!(["rotten", "fresh"].contains(&r["sentiment"].as_str().expect("sentiment")), "{r}");
    }
}

#[test]
fn curate_writes_a_clean_corpus_and_a_report() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let long = "The committee met on Tuesday to discuss the budget for next year in detail, and after a long debate the members agreed to fund the new library and the";
    let docs = [
        "Write to jane.doe@example.com about the garden party on Sunday afternoon.".to_string(),
        "tiny".to_string(),
        format!("{long} park."),
        format!("{long} park."),
        format!("{long} pool."),
        "Only a heck of a mess was left behind after the storm last night.".to_string(),
    ];
    std::fs::write(dir.join("docs.txt"), docs.join("\n\n")).expect("write");
    std::fs::write(dir.join("words.txt"), "heck\n").expect("write");
    std::fs::write(
        dir.join("curate.toml"),
        "corpus = { text_files = [\"docs.txt\"] }\nout_dir = \"clean\"\n[curate]\nword_list = \"words.txt\"\n",
    )
    .expect("write");
    let out = plinth(&["curate", "--config", "curate.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("| near_dedup | 3 | 1 |"), "{}", text(&out));
    let curated = std::fs::read_to_string(dir.join("clean/curated.txt")).expect("curated");
    let kept: Vec<&str> = curated.trim().split("\n\n").collect();
    assert_eq!(kept.len(), 2, "{curated}");
    assert!(kept[0].contains("<EMAIL>") && !curated.contains("jane") && !curated.contains("heck"), "{curated}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("clean/report.json")).expect("report")).expect("json");
    let dropped: u64 =
        report["stages"].as_array().expect("stages").iter().map(|s| s["dropped"].as_u64().unwrap_or(0)).sum();
    assert_eq!(report["documents_in"].as_u64().expect("in") - dropped, report["documents_out"].as_u64().expect("out"));
    assert!(std::fs::read_to_string(dir.join("clean/report.md")).expect("md").contains("## offensive"));

    // A bad setting is refused by name before any work.
    std::fs::write(dir.join("bad.toml"), "corpus = \"wordnet\"\nout_dir = \"x\"\n[curate]\nnear_threshold = 2.0\n")
        .expect("write");
    let out = plinth(&["curate", "--config", "bad.toml"], dir);
    assert!(!out.status.success() && text(&out).contains("near_threshold"), "{}", text(&out));
    assert!(!dir.join("x").exists());
}

#[test]
fn synthetic_text_carries_provenance_and_mixes_into_pretraining() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let causal = write_config(dir, "causal");
    let out = plinth(&["pretrain", "--config", causal.to_str().expect("utf8")], dir);
    assert!(out.status.success(), "{}", text(&out));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shipped = std::fs::read_to_string(root.join("configs/pipelines/text-synthetic.toml")).expect("shipped");
    let p = shipped
        .replace("runs/tiny-causal/checkpoint", "run-causal/checkpoint")
        .replace("samples = 2000", "samples = 24")
        .replace("max_tokens = 64", "max_tokens = 24")
        .replace("settings = { max_offensive_share = 0.05 }", "settings = { min_chars = 1, min_words = 1, min_alpha_share = 0.0, mean_word_len = [0.0, 100.0], word_list = \"words.txt\" }")
        .replace("out_dir = \"runs/pipelines/text-synthetic\"", "out_dir = \"syn\"");
    std::fs::write(dir.join("words.txt"), "zzzz\n").expect("write");
    std::fs::write(dir.join("syn.toml"), &p).expect("write");
    let out = plinth(&["run", "syn.toml"], dir);
    assert!(out.status.success(), "{}", text(&out));
    let lines = std::fs::read_to_string(dir.join("syn/synthetic.jsonl")).expect("synthetic");
    assert!(lines.lines().count() > 0, "{}", text(&out));
    for line in lines.lines() {
        let r: serde_json::Value = serde_json::from_str(line).expect("json");
        let p: serde_json::Value = serde_json::from_str(r["provenance"].as_str().expect("provenance")).expect("json");
        assert_eq!(p["checkpoint"], "run-causal/checkpoint");
        assert_eq!(p["weights_sha256"].as_str().map(str::len), Some(64), "{p}");
        assert!(p["seed"].is_u64() && p["temperature"] == 0.9, "{p}");
    }
    // Mixed into pretraining at a share: the log counts what was added.
    let cfg = std::fs::read_to_string(&causal)
        .expect("config")
        .replace("out_dir = \"run-causal\"", "out_dir = \"mixed\"")
        .replace(
            "val_fraction = 0.2",
            "val_fraction = 0.2\nsynthetic = { path = \"syn/synthetic.jsonl\", field = \"text\", share = 0.25 }",
        );
    std::fs::write(dir.join("mixed.toml"), cfg).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(["pretrain", "--config", "mixed.toml"])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .output()
        .expect("run plinth");
    assert!(out.status.success() && text(&out).contains("synthetic documents mixed into training"), "{}", text(&out));
    // A missing file is refused with its name before training starts.
    let cfg = std::fs::read_to_string(dir.join("mixed.toml"))
        .expect("cfg")
        .replace("syn/synthetic.jsonl", "nope.jsonl")
        .replace("out_dir = \"mixed\"", "out_dir = \"mixed2\"");
    std::fs::write(dir.join("mixed2.toml"), cfg).expect("write");
    let out = plinth(&["pretrain", "--config", "mixed2.toml"], dir);
    assert!(!out.status.success() && text(&out).contains("nope.jsonl"), "{}", text(&out));
}

/// Every f32 tensor of a safetensors file, as (name, values), read by hand.
fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).expect("weights");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("len")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    let mut out: Vec<(String, Vec<f32>)> = header
        .as_object()
        .expect("object")
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .map(|(k, v)| {
            assert_eq!(v["dtype"], "F32", "{k}");
            let off = v["data_offsets"].as_array().expect("offsets");
            let (a, b) = (off[0].as_u64().expect("a") as usize, off[1].as_u64().expect("b") as usize);
            let data = &bytes[8 + n + a..8 + n + b];
            (k.clone(), data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn ddp_config(dir: &Path, name: &str, batch: usize, steps: usize, save_every: usize) -> std::path::PathBuf {
    let base = std::fs::read_to_string(write_config(dir, "causal")).expect("config");
    let text = base
        .replace("out_dir = \"run-causal\"", &format!("out_dir = \"{name}\""))
        .replace("fim_rate = 0.5", "fim_rate = 0.0")
        .replace("batch_size = 4", &format!("batch_size = {batch}\nsave_every = {save_every}"))
        .replace("max_steps = 6", &format!("max_steps = {steps}"));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn two_ranks_with_batch_b_match_one_process_with_batch_2b() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let single = ddp_config(dir, "single", 8, 4, 100);
    let ddp = ddp_config(dir, "ddp", 4, 4, 100);
    let out = plinth(&["pretrain", "--config", single.to_str().expect("utf8")], dir);
    assert!(out.status.success(), "{}", text(&out));
    let out =
        plinth(&["launch", "--nproc", "2", "--", "plinth", "pretrain", "--config", ddp.to_str().expect("utf8")], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).matches("pretrained 4 steps").count(), 1, "one rank reports: {}", text(&out));
    let a = weights(&dir.join("single/checkpoint/model.safetensors"));
    let b = weights(&dir.join("ddp/checkpoint/model.safetensors"));
    assert_eq!(a.iter().map(|t| &t.0).collect::<Vec<_>>(), b.iter().map(|t| &t.0).collect::<Vec<_>>());
    let diff = a
        .iter()
        .zip(&b)
        .flat_map(|((_, x), (_, y))| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0f32, f32::max);
    eprintln!("ddp equivalence: max |param difference| after 4 steps = {diff:.2e}");
    assert!(diff < 1e-5, "two ranks with batch 4 drifted from one process with batch 8 by {diff}");
    let metrics = std::fs::read_to_string(dir.join("ddp/metrics.jsonl")).expect("metrics");
    assert_eq!(metrics.lines().count(), 4, "rank 0 alone writes metrics");
    assert!(metrics.contains("allreduce_s"), "{metrics}");
}

#[test]
fn killing_a_rank_stops_the_other_and_leaves_a_loadable_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let cfg = ddp_config(dir, "killed", 4, 100_000, 2);
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let spawn = |rank: usize| {
        Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(["pretrain", "--config", cfg.to_str().expect("utf8")])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", "2")
            .env("PLINTH_DIST_TIMEOUT_S", "30")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let rank0 = spawn(0);
    let mut rank1 = spawn(1);
    let state = dir.join("killed/checkpoint/training.json");
    let t0 = std::time::Instant::now();
    while !state.exists() {
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint after 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    rank1.kill().expect("kill rank 1");
    let _ = rank1.wait();
    let killed_at = std::time::Instant::now();
    let out = rank0.wait_with_output().expect("rank 0");
    let t = text(&out);
    assert!(!out.status.success() && t.contains("distributed training stopped"), "{t}");
    assert!(killed_at.elapsed().as_secs() < 60, "rank 0 took {:?} to notice", killed_at.elapsed());
    eprintln!("rank 0 stopped {:.1} s after rank 1 was killed", killed_at.elapsed().as_secs_f64());
    eprintln!("{}", t.lines().find(|l| l.contains("distributed training stopped")).unwrap_or_default());
    let out = plinth(&["info", "killed/checkpoint"], dir);
    assert!(out.status.success() && text(&out).contains("steps"), "the last checkpoint loads: {}", text(&out));
}

/// The project's Python (`$VIRTUAL_ENV`, else the repository's `.venv`).
fn venv_python() -> std::path::PathBuf {
    match std::env::var_os("VIRTUAL_ENV") {
        Some(v) => std::path::PathBuf::from(v).join("bin/python"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    }
}

#[test]
fn imported_models_and_peft_adapters_work_from_the_command_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let made = Command::new(venv_python())
        .arg(root.join("tests/interop/hf_side.py"))
        .args(["make", "hf"])
        .arg(root.join("tests/fixtures/corpus.txt"))
        .current_dir(dir)
        .output()
        .expect("run the project's Python; `./dev setup` creates it");
    assert!(made.status.success(), "{}", text(&made));
    for (model, adapter) in [("bert", "peft-bert"), ("llama-gqa-untied", "peft-llama")] {
        let out = plinth(&["import", &format!("hf/{model}"), "--out", model], dir);
        assert!(out.status.success(), "{}", text(&out));
        let out = plinth(&["import", &format!("hf/{adapter}"), "--out", adapter], dir);
        assert!(!out.status.success() && text(&out).contains("--base"), "an adapter needs its base: {}", text(&out));
        let out = plinth(&["import", &format!("hf/{adapter}"), "--base", model, "--out", adapter], dir);
        assert!(out.status.success() && text(&out).contains("LoRA adapter"), "{}", text(&out));
    }
    let out = plinth(&["fill", "--checkpoint", "bert", "--adapter", "peft-bert", "the cat ___ on the mat"], dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.starts_with("the cat ") && stdout.trim_end().ends_with("on the mat"),
        "{}",
        text(&out)
    );
    let out = plinth(
        &["generate", "--checkpoint", "llama-gqa-untied", "--adapter", "peft-llama", "--max-tokens", "5", "The cat"],
        dir,
    );
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("The cat"), "{}", text(&out));
    let out = plinth(&["info", "bert"], dir);
    assert!(
        out.status.success() && text(&out).contains("imported") && text(&out).contains("WordPiece"),
        "{}",
        text(&out)
    );
    // A plinth task's adapter goes back out in PEFT's format.
    let out = plinth(&["export", "peft-llama", "--base", "llama-gqa-untied", "--out", "peft-again"], dir);
    assert!(out.status.success() && dir.join("peft-again/adapter_config.json").exists(), "{}", text(&out));
}
