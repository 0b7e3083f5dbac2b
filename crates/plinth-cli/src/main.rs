//! The `plinth` binary: parses the command line and hands each command to its
//! module in `commands/`, which calls the crates that own the work.

mod cli;
mod commands;
mod scaffold;

use anyhow::{bail, Result};
use clap::Parser;

use cli::{Cli, Command, DeviceArg};
use commands::{checkpoint, curate, finetune, interop, pipeline, plugins, pretrain};

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
        Command::Pretrain { config, resume } => pretrain::pretrain(&config, resume, device),
        Command::Launch { nproc, master_port, grace, command } => pretrain::launch(nproc, master_port, grace, &command),
        Command::Info { checkpoint } => checkpoint::info(&checkpoint),
        Command::Fill { text, checkpoint, max_span, adapter, sampling } => {
            checkpoint::fill(text, checkpoint, max_span, adapter, sampling, device)
        }
        Command::Generate { prompt, checkpoint, adapter: _, plugin: Some(plugin), task, run, tries, sampling } => {
            finetune::answer_with_plugin(&plugin, task, run, checkpoint, &prompt, tries, &sampling, device)
        }
        Command::Generate { prompt, checkpoint, adapter, plugin: None, sampling, .. } => {
            checkpoint::generate(prompt, checkpoint, adapter, sampling, device)
        }
        Command::Finetune { config, resume } => finetune::finetune(&config, resume, device),
        Command::Eval { run, base, split, max, completions, data: Some(data) } => {
            let _ = (split, max, completions);
            finetune::eval_file(run, base, &data, device)
        }
        Command::Eval { run, base, split, max, completions, data: None } => {
            finetune::eval(run, base, split, max, completions, device)
        }
        Command::Predict { run, base, json, too_long, skip_invalid, input, column, output, inputs } => {
            let how = finetune::PredictOptions { json, too_long, skip_invalid, input, column, output };
            finetune::predict(&run, base.as_deref(), how, inputs, device)
        }
        Command::Import { source, out, base, overwrite } => interop::import(source, out, base, overwrite),
        Command::Export { source, out, base, overwrite } => interop::export(source, out, base, overwrite),
        Command::Curate { config } => curate::curate(&config),
        Command::Check { pipeline } => pipeline::check(pipeline),
        Command::Run { pipeline } => pipeline::run(pipeline, device),
        Command::Plugins { plugins_config, command } => plugins::plugins(&plugins_config, command),
    }
}

#[cfg(test)]
mod tests {
    use super::report;
    use crate::cli::SamplingOnly;
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
