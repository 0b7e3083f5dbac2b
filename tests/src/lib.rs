//! Shared helpers for plinth's feature tests: a small corpus and configs that
//! train in seconds.

use std::path::{Path, PathBuf};

use plinth_data::CorpusSource;
use plinth_model::ModelConfig;
use plinth_train::{
    DataConfig, ModelSpec, ObjectiveConfig, ObjectiveKind, PretrainConfig, RunOptions, TokenizerConfig, TrainConfig,
};
use sha2::{Digest, Sha256};

/// The project's Python (`$VIRTUAL_ENV`, else the repository's `.venv`), which has
/// torch, tokenizers, transformers and peft for the tests that compare against them.
pub fn venv_python() -> PathBuf {
    match std::env::var_os("VIRTUAL_ENV") {
        Some(v) => PathBuf::from(v).join("bin/python"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
    }
}

/// The checked-in English fixture corpus.
pub fn fixture_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("corpus.txt")
}

/// A model small enough to train in a second.
pub fn micro_model() -> ModelConfig {
    ModelConfig {
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: Some(2),
        d_ff: 64,
        max_seq_len: 64,
        ..ModelConfig::tiny()
    }
}

/// A pretraining config over the fixture corpus writing to `out_dir`.
pub fn micro_config(out_dir: &Path, kind: ObjectiveKind) -> PretrainConfig {
    PretrainConfig {
        model: ModelSpec::Inline(micro_model()),
        out_dir: out_dir.to_path_buf(),
        tokenizer: TokenizerConfig { vocab_size: 400, min_frequency: 2, plugin: None },
        data: DataConfig {
            corpus: CorpusSource::TextFiles(vec![fixture_corpus()]),
            val_fraction: 0.2,
            max_documents: 0,
            synthetic: None,
        },
        objective: ObjectiveConfig {
            kind,
            mask_prob: 0.15,
            fim_rate: if kind == ObjectiveKind::Causal { 0.5 } else { 0.0 },
        },
        train: TrainConfig {
            seq_len: 32,
            batch_size: 4,
            grad_accum: 2,
            max_steps: 12,
            lr: 3e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 3,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            clip_norm: 1.0,
            eval_every: 4,
            eval_batches: 2,
            save_every: 100,
            seed: 7,
            threads: 1,
        },
    }
}

/// Options for a quiet CPU run.
pub fn options(resume: bool) -> RunOptions {
    RunOptions {
        resume,
        progress: false,
        device: tch::Device::Cpu,
        cache_dir: std::env::temp_dir().join("plinth-test-cache"),
        plugins: None,
        group: None,
    }
}

/// SHA-256 of every file in a directory, sorted by name: a fingerprint that
/// changes if any saved byte does.
pub fn dir_digest(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let bytes = std::fs::read(e.path()).unwrap_or_default();
                    (e.file_name().to_string_lossy().into_owned(), format!("{:x}", Sha256::digest(&bytes)))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// libtorch's generator and thread count are process-wide; tests that depend on
/// them take this lock so that parallel tests cannot interleave draws.
pub fn torch_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// While alive, the layers run ATen's own ops instead of plinth's CPU kernels
/// (fused RMSNorm, SwiGLU and rotary; oneDNN GEMMs); dropping it, even by panic,
/// turns them back on. Hold [`torch_lock`] around it: the switch is per process.
pub struct KernelsOff;

impl KernelsOff {
    pub fn new() -> Self {
        plinth_layers::kernels::set_enabled(false);
        plinth_layers::kernels::set_onednn_gemm(false);
        KernelsOff
    }
}

impl Default for KernelsOff {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for KernelsOff {
    fn drop(&mut self) {
        plinth_layers::kernels::set_enabled(true);
        plinth_layers::kernels::set_onednn_gemm(true);
    }
}

/// `run()` twice: with plinth's CPU kernels, then on ATen's own ops (see
/// [`KernelsOff`]). Hold [`torch_lock`] around it.
pub fn with_and_without_kernels<T>(run: impl Fn() -> T) -> (T, T) {
    let with = run();
    let _off = KernelsOff::new();
    (with, run())
}
