//! Packing token streams into fixed-length blocks, and a sampler whose position
//! is a small value that a checkpoint can store and restore exactly.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// Concatenates `docs` (each already framed with its own bos/eos) and cuts the
/// stream into blocks of `block_len` tokens; the incomplete tail is dropped.
pub fn pack_blocks(docs: &[Vec<u32>], block_len: usize) -> Vec<Vec<u32>> {
    let stream: Vec<u32> = docs.iter().flatten().copied().collect();
    stream.chunks_exact(block_len.max(1)).map(<[u32]>::to_vec).collect()
}

/// Where a sampler is: enough to continue the same sequence of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub epoch: u64,
    pub position: usize,
}

/// Visits block indices in a fresh seeded permutation each epoch.
#[derive(Debug, Clone)]
pub struct BlockSampler {
    n_blocks: usize,
    seed: u64,
    order: Vec<usize>,
    state: SamplerState,
}

impl BlockSampler {
    pub fn new(n_blocks: usize, seed: u64) -> Self {
        let state = SamplerState { epoch: 0, position: 0 };
        BlockSampler { n_blocks, seed, order: permutation(n_blocks, seed, 0), state }
    }

    /// Continues from a saved `state`; `None` when that position lies past the
    /// end of `n_blocks` (the data is not the data it was saved with).
    pub fn resume(n_blocks: usize, seed: u64, state: SamplerState) -> Option<Self> {
        (state.position <= n_blocks).then(|| BlockSampler {
            n_blocks,
            seed,
            order: permutation(n_blocks, seed, state.epoch),
            state,
        })
    }

    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// The next `count` block indices, crossing into a new epoch when needed.
    pub fn next_indices(&mut self, count: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(count);
        while out.len() < count && self.n_blocks > 0 {
            if self.state.position == self.n_blocks {
                self.state = SamplerState { epoch: self.state.epoch + 1, position: 0 };
                self.order = permutation(self.n_blocks, self.seed, self.state.epoch);
            }
            out.push(self.order[self.state.position]);
            self.state.position += 1;
        }
        out
    }
}

fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(seed.wrapping_mul(0x9E37_79B9).wrapping_add(epoch)).shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_stream_into_full_blocks() {
        let blocks = pack_blocks(&[vec![1, 2, 3], vec![4, 5], vec![6, 7, 8]], 3);
        assert_eq!(blocks, vec![vec![1, 2, 3], vec![4, 5, 6]]);
    }

    #[test]
    fn sampler_covers_each_epoch_and_resumes_exactly() {
        let mut s = BlockSampler::new(10, 3);
        let mut first: Vec<usize> = s.next_indices(10);
        first.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        let _ = s.next_indices(4);
        let saved = s.state();
        let expected = s.next_indices(12);
        let mut resumed = BlockSampler::resume(10, 3, saved).expect("in range");
        assert_eq!(resumed.next_indices(12), expected);
    }

    #[test]
    fn sampler_refuses_a_position_past_its_blocks() {
        let past = SamplerState { epoch: 2, position: 11 };
        assert!(BlockSampler::resume(10, 3, past).is_none());
        let end = SamplerState { epoch: 2, position: 10 };
        assert_eq!(BlockSampler::resume(10, 3, end).expect("the end is a valid position").next_indices(1).len(), 1);
    }
}
