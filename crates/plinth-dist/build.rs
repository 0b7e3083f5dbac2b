//! Builds the c10d shim (`csrc/c10d_shim.cpp`) against the torch wheel's headers,
//! with the flags torch-sys uses, and embeds libtorch's rpath like every other crate.

#[path = "../../build/torch_rpath.rs"]
mod torch_rpath;

use std::path::PathBuf;
use std::process::Command;

fn main() {
    torch_rpath::main();
    let lib = match std::env::var_os("LIBTORCH_LIB") {
        Some(dir) => PathBuf::from(dir).join("lib"),
        None => torch_rpath::torch_lib_from_python(),
    };
    let include = lib.parent().map(|t| t.join("include")).unwrap_or_default();
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let gloo = gloo_headers(&manifest);
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    println!("cargo:rerun-if-env-changed=PLINTH_GLOO_INCLUDE");
    cc::Build::new()
        .cpp(true)
        .file("csrc/c10d_shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None)
        .warnings(false)
        .compile("plinth_c10d_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// Gloo's headers: `$PLINTH_GLOO_INCLUDE`, or fetched once by the project's script.
fn gloo_headers(manifest: &std::path::Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("PLINTH_GLOO_INCLUDE") {
        return PathBuf::from(dir);
    }
    let script = manifest.join("../../scripts/fetch-gloo-headers.sh");
    let out = Command::new(&script).output();
    match out {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        Ok(out) => panic!("plinth-dist: {} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("plinth-dist: cannot run {}: {e}", script.display()),
    }
}
