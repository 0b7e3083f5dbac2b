//! Distributed data parallel over a c10d process group (`plinth-dist`): every rank
//! holds the whole model, reads its own rows of each global batch, and averages
//! gradients with the others before the optimizer step, so N ranks with batch B
//! take the steps one process with batch N·B would (exactly, when each rank's loss
//! is a mean over the same number of predicted tokens, as the causal objective's is).

use std::sync::Arc;
use std::time::Instant;

use plinth_dist::{ProcessGroup, ReduceOp};
use tch::{Kind, Tensor};

use crate::{Result, TrainError};

/// Gradients are all-reduced in flat buckets of about this many bytes (DDP's default
/// is 25 MiB): few enough calls to amortise latency, small enough to bound the copy.
pub const BUCKET_BYTES: usize = 25 << 20;

/// One rank's view of a data-parallel run.
#[derive(Debug, Clone)]
pub struct DataParallel {
    group: Arc<ProcessGroup>,
}

fn comm(e: plinth_dist::DistError) -> TrainError {
    TrainError::Distributed(format!(
        "{e}; another rank probably failed (its output says why); the last checkpoint is intact for --resume"
    ))
}

impl DataParallel {
    pub fn new(group: Arc<ProcessGroup>) -> Self {
        DataParallel { group }
    }

    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    pub fn world(&self) -> usize {
        self.group.world_size()
    }

    /// True on the rank that writes checkpoints, metrics and evaluations.
    pub fn is_writer(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's rows of a global batch: the `rank`-th of `world` equal,
    /// contiguous slices. Over an epoch the ranks' rows are disjoint and cover it.
    pub fn shard<'a, T>(&self, global: &'a [T]) -> &'a [T] {
        shard(global, self.rank(), self.world())
    }

    /// Copies rank 0's values of `tensors` to every rank (at start, so all ranks
    /// begin from the same weights whatever their seeds did).
    pub fn broadcast(&self, tensors: &[Tensor]) -> Result<()> {
        self.bucketed(tensors, |flat| self.group.broadcast(std::slice::from_mut(flat), 0))
    }

    /// Replaces each gradient by its mean over the ranks; returns the seconds spent.
    pub fn average(&self, grads: &mut [Tensor]) -> Result<f64> {
        let t0 = Instant::now();
        let world = self.world() as f64;
        self.bucketed(grads, |flat| {
            self.group.all_reduce(std::slice::from_mut(flat), ReduceOp::Sum)?;
            let _ = flat.g_div_scalar_(world);
            Ok(())
        })?;
        Ok(t0.elapsed().as_secs_f64())
    }

    /// The mean of a number over the ranks (losses, for the log).
    pub fn mean(&self, value: f64) -> Result<f64> {
        let mut t = [Tensor::from_slice(&[value]).to_device(self.group.device())];
        self.group.all_reduce(&mut t, ReduceOp::Sum).map_err(comm)?;
        Ok(t[0].double_value(&[0]) / self.world() as f64)
    }

    /// Fails unless every rank has the same `value` (a fingerprint of something
    /// each rank built on its own, such as the tokenizer).
    pub fn check_same(&self, value: i64, what: &str) -> Result<()> {
        let device = self.group.device();
        let mut lo = [Tensor::from_slice(&[value]).to_device(device)];
        let mut hi = [Tensor::from_slice(&[value]).to_device(device)];
        self.group.all_reduce(&mut lo, ReduceOp::Min).map_err(comm)?;
        self.group.all_reduce(&mut hi, ReduceOp::Max).map_err(comm)?;
        if lo[0].int64_value(&[0]) != hi[0].int64_value(&[0]) {
            return Err(TrainError::Distributed(format!(
                "ranks disagree on {what}; every rank must read the same data and config"
            )));
        }
        Ok(())
    }

    /// Runs `op` on flat buckets of `tensors` (float32, about [`BUCKET_BYTES`] each,
    /// on the group's device: a model on a GPU with Gloo goes through the CPU) and
    /// copies the results back.
    fn bucketed(&self, tensors: &[Tensor], op: impl Fn(&mut Tensor) -> plinth_dist::Result<()>) -> Result<()> {
        tch::no_grad(|| {
            for range in buckets(tensors, BUCKET_BYTES) {
                let parts: Vec<Tensor> =
                    tensors[range.clone()].iter().map(|t| t.detach().to_kind(Kind::Float).reshape([-1])).collect();
                let mut flat = Tensor::cat(&parts, 0).to_device(self.group.device());
                op(&mut flat).map_err(comm)?;
                let mut offset = 0;
                for t in &tensors[range] {
                    let n = t.numel() as i64;
                    t.shallow_clone().copy_(&flat.narrow(0, offset, n).view(t.size().as_slice()));
                    offset += n;
                }
            }
            Ok(())
        })
    }
}

/// The `rank`-th of `world` contiguous slices of `global` (sizes differ by at most one).
pub fn shard<T>(global: &[T], rank: usize, world: usize) -> &[T] {
    let world = world.max(1);
    let (q, r) = (global.len() / world, global.len() % world);
    let start = rank * q + rank.min(r);
    let len = q + usize::from(rank < r);
    &global[start.min(global.len())..(start + len).min(global.len())]
}

/// Consecutive index ranges of `tensors` whose f32 sizes sum to about `bytes`.
fn buckets(tensors: &[Tensor], bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 0usize);
    for (i, t) in tensors.iter().enumerate() {
        size += t.numel() * 4;
        if size >= bytes {
            out.push(start..i + 1);
            (start, size) = (i + 1, 0);
        }
    }
    if start < tensors.len() {
        out.push(start..tensors.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use plinth_data::BlockSampler;

    #[test]
    fn shards_are_disjoint_and_cover_each_global_batch_and_the_epoch() {
        let (n, world, batch) = (48, 2, 4);
        let mut sampler = BlockSampler::new(n, 7);
        let mut seen: Vec<usize> = Vec::new();
        for _ in 0..n / (world * batch) {
            let global = sampler.next_indices(world * batch);
            let parts: Vec<&[usize]> = (0..world).map(|r| shard(&global, r, world)).collect();
            assert!(parts.iter().all(|p| p.len() == batch));
            assert_eq!(parts.concat(), global, "rank order is the global order");
            seen.extend(parts.concat());
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>(), "one epoch visits every block once");
        assert_eq!(shard(&[1, 2, 3, 4, 5], 0, 2), [1, 2, 3]);
        assert_eq!(shard(&[1, 2, 3, 4, 5], 1, 2), [4, 5]);
    }

    #[test]
    fn buckets_split_by_size_and_keep_every_tensor() {
        let ts: Vec<Tensor> =
            [10, 10, 10, 3].iter().map(|&n| Tensor::zeros([n], (Kind::Float, tch::Device::Cpu))).collect();
        assert_eq!(buckets(&ts, 80), vec![0..2, 2..4]);
        assert_eq!(buckets(&ts, 1 << 20), vec![0..4]);
    }
}
