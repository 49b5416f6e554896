//! Spikes stored one bit each: the trace keeps every step's spikes for the backward pass, so
//! bits make that store 32 times smaller than `f32`s, count with `popcount` and feed
//! event-driven accumulation by walking set bits.

use std::ops::Range;

use crate::exec::real::Real;

/// Whether any value is nonzero: one branch for the whole slice (the comparisons vectorise).
#[inline]
pub fn any_nonzero<F: Real>(values: &[F]) -> bool {
    values.iter().fold(false, |any, v| any | (*v != F::zero()))
}

/// Calls `f(i)` for every `i` with `values[i] != 0`, skipping all-zero blocks of 32 values
/// with one branch each: sparse spikes and Poisson inputs are mostly zero.
#[inline]
pub fn for_each_nonzero<F: Real>(values: &[F], mut f: impl FnMut(usize)) {
    const BLOCK: usize = 32;
    for (b, block) in values.chunks(BLOCK).enumerate() {
        if any_nonzero(block) {
            for (i, v) in block.iter().enumerate() {
                if *v != F::zero() {
                    f(b * BLOCK + i);
                }
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    pub fn zeros(len: usize) -> Bits {
        Bits { words: vec![0; len.div_ceil(64)], len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, k: usize) -> bool {
        debug_assert!(k < self.len);
        self.words[k / 64] >> (k % 64) & 1 == 1
    }

    /// Bits `[start, start + values.len())` become `values[i] != 0`.
    pub fn store<F: Real>(&mut self, start: usize, values: &[F]) {
        assert!(start + values.len() <= self.len, "bits stored inside the set");
        // Bit by bit up to a word boundary, whole words, then the tail.
        let head = ((64 - start % 64) % 64).min(values.len());
        let set = |words: &mut [u64], k: usize, on: bool| {
            let mask = 1u64 << (k % 64);
            words[k / 64] = if on { words[k / 64] | mask } else { words[k / 64] & !mask };
        };
        for (i, value) in values[..head].iter().enumerate() {
            set(&mut self.words, start + i, *value != F::zero());
        }
        let body = &values[head..];
        let first_word = (start + head) / 64;
        let mut chunks = body.chunks_exact(64);
        for (w, chunk) in chunks.by_ref().enumerate() {
            // Spikes are sparse: most words are all zero, found without a branch per value.
            let mut word = 0u64;
            if any_nonzero(chunk) {
                for (bit, value) in chunk.iter().enumerate() {
                    word |= u64::from(*value != F::zero()) << bit;
                }
            }
            self.words[first_word + w] = word;
        }
        let tail_start = start + head + (body.len() / 64) * 64;
        for (i, value) in chunks.remainder().iter().enumerate() {
            set(&mut self.words, tail_start + i, *value != F::zero());
        }
    }

    /// `out[i] = bit(start + i)` as 0.0 or 1.0.
    pub fn expand_into<F: Real>(&self, start: usize, out: &mut [F]) {
        assert!(start + out.len() <= self.len, "bits read inside the set");
        let (zero, one) = (F::zero(), F::one());
        // Short ranges (a sample's row) bit by bit; long ones (a shard's rows for a GEMM) up to
        // a word boundary bit by bit, then a byte at a time from a table.
        let head = if out.len() < 512 { out.len() } else { ((64 - start % 64) % 64).min(out.len()) };
        for (i, slot) in out[..head].iter_mut().enumerate() {
            *slot = if self.get(start + i) { one } else { zero };
        }
        if head == out.len() {
            return;
        }
        // A byte of bits at a time, copied from a table of the 256 patterns of eight values.
        let table: Vec<[F; 8]> =
            (0..256u32).map(|byte| std::array::from_fn(|bit| if (byte >> bit) & 1 == 1 { one } else { zero })).collect();
        let first_word = (start + head) / 64;
        for (w, chunk) in out[head..].chunks_mut(64).enumerate() {
            let word = self.words[first_word + w];
            for (b, slots) in chunk.chunks_mut(8).enumerate() {
                let pattern = &table[((word >> (8 * b)) & 0xFF) as usize];
                slots.copy_from_slice(&pattern[..slots.len()]);
            }
        }
    }

    /// The bits of `range` as 0.0 or 1.0.
    pub fn expand<F: Real>(&self, range: Range<usize>) -> Vec<F> {
        let mut out = vec![F::zero(); range.len()];
        self.expand_into(range.start, &mut out);
        out
    }

    /// Set bits in `range`.
    pub fn count(&self, range: Range<usize>) -> usize {
        let mut total = 0;
        self.for_each_word(range, |_, word| total += word.count_ones() as usize);
        total
    }

    /// Calls `f` with the offset from `range.start` of every set bit in `range`, in order.
    pub fn for_each_set(&self, range: Range<usize>, mut f: impl FnMut(usize)) {
        let start = range.start;
        self.for_each_word(range, |base, mut word| {
            while word != 0 {
                let bit = word.trailing_zeros() as usize;
                f(base + bit - start);
                word &= word - 1;
            }
        });
    }

    /// Calls `f(first bit index, masked word)` for every word that overlaps `range`.
    fn for_each_word(&self, range: Range<usize>, mut f: impl FnMut(usize, u64)) {
        assert!(range.end <= self.len, "range inside the set");
        if range.is_empty() {
            return;
        }
        let (first, last) = (range.start / 64, (range.end - 1) / 64);
        for w in first..=last {
            let mut word = self.words[w];
            if w == first {
                word &= u64::MAX << (range.start % 64);
            }
            if w == last && !range.end.is_multiple_of(64) {
                word &= u64::MAX >> (64 - range.end % 64);
            }
            f(w * 64, word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Bits, any_nonzero, for_each_nonzero};

    #[test]
    fn nonzero_values_are_found_in_sparse_and_dense_blocks() {
        for len in [0usize, 1, 31, 32, 33, 100, 784] {
            // Sparse (some whole blocks empty), dense, and values that are not 0/1 (-0.0 is zero).
            for pattern in [3usize, 29, 1] {
                let values: Vec<f32> =
                    (0..len).map(|k| if k % pattern == pattern / 2 && k % 64 < 40 { (k as f32) * 0.5 - 3.0 } else { -0.0 }).collect();
                let expected: Vec<usize> = (0..len).filter(|k| values[*k] != 0.0).collect();
                let mut seen = Vec::new();
                for_each_nonzero(&values, |k| seen.push(k));
                assert_eq!(seen, expected, "len {len}, pattern {pattern}");
                assert_eq!(any_nonzero(&values), !expected.is_empty());
            }
        }
    }

    #[test]
    fn stores_counts_and_walks_ranges_across_word_boundaries() {
        let values: Vec<f64> = (0..200).map(|k| f64::from(u8::from(k % 3 == 0 || k % 7 == 1))).collect();
        let mut bits = Bits::zeros(203);
        bits.store(3, &values);
        for (range, shift) in [(3..203, 3), (60..130, 60), (64..128, 64), (0..5, 0), (100..101, 100)] {
            let expected: Vec<usize> = range.clone().filter(|k| *k >= 3 && values[k - 3] != 0.0).map(|k| k - shift).collect();
            let mut seen = Vec::new();
            bits.for_each_set(range.clone(), |k| seen.push(k));
            assert_eq!(seen, expected, "{range:?}");
            assert_eq!(bits.count(range.clone()), expected.len(), "{range:?}");
            let expanded: Vec<f64> = bits.expand(range.clone());
            assert_eq!(expanded.iter().filter(|x| **x == 1.0).count(), expected.len());
        }
        bits.store(3, &vec![0.0; 200]);
        assert_eq!(bits.count(0..203), 0, "stores clear bits too");
    }
}
