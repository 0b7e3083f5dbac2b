//! Shared by the build scripts that compile C++ against libtorch (the crates
//! whose shims reach what tch does not bind): the torch wheel's `lib` folder
//! and a `cc::Build` with its headers and the flags torch-sys uses.

use std::path::{Path, PathBuf};

/// The torch `lib` folder: `$LIBTORCH_LIB/lib`, or the project venv's torch.
pub fn torch_lib() -> PathBuf {
    match std::env::var_os("LIBTORCH_LIB") {
        Some(dir) => PathBuf::from(dir).join("lib"),
        None => super::torch_rpath::torch_lib_from_python(),
    }
}

/// A C++17 build against the headers beside `lib`, with libtorch's ABI.
pub fn build(lib: &Path) -> cc::Build {
    let include = lib.parent().map(|t| t.join("include")).unwrap_or_default();
    let mut b = cc::Build::new();
    b.cpp(true)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false);
    b
}

/// Links the crate against libtorch's CPU libraries in `lib`, which a shim's
/// object code calls into.
pub fn link_torch_cpu(lib: &Path) {
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
