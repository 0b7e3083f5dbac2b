//! `plinth info`, `plinth fill`, `plinth generate` (without `--plugin`): a checkpoint on its own.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plinth_checkpoint::{Checkpoint, ObjectiveKind};
use plinth_generate::FinishReason;

use crate::cli::SamplingArgs;

pub fn fill(
    text: String,
    checkpoint: PathBuf,
    max_span: Option<usize>,
    adapter: Option<PathBuf>,
    sampling: SamplingArgs,
    device: tch::Device,
) -> Result<()> {
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

pub fn generate(
    prompt: String,
    checkpoint: Option<PathBuf>,
    adapter: Option<PathBuf>,
    sampling: SamplingArgs,
    device: tch::Device,
) -> Result<()> {
    let checkpoint = checkpoint.unwrap_or_else(|| PathBuf::from("runs/tiny-causal/checkpoint"));
    let ck = Checkpoint::load(&checkpoint, device)?;
    if ck.state.objective.kind != ObjectiveKind::Causal {
        bail!("{} is a masked (bidirectional) model and cannot generate left to right; use `plinth fill` or a causal checkpoint", checkpoint.display());
    }
    let gen = match &adapter {
        Some(dir) => plinth_finetune::FinetunedTask::load(dir, &ck)?.generate(&ck, &prompt, &sampling.config())?,
        None => plinth_generate::generate(
            &ck.model,
            &ck.tokenizer,
            plinth_generate::Request::text(&prompt, &sampling.config()),
        )?,
    };
    println!("{}{}", prompt, gen.text);
    if gen.finish == FinishReason::ContextFull {
        eprintln!("(stopped: the model's context of {} tokens is full)", ck.model.config().max_seq_len);
    }
    Ok(())
}

pub fn info(dir: &Path) -> Result<()> {
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
