//! `plinth-bench`: the Rust half of `just bench`. Each subcommand measures one
//! thing on random data and prints one JSON object; `bench/bench.py` runs it
//! beside the PyTorch references in the same session and computes the ratios.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use plinth_model::{AttentionMode, ModelConfig, Transformer};
use plinth_train::objectives::batch_loss;
use plinth_train::optim::{clip_grad_norm, gradients, AdamW, AdamWConfig};
use plinth_train::{ObjectiveConfig, ObjectiveKind};
use serde_json::json;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Parser)]
#[command(name = "plinth-bench", about = "throughput probes for `just bench`")]
struct Cli {
    /// libtorch intra-op threads (0: libtorch's default).
    #[arg(long, default_value_t = 0, global = true)]
    threads: i32,
    /// Device to measure on.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu, global = true)]
    device: DeviceArg,
    /// Run RMSNorm, SwiGLU and rotary as composed ATen ops instead of plinth's fused CPU
    /// kernels (`plinth_layers::kernels`), to time the two on the same binary.
    #[arg(long, global = true)]
    composed: bool,
    /// Run float32 GEMMs through ATen's `linear` (MKL in the wheel) instead of
    /// oneDNN (`plinth_layers::kernels::linear`), to time the two on the same binary.
    #[arg(long, global = true)]
    mkl_gemm: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Median wall time of full optimizer steps (forward, backward, clip, AdamW).
    Train {
        #[arg(long)]
        preset: PathBuf,
        #[arg(long, default_value_t = 8000)]
        vocab: i64,
        #[arg(long, default_value_t = 128)]
        seq_len: i64,
        #[arg(long, default_value_t = 32)]
        batch: i64,
        #[arg(long, default_value_t = 20)]
        steps: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, value_enum, default_value_t = Objective::Causal)]
        objective: Objective,
    },
    /// Batch-1 greedy generation tokens/s, with or without the KV cache, on random
    /// weights of a preset or on a checkpoint (whose load time is reported too).
    Generate {
        #[arg(long, required_unless_present = "checkpoint")]
        preset: Option<PathBuf>,
        /// A plinth checkpoint folder to load and generate with instead of a preset.
        #[arg(long, conflicts_with = "preset")]
        checkpoint: Option<PathBuf>,
        #[arg(long, default_value_t = 8000)]
        vocab: i64,
        #[arg(long, default_value_t = 16)]
        prompt_len: i64,
        #[arg(long, default_value_t = 128)]
        new_tokens: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        #[arg(long)]
        no_cache: bool,
    },
    /// Plugin ABI costs: one call through the C ABI against the same Rust function
    /// called directly, a tensor handed to a plugin and back, and discovery + load.
    Plugins {
        #[arg(long, default_value_t = 20000)]
        calls: usize,
    },
    /// Finetuning one sequence-classification task three ways on the same data:
    /// LoRA (adapter + head), full (every weight + head) or head-only (linear probe).
    /// Reports trainable parameters, saved file size, median step time and this
    /// process's peak RSS, so run one mode per process.
    Finetune {
        #[arg(long)]
        preset: PathBuf,
        #[arg(long, value_enum)]
        mode: FinetuneMode,
        #[arg(long, default_value_t = 8000)]
        vocab: i64,
        #[arg(long, default_value_t = 128)]
        seq_len: i64,
        #[arg(long, default_value_t = 16)]
        batch: i64,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Adapters resident at once, for the memory of N adapters on one base.
        #[arg(long, default_value_t = 8)]
        adapters: i64,
    },
    /// Serving one batch whose rows ask for different LoRA adapters: one forward with
    /// the per-row mix (`LoraAdapter::per_row`, built inside the timed region) against
    /// one forward per adapter over its rows, and one forward with a single adapter.
    Adapters {
        #[arg(long)]
        preset: PathBuf,
        #[arg(long, default_value_t = 8000)]
        vocab: i64,
        #[arg(long, default_value_t = 128)]
        seq_len: i64,
        #[arg(long, default_value_t = 32)]
        batch: i64,
        /// Distinct adapters in the batch (rows pick one round-robin).
        #[arg(long, default_value_t = 8)]
        adapters: usize,
        #[arg(long, default_value_t = 10)]
        repeats: usize,
    },
    /// The pipeline engine's own cost: read → molecule validate → canonicalize →
    /// hazard over the SMILES of a file, through `plinth_pipeline::run` against the
    /// same plugin stages called directly in a loop (one process, same plugin).
    Pipeline {
        /// SMILES, one per line.
        #[arg(long)]
        smiles: PathBuf,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// MOSES generation metrics of a SMILES checkpoint: validity, uniqueness at 1k
    /// and at all samples, novelty against the first `reference` MOSES training
    /// molecules, internal diversity (1 - mean pairwise ECFP4 Tanimoto of the unique
    /// valid molecules).
    Moses {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long, default_value_t = 10000)]
        samples: usize,
        #[arg(long, default_value_t = 100000)]
        reference: usize,
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
    },
    /// `plinth import` of a Hugging Face model folder in this process: wall time and
    /// peak RSS (run one import per process).
    Import {
        #[arg(long)]
        source: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// f32 square-matmul throughput: the peak that MFU is measured against.
    Matmul {
        #[arg(long, default_value_t = 1024)]
        n: i64,
        #[arg(long, default_value_t = 30)]
        repeats: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
enum FinetuneMode {
    Lora,
    Full,
    HeadOnly,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Objective {
    Causal,
    Mlm,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.threads > 0 {
        tch::set_num_threads(cli.threads);
    }
    plinth_layers::kernels::set_enabled(!cli.composed);
    plinth_layers::kernels::set_onednn_gemm(!cli.mkl_gemm);
    let device = match cli.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::Cuda(0),
    };
    let out = match cli.command {
        Command::Train { preset, vocab, seq_len, batch, steps, warmup, objective } => {
            let cfg = load_preset(&preset, vocab)?;
            let kind = match objective {
                Objective::Causal => ObjectiveKind::Causal,
                Objective::Mlm => ObjectiveKind::Mlm,
            };
            train(&cfg, kind, seq_len, batch, steps, warmup, device)?
        }
        Command::Generate { preset, checkpoint, vocab, prompt_len, new_tokens, repeats, no_cache } => {
            let rss_before = rss_mib();
            let t0 = Instant::now();
            let (model, _vs, load_s, vocab) = match (checkpoint, preset) {
                (Some(dir), _) => {
                    let ck = plinth_checkpoint::Checkpoint::load(&dir, device)?;
                    let v = ck.tokenizer.vocab_size() as i64;
                    (ck.model, ck.vs, Some(t0.elapsed().as_secs_f64()), v)
                }
                (None, Some(preset)) => {
                    let cfg = load_preset(&preset, vocab)?;
                    tch::manual_seed(0);
                    let mut vs = nn::VarStore::new(device);
                    let model = Transformer::new(&vs.root(), &cfg)?;
                    vs.freeze(); // inference, as a loaded checkpoint is
                    (model, vs, None, vocab)
                }
                (None, None) => anyhow::bail!("pass --preset or --checkpoint"),
            };
            let peak_after_load = peak_rss_mib();
            let mut out = generate(&model, vocab, prompt_len, new_tokens, repeats, !no_cache, device)?;
            if let (Some(s), Some(o)) = (load_s, out.as_object_mut()) {
                o.insert("load_s".into(), json!(s));
                o.insert("rss_before_load_mib".into(), json!(rss_before));
                o.insert("peak_rss_after_load_mib".into(), json!(peak_after_load));
                o.insert("params".into(), json!(model.config().num_params()));
                o.insert("peak_rss_mib".into(), json!(peak_rss_mib()));
            }
            out
        }
        Command::Import { source, out } => {
            let rss_before = rss_mib();
            let t0 = Instant::now();
            let r = plinth_interop::import_hf(&source, &out, true)?;
            let s = t0.elapsed().as_secs_f64();
            json!({"what": "import", "seconds": s, "params": r.parameters, "rss_before_mib": rss_before, "peak_rss_mib": peak_rss_mib()})
        }
        Command::Matmul { n, repeats } => matmul(n, repeats, device),
        Command::Plugins { calls } => plugins(calls)?,
        Command::Pipeline { smiles, repeats } => pipeline_overhead(&smiles, repeats)?,
        Command::Moses { checkpoint, samples, reference, temperature } => {
            moses_metrics(&checkpoint, samples, reference, temperature, device)?
        }
        Command::Adapters { preset, vocab, seq_len, batch, adapters, repeats } => {
            let cfg = load_preset(&preset, vocab)?;
            mixed_adapters(&cfg, seq_len, batch, adapters, repeats, device)?
        }
        Command::Finetune { preset, mode, vocab, seq_len, batch, steps, adapters } => {
            let cfg = load_preset(&preset, vocab)?;
            finetune(&cfg, mode, seq_len, batch, steps, adapters)?
        }
    };
    println!("{out}");
    Ok(())
}

fn load_preset(path: &std::path::Path, vocab: i64) -> Result<ModelConfig> {
    let mut cfg = ModelConfig::from_toml_file(path).with_context(|| format!("preset {}", path.display()))?;
    cfg.vocab_size = vocab;
    cfg.validate()?;
    Ok(cfg)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn train(
    cfg: &ModelConfig,
    kind: ObjectiveKind,
    seq_len: i64,
    batch: i64,
    steps: usize,
    warmup: usize,
    device: Device,
) -> Result<serde_json::Value> {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Transformer::new(&vs.root(), cfg)?;
    let mut opt = AdamW::new(
        plinth_model::checkpoint::named_variables(&vs),
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 },
    );
    let params = opt.params();
    let objective = ObjectiveConfig { kind, mask_prob: 0.15, fim_rate: 0.0 };
    let len = seq_len + i64::from(kind == ObjectiveKind::Causal);
    let mut times = Vec::new();
    let (mut fwd, mut bwd, mut upd) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_loss = 0.0;
    for i in 0..warmup + steps {
        let data = Tensor::randint_low(7, cfg.vocab_size, [batch, len], (Kind::Int64, device));
        sync(device);
        let t0 = Instant::now();
        let loss = batch_loss(&model, &objective, &data)?;
        last_loss = loss.double_value(&[]);
        let t1 = Instant::now();
        let mut grads = gradients(&loss, &params);
        sync(device);
        let t2 = Instant::now();
        clip_grad_norm(&mut grads, 1.0);
        opt.step(&grads, 1e-3).map_err(anyhow::Error::msg)?;
        sync(device);
        let t3 = Instant::now();
        if i >= warmup {
            times.push((t3 - t0).as_secs_f64());
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            upd.push((t3 - t2).as_secs_f64());
        }
    }
    let step_s = median(times);
    Ok(json!({
        "what": "train", "objective": format!("{kind:?}").to_lowercase(), "params": cfg.num_params(),
        "batch": batch, "seq_len": seq_len, "median_step_s": step_s,
        "forward_s": median(fwd), "backward_s": median(bwd), "optimizer_s": median(upd),
        "tokens_per_s": (batch * seq_len) as f64 / step_s,
        "flops_per_token": cfg.train_flops_per_token(seq_len), "final_loss": last_loss,
    }))
}

fn generate(
    model: &Transformer,
    vocab: i64,
    prompt_len: i64,
    new_tokens: usize,
    repeats: usize,
    use_cache: bool,
    device: Device,
) -> Result<serde_json::Value> {
    tch::manual_seed(0);
    let prompt = Tensor::randint_low(7, vocab, [1, prompt_len], (Kind::Int64, device));
    let mut times = Vec::new();
    tch::no_grad(|| -> Result<()> {
        for _ in 0..repeats + 1 {
            sync(device);
            let t0 = Instant::now();
            decode(model, &prompt, new_tokens, use_cache)?;
            sync(device);
            times.push(t0.elapsed().as_secs_f64());
        }
        Ok(())
    })?;
    times.remove(0); // the first run warms allocator and caches
    let s = median(times);
    Ok(
        json!({"what": "generate", "cache": use_cache, "prompt_len": prompt_len, "new_tokens": new_tokens, "median_s": s, "tokens_per_s": new_tokens as f64 / s}),
    )
}

/// Greedy decoding of exactly `n` tokens (no early stop), as HF's
/// `generate(min_new_tokens=n, max_new_tokens=n)` does.
fn decode(model: &Transformer, prompt: &Tensor, n: usize, use_cache: bool) -> Result<()> {
    let mut cache = use_cache.then(|| model.new_cache(1));
    let mut all = prompt.shallow_clone();
    let mut next = prompt.shallow_clone();
    for _ in 0..n {
        let logits = match cache.as_mut() {
            Some(c) => model.forward(&next, AttentionMode::Causal, Some(c))?,
            None => model.forward(&all, AttentionMode::Causal, None)?,
        };
        next = logits.select(1, -1).argmax(-1, true); // (1, 1)
        if cache.is_none() {
            all = Tensor::cat(&[&all, &next], 1);
        }
    }
    Ok(())
}

fn matmul(n: i64, repeats: usize, device: Device) -> serde_json::Value {
    let a = Tensor::randn([n, n], (Kind::Float, device));
    let b = Tensor::randn([n, n], (Kind::Float, device));
    let time = |f: &dyn Fn() -> Tensor| {
        let mut times = Vec::new();
        for _ in 0..repeats + 2 {
            sync(device);
            let t0 = Instant::now();
            let _c = f();
            sync(device);
            times.push(t0.elapsed().as_secs_f64());
        }
        median(times[2..].to_vec())
    };
    // ATen's matmul (MKL on the CPU), and the GEMM plinth's layers run
    // (`kernels::linear`: oneDNN on the CPU where it is usable): the peak that
    // MFU is measured against is the faster of the two.
    let s = time(&|| a.matmul(&b));
    let s_linear = time(&|| plinth_layers::kernels::linear(&a, &b, None));
    let gflops = |s: f64| 2.0 * (n * n * n) as f64 / s / 1e9;
    json!({"what": "matmul", "n": n, "median_s": s, "gflops": gflops(s),
           "linear_median_s": s_linear, "linear_gflops": gflops(s_linear),
           "onednn": device == Device::Cpu && plinth_layers::kernels::onednn_usable()})
}

/// Median nanoseconds per call of `f` over 7 batches of `n` calls.
fn ns_per_call(n: usize, mut f: impl FnMut()) -> f64 {
    let mut batches = Vec::new();
    for _ in 0..7 {
        let t0 = Instant::now();
        for _ in 0..n {
            f();
        }
        batches.push(t0.elapsed().as_secs_f64() * 1e9 / n as f64);
    }
    median(batches)
}

fn plugins(calls: usize) -> Result<serde_json::Value> {
    use plinth_plugin_host::{HostConfig, PluginHost};
    let dir = std::env::current_exe()?.parent().map(std::path::Path::to_path_buf).context("binary folder")?;
    let t0 = Instant::now();
    let mut host = PluginHost::new(HostConfig { search_paths: vec![dir], ..Default::default() });
    let found = host.discover();
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let loaded = found.iter().filter(|(_, r)| r.is_ok()).count();
    let plugin = host.get("example")?;
    // One record through the `shout` stage across the ABI (encoded batch of one,
    // one outcome back), against the same function called directly.
    let session = plugin.open("shout", "{}")?;
    let batch = r#"{"records": [{"text": "hello plugin"}]}"#;
    let abi_ns = ns_per_call(calls, || {
        std::hint::black_box(plugin.process("shout", session, std::hint::black_box(batch)).ok());
    });
    // The example's `shout` is `text.to_uppercase()`; the bench links one plugin
    // crate only (molecule's, below: each exports the same header symbol).
    let direct_ns = ns_per_call(calls, || {
        std::hint::black_box(std::hint::black_box("hello plugin").to_uppercase());
    });
    // The same stage fed as a pipeline feeds it: batches of 64 records, per record.
    let batch64 = format!(r#"{{"records": [{}]}}"#, vec![r#"{"text": "hello plugin"}"#; 64].join(","));
    let batch_ns = ns_per_call((calls / 64).max(1), || {
        std::hint::black_box(plugin.process("shout", session, std::hint::black_box(&batch64)).ok());
    }) / 64.0;
    plugin.close("shout", session);
    let mut tensor = Vec::new();
    for numel in [1_000i64, 16_000_000] {
        let x = Tensor::zeros([numel], (Kind::Float, Device::Cpu));
        let y = plugin.forward("identity", &x)?;
        let zero_copy = y.data_ptr() == x.data_ptr();
        let ns = ns_per_call(calls / 10, || {
            std::hint::black_box(plugin.forward("identity", &x).ok());
        });
        let local_ns = ns_per_call(calls / 10, || {
            let _ = std::hint::black_box(x.shallow_clone());
        });
        tensor.push(json!({"numel": numel, "zero_copy": zero_copy, "abi_ns": ns, "direct_shallow_clone_ns": local_ns}));
    }
    Ok(json!({"what": "plugins", "plugins_loaded": loaded, "discover_and_load_ms": load_ms,
        "call_abi_ns": abi_ns, "call_direct_ns": direct_ns, "batch64_abi_ns_per_record": batch_ns, "tensor_handover": tensor}))
}

/// Peak resident set size of this process in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    proc_status_mib("VmHWM:")
}

fn rss_mib() -> f64 {
    proc_status_mib("VmRSS:")
}

/// A memory line of `/proc/self/status`, in MiB.
fn proc_status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn param_bytes(vars: &[(String, Tensor)]) -> i64 {
    vars.iter().map(|(_, t)| (t.numel() * t.kind().elt_size_in_bytes()) as i64).sum()
}

fn moses_metrics(
    checkpoint: &std::path::Path,
    samples: usize,
    reference: usize,
    temperature: f64,
    device: Device,
) -> Result<serde_json::Value> {
    use plinth_plugin_host::{HostConfig, PluginHost};
    let ck = plinth_checkpoint::Checkpoint::load(checkpoint, device)?;
    let t0 = Instant::now();
    let mut generated = Vec::with_capacity(samples);
    for i in 0..samples {
        let cfg =
            plinth_generate::SamplingConfig { max_new_tokens: 100, temperature, seed: i as u64, ..Default::default() };
        generated.push(
            plinth_generate::generate(&ck.model, &ck.tokenizer, plinth_generate::Request::text("", &cfg))?
                .text
                .trim()
                .to_string(),
        );
    }
    let gen_s = t0.elapsed().as_secs_f64();
    let dir = std::env::current_exe()?.parent().map(std::path::Path::to_path_buf).context("binary folder")?;
    let mut host = PluginHost::new(HostConfig { search_paths: vec![dir], ..Default::default() });
    host.discover();
    use plinth_plugin_protocol::PluginsExt;
    let request = json!({"smiles": generated, "reference": reference});
    let mut metrics = host.ask("molecule", "moses-metrics", &request)?;
    metrics["what"] = json!("moses");
    metrics["temperature"] = json!(temperature);
    metrics["generate_seconds"] = json!(gen_s);
    Ok(metrics)
}

fn pipeline_overhead(smiles: &std::path::Path, repeats: usize) -> Result<serde_json::Value> {
    use plinth_plugin_host::{HostConfig, PluginHost};
    let dir = std::env::current_exe()?.parent().map(std::path::Path::to_path_buf).context("binary folder")?;
    let mut host = PluginHost::new(HostConfig { search_paths: vec![dir], ..Default::default() });
    host.discover();
    let data = host;
    let tmp = std::env::temp_dir().join(format!("plinth-bench-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let toml = format!(
        "name = \"bench\"\nout_dir = \"{}\"\n[[stage]]\nop = \"read\"\npath = \"{}\"\nformat = \"lines\"\nfield = \"smiles\"\n\
         [[stage]]\nplugin = \"molecule\"\nstage = \"validate\"\n[[stage]]\nplugin = \"molecule\"\nstage = \"canonicalize\"\n\
         [[stage]]\nplugin = \"molecule\"\nstage = \"hazard\"\n",
        tmp.join("out").display(),
        smiles.display()
    );
    let path = tmp.join("bench.toml");
    std::fs::write(&path, toml)?;
    let lines: Vec<String> =
        std::fs::read_to_string(smiles)?.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    use plinth_plugin_molecule::Smiles;
    let (mut engine, mut direct, mut kept) = (Vec::new(), Vec::new(), 0usize);
    for _ in 0..repeats {
        let t0 = Instant::now();
        let p = plinth_pipeline::Pipeline::load(&path, &data)?;
        let summary = plinth_pipeline::run::run(
            &p,
            &data,
            plinth_pipeline::run::RunOptions { device: Device::Cpu, progress: false },
        )?;
        engine.push(t0.elapsed().as_secs_f64());
        kept = summary.results;
        // The same three stages called directly, one record at a time, in this process.
        let t0 = Instant::now();
        let mut n = 0usize;
        for s in &lines {
            let ok = plinth_plugin_molecule::stage_validate(Smiles { smiles: s.clone() })
                .and_then(|_| plinth_plugin_molecule::stage_canonicalize(Smiles { smiles: s.clone() }))
                .and_then(|_| plinth_plugin_molecule::hazard_default(Smiles { smiles: s.clone() }));
            n += usize::from(ok.is_ok());
        }
        direct.push(t0.elapsed().as_secs_f64());
        anyhow::ensure!(n == kept, "direct calls kept {n} records, the pipeline {kept}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let (e, d) = (median(engine), median(direct));
    Ok(json!({"what": "pipeline", "records": lines.len(), "kept": kept, "engine_s": e, "direct_s": d,
        "engine_records_per_s": lines.len() as f64 / e, "direct_records_per_s": lines.len() as f64 / d}))
}

fn mixed_adapters(
    cfg: &ModelConfig,
    seq_len: i64,
    batch: i64,
    n: usize,
    repeats: usize,
    device: Device,
) -> Result<serde_json::Value> {
    use plinth_model::lora::{LoraAdapter, LoraConfig};
    use plinth_model::ForwardOptions;

    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Transformer::new(&vs.root(), cfg)?;
    let lora_cfg = LoraConfig { rank: 8, alpha: 16.0, dropout: 0.0, targets: vec!["attn.*".into(), "mlp.*".into()] };
    let stores: Vec<nn::VarStore> = (0..n).map(|_| nn::VarStore::new(device)).collect();
    let adapters: Vec<LoraAdapter> =
        stores.iter().map(|s| LoraAdapter::new(&(s.root() / "lora"), cfg, &lora_cfg)).collect::<Result<_, _>>()?;
    let refs: Vec<&LoraAdapter> = adapters.iter().collect();
    let choice: Vec<usize> = (0..batch as usize).map(|r| r % n).collect();
    let ids = Tensor::randint_low(7, cfg.vocab_size, [batch, seq_len], (Kind::Int64, device));
    let sync = || {
        if let Device::Cuda(_) = device {
            tch::Cuda::synchronize(0);
        }
    };
    let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        let mut times = Vec::new();
        for i in 0..repeats + 2 {
            sync();
            let t0 = Instant::now();
            f()?;
            sync();
            if i >= 2 {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        Ok(median(times))
    };
    let mode = AttentionMode::Bidirectional;
    let mixed = tch::no_grad(|| {
        time(&|| {
            let mix = LoraAdapter::per_row(&refs, &choice)?;
            let _ =
                model.hidden_with(&ids, None, &ForwardOptions { adapter: Some(&mix), ..ForwardOptions::new(mode) })?;
            Ok(())
        })
    })?;
    let grouped = tch::no_grad(|| {
        time(&|| {
            for (k, a) in refs.iter().enumerate() {
                let rows: Vec<i64> = (0..batch).filter(|&r| choice[r as usize] == k).collect();
                if rows.is_empty() {
                    continue;
                }
                let sub = ids.index_select(0, &Tensor::from_slice(&rows).to_device(device));
                let _ =
                    model.hidden_with(&sub, None, &ForwardOptions { adapter: Some(a), ..ForwardOptions::new(mode) })?;
            }
            Ok(())
        })
    })?;
    let single = tch::no_grad(|| {
        time(&|| {
            let _ = model.hidden_with(
                &ids,
                None,
                &ForwardOptions { adapter: Some(refs[0]), ..ForwardOptions::new(mode) },
            )?;
            Ok(())
        })
    })?;
    Ok(json!({
        "what": "adapters", "adapters": n, "batch": batch, "seq_len": seq_len,
        "mixed_s": mixed, "grouped_s": grouped, "single_adapter_s": single,
    }))
}

fn finetune(
    cfg: &ModelConfig,
    mode: FinetuneMode,
    seq_len: i64,
    batch: i64,
    steps: usize,
    n_adapters: i64,
) -> Result<serde_json::Value> {
    use plinth_model::checkpoint::{named_variables, save_tensors};
    use plinth_model::heads::{HeadConfig, HeadKind, Pooling, TaskHead};
    use plinth_model::lora::{LoraAdapter, LoraConfig};
    use plinth_model::ForwardOptions;

    tch::manual_seed(0);
    let mut base_vs = nn::VarStore::new(Device::Cpu);
    let model = Transformer::new(&base_vs.root(), cfg)?;
    if mode != FinetuneMode::Full {
        base_vs.freeze();
    }
    let task_vs = nn::VarStore::new(Device::Cpu);
    let lora_cfg = LoraConfig { rank: 8, alpha: 16.0, dropout: 0.0, targets: vec!["attn.*".into(), "mlp.*".into()] };
    let adapter = match mode {
        FinetuneMode::Lora => Some(LoraAdapter::new(&(task_vs.root() / "lora"), cfg, &lora_cfg)?),
        _ => None,
    };
    let head_cfg = HeadConfig { task: HeadKind::Classification { classes: 2 }, pooling: Pooling::Mean, hidden: vec![] };
    let head = TaskHead::new(&(task_vs.root() / "head"), cfg.d_model, &head_cfg)?;
    let mut trainable = named_variables(&task_vs);
    if mode == FinetuneMode::Full {
        trainable.extend(named_variables(&base_vs));
    }
    let n_trainable: i64 = trainable.iter().map(|(_, t)| t.numel() as i64).sum();
    let mut opt = AdamW::new(trainable, AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 });
    let params = opt.params();
    let opts = ForwardOptions { adapter: adapter.as_ref(), ..ForwardOptions::new(AttentionMode::Bidirectional) };
    let mut times = Vec::new();
    for i in 0..steps + 2 {
        let ids = Tensor::randint_low(7, cfg.vocab_size, [batch, seq_len], (Kind::Int64, Device::Cpu));
        let labels = Tensor::randint(2, [batch], (Kind::Int64, Device::Cpu));
        let valid = ids.ones_like().to_kind(Kind::Bool);
        let t0 = Instant::now();
        let hidden = model.hidden_with(&ids, None, &opts)?;
        let loss = head.loss(&head.forward(&hidden, &valid), &labels)?;
        let mut grads = gradients(&loss, &params);
        clip_grad_norm(&mut grads, 1.0);
        opt.step(&grads, 1e-4).map_err(anyhow::Error::msg)?;
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    // What one finetuned task costs on disk: the adapter and head, or a whole model.
    let dir = std::env::temp_dir().join(format!("plinth-bench-finetune-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut saved = named_variables(&task_vs);
    if mode == FinetuneMode::Full {
        saved.extend(named_variables(&base_vs));
    }
    let file = dir.join("task.safetensors");
    save_tensors(&saved, &file)?;
    let file_bytes = std::fs::metadata(&file)?.len();
    let _ = std::fs::remove_dir_all(&dir);
    // N tasks resident: one base plus N adapters+heads, or N full copies.
    let base_bytes = param_bytes(&named_variables(&base_vs));
    let task_bytes = param_bytes(&named_variables(&task_vs));
    let resident_n = match mode {
        FinetuneMode::Full => n_adapters * (base_bytes + task_bytes),
        _ => base_bytes + n_adapters * task_bytes,
    };
    Ok(json!({
        "what": "finetune", "mode": format!("{mode:?}").to_lowercase(), "params_total": cfg.num_params(),
        "trainable": n_trainable, "saved_bytes": file_bytes, "median_step_s": median(times),
        "peak_rss_mib": peak_rss_mib(), "n_tasks": n_adapters, "resident_bytes_n_tasks": resident_n,
    }))
}
