//! Shared build script for every crate that links libtorch (through tch).
//!
//! torch-sys tells the linker where libtorch lives but embeds no run-time search
//! path, so binaries, test executables and cdylib plugins would need
//! `LD_LIBRARY_PATH`. This script asks the project's Python environment for the
//! torch `lib` folder and embeds it as an rpath (`RUNPATH`), so everything built
//! here runs as is. `LIBTORCH_LIB` overrides the lookup.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const HINT: &str = "run `./dev setup` (it installs PyTorch 2.11.0 into .venv) and build through `./dev` or `just`";

pub fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    let lib = match env::var_os("LIBTORCH_LIB") {
        Some(dir) => PathBuf::from(dir).join("lib"),
        None => torch_lib_from_python(),
    };
    if !lib.join("libtorch_cpu.so").exists() {
        panic!("plinth: libtorch not found in {}: {HINT}", lib.display());
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=PLINTH_TORCH_LIB={}", lib.display());
}

pub fn torch_lib_from_python() -> PathBuf {
    let python = match env::var_os("VIRTUAL_ENV") {
        Some(venv) => PathBuf::from(venv).join("bin").join("python"),
        None => {
            let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
            let mut dir = manifest.as_path();
            loop {
                let candidate = dir.join(".venv").join("bin").join("python");
                if candidate.exists() {
                    break candidate;
                }
                match dir.parent() {
                    Some(parent) => dir = parent,
                    None => panic!("plinth: no project virtual environment found: {HINT}"),
                }
            }
        }
    };
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, torch; print(torch.__version__); print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        _ => panic!("plinth: {} cannot import torch: {HINT}", python.display()),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let version = lines.next().unwrap_or_default();
    if !version.starts_with("2.11.0") {
        panic!("plinth: found PyTorch {version} but tch 0.24 needs 2.11.0: {HINT}");
    }
    PathBuf::from(lines.next().unwrap_or_default())
}
