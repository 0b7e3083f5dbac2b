//! AdamW (Loshchilov & Hutter 2019) whose moments are ordinary tensors, so a
//! checkpoint stores them and a resumed run continues exactly; linear warmup then
//! cosine decay; global gradient-norm clipping.

#![allow(unsafe_code)] // FFI to the fused AdamW shim; the one unsafe block says why it holds.

use std::ffi::{c_char, c_int, c_void};

use tch::{Kind, Tensor};

extern "C" {
    /// `csrc/fused_adamw.cpp`: ATen's `_fused_adamw_` over four equal-length lists
    /// of `at::Tensor*` (parameters, gradients, first and second moments).
    fn plinth_fused_adamw(
        params: *mut *mut c_void,
        grads: *mut *mut c_void,
        exp_avgs: *mut *mut c_void,
        exp_avg_sqs: *mut *mut c_void,
        n: usize,
        step: f64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Hyper-parameters of one AdamW instance.
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

#[derive(Debug)]
struct Slot {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// AdamW over named parameters; weight decay applies to matrices only (not to
/// norms, biases or embeddings), as in GPT-2/nanoGPT.
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    step: i64,
}

/// True for parameters that take weight decay: 2-D weights other than embeddings.
pub fn decays(name: &str, param: &Tensor) -> bool {
    param.dim() == 2 && !name.contains("embed")
}

impl AdamW {
    pub fn new(params: Vec<(String, Tensor)>, cfg: AdamWConfig) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                let decay = decays(&name, &param);
                Slot { m: param.zeros_like(), v: param.zeros_like(), decay, name, param }
            })
            .collect();
        AdamW { cfg, slots, step: 0 }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    /// The parameters, in the order `step` expects their gradients.
    pub fn params(&self) -> Vec<Tensor> {
        self.slots.iter().map(|s| s.param.shallow_clone()).collect()
    }

    /// One AdamW update at learning rate `lr` with `grads` in [`AdamW::params`]
    /// order; an undefined gradient (a parameter the loss did not use) is skipped.
    /// Runs ATen's fused kernel (one pass per parameter over it, its gradient
    /// and both moments), once for the decayed parameters and once for the rest.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> crate::Result<()> {
        self.step += 1;
        let AdamWConfig { beta1, beta2, eps, weight_decay } = self.cfg;
        for decay in [true, false] {
            let mut lists: [Vec<*mut c_void>; 4] = Default::default();
            let mut contiguous = Vec::new();
            for (s, g) in self.slots.iter_mut().zip(grads) {
                if s.decay != decay || !g.defined() {
                    continue;
                }
                contiguous.push(g.contiguous());
                let g = contiguous.last_mut().expect("just pushed");
                for (list, t) in lists.iter_mut().zip([&mut s.param, g, &mut s.m, &mut s.v]) {
                    list.push(t.as_mut_ptr().cast());
                }
            }
            let [p, g, m, v] = &mut lists;
            let wd = if decay { weight_decay } else { 0.0 };
            let mut err = vec![0u8; 1024];
            // SAFETY: the four lists hold live at::Tensor pointers of equal length,
            // owned by self.slots and `contiguous` for the duration of the call; err
            // is a live buffer of the length given.
            let rc = tch::no_grad(|| unsafe {
                plinth_fused_adamw(
                    p.as_mut_ptr(),
                    g.as_mut_ptr(),
                    m.as_mut_ptr(),
                    v.as_mut_ptr(),
                    p.len(),
                    self.step as f64,
                    lr,
                    beta1,
                    beta2,
                    wd,
                    eps,
                    err.as_mut_ptr().cast(),
                    err.len(),
                )
            });
            if rc != 0 {
                let end = err.iter().position(|&b| b == 0).unwrap_or(err.len());
                return Err(crate::TrainError::Invalid(format!(
                    "fused AdamW step failed: {}",
                    String::from_utf8_lossy(&err[..end])
                )));
            }
        }
        Ok(())
    }

    /// Optimizer state as named tensors (`m.NAME`, `v.NAME`) for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.slots.len() * 2);
        for s in &self.slots {
            out.push((format!("m.{}", s.name), s.m.shallow_clone()));
            out.push((format!("v.{}", s.name), s.v.shallow_clone()));
        }
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`] and the step count.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], step: i64) -> crate::Result<()> {
        let find = |key: &str| tensors.iter().find(|(k, _)| k == key).map(|(_, t)| t);
        tch::no_grad(|| -> Result<(), String> {
            for s in &mut self.slots {
                for (prefix, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                    let key = format!("{prefix}.{}", s.name);
                    let src = find(&key).ok_or_else(|| format!("optimizer state lacks {key}"))?;
                    if src.size() != dst.size() {
                        return Err(format!(
                            "optimizer state {key} has shape {:?}, expected {:?}",
                            src.size(),
                            dst.size()
                        ));
                    }
                    dst.copy_(src);
                }
            }
            Ok(())
        })
        .map_err(crate::TrainError::Checkpoint)?;
        self.step = step;
        Ok(())
    }
}

/// Gradients of `loss` with respect to `params`, returned rather than
/// accumulated into `.grad`: nothing has to be zeroed between steps and the first
/// micro-batch's gradients are used as they come (undefined where a parameter
/// does not influence the loss).
pub fn gradients(loss: &Tensor, params: &[Tensor]) -> Vec<Tensor> {
    Tensor::run_backward(&[loss], params, false, false)
}

/// Adds `more` into `acc` (gradient accumulation over micro-batches).
pub fn accumulate(acc: &mut [Tensor], more: Vec<Tensor>) {
    tch::no_grad(|| {
        for (a, m) in acc.iter_mut().zip(more) {
            if !a.defined() {
                *a = m;
            } else if m.defined() {
                let _ = a.g_add_(&m);
            }
        }
    });
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm` (0: no
/// clipping) and returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let norms: Vec<Tensor> = grads.iter().filter(|g| g.defined()).map(|g| g.norm().to_kind(Kind::Float)).collect();
        if norms.is_empty() {
            return 0.0;
        }
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        if max_norm > 0.0 && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            for g in grads.iter_mut().filter(|g| g.defined()) {
                let _ = g.g_mul_scalar_(scale);
            }
        }
        total
    })
}

/// Linear warmup from 0 to `peak` over `warmup` steps, then cosine decay to
/// `peak * min_ratio` at `total`. `step` counts from 1.
pub fn lr_at(step: u64, peak: f64, warmup: u64, total: u64, min_ratio: f64) -> f64 {
    if warmup > 0 && step <= warmup {
        return peak * step as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step.saturating_sub(warmup)) as f64 / span).min(1.0);
    let min_lr = peak * min_ratio;
    min_lr + 0.5 * (peak - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        assert!((lr_at(5, 1.0, 10, 100, 0.1) - 0.5).abs() < 1e-12);
        assert!((lr_at(10, 1.0, 10, 100, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(55, 1.0, 10, 100, 0.1) - 0.55).abs() < 1e-12);
        assert!((lr_at(100, 1.0, 10, 100, 0.1) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn matches_the_adamw_formula_on_one_step() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).view([1, 2]).set_requires_grad(true);
        let loss = (&p * &p).sum(Kind::Float);
        let mut opt = AdamW::new(
            vec![("w".into(), p.shallow_clone())],
            AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 },
        );
        let grads = gradients(&loss, &opt.params());
        opt.step(&grads, 0.01).expect("step");
        // Step 1: m̂ = g, v̂ = g², update = -lr·g/(|g|+ε) = -lr·sign(g); decay first.
        let got: Vec<f32> = Vec::try_from(p.detach().view([-1])).expect("vec");
        let want = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01];
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn the_fused_step_matches_the_composed_update_over_many_steps() {
        tch::manual_seed(3);
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
        let shapes: [&[i64]; 3] = [&[5, 7], &[7], &[3, 4]];
        let names = ["a.weight", "a.norm", "embed.weight"];
        let params: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, tch::Device::Cpu))).collect();
        let mut opt =
            AdamW::new(names.iter().map(|n| n.to_string()).zip(params.iter().map(|p| p.copy())).collect(), cfg);
        // The composed update, written out: what the fused kernel must equal.
        let mut reference: Vec<(Tensor, Tensor, Tensor, bool)> =
            params.iter().zip(names).map(|(p, n)| (p.copy(), p.zeros_like(), p.zeros_like(), decays(n, p))).collect();
        for step in 1..=6 {
            let lr = 0.01 * f64::from(step);
            let mut grads: Vec<Tensor> =
                shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, tch::Device::Cpu))).collect();
            if step == 3 {
                grads[1] = Tensor::new(); // an unused parameter keeps its value and moments
            }
            opt.step(&grads, lr).expect("fused step");
            let (bc1, bc2) = (1.0 - cfg.beta1.powi(step), (1.0 - cfg.beta2.powi(step)).sqrt());
            for ((p, m, v, decay), g) in reference.iter_mut().zip(&grads) {
                if !g.defined() {
                    continue;
                }
                *m = &*m * cfg.beta1 + g * (1.0 - cfg.beta1);
                *v = &*v * cfg.beta2 + g.square() * (1.0 - cfg.beta2);
                if *decay {
                    *p = &*p * (1.0 - lr * cfg.weight_decay);
                }
                *p = &*p - (&*m / bc1) / (v.sqrt() / bc2 + cfg.eps) * lr;
            }
        }
        for ((p, ..), fused) in reference.iter().zip(opt.params()) {
            let diff = (p - &fused).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "fused and composed AdamW differ by {diff}");
        }
        // The skipped step left the unused parameter's moments as they were: it
        // moved 5 times, the others 6, and still matches.
        assert_eq!(opt.steps(), 6);
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let p = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        let mut grads = gradients(&(&p * &p).sum(Kind::Float).g_mul_scalar(0.5), &[p.shallow_clone()]); // grad = p, norm 5
        let before = clip_grad_norm(&mut grads, 1.0);
        assert!((before - 5.0).abs() < 1e-5);
        assert!((grads[0].norm().double_value(&[]) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn accumulation_sums_micro_batches() {
        let p = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let params = [p.shallow_clone()];
        let mut acc = gradients(&(&p * 2.0).sum(Kind::Float), &params);
        accumulate(&mut acc, gradients(&(&p * 3.0).sum(Kind::Float), &params));
        let got: Vec<f32> = Vec::try_from(&acc[0]).expect("vec");
        assert_eq!(got, vec![5.0, 5.0]);
    }
}
