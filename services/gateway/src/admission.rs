//! Sign-in admission: at most [`crate::Config::sign_ins_in_flight`] WebSocket sign-ins of
//! this gateway are talking to storage at once (the token lookup and the session's start:
//! its conversations); the others wait their turn in a queue of at most
//! [`crate::Config::sign_in_queue`]. A sign-in that finds the queue full, or waits longer
//! than [`MAX_WAIT`], is refused with `unavailable` and a `retry_after_ms`: how long the
//! sign-ins ahead of it would take at the recent pace, spread at random over up to twice
//! that, so refused clients do not all come back together.
//!
//! Why: every sign-in makes several storage calls. A storm of them (every client of a
//! restarted cluster, a load test's ramp) unbounded piled calls on the one storage service
//! until its database pool timed out, every sign-in then failed as `unavailable`, and the
//! clients' retries kept the pile up: the storm never ended. Bounded, storage answers at
//! its pace, the queue absorbs bursts, and what is beyond both comes back later.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchboard_protocol::ErrorCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;
use crate::metrics::METRICS;

/// Longest a sign-in waits for its turn before it is refused (a client waits for its
/// `welcome` this long at most, plus its own sign-in's time).
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// Bounds of the `retry_after_ms` a refusal names.
const MIN_RETRY_MS: u64 = 1_000;
const MAX_RETRY_MS: u64 = 60_000;
/// A sign-in's time in storage assumed before any has been measured.
const FIRST_GUESS_US: u64 = 5_000;

/// The gate. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct SignInGate {
    inner: Arc<Inner>,
}

struct Inner {
    /// None: unlimited.
    permits: Option<Arc<Semaphore>>,
    in_flight: usize,
    queue: usize,
    waiting: AtomicUsize,
    /// Moving average of how long an admitted sign-in holds its turn, in microseconds.
    hold_us: AtomicU64,
}

/// A sign-in's turn; given back when dropped.
pub struct Admitted {
    gate: Arc<Inner>,
    since: Instant,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let sample = self.since.elapsed().as_micros() as u64;
        let old = self.gate.hold_us.load(Ordering::Relaxed);
        // An average over about the last 16 sign-ins (races lose a sample, harmlessly).
        let new = old - old / 16 + sample / 16;
        self.gate.hold_us.store(new.max(1), Ordering::Relaxed);
    }
}

/// Counts a sign-in waiting for its turn while it lives (also when it is given up).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SignInGate {
    /// At most `in_flight` sign-ins at once (0: no limit), `queue` more waiting.
    pub fn new(in_flight: usize, queue: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                permits: (in_flight > 0).then(|| Arc::new(Semaphore::new(in_flight))),
                in_flight: in_flight.max(1),
                queue,
                waiting: AtomicUsize::new(0),
                hold_us: AtomicU64::new(FIRST_GUESS_US),
            }),
        }
    }

    /// Sign-ins waiting for their turn now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Waits for a turn; `unavailable` with `retry_after_ms` when the queue is full or
    /// the turn does not come within [`MAX_WAIT`].
    pub async fn admit(&self) -> Result<Admitted, ApiError> {
        let inner = &self.inner;
        let Some(permits) = &inner.permits else {
            return Ok(Admitted { gate: inner.clone(), since: Instant::now(), _permit: None });
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if inner.waiting.fetch_add(1, Ordering::Relaxed) >= inner.queue {
                    inner.waiting.fetch_sub(1, Ordering::Relaxed);
                    return Err(self.busy());
                }
                let _waiting = Waiting(&inner.waiting);
                match tokio::time::timeout(MAX_WAIT, permits.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    // Timed out (the semaphore is never closed).
                    _ => return Err(self.busy()),
                }
            }
        };
        Ok(Admitted { gate: inner.clone(), since: Instant::now(), _permit: Some(permit) })
    }

    /// How long a refused client should wait: the time the sign-ins waiting now would
    /// take at the recent pace, between 1 and 60 s, times a random factor from 1 to 2.
    pub fn retry_after_ms(&self) -> u64 {
        let inner = &self.inner;
        let ahead = inner.waiting.load(Ordering::Relaxed) as u64 + 1;
        let hold_us = inner.hold_us.load(Ordering::Relaxed);
        let drain_ms = ahead.saturating_mul(hold_us) / inner.in_flight as u64 / 1000;
        let base = drain_ms.clamp(MIN_RETRY_MS, MAX_RETRY_MS);
        base + crate::auth::random_below(base + 1)
    }

    /// The refusal of a sign-in that found no room.
    fn busy(&self) -> ApiError {
        METRICS.sign_ins_refused.inc();
        ApiError::new(
            ErrorCode::Unavailable,
            "too many sign-ins at once on this gateway; retry after retry_after_ms",
        )
        .with_retry_after(self.retry_after_ms())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_full_queue_is_refused_with_a_retry_after_and_turns_come_back() {
        let gate = SignInGate::new(1, 1);
        let first = gate.admit().await.unwrap();
        let queued = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.map(|_| ()) }
        });
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = gate.admit().await.err().unwrap();
        assert_eq!(refused.code(), ErrorCode::Unavailable);
        let after = refused.0.retry_after_ms.unwrap();
        assert!((MIN_RETRY_MS..=2 * MAX_RETRY_MS).contains(&after), "{after}");
        drop(first);
        queued.await.unwrap().unwrap();
        assert_eq!(gate.waiting(), 0);
        gate.admit().await.unwrap();
    }

    #[tokio::test]
    async fn zero_in_flight_means_no_limit() {
        let gate = SignInGate::new(0, 0);
        let held: Vec<_> = futures_util::future::join_all((0..100).map(|_| gate.admit())).await;
        assert!(held.iter().all(Result::is_ok));
    }
}
