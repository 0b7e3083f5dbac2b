//! `plinth finetune`, `eval`, `predict` and `generate --plugin`: finetuned tasks.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use plinth_finetune::Prediction;

use super::pretrain::join_group;
use super::{load_tasks, plugin_data};
use crate::cli::{SamplingArgs, SplitArg, TooLong};

pub fn finetune(config: &std::path::Path, resume: bool, device: tch::Device) -> Result<()> {
    use plinth_finetune::{FinetuneConfig, FinetuneOptions, Finetuner};
    let cfg = FinetuneConfig::from_file(config)?;
    let plugins = plugin_data()?;
    let out_dir = cfg.out_dir.clone();
    let (group, device) = join_group(device)?;
    let writer = group.as_ref().is_none_or(|g| g.rank() == 0);
    let mut ft = Finetuner::new(cfg, &plugins, FinetuneOptions { resume, device, group })
        .with_context(|| format!("preparing the finetune in {}", config.display()))?;
    tracing::info!(trainable = ft.trainable_params(), steps = ft.total_steps(), rows = ?ft.rows(), "finetuning");
    if !writer {
        // Other ranks train alongside rank 0, which evaluates the test split and reports.
        return Ok(ft.train_until(ft.total_steps())?);
    }
    let report = ft.run(&plugins)?;
    let fmt = |m: &plinth_finetune::metrics::Metrics| {
        m.iter().map(|(k, v)| format!("{k} {v:.4}")).collect::<Vec<_>>().join(", ")
    };
    println!(
        "finetuned {}/{} ({:?}, {} trainable parameters, {} steps, best at {}{})",
        report.plugin,
        report.task,
        report.mode,
        report.trainable_params,
        report.steps,
        report.best_step,
        if report.stopped_early { ", stopped early" } else { "" }
    );
    println!("  test          {}", fmt(&report.test));
    for (name, m) in &report.baselines {
        println!("  {:<13} {}", name, fmt(m));
    }
    println!(
        "report in {}, task in {}",
        out_dir.join(plinth_finetune::REPORT_FILE).display(),
        out_dir.join("best").display()
    );
    Ok(())
}

pub fn eval(
    run: PathBuf,
    base: Option<PathBuf>,
    split: SplitArg,
    max: usize,
    completions: Option<PathBuf>,
    device: tch::Device,
) -> Result<()> {
    let split = match split {
        SplitArg::Train => plinth_plugin_protocol::Split::Train,
        SplitArg::Validation => plinth_plugin_protocol::Split::Validation,
        SplitArg::Test => plinth_plugin_protocol::Split::Test,
    };
    let (base, tasks) = load_tasks(&[run], base.as_deref(), device)?;
    if completions.is_some() && tasks[0].meta.spec.completion.is_none() {
        bail!(
            "--completions writes a prompted generation task's answers; {}/{} is not one",
            tasks[0].meta.plugin,
            tasks[0].meta.task
        );
    }
    let plugins = plugin_data()?;
    let metrics = tasks[0].evaluate(&base, &plugins, split, 64, max, completions.as_deref())?;
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    Ok(())
}

/// Loads finetuned tasks on one shared base (the first task's, unless given).
/// `plinth generate --plugin P "request"`: the plugin's prompted generation task
/// answers; the answer is printed as the prompt and its completion. A completion
/// the plugin's check rejects (after `tries`) is printed with the reason and fails.
#[allow(clippy::too_many_arguments)]
pub fn answer_with_plugin(
    plugin: &str,
    task: Option<String>,
    run: Option<PathBuf>,
    base: Option<PathBuf>,
    request: &str,
    tries: usize,
    sampling: &SamplingArgs,
    device: tch::Device,
) -> Result<()> {
    let plugins = plugin_data()?;
    let task = plugins.prompted_task(plugin, task.as_deref())?;
    let run = run.unwrap_or_else(|| PathBuf::from("runs/finetune").join(&task));
    if !run.exists() {
        bail!(
            "no finetuned {plugin}/{task} in {}: finetune it first (for codegen: `./dev plinth finetune --config configs/finetune/ansible.toml`), or pass --run",
            run.display()
        );
    }
    let (ck, tasks) = load_tasks(std::slice::from_ref(&run), base.as_deref(), device)?;
    let t = &tasks[0];
    if t.meta.plugin != plugin || t.meta.task != task {
        bail!("{} holds {}/{}, not {plugin}/{task}", run.display(), t.meta.plugin, t.meta.task);
    }
    let mut cfg = sampling.config();
    if cfg.temperature == 0.0 {
        cfg.temperature = 0.8;
    }
    let (prompt, completion, complaint) = t.answer(&ck, &plugins, request, &cfg, tries)?;
    print!("{prompt}{completion}");
    if !completion.ends_with('\n') {
        println!();
    }
    if let Some(why) = complaint {
        bail!("the answer did not pass {plugin}'s check after {tries} tries: {why}");
    }
    Ok(())
}

/// How `plinth predict` treats its inputs.
pub(crate) struct PredictOptions {
    pub json: bool,
    pub too_long: TooLong,
    pub skip_invalid: bool,
}

/// One input and where it came from, for error messages.
struct Input {
    /// `line N` (stdin, counting blank lines) or `argument N`.
    origin: String,
    /// The stdin line number, reported in JSON output.
    line: Option<usize>,
    text: String,
}

pub(crate) fn predict(
    runs: &[PathBuf],
    base: Option<&std::path::Path>,
    how: PredictOptions,
    args: Vec<String>,
    device: tch::Device,
) -> Result<()> {
    use std::io::BufRead;
    let mut inputs: Vec<Input> = args
        .into_iter()
        .enumerate()
        .map(|(i, text)| Input { origin: format!("argument {}", i + 1), line: None, text })
        .collect();
    if inputs.is_empty() {
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            let text = line.with_context(|| format!("reading line {} of stdin", i + 1))?;
            if !text.trim().is_empty() {
                inputs.push(Input { origin: format!("line {}", i + 1), line: Some(i + 1), text });
            }
        }
    }
    if inputs.is_empty() {
        bail!("nothing to predict: pass inputs as arguments or one per line on stdin");
    }
    let (ck, tasks) = load_tasks(runs, base, device)?;
    if let Some(t) = tasks.iter().find(|t| t.meta.spec.kind == plinth_plugin_protocol::TaskKind::Generation) {
        bail!(
            "{} is a generation task; use `plinth generate --checkpoint {} --adapter {}`",
            t.meta.task,
            t.meta.base.display(),
            t.dir.display()
        );
    }
    // Every input is checked against every task before anything is predicted:
    // the plugin's own check (an invalid SMILES, say) and the task's length.
    let texts: Vec<String> = inputs.iter().map(|i| i.text.clone()).collect();
    let mut problems: Vec<Vec<String>> = vec![Vec::new(); inputs.len()];
    let mut cut: Vec<bool> = vec![false; inputs.len()];
    let needs_check = tasks.iter().any(|t| t.meta.spec.input_check.is_some());
    let plugins = if needs_check { Some(plugin_data()?) } else { None };
    for t in &tasks {
        let name = format!("{}/{}", t.meta.plugin, t.meta.task);
        if let (Some(check), Some(host)) = (&t.meta.spec.input_check, &plugins) {
            use plinth_plugin_protocol::PluginsExt;
            for (i, verdict) in host.check_inputs(&t.meta.plugin, check, &texts)?.into_iter().enumerate() {
                if let Some(reason) = verdict {
                    problems[i].push(format!("not valid for {name}: {reason}"));
                }
            }
        }
        let (lens, reads) = t.input_tokens(&ck, &texts)?;
        for (i, len) in lens.into_iter().enumerate().filter(|(_, len)| *len > reads) {
            match how.too_long {
                TooLong::Refuse => problems[i].push(format!(
                    "{len} tokens, longer than the {reads} {name} reads (pass --too-long truncate to cut it)"
                )),
                TooLong::Truncate => cut[i] = true,
            }
        }
    }
    let invalid = problems.iter().filter(|p| !p.is_empty()).count();
    for (input, why) in inputs.iter().zip(&problems).filter(|(_, p)| !p.is_empty()) {
        eprintln!("{}: {:?}: {}", input.origin, shorten(&input.text), why.join("; "));
    }
    if invalid > 0 && !how.skip_invalid {
        bail!(
            "{invalid} of {} inputs are invalid (listed above); nothing was predicted. Fix them, or pass --skip-invalid to predict the rest",
            inputs.len()
        );
    }
    if invalid == inputs.len() {
        bail!("all {invalid} inputs are invalid (listed above); nothing was predicted");
    }
    let cut_at: Vec<&str> = inputs
        .iter()
        .zip(&cut)
        .zip(&problems)
        .filter(|((_, c), p)| **c && p.is_empty())
        .map(|((i, _), _)| i.origin.as_str())
        .collect();
    if !cut_at.is_empty() {
        eprintln!("cut to the tokens the task reads (--too-long truncate): {}", cut_at.join(", "));
    }
    let keep: Vec<usize> = (0..inputs.len()).filter(|&i| problems[i].is_empty()).collect();
    let texts: Vec<String> = keep.iter().map(|&i| inputs[i].text.clone()).collect();
    let mut answers: Vec<serde_json::Map<String, serde_json::Value>> = keep
        .iter()
        .map(|&i| {
            let mut a =
                serde_json::Map::from_iter([("input".to_string(), serde_json::Value::from(inputs[i].text.as_str()))]);
            if let Some(line) = inputs[i].line {
                a.insert("line".to_string(), serde_json::json!(line));
            }
            a
        })
        .collect();
    // Answers are keyed by task name, or name@run when two runs learnt the same task.
    let keys: Vec<String> = tasks
        .iter()
        .zip(runs)
        .map(|(t, r)| match tasks.iter().filter(|o| o.meta.task == t.meta.task).count() {
            1 => t.meta.task.clone(),
            _ => format!("{}@{}", t.meta.task, r.display()),
        })
        .collect();
    for (task, key) in tasks.iter().zip(&keys) {
        for (answer, p) in answers.iter_mut().zip(task.predict_labelled(&ck, &texts, 64)?) {
            let value = match p {
                Prediction::Value(v) => serde_json::json!(v),
                Prediction::Label { label, probability, probabilities } => {
                    let probs: serde_json::Map<String, serde_json::Value> =
                        probabilities.into_iter().map(|(l, p)| (l, serde_json::json!(p))).collect();
                    serde_json::json!({"label": label, "probability": probability, "probabilities": probs})
                }
            };
            answer.insert(key.clone(), value);
        }
    }
    let json = how.json;
    for a in &answers {
        if json {
            println!("{}", serde_json::Value::Object(a.clone()));
            continue;
        }
        let mut line = String::new();
        for key in &keys {
            let v = &a[key];
            let shown = match v.get("label") {
                Some(label) => {
                    format!("{key} {} ({:.2})", label.as_str().unwrap_or(""), v["probability"].as_f64().unwrap_or(0.0))
                }
                None => format!("{key} {:.4}", v.as_f64().unwrap_or(f64::NAN)),
            };
            line.push_str(&shown);
            line.push_str("  ");
        }
        println!("{}\t{}", line.trim_end(), a["input"].as_str().unwrap_or(""));
    }
    if invalid > 0 {
        bail!("skipped {invalid} invalid inputs of {} (listed above); the rest were predicted", inputs.len());
    }
    Ok(())
}

/// An input as an error message shows it: its first 60 characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}
