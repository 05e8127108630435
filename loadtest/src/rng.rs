//! A small seeded random number generator (SplitMix64) for think times, jitter and
//! choices. Seeded per user, so a run's schedule is reproducible for a given run id.

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    /// Uniform index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// An exponentially distributed wait with this mean (in seconds): Poisson arrivals.
    pub fn exp(&mut self, mean_secs: f64) -> std::time::Duration {
        let u = self.uniform(f64::EPSILON, 1.0);
        std::time::Duration::from_secs_f64((-u.ln() * mean_secs).min(3600.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_waits_have_the_asked_mean() {
        let mut rng = Rng::new(7);
        let n = 20_000;
        let total: f64 = (0..n).map(|_| rng.exp(0.5).as_secs_f64()).sum();
        let mean = total / f64::from(n);
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert!((0..1000).all(|_| rng.below(3) < 3));
    }
}
