//! `plinth finetune`, `eval`, `predict` and `generate --plugin`: finetuned tasks.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use plinth_finetune::Prediction;

use super::pretrain::join_group;
use super::{load_tasks, plugin_data};
use crate::cli::{SamplingArgs, SplitArg};

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

pub fn predict(
    runs: &[PathBuf],
    base: Option<&std::path::Path>,
    json: bool,
    mut inputs: Vec<String>,
    device: tch::Device,
) -> Result<()> {
    use std::io::BufRead;
    if inputs.is_empty() {
        inputs = std::io::stdin().lock().lines().collect::<Result<Vec<_>, _>>()?;
        inputs.retain(|l| !l.trim().is_empty());
    }
    if inputs.is_empty() {
        bail!("nothing to predict: pass inputs as arguments or one per line on stdin");
    }
    let (ck, tasks) = load_tasks(runs, base, device)?;
    // Inputs a task's plugin rejects (an invalid SMILES, say) are refused before any prediction.
    let needs_check = tasks.iter().any(|t| t.meta.spec.input_check.is_some());
    let plugins = if needs_check { Some(plugin_data()?) } else { None };
    for t in &tasks {
        if let (Some(check), Some(host)) = (&t.meta.spec.input_check, &plugins) {
            use plinth_plugin_protocol::PluginsExt;
            let verdicts = host.check_inputs(&t.meta.plugin, check, &inputs)?;
            for (i, (input, verdict)) in inputs.iter().zip(verdicts).enumerate() {
                if let Some(reason) = verdict {
                    bail!(
                        "input {} ({input:?}) is not valid for {}/{}: {reason}; nothing was predicted",
                        i + 1,
                        t.meta.plugin,
                        t.meta.task
                    );
                }
            }
        }
    }
    let mut answers: Vec<serde_json::Map<String, serde_json::Value>> = inputs
        .iter()
        .map(|t| serde_json::Map::from_iter([("input".to_string(), serde_json::Value::from(t.as_str()))]))
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
    if let Some(t) = tasks.iter().find(|t| t.meta.spec.kind == plinth_plugin_protocol::TaskKind::Generation) {
        bail!(
            "{} is a generation task; use `plinth generate --checkpoint {} --adapter {}`",
            t.meta.task,
            t.meta.base.display(),
            t.dir.display()
        );
    }
    for (task, key) in tasks.iter().zip(&keys) {
        for (answer, p) in answers.iter_mut().zip(task.predict_labelled(&ck, &inputs, 64)?) {
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
    Ok(())
}
