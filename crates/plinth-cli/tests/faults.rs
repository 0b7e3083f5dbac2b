//! Fault injection on the `plinth` binary: SIGKILL inside every window of a
//! checkpoint save (the `PLINTH_FAULT_AT` hook kills the process there, as
//! `kill -9` would), at chosen optimizer steps and at random moments from outside,
//! for pretraining and finetuning. After each, `--resume` must reach weights
//! bit-identical to an uninterrupted run's, with one metrics row per step and no
//! leftover folders. Also: a full disk during a save, and two writers at once.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn plinth(dir: &Path, args: &[&str], fault: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plinth"));
    cmd.args(args).current_dir(dir).env("RUST_LOG", "warn");
    match fault {
        Some(f) => cmd.env("PLINTH_FAULT_AT", f),
        None => cmd.env_remove("PLINTH_FAULT_AT"),
    };
    cmd.output().expect("run plinth")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn killed(o: &Output) -> bool {
    o.status.signal() == Some(9)
}

fn pretrain_config(dir: &Path, name: &str, max_steps: u64) -> String {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/corpus.txt");
    let cfg = format!(
        r#"out_dir = "{name}"
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
kind = "mlm"
[train]
seq_len = 32
batch_size = 4
max_steps = {max_steps}
save_every = 2
lr = 3e-3
warmup_steps = 2
eval_every = 4
eval_batches = 1
threads = 1
"#,
        corpus.display()
    );
    let file = format!("{name}.toml");
    std::fs::write(dir.join(&file), cfg).expect("write config");
    file
}

/// The bytes of the files that must match an uninterrupted run exactly.
fn final_state(run: &Path, files: &[&str]) -> Vec<Vec<u8>> {
    files
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap_or_else(|e| panic!("{}: {e}", run.join(f).display())))
        .collect()
}

/// Steps in `metrics.jsonl`, in file order.
fn metric_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json row")["step"].as_u64().expect("step"))
        .collect()
}

/// Hidden leftovers of a save (`.checkpoint.tmp123`, `.state.old45`, `x.tmp6`).
fn leftovers(run: &Path) -> Vec<String> {
    std::fs::read_dir(run)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp") || n.contains(".old"))
        .collect()
}

/// Runs until killed by `fault`, then resumes (again and again if a resume is
/// itself killed) until the run finishes; checks the result against `reference`.
fn kill_then_resume(
    dir: &Path,
    args: &[&str],
    run: &str,
    fault: Fault<'_>,
    files: &[&str],
    reference: &[Vec<u8>],
    steps: u64,
) {
    let _ = std::fs::remove_dir_all(dir.join(run));
    let first = match fault {
        Fault::At(point) => plinth(dir, args, Some(point)),
        Fault::After(delay) => {
            let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
                .args(args)
                .current_dir(dir)
                .env("RUST_LOG", "warn")
                .env_remove("PLINTH_FAULT_AT")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn");
            std::thread::sleep(delay);
            let _ = child.kill(); // SIGKILL
            child.wait_with_output().expect("wait")
        }
    };
    let label = format!("{fault:?}");
    if let Fault::At(_) = fault {
        assert!(killed(&first), "{label}: the fault point was not reached: {}", text(&first));
    }
    let mut resume: Vec<&str> = args.to_vec();
    resume.push("--resume");
    let out = plinth(dir, &resume, None);
    assert!(out.status.success(), "{label}: resume failed: {}", text(&out));
    let got = final_state(&dir.join(run), files);
    for ((name, a), b) in files.iter().zip(&got).zip(reference) {
        assert!(a == b, "{label}: {name} differs from the uninterrupted run's");
    }
    assert_eq!(metric_steps(&dir.join(run)), (1..=steps).collect::<Vec<_>>(), "{label}: one metrics row per step");
    assert_eq!(leftovers(&dir.join(run)), Vec::<String>::new(), "{label}: leftovers");
}

#[derive(Debug, Clone, Copy)]
enum Fault<'a> {
    /// Killed by the hook at this point (`NAME:N`).
    At(&'a str),
    /// Killed from outside after this long.
    After(Duration),
}

/// A delay in `[lo, hi)` ms, drawn from the clock (a different moment each run).
fn random_delay(lo: u64, hi: u64) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    Duration::from_millis(lo + u64::from(nanos) % (hi - lo))
}

#[test]
fn pretraining_killed_anywhere_resumes_to_identical_weights() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let steps = 8;
    let file = pretrain_config(dir, "run", steps);
    let args = ["pretrain", "--config", file.as_str()];
    let out = plinth(dir, &args, None);
    assert!(out.status.success(), "{}", text(&out));
    let files = ["checkpoint/model.safetensors", "checkpoint/optimizer.safetensors"];
    let reference = final_state(&dir.join("run"), &files);
    assert_eq!(metric_steps(&dir.join("run")), (1..=steps).collect::<Vec<_>>());
    // Saves happen at steps 2, 4, 6, 8: the first ever save, and a later one,
    // in each of its windows (writing the new copy, between the two renames,
    // before the old copy is deleted); then between optimizer steps.
    for point in [
        "save.filled:1",
        "save.filled:2",
        "save.swapping:2",
        "save.swapped:2",
        "save.swapping:4",
        "train.step:3",
        "train.step:7",
    ] {
        kill_then_resume(dir, &args, "run", Fault::At(point), &files, &reference, steps);
    }
    for _ in 0..2 {
        kill_then_resume(dir, &args, "run", Fault::After(random_delay(300, 1500)), &files, &reference, steps);
    }
}

#[test]
fn finetuning_killed_anywhere_resumes_to_identical_weights() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let base = pretrain_config(dir, "base", 4);
    let out = plinth(dir, &["pretrain", "--config", &base], None);
    assert!(out.status.success(), "{}", text(&out));
    let steps = 9;
    std::fs::write(
        dir.join("ft.toml"),
        format!(
            "base = \"base/checkpoint\"\nout_dir = \"ft\"\n[task]\nplugin = \"example\"\nname = \"length\"\n\
             [adapter]\nmode = \"lora\"\nrank = 4\n[train]\nbatch_size = 16\nmax_steps = {steps}\neval_every = 3\nmax_len = 32\n"
        ),
    )
    .expect("write");
    let args = ["finetune", "--config", "ft.toml"];
    let out = plinth(dir, &args, None);
    assert!(out.status.success(), "{}", text(&out));
    let files = ["state/task.safetensors", "best/task.safetensors"];
    let reference = final_state(&dir.join("ft"), &files);
    // Saves: state/ at every evaluation (steps 3, 6, 9), best/ whenever it improves.
    for point in ["save.filled:1", "save.swapping:2", "save.swapped:3", "save.swapping:4", "train.step:5"] {
        kill_then_resume(dir, &args, "ft", Fault::At(point), &files, &reference, steps);
    }
    kill_then_resume(dir, &args, "ft", Fault::After(random_delay(500, 2500)), &files, &reference, steps);
}

/// A save that runs out of space (a file-size limit stands in for a full disk)
/// fails with words that say so, and the previous checkpoint stays as it was.
#[test]
fn a_full_disk_during_a_save_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let file = pretrain_config(dir, "run", 4);
    let out = plinth(dir, &["pretrain", "--config", &file], None);
    assert!(out.status.success(), "{}", text(&out));
    let before = final_state(&dir.join("run"), &["checkpoint/model.safetensors", "checkpoint/training.json"]);
    let longer = pretrain_config(dir, "run", 8);
    let size = std::fs::metadata(dir.join("run/checkpoint/model.safetensors")).expect("size").len();
    // bash counts `ulimit -f` in KiB: room for the metrics and the tokenizer, not the weights.
    let limit = (size / 1024 / 2).max(1);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {limit}; exec \"$0\" pretrain --config {longer} --resume"))
        .arg(env!("CARGO_BIN_EXE_plinth"))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("disk is full") && t.contains("previous copy is intact"), "{t}");
    assert_eq!(final_state(&dir.join("run"), &["checkpoint/model.safetensors", "checkpoint/training.json"]), before);
    assert_eq!(leftovers(&dir.join("run")), Vec::<String>::new());
    let out = plinth(dir, &["pretrain", "--config", &longer, "--resume"], None);
    assert!(out.status.success(), "with space again, the run resumes: {}", text(&out));
}

/// Two writers in one run folder: the second is refused with the first's PID,
/// whether it is a new run or a `--resume`, and nothing of the first is touched.
#[test]
fn a_second_run_in_a_busy_folder_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let file = pretrain_config(dir, "run", 100_000);
    let mut first = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(["pretrain", "--config", &file])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let lock = dir.join("run/.plinth.lock");
    let started = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("pretrain")) {
        assert!(started.elapsed() < Duration::from_secs(60), "the first run never took its lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    for extra in [&[][..], &["--resume"][..]] {
        let mut args = vec!["pretrain", "--config", file.as_str()];
        args.extend_from_slice(extra);
        let out = plinth(dir, &args, None);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains(&format!("pid {} pretrain", first.id())) && t.contains("another out_dir"), "{t}");
    }
    first.kill().expect("kill");
    first.wait().expect("wait");
    // The kernel released the killed holder's lock: the folder can be resumed at once.
    let out = plinth(dir, &["pretrain", "--config", &pretrain_config(dir, "run", 2), "--resume"], None);
    assert!(out.status.success(), "{}", text(&out));
}
