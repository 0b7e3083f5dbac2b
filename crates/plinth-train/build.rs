//! Embeds libtorch's rpath like every other crate, and compiles the fused
//! optimizer shim (`csrc/fused_adamw.cpp`) against the torch wheel's headers.

#[path = "../../build/torch_cxx.rs"]
mod torch_cxx;
#[path = "../../build/torch_rpath.rs"]
mod torch_rpath;

fn main() {
    torch_rpath::main();
    let lib = torch_cxx::torch_lib();
    println!("cargo:rerun-if-changed=csrc/fused_adamw.cpp");
    torch_cxx::build(&lib).file("csrc/fused_adamw.cpp").compile("plinth_fused_adamw");
    torch_cxx::link_torch_cpu(&lib);
}
