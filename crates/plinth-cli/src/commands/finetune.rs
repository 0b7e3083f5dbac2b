//! `plinth finetune`, `eval`, `predict` and `generate --plugin`: finetuned tasks.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use plinth_finetune::file_task::FileFormat;

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
    let progress = writer && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut ft = Finetuner::new(cfg, &plugins, FinetuneOptions { resume, device, group, progress })
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
    let rejects = out_dir.join(plinth_finetune::REJECTS_FILE);
    if let Ok(text) = std::fs::read_to_string(&rejects) {
        let n = text.lines().count();
        if n > 0 {
            println!(
                "  {n} rows of the data file could not be used; each is in {} with its line and reason",
                rejects.display()
            );
        }
    }
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

/// `plinth eval --run R --data FILE`: a file task scored on another labelled file.
pub fn eval_file(run: PathBuf, base: Option<PathBuf>, data: &std::path::Path, device: tch::Device) -> Result<()> {
    let (base, tasks) = load_tasks(std::slice::from_ref(&run), base.as_deref(), device)?;
    let task = &tasks[0];
    let Some(trained) = &task.meta.data else {
        bail!(
            "--data scores a task trained from a file; {} holds {}/{}, a plugin task (use --split)",
            run.display(),
            task.meta.plugin,
            task.meta.task
        );
    };
    let cfg = plinth_finetune::FileTaskConfig { path: data.to_path_buf(), ..trained.clone() };
    let plugins = if cfg.domain.is_some() { Some(plugin_data()?) } else { None };
    let host = plugins.as_ref().map(|p| p as &dyn plinth_plugin_protocol::Plugins);
    let file = plinth_finetune::file_task::load_external(&cfg, &task.meta.spec, host)?;
    for r in &file.rejects {
        eprintln!("{}:{}: {}", data.display(), r.line, r.reason);
    }
    if !file.rejects.is_empty() {
        eprintln!(
            "{} of {} rows could not be used (listed above); scored on the other {}",
            file.rejects.len(),
            file.rows_read,
            file.test.len()
        );
    }
    let metrics = task.evaluate_rows(&base, &file.test, 64)?;
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
    /// A CSV, TSV, JSON Lines or Parquet file of inputs (`column` names the input column).
    pub input: Option<PathBuf>,
    pub column: Option<String>,
    /// Where the input file's rows go with the predictions added (default: stdout).
    pub output: Option<PathBuf>,
}

/// One input and where it came from, for error messages.
struct Input {
    /// `line N` (stdin counting blank lines, or the input file's line) or `argument N`.
    origin: String,
    /// The line number (stdin or the input file), reported in JSON output.
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
    let (ck, tasks) = load_tasks(runs, base, device)?;
    if let Some(t) = tasks.iter().find(|t| t.meta.spec.kind == plinth_plugin_protocol::TaskKind::Generation) {
        bail!(
            "{} is a generation task; use `plinth generate --checkpoint {} --adapter {}`",
            t.meta.task,
            t.meta.base.display(),
            t.dir.display()
        );
    }
    if let Some(path) = &how.input {
        if !inputs.is_empty() {
            bail!("give inputs as arguments or with --input, not both");
        }
        let same = |o: &std::path::Path| o == path || std::fs::canonicalize(o).ok() == std::fs::canonicalize(path).ok();
        if how.output.as_deref().is_some_and(same) {
            bail!(
                "--output {} is the input file; choose another path (the input is never overwritten)",
                path.display()
            );
        }
        if how.output.as_deref().and_then(FileFormat::of_path) == Some(FileFormat::Parquet) {
            bail!("--output: predictions are written as CSV, TSV or JSON Lines, not Parquet; name a .csv, .tsv or .jsonl file");
        }
        let column = match (&how.column, tasks.iter().find_map(|t| t.meta.data.as_ref())) {
            (Some(c), _) => c.clone(),
            (None, Some(d)) => d.input.clone(),
            (None, None) => bail!("--input needs --column (the column holding the inputs)"),
        };
        return super::predict_file::predict_file(
            &tasks,
            &ck,
            &answer_keys(&tasks, runs),
            path,
            &column,
            how.output.as_deref(),
            how.too_long,
            how.skip_invalid,
        );
    }
    if inputs.is_empty() {
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            let text = line.with_context(|| format!("reading line {} of stdin", i + 1))?;
            if !text.trim().is_empty() {
                inputs.push(Input { origin: format!("line {}", i + 1), line: Some(i + 1), text });
            }
        }
    }
    if inputs.is_empty() {
        bail!("nothing to predict: pass inputs as arguments, one per line on stdin, or --input FILE");
    }
    // Every input is checked against every task before anything is predicted.
    let texts: Vec<String> = inputs.iter().map(|i| i.text.clone()).collect();
    let plugins = if tasks.iter().any(|t| t.needs_plugins()) { Some(plugin_data()?) } else { None };
    let checked =
        super::predict_file::check(&tasks, &ck, plugins.as_ref(), &texts, vec![Vec::new(); texts.len()], how.too_long)?;
    let (prepared, problems) = (checked.prepared, checked.problems);
    let invalid = problems.iter().filter(|p| !p.is_empty()).count();
    for (input, why) in inputs.iter().zip(&problems).filter(|(_, p)| !p.is_empty()) {
        eprintln!("{}: {:?}: {}", input.origin, shorten(&input.text), why.join("; "));
    }
    let cut_at: Vec<String> = inputs
        .iter()
        .zip(&checked.cut)
        .zip(&problems)
        .filter(|((_, c), p)| **c && p.is_empty())
        .map(|((i, _), _)| i.origin.clone())
        .collect();
    super::predict_file::refuse_or_go(invalid, inputs.len(), how.skip_invalid, &cut_at)?;
    let keep: Vec<usize> = (0..inputs.len()).filter(|&i| problems[i].is_empty()).collect();
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
    let keys = answer_keys(&tasks, runs);
    for ((task, key), reads) in tasks.iter().zip(&keys).zip(&prepared) {
        let texts: Vec<String> = keep.iter().map(|&i| reads[i].clone()).collect();
        for (answer, p) in answers.iter_mut().zip(task.predict_labelled(&ck, &texts, 64)?) {
            let value = super::predict_file::prediction_json(p);
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
            let shown = match (v.get("label"), v.get("targets").and_then(|t| t.as_object())) {
                (Some(label), _) => {
                    format!("{key} {} ({:.2})", label.as_str().unwrap_or(""), v["probability"].as_f64().unwrap_or(0.0))
                }
                (None, Some(targets)) => {
                    let each: Vec<String> =
                        targets.iter().map(|(t, x)| format!("{t}={:.4}", x.as_f64().unwrap_or(f64::NAN))).collect();
                    format!("{key} {}", each.join(" "))
                }
                (None, None) => format!("{key} {:.4}", v.as_f64().unwrap_or(f64::NAN)),
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

/// Answers are keyed by task name, or name@run when two runs learnt the same task.
fn answer_keys(tasks: &[plinth_finetune::FinetunedTask], runs: &[PathBuf]) -> Vec<String> {
    tasks
        .iter()
        .zip(runs)
        .map(|(t, r)| match tasks.iter().filter(|o| o.meta.task == t.meta.task).count() {
            1 => t.meta.task.clone(),
            _ => format!("{}@{}", t.meta.task, r.display()),
        })
        .collect()
}

/// An input as an error message shows it: its first 60 characters.
pub(crate) fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}
