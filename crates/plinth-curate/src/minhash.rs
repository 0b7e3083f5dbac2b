//! MinHash signatures of word shingles and a banded LSH index (Broder 1997;
//! Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3).

use std::collections::HashMap;

/// `perms` hash functions `h_i(x) = a_i * x + b_i` (mod 2^61 - 1) over 64-bit
/// hashes of `shingle`-word windows.
#[derive(Debug, Clone)]
pub struct MinHasher {
    coeffs: Vec<(u64, u64)>,
    shingle: usize,
}

const MERSENNE_61: u64 = (1 << 61) - 1;

fn mod_mersenne(x: u128) -> u64 {
    let folded = (x & u128::from(MERSENNE_61)) + (x >> 61);
    let r = (folded & u128::from(MERSENNE_61)) + (folded >> 61);
    (r as u64) % MERSENNE_61
}

fn fnv(words: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in words {
        for b in w.bytes().chain([0x1f]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl MinHasher {
    pub fn new(perms: usize, shingle: usize, seed: u64) -> Self {
        let mut state = seed;
        let mut next = || {
            // SplitMix64.
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let coeffs = (0..perms).map(|_| (next() % (MERSENNE_61 - 1) + 1, next() % MERSENNE_61)).collect();
        MinHasher { coeffs, shingle: shingle.max(1) }
    }

    /// The signature of a text's lower-cased word shingles (the whole text as one
    /// shingle when it has fewer words).
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let shingles: Vec<u64> = if words.len() <= self.shingle {
            vec![fnv(&words)]
        } else {
            words.windows(self.shingle).map(fnv).collect()
        };
        self.coeffs
            .iter()
            .map(|&(a, b)| {
                shingles
                    .iter()
                    .map(|&x| mod_mersenne(u128::from(a) * u128::from(x % MERSENNE_61) + u128::from(b)))
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }
}

/// Estimated Jaccard similarity: the share of equal signature positions.
pub fn similarity(a: &[u64], b: &[u64]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

/// Kept signatures bucketed by band; a new text is compared only with those
/// sharing a band.
#[derive(Debug)]
pub struct LshIndex {
    hasher: MinHasher,
    bands: usize,
    threshold: f64,
    buckets: Vec<HashMap<u64, Vec<usize>>>,
    kept: Vec<Vec<u64>>,
}

impl LshIndex {
    pub fn new(hasher: MinHasher, bands: usize, threshold: f64) -> Self {
        let bands = bands.clamp(1, hasher.coeffs.len().max(1));
        LshIndex { hasher, bands, threshold, buckets: vec![HashMap::new(); bands], kept: Vec::new() }
    }

    /// Adds `text` unless a kept text is at least `threshold` similar; then
    /// returns that similarity instead.
    pub fn insert_unless_near(&mut self, text: &str) -> Option<f64> {
        let sig = self.hasher.signature(text);
        let rows = sig.len() / self.bands;
        let keys: Vec<u64> = (0..self.bands)
            .map(|b| {
                let band: Vec<String> = sig[b * rows..(b + 1) * rows].iter().map(u64::to_string).collect();
                fnv(&band.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect();
        let mut best = 0.0f64;
        for (b, key) in keys.iter().enumerate() {
            for &j in self.buckets[b].get(key).map_or(&[][..], Vec::as_slice) {
                best = best.max(similarity(&sig, &self.kept[j]));
            }
        }
        if best >= self.threshold {
            return Some(best);
        }
        let id = self.kept.len();
        for (b, key) in keys.into_iter().enumerate() {
            self.buckets[b].entry(key).or_default().push(id);
        }
        self.kept.push(sig);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_estimates_jaccard() {
        let h = MinHasher::new(256, 1, 7);
        // Word sets {a..j} and {a..h, x, y}: Jaccard 8 / 12.
        let a = h.signature("a b c d e f g h i j");
        let b = h.signature("a b c d e f g h x y");
        let s = similarity(&a, &b);
        assert!((s - 8.0 / 12.0).abs() < 0.08, "{s}");
        assert_eq!(similarity(&a, &a), 1.0);
    }

    #[test]
    fn the_index_drops_near_copies_and_keeps_different_texts() {
        let mut idx = LshIndex::new(MinHasher::new(128, 3, 1), 16, 0.8);
        let base = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty";
        assert!(idx.insert_unless_near(base).is_none());
        assert!(idx.insert_unless_near(&base.replace("twenty", "thirty")).is_some());
        assert!(idx
            .insert_unless_near("a completely different sentence about gardens and rain in the spring")
            .is_none());
    }
}
