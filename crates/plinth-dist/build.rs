//! Builds the c10d shim (`csrc/c10d_shim.cpp`) against the torch wheel's headers,
//! with the flags torch-sys uses, and embeds libtorch's rpath like every other crate.

#[path = "../../build/torch_cxx.rs"]
mod torch_cxx;
#[path = "../../build/torch_rpath.rs"]
mod torch_rpath;

use std::path::PathBuf;
use std::process::Command;

fn main() {
    torch_rpath::main();
    let lib = torch_cxx::torch_lib();
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let gloo = gloo_headers(&manifest);
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    println!("cargo:rerun-if-env-changed=PLINTH_GLOO_INCLUDE");
    println!("cargo:rerun-if-env-changed=PLINTH_NCCL");
    let mut build = torch_cxx::build(&lib);
    build.file("csrc/c10d_shim.cpp").include(&gloo).define("USE_C10D_GLOO", None);
    let nccl = nccl_includes(&lib);
    if let Some(dirs) = &nccl {
        for d in dirs {
            build.include(d);
        }
        build.define("USE_C10D_NCCL", None).define("USE_CUDA", None).define("PLINTH_WITH_NCCL", None);
    }
    build.compile("plinth_c10d_shim");
    torch_cxx::link_torch_cpu(&lib);
    if nccl.is_some() {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
}

/// The include folders ProcessGroupNCCL.hpp needs beyond torch's own, when the
/// libtorch is a CUDA build and the headers are present: CUDA's runtime, C
/// runtime configuration (`crt/`) and libcu++ (`nv/target`) in the wheel's
/// `nvidia/cu13/include` (the last two from the `nvidia-cuda-crt` and
/// `nvidia-cuda-cccl` packages `scripts/setup-venv.sh` adds), and NCCL's in
/// `nvidia/nccl/include`. `PLINTH_NCCL=0` builds without NCCL.
fn nccl_includes(lib: &std::path::Path) -> Option<Vec<PathBuf>> {
    if std::env::var("PLINTH_NCCL").is_ok_and(|v| v == "0") || !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    let nvidia = lib.parent()?.parent()?.join("nvidia");
    // Rebuild when `./dev setup` adds the headers (a missing path always reruns this script).
    for header in ["cu13/include/crt/host_config.h", "cu13/include/nv/target", "nccl/include/nccl.h"] {
        println!("cargo:rerun-if-changed={}", nvidia.join(header).display());
    }
    let cuda = ["cu13", "cuda_runtime"].iter().map(|d| nvidia.join(d).join("include")).find(|d| {
        d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists() && d.join("nv/target").exists()
    });
    let nccl = nvidia.join("nccl/include");
    match cuda {
        Some(cuda) if nccl.join("nccl.h").exists() => Some(vec![cuda, nccl]),
        _ => {
            println!(
                "cargo:warning=plinth-dist: libtorch has CUDA but the CUDA or NCCL headers are missing under {}; building without NCCL (run ./dev setup)",
                nvidia.display()
            );
            None
        }
    }
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
