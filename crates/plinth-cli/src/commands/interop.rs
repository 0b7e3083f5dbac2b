//! `plinth import` and `plinth export`: Hugging Face folders and PEFT adapters.

use std::path::PathBuf;

use anyhow::{bail, Result};

pub fn import(source: PathBuf, out: PathBuf, base: Option<PathBuf>, overwrite: bool) -> Result<()> {
    if source.join(plinth_interop::peft::PEFT_CONFIG).exists() {
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
        return Ok(());
    }
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

pub fn export(source: PathBuf, out: PathBuf, base: Option<PathBuf>, overwrite: bool) -> Result<()> {
    if let Some(base) = base {
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
        return Ok(());
    }
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
