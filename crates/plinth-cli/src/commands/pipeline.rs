//! `plinth check` and `plinth run`: pipelines.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;

use super::plugin_data;

pub fn check(pipeline: PathBuf) -> Result<()> {
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

pub fn run(pipeline: PathBuf, device: tch::Device) -> Result<()> {
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
