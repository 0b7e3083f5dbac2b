//! `plinth`: pretrain a base model, fill in blanks, generate text, inspect checkpoints.

mod scaffold;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use plinth_generate::{FinishReason, SamplingConfig};
use plinth_train::{Checkpoint, ObjectiveKind, PretrainConfig, Pretrainer, RunOptions};

/// plinth: a foundation-model toolkit on libtorch.
#[derive(Debug, Parser)]
#[command(name = "plinth", version, about)]
struct Cli {
    /// Compute device: `auto` picks CUDA when libtorch sees a GPU.
    #[arg(long, global = true, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pretrain a base model by self-supervision (masked fill-in-the-blank or
    /// next-token prediction) on the corpus named in the config; writes a
    /// checkpoint, metrics.jsonl and loss.png to the config's out_dir.
    Pretrain {
        /// Pretraining config.
        #[arg(long, default_value = "configs/pretrain/tiny-mlm.toml")]
        config: PathBuf,
        /// Continue from the checkpoint in out_dir (exactly where it stopped).
        #[arg(long)]
        resume: bool,
    },
    /// Fill the blank marked `___` in a text, e.g. `plinth fill "It's raining cats and ___"`,
    /// with a masked checkpoint (iterative unmasking) or a causal one trained with
    /// fill-in-the-middle.
    Fill {
        /// Text with exactly one `___`.
        text: String,
        /// Checkpoint folder.
        #[arg(long, default_value = "runs/tiny-mlm/checkpoint")]
        checkpoint: PathBuf,
        /// Longest blank to try, in tokens (masked checkpoints; default 3, capped at
        /// what the context leaves). The sampling options below are for causal
        /// fill-in-the-middle checkpoints, which generate the blank.
        #[arg(long)]
        max_span: Option<usize>,
        /// A generation task on this masked base (such as an imported PEFT adapter)
        /// whose LoRA adapter is applied.
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[command(flatten)]
        sampling: SamplingArgs,
    },
    /// Continue a prompt with a causal checkpoint.
    Generate {
        /// The prompt (with --plugin: the request in plain words).
        prompt: String,
        /// Checkpoint folder (default runs/tiny-causal/checkpoint; with --plugin,
        /// the base the task was finetuned on).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// A finetuned generation task (a finetune out_dir) whose LoRA adapter is applied.
        #[arg(long, conflicts_with = "plugin")]
        adapter: Option<PathBuf>,
        /// Answer with a plugin's prompted generation task (`--plugin codegen`):
        /// the plugin frames the request as a prompt, the task's finetuned adapter
        /// completes it, the plugin's output check validates the answer.
        #[arg(long)]
        plugin: Option<String>,
        /// That plugin's task (default: its only prompted generation task).
        #[arg(long, requires = "plugin")]
        task: Option<String>,
        /// The task's finetune run (default: runs/finetune/<task>).
        #[arg(long, requires = "plugin")]
        run: Option<PathBuf>,
        /// With --plugin: completions to try until one passes the output check;
        /// the first is greedy, the rest sampled (--temperature, 0.8 if left at 0).
        #[arg(long, default_value_t = 4, requires = "plugin")]
        tries: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
    },
    /// Finetune a base checkpoint for a plugin's task (LoRA adapter and head, full,
    /// or head only); keeps the best task by validation metric in out_dir/best and
    /// writes report.json (test metrics beside baselines) and curves.png.
    Finetune {
        /// Finetuning config.
        #[arg(long, default_value = "configs/finetune/sentiment.toml")]
        config: PathBuf,
        /// Continue the run in out_dir from its last evaluation.
        #[arg(long)]
        resume: bool,
    },
    /// Measure a finetuned task on a split of its plugin's data.
    Eval {
        /// The finetune run's out_dir (or its best/ folder).
        #[arg(long)]
        run: PathBuf,
        /// Base checkpoint (default: the one the run was trained on).
        #[arg(long)]
        base: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = SplitArg::Test)]
        split: SplitArg,
        /// Prompted generation tasks: complete and score N rows spread evenly through the split (0: all).
        #[arg(long, default_value_t = 0)]
        max: usize,
        /// Prompted generation tasks: also write the completions there (JSON lines of prompt, prediction, reference).
        #[arg(long)]
        completions: Option<PathBuf>,
    },
    /// Predict with one or more finetuned tasks that share a base: each text gets
    /// every task's answer, the tasks' adapters resident together on one base.
    Predict {
        /// A finetune run's out_dir (repeat for several tasks on the same base).
        #[arg(long, required = true)]
        run: Vec<PathBuf>,
        /// Base checkpoint (default: the one the first run was trained on).
        #[arg(long)]
        base: Option<PathBuf>,
        /// Print one JSON object per text instead of a table.
        #[arg(long)]
        json: bool,
        /// Inputs (a text, or a SMILES for molecule tasks); none: one per line on stdin.
        inputs: Vec<String>,
    },
    /// Run a task pipeline (configs/pipelines/*.toml): writes results.csv/.jsonl,
    /// rejects.jsonl, summary.json and report.html to its out_dir and prints the
    /// summary table.
    Run {
        /// Pipeline file.
        #[arg(default_value = "configs/pipelines/molecule-discovery.toml")]
        pipeline: PathBuf,
    },
    /// Curate a corpus (any corpus pretraining reads: a package, text files, a
    /// plugin's data): normalisation, length and quality filters, private-data
    /// scrubbing, offensive-word filter, exact and near-duplicate removal. Writes
    /// curated.txt (a text_files corpus), report.json and report.md to out_dir.
    Curate {
        /// Curation config (`corpus`, `out_dir`, `[curate]` settings).
        #[arg(long, default_value = "configs/curate/wordnet.toml")]
        config: PathBuf,
    },
    /// Check a pipeline without running it: stages, plugins, models and field
    /// types; errors name the line.
    Check {
        /// Pipeline file.
        pipeline: PathBuf,
    },
    /// Import a Hugging Face model folder (Llama, BERT or RoBERTa: config.json,
    /// safetensors weights, tokenizer.json and tokenizer_config.json) as a plinth
    /// checkpoint, or a PEFT LoRA adapter folder (with --base) as a plinth
    /// generation task. Pickle weights (.bin, .pt) are refused, never loaded.
    Import {
        /// The Hugging Face model folder, or PEFT adapter folder (what `save_pretrained` writes).
        source: PathBuf,
        /// The plinth folder to write: a checkpoint, or for an adapter a task folder
        /// that `plinth generate --adapter` applies.
        #[arg(long)]
        out: PathBuf,
        /// For an adapter: the plinth base checkpoint it adapts (imported from the
        /// same Hugging Face model the adapter was trained on).
        #[arg(long)]
        base: Option<PathBuf>,
        /// Replace `out` if it already holds something.
        #[arg(long)]
        overwrite: bool,
    },
    /// Export a plinth checkpoint as a Hugging Face model folder that
    /// `transformers`' `from_pretrained` loads (causal models as Llama, masked
    /// models of BERT's shape as BERT, or RoBERTa if imported from one), or a
    /// finetuned task's LoRA adapter (with --base) as a PEFT adapter folder.
    Export {
        /// The plinth checkpoint folder, or a finetune run's folder / adapter folder.
        source: PathBuf,
        /// The folder to write.
        #[arg(long)]
        out: PathBuf,
        /// For an adapter: the base checkpoint it was finetuned on.
        #[arg(long)]
        base: Option<PathBuf>,
        /// Replace `out` if it already holds something.
        #[arg(long)]
        overwrite: bool,
    },
    /// Start N local ranks of a data-parallel run, e.g.
    /// `plinth launch --nproc 2 -- plinth pretrain --config C`: each gets torchrun's
    /// variables (MASTER_ADDR, MASTER_PORT, RANK, LOCAL_RANK, WORLD_SIZE). When a
    /// rank fails the others stop too (they see it within their timeout; after
    /// `--grace` seconds the launcher ends them).
    Launch {
        /// Ranks to start on this machine.
        #[arg(long)]
        nproc: usize,
        /// Rendezvous port on 127.0.0.1 (default: a free one).
        #[arg(long)]
        master_port: Option<u16>,
        /// Seconds the other ranks get to stop after one fails.
        #[arg(long, default_value_t = 30)]
        grace: u64,
        /// The command each rank runs (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Describe a checkpoint: architecture, size, objective, training progress.
    Info {
        /// Checkpoint folder.
        checkpoint: PathBuf,
    },
    /// Find, check and describe run-time plugins (shared libraries in the search
    /// path: `search_paths` in the plugins config, `$PLINTH_PLUGIN_PATH`, and the
    /// folder of the `plinth` binary, where the workspace's plugins are built).
    Plugins {
        /// Plugin search paths and SHA-256 pins; a missing default file means no extra settings.
        #[arg(long, default_value = DEFAULT_PLUGINS_CONFIG)]
        plugins_config: PathBuf,
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

const DEFAULT_PLUGINS_CONFIG: &str = "configs/plugins.toml";

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// One line per plugin file found: id, version, ABI, components, or why it was refused.
    List,
    /// Everything about one plugin: ABI versions, libtorch fingerprint, hash, file, components.
    Inspect {
        /// Plugin id, as `plinth plugins list` shows it.
        id: String,
    },
    /// Write a new plugin crate (outside this workspace) that builds against the SDK.
    New {
        /// Plugin id and crate name (a-z, 0-9, -, _).
        name: String,
        /// Folder to create (default: ./NAME); it must not exist.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Validation,
    Test,
}

#[derive(Debug, Args)]
struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 48)]
    max_tokens: usize,
    /// 0 is greedy; higher is more random.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Sample only among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Sample only from the smallest set of tokens whose probability reaches p.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop at this string (repeatable); it is not printed.
    #[arg(long)]
    stop: Vec<String>,
    /// Recompute every position at every step instead of using the KV cache.
    #[arg(long)]
    no_cache: bool,
    /// Penalise tokens already generated (CTRL-style; 1 is off, 1.1-1.3 is typical).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f64,
}

/// The sampling flags alone, as a parser (their defaults; the completeness test).
#[derive(Debug, Parser)]
struct SamplingOnly {
    #[command(flatten)]
    sampling: SamplingArgs,
}

impl SamplingArgs {
    /// The flags given with a value other than their default, as `--name`.
    fn changed(&self) -> Vec<&'static str> {
        let d = SamplingArgs::parse_from_defaults();
        [
            ("--max-tokens", self.max_tokens != d.max_tokens),
            ("--temperature", self.temperature != d.temperature),
            ("--top-k", self.top_k != d.top_k),
            ("--top-p", self.top_p != d.top_p),
            ("--seed", self.seed != d.seed),
            ("--stop", self.stop != d.stop),
            ("--no-cache", self.no_cache != d.no_cache),
            ("--repetition-penalty", self.repetition_penalty != d.repetition_penalty),
        ]
        .into_iter()
        .filter_map(|(flag, changed)| changed.then_some(flag))
        .collect()
    }

    /// The defaults, exactly as clap fills them in.
    fn parse_from_defaults() -> SamplingArgs {
        SamplingOnly::parse_from(["plinth"]).sampling
    }

    fn config(&self) -> SamplingConfig {
        SamplingConfig {
            max_new_tokens: self.max_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
            stop: self.stop.clone(),
            use_cache: !self.no_cache,
            repetition_penalty: self.repetition_penalty,
        }
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if let Err(err) = run(Cli::parse()) {
        eprintln!("error: {}", report(&err));
        std::process::exit(1);
    }
}

/// The error and its causes, `a: b: c`, leaving out a cause whose text is already
/// shown (errors such as `{path}: {source}` print their own cause).
fn report(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn run(cli: Cli) -> Result<()> {
    let device = match cli.device {
        DeviceArg::Auto => tch::Device::cuda_if_available(),
        DeviceArg::Cpu => tch::Device::Cpu,
        DeviceArg::Cuda if tch::Cuda::is_available() => tch::Device::Cuda(0),
        DeviceArg::Cuda => {
            bail!("--device cuda was asked for but libtorch sees no GPU; use --device cpu")
        }
    };
    match cli.command {
        Command::Pretrain { config, resume } => pretrain(&config, resume, device),
        Command::Fill { text, checkpoint, max_span, adapter, sampling } => {
            let ck = Checkpoint::load(&checkpoint, device)?;
            let masked = ck.state.objective.kind == ObjectiveKind::Mlm;
            if !masked && ck.state.objective.fim_rate == 0.0 {
                bail!(
                    "{} is a causal model trained without fill-in-the-middle (fim_rate = 0); use a masked checkpoint or one pretrained with fim_rate > 0",
                    checkpoint.display()
                );
            }
            let unused = sampling.changed();
            if masked && !unused.is_empty() {
                let (verb, them) = if unused.len() == 1 { ("applies", "it") } else { ("apply", "them") };
                bail!(
                    "{} {verb} to causal fill-in-the-middle checkpoints, which generate the blank; {} is masked and \
                     fills by unmasking the most likely tokens. Drop {them}, or pass a causal checkpoint",
                    unused.join(", "),
                    checkpoint.display()
                );
            }
            if !masked && max_span.is_some() {
                bail!(
                    "--max-span applies to masked checkpoints; {} is causal and generates the blank (limit it with \
                     --max-tokens)",
                    checkpoint.display()
                );
            }
            let max_span = max_span.unwrap_or(3);
            let fill = match (ck.state.objective.kind, &adapter) {
                (ObjectiveKind::Mlm, Some(dir)) => {
                    plinth_finetune::FinetunedTask::load(dir, &ck)?.fill(&ck, &text, max_span)?
                }
                (ObjectiveKind::Mlm, None) => plinth_generate::fill_masked(&ck.model, &ck.tokenizer, &text, max_span)?,
                (ObjectiveKind::Causal, Some(_)) => {
                    bail!("--adapter applies to masked models in fill; for a causal model use `plinth generate --adapter`")
                }
                (ObjectiveKind::Causal, None) => {
                    plinth_generate::fill_middle(&ck.model, &ck.tokenizer, &text, &sampling.config())?
                }
            };
            println!("{}", fill.text);
            for (cand, p) in &fill.candidates {
                eprintln!("  {:>6.2}%  {}", p * 100.0, cand.trim());
            }
            Ok(())
        }
        Command::Generate { prompt, checkpoint, adapter: _, plugin: Some(plugin), task, run, tries, sampling } => {
            answer_with_plugin(&plugin, task, run, checkpoint, &prompt, tries, &sampling, device)
        }
        Command::Generate { prompt, checkpoint, adapter, plugin: None, sampling, .. } => {
            let checkpoint = checkpoint.unwrap_or_else(|| PathBuf::from("runs/tiny-causal/checkpoint"));
            let ck = Checkpoint::load(&checkpoint, device)?;
            if ck.state.objective.kind != ObjectiveKind::Causal {
                bail!("{} is a masked (bidirectional) model and cannot generate left to right; use `plinth fill` or a causal checkpoint", checkpoint.display());
            }
            let gen = match &adapter {
                Some(dir) => {
                    plinth_finetune::FinetunedTask::load(dir, &ck)?.generate(&ck, &prompt, &sampling.config())?
                }
                None => plinth_generate::generate(&ck.model, &ck.tokenizer, &prompt, &sampling.config())?,
            };
            println!("{}{}", prompt, gen.text);
            if gen.finish == FinishReason::ContextFull {
                eprintln!("(stopped: the model's context of {} tokens is full)", ck.model.config().max_seq_len);
            }
            Ok(())
        }
        Command::Finetune { config, resume } => finetune(&config, resume, device),
        Command::Eval { run, base, split, max, completions } => {
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
        Command::Predict { run, base, json, inputs } => predict(&run, base.as_deref(), json, inputs, device),
        Command::Info { checkpoint } => info(&checkpoint),
        Command::Launch { nproc, master_port, grace, command } => launch(nproc, master_port, grace, &command),
        Command::Import { source, out, base, overwrite } if source.join(plinth_interop::peft::PEFT_CONFIG).exists() => {
            let Some(base) = base else {
                bail!("{} is a PEFT adapter; pass --base with the plinth checkpoint it adapts", source.display());
            };
            let r = plinth_interop::peft::import_peft(&source, &base, &out, overwrite)?;
            println!(
                "imported a {} LoRA adapter (r {}, alpha {}, {} modules) as a generation task in {}; use it with `plinth generate --checkpoint {} --adapter {}`",
                r.family,
                r.rank,
                r.alpha,
                r.modules,
                out.display(),
                base.display(),
                out.display()
            );
            Ok(())
        }
        Command::Import { source, out, base, overwrite } => {
            if base.is_some() {
                bail!("--base is for adapters, and {} has no adapter_config.json", source.display());
            }
            let r = plinth_interop::import_hf(&source, &out, overwrite)?;
            println!(
                "imported {} ({} parameters, {} tensors, tokenizer of {} tokens) into {}",
                r.family,
                r.parameters,
                r.tensors,
                r.tokenizer_tokens,
                out.display()
            );
            if !r.skipped.is_empty() {
                println!("not used by plinth: {}", r.skipped.join(", "));
            }
            Ok(())
        }
        Command::Export { source, out, base: Some(base), overwrite } => {
            let r = plinth_interop::peft::export_peft(&source, &base, &out, overwrite)?;
            println!(
                "exported a LoRA adapter (r {}, alpha {}, {} {} modules: {}) in PEFT's format into {}",
                r.rank,
                r.alpha,
                r.modules,
                r.family,
                r.target_modules.join(", "),
                out.display()
            );
            if r.head_left_out {
                eprintln!("note: the task's head is plinth's own and PEFT's LoRA format has no place for it; only the adapter was exported");
            }
            Ok(())
        }
        Command::Export { source, out, base: None, overwrite } => {
            if !source.join(plinth_model::checkpoint::WEIGHTS_FILE).exists() {
                bail!(
                    "{} is not a checkpoint; to export a finetuned task's adapter, pass --base with the checkpoint it was finetuned on",
                    source.display()
                );
            }
            let checkpoint = source;
            let r = plinth_interop::export_hf(&checkpoint, &out, overwrite)?;
            println!("exported {} tensors as {} ({}) into {}", r.tensors, r.architecture, r.family, out.display());
            Ok(())
        }
        Command::Curate { config } => curate(&config),
        Command::Check { pipeline } => {
            let plugins = plugin_data()?;
            let p = plinth_pipeline::Pipeline::load(&pipeline, &plugins)?;
            println!("{}: {} stages, ok", pipeline.display(), p.stages.len());
            let mut before = plinth_pipeline::Schema::new();
            for s in &p.stages {
                let added: Vec<String> = s
                    .schema_after
                    .iter()
                    .filter(|(k, t)| before.get(*k) != Some(*t))
                    .map(|(k, t)| format!("+{k}:{t:?}").to_lowercase())
                    .collect();
                println!("  line {:>3}  {:<18} {}", s.line, s.name, added.join(" "));
                before = s.schema_after.clone();
            }
            Ok(())
        }
        Command::Run { pipeline } => {
            let plugins = plugin_data()?;
            let p = plinth_pipeline::Pipeline::load(&pipeline, &plugins)?;
            let opts = plinth_pipeline::run::RunOptions { device, progress: std::io::stderr().is_terminal() };
            let summary = plinth_pipeline::run::run(&p, &plugins, opts)?;
            print!("{}", plinth_pipeline::report::summary_table(&summary));
            println!(
                "results {}, rejects {}, report {}",
                p.out_dir.join(plinth_pipeline::run::RESULTS_CSV).display(),
                p.out_dir.join(plinth_pipeline::run::REJECTS).display(),
                p.out_dir.join(plinth_pipeline::run::REPORT).display()
            );
            Ok(())
        }
        Command::Plugins { plugins_config, command } => plugins(&plugins_config, command),
    }
}

fn launch(nproc: usize, master_port: Option<u16>, grace: u64, command: &[String]) -> Result<()> {
    use std::time::{Duration, Instant};
    if nproc == 0 {
        bail!("--nproc must be at least 1");
    }
    let port = match master_port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
    };
    // `plinth` as the command means this very binary.
    let program = match command[0].as_str() {
        "plinth" => std::env::current_exe()?,
        other => PathBuf::from(other),
    };
    let mut children = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let child = std::process::Command::new(&program)
            .args(&command[1..])
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .spawn()
            .with_context(|| format!("starting rank {rank}: {}", program.display()))?;
        children.push(Some(child));
    }
    let mut failed: Vec<String> = Vec::new();
    let mut deadline: Option<Instant> = None;
    while children.iter().any(Option::is_some) {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot.as_mut() else { continue };
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    failed.push(format!("rank {rank} ({status})"));
                    deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(grace));
                }
                *slot = None;
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            for (rank, slot) in children.iter_mut().enumerate() {
                if let Some(mut child) = slot.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                    failed.push(format!("rank {rank} (ended by the launcher after --grace {grace} s)"));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !failed.is_empty() {
        bail!("{} of {nproc} ranks failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// torchrun's variables (set by `plinth launch`, torchrun or a scheduler) make this
/// process one rank of a data-parallel run; without them it runs alone.
/// Joins the process group the `torchrun` variables describe, if any, and the
/// device this rank trains on: on CUDA each rank takes the GPU of its
/// `LOCAL_RANK` (and NCCL, unless `PLINTH_DIST_BACKEND` says otherwise).
fn join_group(device: tch::Device) -> Result<(Option<std::sync::Arc<plinth_dist::ProcessGroup>>, tch::Device)> {
    Ok(match plinth_dist::Rendezvous::from_env()? {
        Some(r) => {
            let device = match device {
                tch::Device::Cuda(_) => tch::Device::Cuda(r.local_rank),
                other => other,
            };
            let group = plinth_dist::ProcessGroup::init_on(&r, device)?;
            tracing::info!(rank = r.rank, world = r.world_size, master = %format!("{}:{}", r.master_addr, r.master_port), backend = ?group.backend(), ?device, "joined");
            (Some(std::sync::Arc::new(group)), device)
        }
        None => (None, device),
    })
}

fn pretrain(config: &std::path::Path, resume: bool, device: tch::Device) -> Result<()> {
    let cfg = PretrainConfig::from_file(config)?;
    let wants_plugins =
        matches!(cfg.data.corpus, plinth_data::CorpusSource::Plugin(_)) || cfg.tokenizer.plugin.is_some();
    let plugins: Option<std::sync::Arc<dyn plinth_plugin_protocol::Plugins>> = match wants_plugins {
        true => Some(std::sync::Arc::new(plugin_data()?)),
        false => None,
    };
    let (group, device) = join_group(device)?;
    let writer = group.as_ref().is_none_or(|g| g.rank() == 0);
    let opts = RunOptions {
        resume,
        progress: writer && std::io::stderr().is_terminal(),
        device,
        cache_dir: plinth_data::cache_dir(),
        plugins,
        group,
    };
    let mut trainer =
        Pretrainer::new(cfg, &opts).with_context(|| format!("preparing the run in {}", config.display()))?;
    let m = trainer.model().config();
    tracing::info!(
        params = m.num_params(),
        d_model = m.d_model,
        layers = m.n_layers,
        vocab = m.vocab_size,
        ?device,
        "model"
    );
    trainer.run()?;
    let st = trainer.state();
    if !writer {
        return Ok(());
    }
    println!(
        "pretrained {} steps, {} tokens; validation loss {}; checkpoint in {}",
        st.step,
        st.tokens_seen,
        st.val_loss.map_or("n/a".into(), |v| format!("{v:.4}")),
        trainer.checkpoint_dir().display()
    );
    Ok(())
}

/// Every plugin in the default search path, as plugin data for training.
fn plugin_data() -> Result<plinth_plugin_host::PluginHost> {
    let mut host = plugin_host(std::path::Path::new(DEFAULT_PLUGINS_CONFIG))?;
    for (path, result) in host.discover() {
        if let Err(e) = result {
            tracing::warn!("skipping {}: {e}", path.display());
        }
    }
    Ok(host)
}

fn finetune(config: &std::path::Path, resume: bool, device: tch::Device) -> Result<()> {
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

/// Loads finetuned tasks on one shared base (the first task's, unless given).
/// `plinth generate --plugin P "request"`: the plugin's prompted generation task
/// answers; the answer is printed as the prompt and its completion. A completion
/// the plugin's check rejects (after `tries`) is printed with the reason and fails.
#[allow(clippy::too_many_arguments)]
fn answer_with_plugin(
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
    let task = match task {
        Some(t) => t,
        None => {
            let p = plugins.get(plugin)?;
            let prompted: Vec<String> = p
                .components
                .iter()
                .filter(|c| c.kind == plinth_plugin_host::ComponentKind::Task)
                .filter(|c| matches!(&c.spec, plinth_plugin_protocol::ComponentSpec::Task(s) if s.completion.is_some()))
                .map(|c| c.name.clone())
                .collect();
            match prompted.as_slice() {
                [one] => one.clone(),
                [] => bail!("plugin {plugin} has no prompted generation task; `plinth plugins inspect {plugin}` lists its tasks"),
                many => bail!("plugin {plugin} has several prompted generation tasks ({}); choose one with --task", many.join(", ")),
            }
        }
    };
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

fn curate(config: &std::path::Path) -> Result<()> {
    let file = plinth_curate::CurateFile::from_path(config)?;
    let cache = plinth_data::cache_dir();
    let plugins = match &file.corpus {
        plinth_data::CorpusSource::Plugin(_) => Some(plugin_data()?),
        _ => None,
    };
    let corpus = plinth_data::load_corpus(
        &file.corpus,
        &cache,
        plugins.as_ref().map(|p| p as &dyn plinth_plugin_protocol::Plugins),
    )?;
    let curator = plinth_curate::Curator::new(file.curate, &cache)?;
    let (kept, report) = curator.run(corpus.documents);
    std::fs::create_dir_all(&file.out_dir).with_context(|| format!("creating {}", file.out_dir.display()))?;
    // One document per block; blank lines inside a document are dropped so the
    // file reads back as the same documents (`corpus = { text_files = [...] }`).
    let body: Vec<String> =
        kept.iter().map(|d| d.lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join("\n")).collect();
    plinth_model::checkpoint::write_atomic(&file.out_dir.join("curated.txt"), (body.join("\n\n") + "\n").as_bytes())?;
    plinth_model::checkpoint::write_atomic(
        &file.out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    let md = report.markdown();
    plinth_model::checkpoint::write_atomic(&file.out_dir.join("report.md"), md.as_bytes())?;
    print!("{}", md.split("\n## ").next().unwrap_or_default());
    println!(
        "curated corpus in {}, report in {}",
        file.out_dir.join("curated.txt").display(),
        file.out_dir.join("report.md").display()
    );
    Ok(())
}

fn load_tasks(
    runs: &[PathBuf],
    base: Option<&std::path::Path>,
    device: tch::Device,
) -> Result<(Checkpoint, Vec<plinth_finetune::FinetunedTask>)> {
    let first = plinth_finetune::task::read_meta(&plinth_finetune::task::resolve_dir(&runs[0])?)?;
    let base_dir = base.map_or(first.base.clone(), std::path::Path::to_path_buf);
    let ck = Checkpoint::load(&base_dir, device).with_context(|| format!("loading the base {}", base_dir.display()))?;
    let tasks = runs.iter().map(|r| plinth_finetune::FinetunedTask::load(r, &ck)).collect::<Result<Vec<_>, _>>()?;
    Ok((ck, tasks))
}

fn predict(
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
                if let Err(reason) = verdict {
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
        let out = task.predict(&ck, &inputs, 64)?;
        let rows: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(out.to_kind(tch::Kind::Double))?;
        for (answer, row) in answers.iter_mut().zip(rows) {
            let value = match task.meta.spec.kind {
                plinth_plugin_protocol::TaskKind::Regression | plinth_plugin_protocol::TaskKind::Generation => {
                    serde_json::json!(row[0])
                }
                plinth_plugin_protocol::TaskKind::Classification => {
                    let best =
                        row.iter().enumerate().fold((0, f64::MIN), |b, (i, &p)| if p > b.1 { (i, p) } else { b });
                    let probs: serde_json::Map<String, serde_json::Value> =
                        task.meta.spec.labels.iter().cloned().zip(row.iter().map(|&p| serde_json::json!(p))).collect();
                    serde_json::json!({"label": task.meta.spec.labels[best.0], "probability": best.1, "probabilities": probs})
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

fn plugin_host(config: &std::path::Path) -> Result<plinth_plugin_host::PluginHost> {
    use plinth_plugin_host::HostConfig;
    let mut cfg = if config.exists() || config != std::path::Path::new(DEFAULT_PLUGINS_CONFIG) {
        HostConfig::from_file(config)?
    } else {
        HostConfig::default()
    };
    cfg = cfg.with_env();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(std::path::Path::to_path_buf)) {
        cfg.search_paths.push(dir);
    }
    Ok(plinth_plugin_host::PluginHost::new(cfg))
}

fn plugins(config: &std::path::Path, command: PluginsCommand) -> Result<()> {
    if let PluginsCommand::New { name, dir } = &command {
        let root = scaffold::new_plugin(name, dir.as_deref())?;
        println!("wrote plugin crate {} (see its README.md to build it)", root.display());
        return Ok(());
    }
    let mut host = plugin_host(config)?;
    let found = host.discover();
    match command {
        PluginsCommand::List => {
            if found.is_empty() {
                println!("no plugin files in {:?}", host.config().search_paths);
            }
            for (path, result) in &found {
                match result {
                    Ok(p) => println!(
                        "{:<12} {:<8} ABI {}.{}  {} components  {}",
                        p.id,
                        p.version,
                        plinth_plugin_host::abi_major(),
                        p.negotiated_minor,
                        p.components.len(),
                        p.path.display()
                    ),
                    Err(e) => println!(
                        "{:<12} refused: {e}",
                        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                    ),
                }
            }
            Ok(())
        }
        PluginsCommand::New { .. } => Ok(()),
        PluginsCommand::Inspect { id } => {
            let p = host.get(&id)?;
            println!("plugin       {} {}", p.id, p.version);
            println!("file         {}", p.path.display());
            println!("sha256       {}", p.sha256);
            println!(
                "ABI          built for {}.{}, negotiated {}.{}",
                plinth_plugin_host::abi_major(),
                p.built_minor,
                plinth_plugin_host::abi_major(),
                p.negotiated_minor
            );
            println!("libtorch     {}", if p.fingerprint.is_empty() { "not linked" } else { &p.fingerprint });
            println!("poisoned     {}", p.is_poisoned());
            println!("components");
            for c in &p.components {
                let threads = if c.sync {
                    "Send+Sync"
                } else if c.send {
                    "Send (calls serialised)"
                } else {
                    "host thread only"
                };
                println!("  {:<10} {:<14} {}  [{threads}]", c.spec.role(), c.name, c.description);
                if let Some(detail) = describe_spec(&c.spec) {
                    println!("             {detail}");
                }
            }
            Ok(())
        }
    }
}

fn info(dir: &std::path::Path) -> Result<()> {
    let ck = Checkpoint::load(dir, tch::Device::Cpu)?;
    let c = ck.model.config();
    let st = &ck.state;
    println!("checkpoint   {}", dir.display());
    println!("parameters   {}", c.num_params());
    println!(
        "architecture d_model {} · layers {} · heads {} (kv {}, width {}) · d_ff {} · context {} · {:?} ({:?}) · {:?} · {:?} positions · bias {} · tied {}{}",
        c.d_model,
        c.n_layers,
        c.n_heads,
        c.kv_heads(),
        c.head_dim(),
        c.d_ff,
        c.max_seq_len,
        c.norm,
        c.norm_placement,
        c.mlp,
        c.position,
        c.bias,
        c.tie_embeddings,
        if c.head_transform { " · BERT output head" } else { "" }
    );
    println!("vocabulary   {} embeddings; tokenizer: {}", c.vocab_size, ck.tokenizer.describe());
    let record = dir.join(plinth_interop::IMPORT_RECORD);
    if let Ok(text) = std::fs::read_to_string(&record) {
        let r: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("reading {}", record.display()))?;
        println!(
            "imported     {} model from {}",
            r["family"].as_str().unwrap_or("?"),
            r["source"].as_str().unwrap_or("?")
        );
    }
    println!(
        "objective    {:?}{}",
        st.objective.kind,
        match st.objective.kind {
            ObjectiveKind::Mlm => format!(" (mask_prob {})", st.objective.mask_prob),
            ObjectiveKind::Causal => format!(" (fim_rate {})", st.objective.fim_rate),
        }
    );
    println!("trained      {} steps, {} tokens", st.step, st.tokens_seen);
    println!("val loss     {}", st.val_loss.map_or("n/a".into(), |v| format!("{v:.4}")));
    Ok(())
}

/// One line on what a component declares, for `plinth plugins inspect`.
fn describe_spec(spec: &plinth_plugin_protocol::ComponentSpec) -> Option<String> {
    use plinth_plugin_protocol::{ComponentSpec, Schema, TokenizerSpec};
    let fields = |s: &Schema| {
        s.iter().map(|(k, t)| format!("{k}: {}", format!("{t:?}").to_lowercase())).collect::<Vec<_>>().join(", ")
    };
    match spec {
        ComponentSpec::Stage(s) => {
            let mut line = format!("reads {{{}}}", fields(&s.requires));
            if !s.optional.is_empty() {
                line.push_str(&format!(", optionally {{{}}}", fields(&s.optional)));
            }
            line.push_str(&format!(", adds {{{}}}", fields(&s.adds)));
            let params = s.params.get("properties").and_then(|p| p.as_object()).filter(|p| !p.is_empty());
            if let Some(p) = params {
                line.push_str(&format!(", params {{{}}}", p.keys().cloned().collect::<Vec<_>>().join(", ")));
            }
            Some(line)
        }
        ComponentSpec::Task(t) => serde_json::to_string(t).ok().map(|j| format!("spec {j}")),
        ComponentSpec::Tokenizer(TokenizerSpec::Train { vocab_size, min_frequency }) => {
            Some(format!("trained by the host: vocab_size {vocab_size}, min_frequency {min_frequency}"))
        }
        ComponentSpec::Tokenizer(TokenizerSpec::File(json)) => Some(format!("tokenizer.json ({} bytes)", json.len())),
        ComponentSpec::Module(defaults) => Some(format!("defaults {defaults}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{report, SamplingOnly};
    use clap::{CommandFactory, Parser};

    #[test]
    fn every_sampling_flag_is_reported_when_set() {
        let cmd = SamplingOnly::command();
        let mut seen = 0;
        for arg in cmd.get_arguments().filter(|a| a.get_long().is_some_and(|l| l != "help")) {
            let flag = format!("--{}", arg.get_long().expect("long"));
            let parsed = if arg.get_action().takes_values() {
                ["7", "0.5"].iter().find_map(|v| SamplingOnly::try_parse_from(["plinth", flag.as_str(), v]).ok())
            } else {
                SamplingOnly::try_parse_from(["plinth", flag.as_str()]).ok()
            };
            let parsed = parsed.unwrap_or_else(|| panic!("{flag} takes neither 7 nor 0.5"));
            assert_eq!(parsed.sampling.changed(), vec![flag.as_str()], "{flag} set must be reported, alone");
            seen += 1;
        }
        assert_eq!(seen, 8, "the sampling flags");
    }

    #[test]
    fn a_report_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = plinth_train::TrainError::Io { path: "nope.toml".into(), source: io };
        let err = anyhow::Error::from(err).context("reading the config");
        assert_eq!(report(&err), "reading the config: nope.toml: No such file or directory");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(report(&plain), "outer: inner");
    }
}
