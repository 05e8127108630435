//! Prometheus metrics: counters, gauges and histograms that cost one or two relaxed
//! atomic adds on the hot path, and the text exposition format they are scraped in.
//!
//! Each service crate declares its metrics as one `static` struct of these (its
//! `metrics.rs`) and a function that writes them with an [`Encoder`]; `/metrics` of a
//! role calls the functions of the crates it runs. No registry, no locks, no allocation
//! when counting: labels are fixed at compile time ([`CounterVec`]), never per user.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonically increasing count (`*_total`).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (connections, queue depths, draining 0/1).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Self {
        Self(AtomicI64::new(0))
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters for a fixed set of label values (`type="ack"`, ...): `N` values known at
/// compile time, plus `other` for anything else.
#[derive(Debug)]
pub struct CounterVec<const N: usize> {
    values: [&'static str; N],
    counts: [Counter; N],
    other: Counter,
}

impl<const N: usize> CounterVec<N> {
    pub const fn new(values: [&'static str; N]) -> Self {
        Self { values, counts: [const { Counter::new() }; N], other: Counter::new() }
    }

    /// Counts one for `value` (`other` when it is not one of the known values).
    pub fn inc(&self, value: &str) {
        match self.values.iter().position(|v| *v == value) {
            Some(i) => self.counts[i].inc(),
            None => self.other.inc(),
        }
    }

    /// The count for `value` (`"other"` for the rest).
    pub fn get(&self, value: &str) -> u64 {
        match self.values.iter().position(|v| *v == value) {
            Some(i) => self.counts[i].get(),
            None => self.other.get(),
        }
    }
}

/// Bucket bounds for latencies, in microseconds: 100 us to 10 s.
pub const LATENCY_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    2_500_000, 10_000_000,
];
/// Bucket bounds for batch sizes: 1 to 1024.
pub const BATCH_SIZES: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// A histogram over integer observations with `N` upper bounds (cumulative buckets are
/// computed when scraped). Durations are observed in microseconds and exposed in
/// seconds (`scale` 1e-6); sizes are observed and exposed as they are (`scale` 1).
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: [u64; N],
    scale: f64,
    /// Observations per bucket, not cumulative; index N is above the last bound.
    buckets: [AtomicU64; N],
    above: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    /// A latency histogram (observe with [`Histogram::observe_duration`] or
    /// [`Histogram::since`]); exposed in seconds.
    pub const fn seconds(bounds_us: [u64; N]) -> Self {
        Self::new(bounds_us, 1e-6)
    }

    /// A histogram of counts (batch sizes); exposed as observed.
    pub const fn sizes(bounds: [u64; N]) -> Self {
        Self::new(bounds, 1.0)
    }

    const fn new(bounds: [u64; N], scale: f64) -> Self {
        Self {
            bounds,
            scale,
            buckets: [const { AtomicU64::new(0) }; N],
            above: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        match self.bounds.iter().position(|b| value <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.above.fetch_add(1, Ordering::Relaxed),
        };
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, duration: Duration) {
        self.observe(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    /// Observes the time elapsed since `start`.
    pub fn since(&self, start: Instant) {
        self.observe_duration(start.elapsed());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum::<u64>()
            + self.above.load(Ordering::Relaxed)
    }
}

/// Writes metrics in the Prometheus text exposition format (version 0.0.4).
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

/// The `Content-Type` of what [`Encoder`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn counter(&mut self, name: &str, help: &str, counter: &Counter) {
        self.counter_value(name, help, counter.get());
    }

    /// A counter whose value is kept elsewhere.
    pub fn counter_value(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, help, "counter");
        let _ = writeln!(self.out, "{name} {value}");
    }

    pub fn counter_vec<const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        counters: &CounterVec<N>,
    ) {
        self.header(name, help, "counter");
        for (value, counter) in counters.values.iter().zip(&counters.counts) {
            let _ = writeln!(self.out, "{name}{{{label}=\"{value}\"}} {}", counter.get());
        }
        let _ = writeln!(self.out, "{name}{{{label}=\"other\"}} {}", counters.other.get());
    }

    pub fn gauge(&mut self, name: &str, help: &str, gauge: &Gauge) {
        self.gauge_value(name, help, gauge.get());
    }

    /// A gauge read when scraped (a map's length, a queue's depth).
    pub fn gauge_value(&mut self, name: &str, help: &str, value: i64) {
        self.header(name, help, "gauge");
        let _ = writeln!(self.out, "{name} {value}");
    }

    pub fn histogram<const N: usize>(&mut self, name: &str, help: &str, h: &Histogram<N>) {
        self.header(name, help, "histogram");
        let mut cumulative = 0;
        for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = *bound as f64 * h.scale;
            let _ = writeln!(self.out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += h.above.load(Ordering::Relaxed);
        let _ = writeln!(self.out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = h.sum.load(Ordering::Relaxed) as f64 * h.scale;
        let _ = writeln!(self.out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }

    /// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
    /// `process_open_fds` and `process_start_time_seconds`, from `/proc` (Linux; nothing
    /// elsewhere).
    pub fn process(&mut self) {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return };
        let fields: Vec<&str> = rest.split(' ').collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        // Clock ticks and page size are 100 and 4096 on every Linux we run on.
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            self.header("process_cpu_seconds_total", "CPU time used, user and system.", "counter");
            let _ =
                writeln!(self.out, "process_cpu_seconds_total {}", (utime + stime) as f64 / 100.0);
        }
        if let Some(rss) = field(24) {
            self.gauge_value(
                "process_resident_memory_bytes",
                "Resident memory.",
                (rss * 4096) as i64,
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.gauge_value("process_open_fds", "Open file descriptors.", fds.count() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_scaled() {
        let h = Histogram::seconds([1_000, 10_000]);
        h.observe_duration(Duration::from_micros(500));
        h.observe_duration(Duration::from_micros(2_000));
        h.observe_duration(Duration::from_secs(1));
        let mut e = Encoder::new();
        e.histogram("x_seconds", "X.", &h);
        let text = e.finish();
        assert!(text.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.01\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_sum 1.0025\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"), "{text}");
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn counter_vec_counts_unknown_values_as_other() {
        let v = CounterVec::new(["send", "ping"]);
        v.inc("send");
        v.inc("send");
        v.inc("nonsense");
        let mut e = Encoder::new();
        e.counter_vec("frames_total", "Frames.", "type", &v);
        let text = e.finish();
        assert!(text.contains("frames_total{type=\"send\"} 2\n"), "{text}");
        assert!(text.contains("frames_total{type=\"ping\"} 0\n"), "{text}");
        assert!(text.contains("frames_total{type=\"other\"} 1\n"), "{text}");
        assert!(text.starts_with("# HELP frames_total Frames.\n# TYPE frames_total counter\n"));
    }
}
