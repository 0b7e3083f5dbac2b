//! The command line: clap's types, and the sampling flags' translation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use plinth_generate::SamplingConfig;

use crate::commands::DEFAULT_PLUGINS_CONFIG;

#[derive(Debug, Parser)]
#[command(name = "plinth", version, about)]
pub(crate) struct Cli {
    /// Compute device: `auto` picks CUDA when libtorch sees a GPU.
    #[arg(long, global = true, value_enum, default_value_t = DeviceArg::Auto)]
    pub(crate) device: DeviceArg,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
        /// A file task: score it on another labelled file with the same columns (every
        /// usable row is a test row) instead of a split of its own file.
        #[arg(long, conflicts_with_all = ["split", "completions"])]
        data: Option<PathBuf>,
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
        /// An input longer than a task reads (its max_len): refuse it, or cut it
        /// to fit (each cut input is named on stderr).
        #[arg(long, value_enum, default_value_t = TooLong::Refuse)]
        too_long: TooLong,
        /// Predict the valid inputs and list every invalid one (line and reason)
        /// on stderr; the exit status is still non-zero if any was skipped.
        #[arg(long)]
        skip_invalid: bool,
        /// Read the inputs from a CSV, TSV, JSON Lines or Parquet file; its rows come out whole (Parquet as CSV),
        /// with each task's prediction (and class probabilities) added.
        #[arg(long, conflicts_with = "json")]
        input: Option<PathBuf>,
        /// The input file's column holding the inputs (default: the column a file
        /// task was trained on).
        #[arg(long, requires = "input")]
        column: Option<String>,
        /// Where the rows with predictions go (default: stdout), in the input's format
        /// (a table as CSV or TSV by this path's extension). Never the input file itself.
        #[arg(long, requires = "input")]
        output: Option<PathBuf>,
        /// Inputs (a text, or a SMILES for molecule tasks); none: one per line on
        /// stdin (blank lines are ignored; errors name the line).
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

#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
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

/// What `predict` does with an input longer than a task reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TooLong {
    /// Refuse it as invalid (the default: a cut input gets another input's answer).
    Refuse,
    /// Keep its first tokens, as many as the task reads.
    Truncate,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SplitArg {
    Train,
    Validation,
    Test,
}

#[derive(Debug, Args)]
pub(crate) struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 48)]
    pub(crate) max_tokens: usize,
    /// 0 is greedy; higher is more random.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) temperature: f64,
    /// Sample only among the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub(crate) top_k: usize,
    /// Sample only from the smallest set of tokens whose probability reaches p.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) top_p: f64,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Stop at this string (repeatable); it is not printed.
    #[arg(long)]
    pub(crate) stop: Vec<String>,
    /// Recompute every position at every step instead of using the KV cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Penalise tokens already generated (CTRL-style; 1 is off, 1.1-1.3 is typical).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) repetition_penalty: f64,
}

/// The sampling flags alone, as a parser (their defaults; the completeness test).
#[derive(Debug, Parser)]
pub(crate) struct SamplingOnly {
    #[command(flatten)]
    pub(crate) sampling: SamplingArgs,
}

impl SamplingArgs {
    /// The flags given with a value other than their default, as `--name`.
    pub(crate) fn changed(&self) -> Vec<&'static str> {
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
    pub(crate) fn parse_from_defaults() -> SamplingArgs {
        SamplingOnly::parse_from(["plinth"]).sampling
    }

    pub(crate) fn config(&self) -> SamplingConfig {
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
