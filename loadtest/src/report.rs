//! The run's outcome: merges the workers' ticks and results into one [`Summary`] (written
//! as `result.json`), prints the progress line and the summary table, and checks the
//! scenario's thresholds.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::{Scenario, Thresholds};
use crate::stats::{Counters, Tick, WorkerResult, histogram};
use crate::target::limit_advice;

/// One second of the whole run (all workers merged).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    pub t: u64,
    pub connected: i64,
    pub connects: u64,
    pub sent: u64,
    pub delivered: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Merges per-second ticks from several workers.
#[derive(Default)]
pub struct Series {
    seconds: BTreeMap<u64, (usize, Tick, Histogram<u64>)>,
}

impl Series {
    /// Adds a worker's tick; returns the merged second when every worker has reported it.
    pub fn add(&mut self, tick: Tick, workers: usize) -> Option<Point> {
        let entry = self
            .seconds
            .entry(tick.second)
            .or_insert_with(|| (0, Tick { second: tick.second, ..Tick::default() }, histogram()));
        entry.0 += 1;
        entry.1.connected += tick.connected;
        entry.1.delta.add(&tick.delta);
        for (k, v) in tick.kinds {
            *entry.1.kinds.entry(k).or_default() += v;
        }
        tick.latency.merge_into(&mut entry.2);
        (entry.0 == workers).then(|| point(&entry.1, &entry.2))
    }

    pub fn points(&self) -> Vec<Point> {
        self.seconds.values().map(|(_, t, h)| point(t, h)).collect()
    }
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

fn point(t: &Tick, h: &Histogram<u64>) -> Point {
    let q = |q: f64| if h.is_empty() { 0.0 } else { ms(h.value_at_quantile(q)) };
    Point {
        t: t.second,
        connected: t.connected,
        connects: t.delta.connects,
        sent: t.delta.sent,
        delivered: t.delta.delivered,
        errors: t.delta.errors,
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p99_ms: q(0.99),
        max_ms: if h.is_empty() { 0.0 } else { ms(h.max()) },
    }
}

/// The progress line printed every second.
pub fn progress(p: &Point) -> String {
    format!(
        "[{:>5}s] connections {:>7} (+{}/s)  sent {:>7}/s  delivered {:>8}/s  p99 {:>8.2} ms  errors {}",
        p.t, p.connected, p.connects, p.sent, p.delivered, p.p99_ms, p.errors
    )
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub kind: &'static str,
    pub description: String,
    pub users: u32,
    pub duration_secs: u64,
    pub rate: f64,
    pub workers: usize,
    pub gateways: Vec<String>,
    pub started_at_unix_ms: u64,
    pub elapsed_secs: f64,
    #[serde(flatten)]
    pub totals: Counters,
    pub peak_connected: i64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub connect_p50_ms: f64,
    pub connect_p99_ms: f64,
    pub connect_max_ms: f64,
    /// Mean deliveries (and sends) per second over the traffic window.
    pub delivered_per_s: f64,
    pub sent_per_s: f64,
    /// Reconnect storm: clients back and synced, and the time until the last one was.
    pub reconnected: u64,
    pub reconnect_all_back_ms: f64,
    /// Counts of named events: protocol error codes, OS limits, close reasons.
    pub kinds: BTreeMap<String, u64>,
    /// OS or process limits that refused connections, explained.
    pub limits: Vec<String>,
    pub passed: bool,
    pub violations: Vec<String>,
    /// End-to-end latency distribution: (upper bound in ms, count) per bucket.
    pub latency_histogram: Vec<(f64, u64)>,
    pub series: Vec<Point>,
}

pub struct Meta {
    pub workers: usize,
    pub gateways: Vec<String>,
    pub started_at_unix_ms: u64,
    pub elapsed_secs: f64,
}

pub fn summarise(s: &Scenario, meta: Meta, results: &[WorkerResult], series: &Series) -> Summary {
    let mut totals = Counters::default();
    let (mut lat, mut ack, mut conn) = (histogram(), histogram(), histogram());
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let (mut reconnected, mut reconnect_max, mut peak) = (0, 0f64, 0);
    for r in results {
        totals.add(&r.totals);
        r.latency.merge_into(&mut lat);
        r.ack_latency.merge_into(&mut ack);
        r.connect_latency.merge_into(&mut conn);
        for (k, v) in &r.kinds {
            *kinds.entry(k.clone()).or_default() += v;
        }
        reconnected += r.reconnected;
        reconnect_max = reconnect_max.max(r.reconnect_max_ms);
        peak += r.peak_connected;
    }
    let q =
        |h: &Histogram<u64>, q: f64| if h.is_empty() { 0.0 } else { ms(h.value_at_quantile(q)) };
    let points = series.points();
    let window = |p: &&Point| {
        let t = p.t as f64;
        t > s.ramp_secs && t <= s.ramp_secs + s.duration_secs as f64 + 1.0
    };
    let in_window: Vec<&Point> = points.iter().filter(window).collect();
    let per_s = |f: fn(&Point) -> u64| {
        in_window.iter().map(|p| f(p)).sum::<u64>() as f64 / s.duration_secs.max(1) as f64
    };
    let limits = kinds
        .iter()
        .filter(|(k, _)| !limit_advice(k).is_empty())
        .map(|(k, v)| format!("{v} connection attempts failed with {k}: {}", limit_advice(k)))
        .collect();
    let mut summary = Summary {
        scenario: s.name.clone(),
        kind: s.kind.as_str(),
        description: s.description.clone(),
        users: s.users,
        duration_secs: s.duration_secs,
        rate: s.rate,
        workers: meta.workers,
        gateways: meta.gateways,
        started_at_unix_ms: meta.started_at_unix_ms,
        elapsed_secs: meta.elapsed_secs,
        totals,
        peak_connected: peak,
        p50_ms: q(&lat, 0.5),
        p90_ms: q(&lat, 0.9),
        p99_ms: q(&lat, 0.99),
        p999_ms: q(&lat, 0.999),
        max_ms: if lat.is_empty() { 0.0 } else { ms(lat.max()) },
        mean_ms: if lat.is_empty() { 0.0 } else { (lat.mean() / 1000.0 * 1000.0).round() / 1000.0 },
        ack_p50_ms: q(&ack, 0.5),
        ack_p99_ms: q(&ack, 0.99),
        connect_p50_ms: q(&conn, 0.5),
        connect_p99_ms: q(&conn, 0.99),
        connect_max_ms: if conn.is_empty() { 0.0 } else { ms(conn.max()) },
        delivered_per_s: per_s(|p| p.delivered),
        sent_per_s: per_s(|p| p.sent),
        reconnected,
        reconnect_all_back_ms: reconnect_max,
        kinds,
        limits,
        passed: true,
        violations: Vec::new(),
        latency_histogram: buckets(&lat),
        series: points,
    };
    summary.violations = check(&s.thresholds, &summary);
    summary.passed = summary.violations.is_empty();
    summary
}

/// Log-spaced buckets (4 per factor of 10) from 0.1 ms up to the maximum.
fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let mut lower_us = 0u64;
    let mut k = 0;
    loop {
        let upper_ms = 0.1 * 10f64.powf(f64::from(k) / 4.0);
        let upper_us = (upper_ms * 1000.0) as u64;
        let count = h.count_between(lower_us + 1, upper_us.max(lower_us + 1));
        out.push(((upper_ms * 1000.0).round() / 1000.0, count));
        if upper_us >= h.max() || k > 40 {
            break;
        }
        lower_us = upper_us;
        k += 1;
    }
    out
}

fn check(t: &Thresholds, s: &Summary) -> Vec<String> {
    let mut v = Vec::new();
    let mut over = |name: &str, limit: Option<f64>, value: f64| {
        if let Some(limit) = limit
            && value > limit
        {
            v.push(format!("{name} = {value} exceeds the threshold {limit}"));
        }
    };
    over("p50_ms", t.p50_ms, s.p50_ms);
    over("p99_ms", t.p99_ms, s.p99_ms);
    over("max_ms", t.max_ms, s.max_ms);
    over("lost", t.lost.map(|x| x as f64), s.totals.lost as f64);
    over("duplicated", t.duplicated.map(|x| x as f64), s.totals.duplicated as f64);
    over("out_of_order", t.out_of_order.map(|x| x as f64), s.totals.out_of_order as f64);
    over(
        "connect_failures",
        t.connect_failures.map(|x| x as f64),
        s.totals.connect_failures as f64,
    );
    over("errors", t.errors.map(|x| x as f64), s.totals.errors as f64);
    over("reconnect_all_back_ms", t.reconnect_all_back_ms, s.reconnect_all_back_ms);
    if let Some(min) = t.min_delivered
        && s.totals.delivered < min
    {
        v.push(format!("delivered = {} is below the threshold {min}", s.totals.delivered));
    }
    v
}

/// The table printed at the end.
pub fn table(s: &Summary) -> String {
    let c = &s.totals;
    let mut rows: Vec<(String, String)> = vec![
        (
            "scenario".into(),
            format!("{} ({}), {} users, {} workers", s.scenario, s.kind, s.users, s.workers),
        ),
        ("elapsed".into(), format!("{:.1} s", s.elapsed_secs)),
        (
            "connections".into(),
            format!(
                "{} made, peak {} open, {} failed",
                c.connects, s.peak_connected, c.connect_failures
            ),
        ),
        (
            "connect time".into(),
            format!(
                "p50 {} ms, p99 {} ms, max {} ms",
                s.connect_p50_ms, s.connect_p99_ms, s.connect_max_ms
            ),
        ),
        ("sent / acked".into(), format!("{} / {} ({:.0} msg/s)", c.sent, c.acked, s.sent_per_s)),
        (
            "delivered".into(),
            format!("{} ({:.0}/s), {} from backfill", c.delivered, s.delivered_per_s, c.backfilled),
        ),
        (
            "latency".into(),
            format!(
                "p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
                s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
            ),
        ),
        ("ack latency".into(), format!("p50 {} ms, p99 {} ms", s.ack_p50_ms, s.ack_p99_ms)),
        (
            "lost / duplicated / out of order".into(),
            format!("{} / {} / {}", c.lost, c.duplicated, c.out_of_order),
        ),
        ("unacked sends".into(), c.unacked.to_string()),
        ("errors".into(), c.errors.to_string()),
    ];
    if s.kind == "reconnect-storm" {
        rows.push((
            "reconnected".into(),
            format!("{} clients, all back in {:.0} ms", s.reconnected, s.reconnect_all_back_ms),
        ));
    }
    if !s.kinds.is_empty() {
        let kinds: Vec<String> = s.kinds.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(("events".into(), kinds.join(", ")));
    }
    for l in &s.limits {
        rows.push(("LIMIT".into(), l.clone()));
    }
    let verdict = if s.passed {
        "PASSED".to_string()
    } else {
        format!("FAILED: {}", s.violations.join("; "))
    };
    rows.push(("thresholds".into(), verdict));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("  {k:<width$}  {v}\n")).collect()
}
