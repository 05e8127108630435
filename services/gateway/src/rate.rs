//! Token-bucket rate limiting, keyed by whatever is limited: per user (messages, shared by
//! all their sessions and the REST API), per client IP (messages, failed sign-ins).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept at most; past it, those that have refilled are forgotten.
const MAX_BUCKETS: usize = 100_000;

pub struct RateLimiter<K = i64> {
    per_second: f64,
    burst: f64,
    /// std Mutex: held only for arithmetic, never across an await.
    buckets: Mutex<HashMap<K, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_second` tokens come back per second, up to `burst`; 0 turns the limit off.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or says how many milliseconds until one is available.
    pub fn check(&self, key: K) -> Result<(), u64> {
        self.with_bucket(key, |bucket| {
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// Whether `key` has a token left, without taking it; or the milliseconds until it has.
    pub fn peek(&self, key: K) -> Result<(), u64> {
        self.with_bucket(key, |bucket| bucket.tokens >= 1.0)
    }

    fn with_bucket(&self, key: K, take: impl FnOnce(&mut Bucket) -> bool) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > MAX_BUCKETS {
            // Forget keys whose bucket has refilled; they lose nothing by it.
            let full = self.burst / self.per_second;
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() < full);
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: self.burst, at: now });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if take(bucket) {
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
        assert!(limiter.check(2).is_ok(), "buckets are per key");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(limiter.check(1).is_ok());
    }

    #[test]
    fn peek_takes_nothing() {
        let limiter = RateLimiter::new(0.001, 1.0);
        assert!((0..5).all(|_| limiter.peek("a").is_ok()));
        assert!(limiter.check("a").is_ok());
        assert!(limiter.peek("a").is_err());
    }
}
