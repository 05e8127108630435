//! Per-user message rate limiting: a token bucket per user, shared by all their sessions
//! and the REST API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    /// std Mutex: held only for arithmetic, never across an await.
    buckets: Mutex<HashMap<i64, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `user`, or says how many milliseconds until one is available.
    pub fn check(&self, user: i64) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget users whose bucket has refilled; they lose nothing by it.
            let full = self.burst / self.per_second;
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() < full);
        }
        let bucket = buckets.entry(user).or_insert(Bucket { tokens: self.burst, at: now });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - bucket.tokens) / self.per_second) * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuses_then_refills() {
        let limiter = RateLimiter::new(1000.0, 3.0);
        assert!((0..3).all(|_| limiter.check(1).is_ok()));
        assert!(limiter.check(1).is_err());
        assert!(limiter.check(2).is_ok(), "buckets are per user");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(limiter.check(1).is_ok());
    }
}
