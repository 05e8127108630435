//! Measurements: counters and HDR histograms shared by a worker's clients, the per-second
//! [`Tick`]s they produce, and the [`WorkerResult`] a worker ends with. Both travel between
//! processes as JSON and merge exactly (histograms as value/count pairs).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, from 1 µs to one hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    #[allow(clippy::unwrap_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

/// A histogram as (value, count) pairs, for JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hist(pub Vec<(u64, u64)>);

impl Hist {
    pub fn of(h: &Histogram<u64>) -> Self {
        Self(h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect())
    }

    pub fn merge_into(&self, h: &mut Histogram<u64>) {
        for &(value, count) in &self.0 {
            h.saturating_record_n(value, count);
        }
    }
}

/// Counters a worker keeps; the names are those of `result.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    pub connects: u64,
    pub connect_failures: u64,
    pub sent: u64,
    pub acked: u64,
    /// Messages received by a member other than their sender (live or backfilled).
    pub delivered: u64,
    /// Of `delivered`, those that came in a resume's backfill.
    pub backfilled: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Sends never acknowledged by the end of the run.
    pub unacked: u64,
    /// A sender's messages arrived in a conversation out of their sending order.
    pub sender_reordered: u64,
    pub errors: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.connects += o.connects;
        self.connect_failures += o.connect_failures;
        self.sent += o.sent;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.backfilled += o.backfilled;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.out_of_order += o.out_of_order;
        self.unacked += o.unacked;
        self.sender_reordered += o.sender_reordered;
        self.errors += o.errors;
    }

    fn minus(&self, o: &Counters) -> Counters {
        Counters {
            connects: self.connects - o.connects,
            connect_failures: self.connect_failures - o.connect_failures,
            sent: self.sent - o.sent,
            acked: self.acked - o.acked,
            delivered: self.delivered - o.delivered,
            backfilled: self.backfilled - o.backfilled,
            lost: self.lost - o.lost,
            duplicated: self.duplicated - o.duplicated,
            out_of_order: self.out_of_order - o.out_of_order,
            unacked: self.unacked - o.unacked,
            sender_reordered: self.sender_reordered - o.sender_reordered,
            errors: self.errors - o.errors,
        }
    }
}

/// One second of one worker: counter deltas, the open connections at its end, and the
/// end-to-end latencies recorded in it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tick {
    /// Whole seconds since the run's common start.
    pub second: u64,
    pub connected: i64,
    pub delta: Counters,
    pub latency: Hist,
    /// Named events counted in this second (error codes, OS limits such as "EMFILE").
    pub kinds: BTreeMap<String, u64>,
}

/// Everything a worker measured, sent once at its end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub totals: Counters,
    pub peak_connected: i64,
    pub latency: Hist,
    pub ack_latency: Hist,
    pub connect_latency: Hist,
    pub kinds: BTreeMap<String, u64>,
    /// Reconnect storm: clients that came back and synced, and the slowest one's time
    /// from the drop to its `synced`.
    pub reconnected: u64,
    pub reconnect_max_ms: f64,
}

#[derive(Default)]
struct Atomics {
    connects: AtomicU64,
    connect_failures: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    backfilled: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    out_of_order: AtomicU64,
    unacked: AtomicU64,
    sender_reordered: AtomicU64,
    errors: AtomicU64,
}

/// What every client of a worker records into. Counters are atomics; the histograms sit
/// behind std Mutexes held only to record (never across an await).
pub struct Stats {
    c: Atomics,
    pub connected: AtomicI64,
    peak: AtomicI64,
    second: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
    ack: Mutex<Histogram<u64>>,
    connect: Mutex<Histogram<u64>>,
    kinds: Mutex<(BTreeMap<String, u64>, BTreeMap<String, u64>)>,
    reconnect: Mutex<(u64, f64)>,
    last: Mutex<Counters>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Copy)]
pub enum Count {
    Connects,
    ConnectFailures,
    Sent,
    Acked,
    Delivered,
    Backfilled,
    Lost,
    Duplicated,
    OutOfOrder,
    Unacked,
    SenderReordered,
    Errors,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            c: Atomics::default(),
            connected: AtomicI64::new(0),
            peak: AtomicI64::new(0),
            second: Mutex::new(histogram()),
            total: Mutex::new(histogram()),
            ack: Mutex::new(histogram()),
            connect: Mutex::new(histogram()),
            kinds: Mutex::default(),
            reconnect: Mutex::default(),
            last: Mutex::default(),
        }
    }
}

impl Stats {
    pub fn add(&self, what: Count, n: u64) {
        let c = &self.c;
        let counter = match what {
            Count::Connects => &c.connects,
            Count::ConnectFailures => &c.connect_failures,
            Count::Sent => &c.sent,
            Count::Acked => &c.acked,
            Count::Delivered => &c.delivered,
            Count::Backfilled => &c.backfilled,
            Count::Lost => &c.lost,
            Count::Duplicated => &c.duplicated,
            Count::OutOfOrder => &c.out_of_order,
            Count::Unacked => &c.unacked,
            Count::SenderReordered => &c.sender_reordered,
            Count::Errors => &c.errors,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn connected(&self, delta: i64) {
        let now = self.connected.fetch_add(delta, Ordering::Relaxed) + delta;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    /// An error of a named kind (a protocol error code, an OS limit, a close reason).
    pub fn error(&self, kind: &str) {
        self.add(Count::Errors, 1);
        self.kind(kind);
    }

    /// Counts a named event without calling it an error.
    pub fn kind(&self, kind: &str) {
        let mut kinds = lock(&self.kinds);
        *kinds.0.entry(kind.to_owned()).or_default() += 1;
        *kinds.1.entry(kind.to_owned()).or_default() += 1;
    }

    pub fn latency_us(&self, us: u64) {
        lock(&self.second).saturating_record(us.max(1));
    }

    pub fn ack_us(&self, us: u64) {
        lock(&self.ack).saturating_record(us.max(1));
    }

    pub fn connect_us(&self, us: u64) {
        lock(&self.connect).saturating_record(us.max(1));
    }

    pub fn reconnected(&self, ms: f64) {
        let mut r = lock(&self.reconnect);
        r.0 += 1;
        r.1 = r.1.max(ms);
    }

    fn counters(&self) -> Counters {
        let c = &self.c;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            connects: get(&c.connects),
            connect_failures: get(&c.connect_failures),
            sent: get(&c.sent),
            acked: get(&c.acked),
            delivered: get(&c.delivered),
            backfilled: get(&c.backfilled),
            lost: get(&c.lost),
            duplicated: get(&c.duplicated),
            out_of_order: get(&c.out_of_order),
            unacked: get(&c.unacked),
            sender_reordered: get(&c.sender_reordered),
            errors: get(&c.errors),
        }
    }

    /// Closes the current second: its counter deltas and latencies.
    pub fn tick(&self, second: u64) -> Tick {
        let now = self.counters();
        let delta = {
            let mut last = lock(&self.last);
            let delta = now.minus(&last);
            *last = now;
            delta
        };
        let second_hist = {
            let mut h = lock(&self.second);
            let taken = std::mem::replace(&mut *h, histogram());
            drop(h);
            taken
        };
        let _ = lock(&self.total).add(&second_hist);
        let kinds = std::mem::take(&mut lock(&self.kinds).1);
        Tick {
            second,
            connected: self.connected.load(Ordering::Relaxed),
            delta,
            latency: Hist::of(&second_hist),
            kinds,
        }
    }

    /// The worker's result; call after the last [`Stats::tick`].
    pub fn result(&self) -> WorkerResult {
        let (reconnected, reconnect_max_ms) = *lock(&self.reconnect);
        WorkerResult {
            totals: self.counters(),
            peak_connected: self.peak.load(Ordering::Relaxed),
            latency: Hist::of(&lock(&self.total)),
            ack_latency: Hist::of(&lock(&self.ack)),
            connect_latency: Hist::of(&lock(&self.connect)),
            kinds: lock(&self.kinds).0.clone(),
            reconnected,
            reconnect_max_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_carry_deltas_and_histograms_merge_exactly() {
        let stats = Stats::default();
        stats.add(Count::Delivered, 3);
        for us in [1_000, 2_000, 50_000] {
            stats.latency_us(us);
        }
        let t1 = stats.tick(1);
        stats.add(Count::Delivered, 2);
        let t2 = stats.tick(2);
        assert_eq!((t1.delta.delivered, t2.delta.delivered), (3, 2));
        let mut merged = histogram();
        t1.latency.merge_into(&mut merged);
        assert_eq!(merged.len(), 3);
        assert!(merged.max() >= 50_000 && merged.max() < 50_100);
        assert_eq!(stats.result().totals.delivered, 5);
    }
}
