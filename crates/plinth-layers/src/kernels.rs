//! plinth's CPU kernels (`csrc/fused_layers.cpp`), each a libtorch autograd
//! function with its own backward:
//!
//! - [`linear`]: every GEMM of a linear map (forward, input and weight gradients)
//!   on oneDNN, which libtorch bundles, instead of the BLAS ATen's `linear` calls;
//! - [`rms_norm`], [`swiglu`] and [`rope_qkv`]: RMSNorm, SwiGLU and the rotary
//!   split of the fused q/k/v projection, one pass over the rows each way instead
//!   of ATen's chain of elementwise kernels, copies and temporaries, which is what
//!   `torch.compile` buys a PyTorch user on these ops.
//!
//! The elementwise kernels take float32 CPU tensors on a CPU with AVX2 and FMA
//! ([`applies`]); the layers route everything else (CUDA, half precision, other
//! CPUs) to the composed ATen ops ([`crate::rms_norm_composed`],
//! [`crate::swiglu_composed`], [`crate::Rotary::apply`]), which compute the same
//! function; [`linear`] decides for itself. Gradients are first order only.

#![allow(unsafe_code)] // FFI to the fused kernels; each unsafe block says why it holds.

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Device, Kind, Tensor};

extern "C" {
    fn plinth_fused_layers_fast() -> c_int;
    fn plinth_onednn_usable() -> c_int;
    fn plinth_linear(
        x: *const c_void,
        w: *const c_void,
        bias: *const c_void,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn plinth_rms_norm(
        x: *const c_void,
        w: *const c_void,
        eps: f64,
        out: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn plinth_swiglu(gu: *const c_void, out: *mut *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    fn plinth_rope_qkv(
        qkv: *const c_void,
        cos: *const c_void,
        sin: *const c_void,
        heads: i64,
        kv_heads: i64,
        q: *mut *mut c_void,
        k: *mut *mut c_void,
        v: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

static ENABLED: AtomicBool = AtomicBool::new(true);
static ONEDNN: AtomicBool = AtomicBool::new(true);

/// Turns the fused elementwise kernels (RMSNorm, SwiGLU, rotary) off (or back
/// on) for the whole process, so that a benchmark can time the composed ops on
/// the same binary. On by default.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Turns the oneDNN GEMMs of [`linear`] off (or back on) for the whole process,
/// so that a benchmark can time ATen's own `linear` (MKL) on the same binary.
/// On by default.
pub fn set_onednn_gemm(on: bool) {
    ONEDNN.store(on, Ordering::Relaxed);
}

/// Whether oneDNN's float32 matmul runs on this CPU and agrees with ATen's
/// (probed once: libtorch refuses it on x86 CPUs without AVX-512 BW/VL/DQ or
/// AVX-NE-CONVERT).
pub fn onednn_usable() -> bool {
    // SAFETY: a query of a probe the C++ side runs once and caches.
    unsafe { plinth_onednn_usable() != 0 }
}

/// `x Wᵀ (+ b)` over the last dimension of `x`. Float32 CPU inputs of at least
/// [`crate::FUSE_MIN_ROWS`] rows run every GEMM, forward and backward, on oneDNN
/// (which libtorch bundles) instead of the BLAS that ATen's `linear` calls (MKL
/// in the PyPI wheel): on this project's AMD EPYC machine oneDNN's float32 GEMM
/// runs about 2x MKL's at the presets' shapes (BENCHMARKS.md). Smaller inputs
/// (batch-1 decoding) stay on ATen: there oneDNN's per-call overhead dominates
/// (tiny's KV-cached decoding measured 1348–1394 tokens/s on oneDNN against
/// 2783–2939 on ATen). Everything else, and every input when [`set_onednn_gemm`]
/// turned it off, runs ATen's `linear`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    let fast = ONEDNN.load(Ordering::Relaxed)
        && x.device() == Device::Cpu
        && x.kind() == Kind::Float
        && w.kind() == Kind::Float
        && crate::rows(x) >= crate::FUSE_MIN_ROWS
        && onednn_usable();
    if !fast {
        return x.linear(w, b);
    }
    call("linear (oneDNN)", |out, err, len| {
        let bias = b.map_or(std::ptr::null(), |b| b.as_ptr().cast());
        // SAFETY: x, w and (when given) b are live tensors for the duration of the
        // call; a null bias means none; out and err point at live storage.
        unsafe { plinth_linear(x.as_ptr().cast(), w.as_ptr().cast(), bias, out, err, len) }
    })
}

/// Whether the kernels run fast here: vectorised (an x86-64 CPU with AVX2 and
/// FMA) and multi-threaded (built against libtorch's OpenMP runtime).
pub fn fast() -> bool {
    // SAFETY: a pure query of a cached CPU feature check.
    unsafe { plinth_fused_layers_fast() != 0 }
}

/// Whether the layers send `x` through the fused kernels: they are enabled, they
/// run [`fast`] here, and `x` is a float32 CPU tensor.
pub fn applies(x: &Tensor) -> bool {
    ENABLED.load(Ordering::Relaxed) && x.device() == Device::Cpu && x.kind() == Kind::Float && fast()
}

/// Runs one kernel entry point with several outputs, panicking with the
/// kernel's message on failure.
fn call_n<const N: usize>(
    name: &str,
    f: impl FnOnce(&mut [*mut c_void; N], *mut c_char, usize) -> c_int,
) -> [Tensor; N] {
    let mut out = [std::ptr::null_mut(); N];
    let mut err = vec![0u8; 1024];
    let rc = f(&mut out, err.as_mut_ptr().cast(), err.len());
    if rc != 0 || out.iter().any(|p| p.is_null()) {
        let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
        panic!("fused {name} failed: {}", String::from_utf8_lossy(&err[..end]));
    }
    // SAFETY: on success the kernel stored N fresh heap `at::Tensor*`s, which the
    // returned Tensors now own (tch frees each on drop).
    out.map(|p| unsafe { Tensor::from_ptr(p.cast()) })
}

/// Runs one kernel entry point, turning its C++ error into a panic with the
/// kernel's message (as tch's own ops do on bad input).
fn call(name: &str, f: impl FnOnce(*mut *mut c_void, *mut c_char, usize) -> c_int) -> Tensor {
    let [t] = call_n::<1>(name, |out, err, len| f(&mut out[0], err, len));
    t
}

/// `x / sqrt(mean(x²) + eps) * weight` over the last dimension, through the
/// fused kernel. `x` (..., C) and `weight` (C,) must be float32 on the CPU.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    call("RMSNorm", |out, err, len| {
        // SAFETY: x and weight are live tensors for the duration of the call; out
        // and err point at live storage of the sizes given.
        unsafe { plinth_rms_norm(x.as_ptr().cast(), weight.as_ptr().cast(), eps, out, err, len) }
    })
}

/// `silu(g) * u` for `gu = [g | u]` (..., 2F) -> (..., F), through the fused
/// kernel; its backward returns the gradient of `gu` whole. Float32 on the CPU.
pub fn swiglu(gu: &Tensor) -> Tensor {
    call("SwiGLU", |out, err, len| {
        // SAFETY: gu is a live tensor for the duration of the call; out and err
        // point at live storage of the sizes given.
        unsafe { plinth_swiglu(gu.as_ptr().cast(), out, err, len) }
    })
}

/// Queries, keys and values (B, heads, T, D) from the fused q/k/v projection's
/// output `qkv` (B, T, (heads + 2·kv_heads)·D), queries and keys rotated by the
/// rotary tables `cos` and `signed_sin` (T, D) of the input's positions (see
/// [`crate::Rotary::tables`]); its backward returns the gradient of `qkv` whole.
/// Float32 on the CPU.
pub fn rope_qkv(qkv: &Tensor, cos: &Tensor, signed_sin: &Tensor, heads: i64, kv_heads: i64) -> [Tensor; 3] {
    call_n::<3>("rotary q/k/v", |out, err, len| {
        let [q, k, v] = out;
        // SAFETY: the inputs are live tensors for the duration of the call; the
        // three outputs and err point at live storage of the sizes given.
        unsafe {
            plinth_rope_qkv(
                qkv.as_ptr().cast(),
                cos.as_ptr().cast(),
                signed_sin.as_ptr().cast(),
                heads,
                kv_heads,
                q,
                k,
                v,
                err,
                len,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{rms_norm_composed, swiglu_composed};

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// Forward values and the gradients of every input, fused against composed,
    /// for a loss that weights each output element differently.
    fn compare(fused: impl Fn(&[Tensor]) -> Tensor, composed: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) {
        let leaves = |ts: &[Tensor]| ts.iter().map(|t| t.detach().set_requires_grad(true)).collect::<Vec<_>>();
        let (a, b) = (leaves(inputs), leaves(inputs));
        let (ya, yb) = (fused(&a), composed(&b));
        assert_eq!(ya.size(), yb.size());
        let scale = ya.max().abs().double_value(&[]).max(1.0);
        assert!(max_diff(&ya, &yb) < 1e-5 * scale, "forward differs by {}", max_diff(&ya, &yb));
        let weights = Tensor::randn(ya.size(), (Kind::Float, Device::Cpu));
        let ga =
            Tensor::run_backward(&[(&ya * &weights).sum(Kind::Float)], &a.iter().collect::<Vec<_>>(), false, false);
        let gb =
            Tensor::run_backward(&[(&yb * &weights).sum(Kind::Float)], &b.iter().collect::<Vec<_>>(), false, false);
        for (i, (ga, gb)) in ga.iter().zip(&gb).enumerate() {
            let scale = gb.abs().max().double_value(&[]).max(1.0);
            assert!(max_diff(ga, gb) < 2e-5 * scale, "gradient {i} differs by {}", max_diff(ga, gb));
        }
    }

    // Widths that are not multiples of the vector width exercise the tails.
    #[test]
    fn rms_norm_matches_the_composed_ops_forward_and_backward() {
        for (rows, c) in [(3, 6), (130, 64), (70, 37)] {
            let x = Tensor::randn([rows, c], (Kind::Float, Device::Cpu)) * 3.0;
            let w = Tensor::randn([c], (Kind::Float, Device::Cpu));
            compare(|t| rms_norm(&t[0], &t[1], 1e-5), |t| rms_norm_composed(&t[0], &t[1], 1e-5), &[x, w]);
        }
    }

    #[test]
    fn swiglu_matches_the_composed_ops_forward_and_backward() {
        for (rows, f) in [(2, 5), (40, 24), (33, 43)] {
            // Wide enough a range to reach both saturated ends of the sigmoid.
            let gu = Tensor::randn([rows, 2 * f], (Kind::Float, Device::Cpu)) * 8.0;
            compare(|t| swiglu(&t[0]), |t| swiglu_composed(&t[0]), &[gu]);
        }
    }

    #[test]
    fn rope_qkv_matches_split_transpose_and_rotate() {
        let rotary = crate::Rotary::new(8, 64, 10_000.0, Device::Cpu);
        for (b, t, offset, heads, kv) in [(2, 5, 0, 4, 2), (1, 7, 9, 3, 3), (3, 33, 2, 2, 1)] {
            let qkv = Tensor::randn([b, t, (heads + 2 * kv) * 8], (Kind::Float, Device::Cpu));
            let (cos, sin) = rotary.tables(offset, t);
            for part in 0..3 {
                let fused = |x: &[Tensor]| rope_qkv(&x[0], &cos, &sin, heads, kv)[part].shallow_clone();
                let composed = |x: &[Tensor]| {
                    let parts = x[0].split_with_sizes([heads * 8, kv * 8, kv * 8], -1);
                    let n = if part == 0 { heads } else { kv };
                    let y = parts[part].view([b, t, n, 8]).transpose(1, 2);
                    if part == 2 {
                        y
                    } else {
                        rotary.apply(&y, offset)
                    }
                };
                compare(fused, composed, &[qkv.shallow_clone()]);
            }
        }
    }

    #[test]
    fn onednn_linear_matches_aten_forward_and_backward() {
        if !onednn_usable() {
            eprintln!("oneDNN float32 matmul is not available on this CPU; linear falls back to ATen");
        }
        for (rows, k, n, bias) in [(40, 24, 16, true), (33, 37, 9, false), (3, 64, 48, true)] {
            let x = Tensor::randn([rows, k], (Kind::Float, Device::Cpu)).view([1, rows, k]);
            let w = Tensor::randn([n, k], (Kind::Float, Device::Cpu)) * 0.2;
            let b = Tensor::randn([n], (Kind::Float, Device::Cpu));
            if bias {
                compare(|t| linear(&t[0], &t[1], Some(&t[2])), |t| t[0].linear(&t[1], Some(&t[2])), &[x, w, b]);
            } else {
                compare(|t| linear(&t[0], &t[1], None), |t| t[0].linear::<Tensor>(&t[1], None), &[x, w]);
            }
        }
    }

    #[test]
    fn kernels_keep_leading_dimensions_and_skip_gradients_nobody_needs() {
        let x = Tensor::randn([2, 3, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let w = Tensor::ones([8], (Kind::Float, Device::Cpu)); // frozen, as in LoRA finetuning
        let y = rms_norm(&x, &w, 1e-6);
        assert_eq!(y.size(), [2, 3, 8]);
        let g = Tensor::run_backward(&[y.sum(Kind::Float)], &[&x], false, false);
        assert_eq!(g[0].size(), [2, 3, 8]);
        let h = tch::no_grad(|| swiglu(&Tensor::randn([2, 3, 10], (Kind::Float, Device::Cpu))));
        assert_eq!(h.size(), [2, 3, 5]);
        assert!(!h.requires_grad());
    }

    #[test]
    fn bad_input_panics_with_the_kernels_reason() {
        let odd = Tensor::randn([4, 7], (Kind::Float, Device::Cpu));
        let err = std::panic::catch_unwind(|| swiglu(&odd)).expect_err("an odd width has no [gate | up] split");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("must be even"), "{msg}");
        let half = Tensor::randn([4, 8], (Kind::Double, Device::Cpu));
        let err = std::panic::catch_unwind(|| rms_norm(&half, &Tensor::ones([8], (Kind::Double, Device::Cpu)), 1e-5))
            .expect_err("the kernel takes float32 only");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("float32"), "{msg}");
        let (cos, sin) = crate::Rotary::new(8, 16, 10_000.0, Device::Cpu).tables(0, 4);
        let qkv = Tensor::randn([1, 4, 36], (Kind::Float, Device::Cpu));
        let err = std::panic::catch_unwind(|| rope_qkv(&qkv, &cos, &sin, 4, 2)).expect_err("36 is not (4 + 2·2)·D");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("does not split"), "{msg}");
    }
}
