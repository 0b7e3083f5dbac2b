//! Embeds libtorch's rpath like every other crate, and compiles the fused layer
//! kernels (`csrc/fused_layers.cpp`) against the torch wheel's headers. The
//! kernels are always optimised: a debug build's test suite runs them as a
//! release build does, so both exercise the same arithmetic.

#[path = "../../build/torch_cxx.rs"]
mod torch_cxx;
#[path = "../../build/torch_rpath.rs"]
mod torch_rpath;

fn main() {
    torch_rpath::main();
    let lib = torch_cxx::torch_lib();
    println!("cargo:rerun-if-changed=csrc/fused_layers.cpp");
    let mut build = torch_cxx::build(&lib);
    build.file("csrc/fused_layers.cpp").opt_level(3);
    // ATen's `parallel_for` is an inline `#pragma omp parallel`: without OpenMP
    // the kernels would run on one thread. They must share libtorch's own OpenMP
    // runtime (the wheel's `lib/libgomp.so.1`, which `at::set_num_threads`
    // configures), never a second one.
    let gomp = lib.join("libgomp.so.1");
    let openmp = gomp.exists();
    if openmp {
        build.flag("-fopenmp");
    } else {
        println!(
            "cargo:warning=no {} beside libtorch: the fused layer kernels build single-threaded and plinth uses the composed ATen ops instead",
            gomp.display()
        );
    }
    build.compile("plinth_fused_layers");
    torch_cxx::link_torch_cpu(&lib);
    if openmp {
        println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
    }
}
