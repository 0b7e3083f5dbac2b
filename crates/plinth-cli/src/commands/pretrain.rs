//! `plinth pretrain` and `plinth launch`: self-supervised pretraining, alone or data-parallel.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use plinth_train::{PretrainConfig, Pretrainer, RunOptions};

use super::plugin_data;

/// `plinth launch`: `nproc` ranks of `command` on this machine (`plinth` means this binary).
pub fn launch(nproc: usize, master_port: Option<u16>, grace: u64, command: &[String]) -> Result<()> {
    let program = match command[0].as_str() {
        "plinth" => std::env::current_exe()?,
        other => PathBuf::from(other),
    };
    let args = command[1..].to_vec();
    Ok(plinth_dist::launch::Launch { nproc, master_port, grace, program, args }.run()?)
}

/// torchrun's variables (set by `plinth launch`, torchrun or a scheduler) make this
/// process one rank of a data-parallel run; without them it runs alone.
/// Joins the process group the `torchrun` variables describe, if any, and the
/// device this rank trains on: on CUDA each rank takes the GPU of its
/// `LOCAL_RANK` (and NCCL, unless `PLINTH_DIST_BACKEND` says otherwise).
pub fn join_group(device: tch::Device) -> Result<(Option<std::sync::Arc<plinth_dist::ProcessGroup>>, tch::Device)> {
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

pub fn pretrain(config: &std::path::Path, resume: bool, device: tch::Device) -> Result<()> {
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
