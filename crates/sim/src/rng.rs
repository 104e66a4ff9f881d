//! The seeded generator behind the cohort and the fault decisions.
//!
//! SplitMix64 is written out here rather than taken from `rand` on purpose: the
//! simulators promise byte-identical responses for a seed, and ground-truth files
//! written today must still match the data served after a dependency upgrade. `rand`
//! documents that its `StdRng` algorithm may change between releases; these few lines
//! never will.

/// A SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream for `seed`, separated from other streams of the same seed by `stream`.
    pub fn new(seed: u64, stream: &str) -> Self {
        let mut h = 0xcbf2_9ce4_8422_2325_u64;
        for b in stream.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let mut r = Rng(seed ^ h);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[lo, hi]` (inclusive).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        let span = (hi - lo + 1) as u64;
        lo + (self.next_u64() % span) as i64
    }

    /// Uniform index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Roughly normal around `mean` with standard deviation `sd` (Irwin-Hall, 12 terms).
    pub fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let s: f64 = (0..12).map(|_| self.unit()).sum();
        mean + (s - 6.0) * sd
    }

    /// Lowercase hex of `n` random bytes.
    pub fn hex(&mut self, n: usize) -> String {
        let mut out = String::with_capacity(n * 2);
        while out.len() < n * 2 {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(n * 2);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_stable_and_separate() {
        // Pinned values: a change here breaks every ground-truth file written before.
        let mut a = Rng::new(42, "cohort");
        let first = a.next_u64();
        assert_eq!(Rng::new(42, "cohort").next_u64(), first);
        assert_ne!(Rng::new(42, "xnat").next_u64(), first);
        assert_ne!(Rng::new(43, "cohort").next_u64(), first);
        let mut r = Rng::new(7, "x");
        for _ in 0..1000 {
            let v = r.range(3, 5);
            assert!((3..=5).contains(&v));
            assert!(r.unit() < 1.0);
        }
    }
}
