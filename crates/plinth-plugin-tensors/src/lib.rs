//! Tensor modules for plinth plugins: implement [`TensorModule`] with tch and
//! register it with [`module`]; the host hands the plugin its own tensors (no
//! copy) and autograd flows through both sides.
//!
//! A plugin that uses this crate links libtorch, so it must (1) say so in its
//! header, `export_plugin!(id: ..., version: ..., create: ..., libtorch: LIBTORCH)`,
//! which the host compares with its own libtorch before loading, and (2) build
//! with plinth's rpath build script (`build/torch_rpath.rs`) so the library finds
//! libtorch without `LD_LIBRARY_PATH`. Plugins without tensors use the SDK alone.

#![allow(unsafe_code)] // handles cross as raw at::Tensor pointers

use std::ffi::c_void;

use plinth_plugin_sdk::{Component, Error, RawModule};
pub use tch;
use tch::Tensor;

/// The libtorch this crate links (tch, torch, C++ ABI), for `export_plugin!`.
pub const LIBTORCH: &str = plinth_abi::torch_fingerprint();

/// A module computing on tensors (an adapter or a head).
pub trait TensorModule: Send {
    fn forward(&self, input: &Tensor) -> Result<Tensor, Error>;
    /// Trainable parameters the host should optimise (shared, not copied).
    fn parameters(&self) -> Vec<Tensor>;
}

/// A module component with JSON defaults.
pub fn module(name: &str, description: &str, defaults: serde_json::Value, m: impl TensorModule + 'static) -> Component {
    Component::module_raw(name, description, defaults, Handles(m))
}

struct Handles<M>(M);

// SAFETY: `forward` and `parameters` hand out new handles (`clone_from_ptr`,
// `shallow_clone`) and forget their Rust owners, so each belongs to the caller; they
// are tensors of the libtorch this crate links, whose fingerprint is `LIBTORCH`.
unsafe impl<M: TensorModule> RawModule for Handles<M> {
    unsafe fn forward(&self, input: *mut c_void) -> Result<*mut c_void, Error> {
        // SAFETY: the caller lends a live at::Tensor* of this libtorch; a new handle
        // on it shares its storage and autograd node.
        let x = unsafe { Tensor::clone_from_ptr(input.cast::<torch_sys::C_tensor>()) };
        let mut y = self.0.forward(&x)?;
        let handle = y.as_mut_ptr().cast::<c_void>();
        std::mem::forget(y); // the handle now belongs to the caller
        Ok(handle)
    }

    fn parameters(&self, out: &mut [*mut c_void]) -> usize {
        let params = self.0.parameters();
        for (slot, p) in out.iter_mut().zip(&params) {
            let mut handle = p.shallow_clone();
            *slot = handle.as_mut_ptr().cast();
            std::mem::forget(handle); // the handle now belongs to the caller
        }
        params.len()
    }
}
