//! `report.html`: one self-contained page (inline SVG and CSS, nothing fetched) with the
//! summary, latency percentiles over time, throughput over time, the latency histogram and
//! the connection ramp.

use std::fmt::Write;

use crate::report::{Point, Summary};

const W: f64 = 860.0;
const H: f64 = 260.0;
const PAD_L: f64 = 64.0;
const PAD_R: f64 = 16.0;
const PAD_T: f64 = 16.0;
const PAD_B: f64 = 36.0;
const COLORS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#d62728", "#2ca02c"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A rounded axis maximum: 1, 2 or 5 times a power of ten.
fn nice(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|v| *v >= max).unwrap_or(10.0 * p)
}

/// A line chart of several series over the same x values.
fn lines(title: &str, unit: &str, xs: &[f64], series: &[(&str, Vec<f64>)]) -> String {
    let xmax = xs.iter().copied().fold(1.0, f64::max);
    let ymax = nice(series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max));
    let px = |x: f64| PAD_L + (W - PAD_L - PAD_R) * x / xmax;
    let py = |y: f64| H - PAD_B - (H - PAD_T - PAD_B) * y / ymax;
    let mut svg = frame(title);
    axes(&mut svg, ymax, unit, xmax, "seconds");
    for (i, (name, values)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> =
            xs.iter().zip(values).map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}" font-size="12">{}</text>"#,
            PAD_L + 10.0 + 110.0 * i as f64,
            PAD_T + 2.0,
            PAD_L + 24.0 + 110.0 * i as f64,
            PAD_T + 11.0,
            esc(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn frame(title: &str) -> String {
    format!(
        r#"<h2>{}</h2><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">"#,
        esc(title)
    )
}

fn axes(svg: &mut String, ymax: f64, unit: &str, xmax: f64, xunit: &str) {
    let (x0, x1, y0, y1) = (PAD_L, W - PAD_R, H - PAD_B, PAD_T);
    let _ = write!(
        svg,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>"##
    );
    for k in 0..=4 {
        let v = ymax * f64::from(k) / 4.0;
        let y = y0 - (y0 - y1) * f64::from(k) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            y + 4.0,
            fmt_num(v)
        );
        let x = x0 + (x1 - x0) * f64::from(k) / 4.0;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
            y0 + 14.0,
            fmt_num(xmax * f64::from(k) / 4.0)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text><text x="12" y="{}" font-size="11" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        H - 6.0,
        esc(xunit),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(unit)
    );
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == v.round() { format!("{v:.0}") } else { format!("{v:.2}") }
}

/// Bars of the latency histogram, one per log-spaced bucket.
fn bars(title: &str, buckets: &[(f64, u64)]) -> String {
    let mut svg = frame(title);
    let ymax = nice(buckets.iter().map(|b| b.1 as f64).fold(0.0, f64::max));
    axes_y_only(&mut svg, ymax);
    let n = buckets.len().max(1) as f64;
    let bw = (W - PAD_L - PAD_R) / n;
    for (i, (upper, count)) in buckets.iter().enumerate() {
        let h = (H - PAD_T - PAD_B) * (*count as f64) / ymax;
        let x = PAD_L + bw * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>≤ {upper} ms: {count}</title></rect>"#,
            x + 1.0,
            H - PAD_B - h,
            (bw - 2.0).max(1.0),
            COLORS[0]
        );
        if i % 2 == 0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
                x + bw / 2.0,
                H - PAD_B + 14.0,
                fmt_num(*upper)
            );
        }
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">latency bucket upper bound (ms, log scale)</text></svg>"#,
        (W + PAD_L) / 2.0,
        H - 6.0
    );
    svg
}

fn axes_y_only(svg: &mut String, ymax: f64) {
    let (x0, x1, y0, y1) = (PAD_L, W - PAD_R, H - PAD_B, PAD_T);
    let _ = write!(svg, r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>"##);
    for k in 0..=4 {
        let y = y0 - (y0 - y1) * f64::from(k) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            y + 4.0,
            fmt_num(ymax * f64::from(k) / 4.0)
        );
    }
}

pub fn render(s: &Summary) -> String {
    let pts: &[Point] = &s.series;
    let xs: Vec<f64> = pts.iter().map(|p| p.t as f64).collect();
    let col = |f: fn(&Point) -> f64| pts.iter().map(f).collect::<Vec<f64>>();
    let c = &s.totals;
    let verdict = if s.passed {
        "<span class=ok>PASSED</span>".to_string()
    } else {
        format!("<span class=bad>FAILED</span>: {}", esc(&s.violations.join("; ")))
    };
    let rows = [
        (
            "Scenario",
            format!(
                "{} ({}), {} users, {} s, rate {} msg/s",
                s.scenario, s.kind, s.users, s.duration_secs, s.rate
            ),
        ),
        ("Gateways / workers", format!("{} / {}", s.gateways.join(", "), s.workers)),
        (
            "Connections",
            format!(
                "{} made, peak {} open, {} failed; connect p50 {} ms, p99 {} ms",
                c.connects,
                s.peak_connected,
                c.connect_failures,
                s.connect_p50_ms,
                s.connect_p99_ms
            ),
        ),
        (
            "Sent / acked",
            format!(
                "{} / {} ({:.0} msg/s); ack p50 {} ms, p99 {} ms",
                c.sent, c.acked, s.sent_per_s, s.ack_p50_ms, s.ack_p99_ms
            ),
        ),
        (
            "Delivered",
            format!("{} ({:.0}/s), {} from backfill", c.delivered, s.delivered_per_s, c.backfilled),
        ),
        (
            "End-to-end latency",
            format!(
                "p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
                s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
            ),
        ),
        (
            "Lost / duplicated / out of order",
            format!("{} / {} / {}", c.lost, c.duplicated, c.out_of_order),
        ),
        (
            "Errors",
            format!(
                "{} {}",
                c.errors,
                s.kinds.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
            ),
        ),
        ("Limits", if s.limits.is_empty() { "none hit".into() } else { s.limits.join("; ") }),
    ];
    let mut table = String::new();
    for (k, v) in rows {
        let _ = write!(table, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    let _ = write!(table, "<tr><th>Thresholds</th><td>{verdict}</td></tr>");
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Switchboard load test: {title}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}th,td{{text-align:left;padding:3px 10px;border-bottom:1px solid #ddd;vertical-align:top}}.ok{{color:#2a2;font-weight:bold}}.bad{{color:#c22;font-weight:bold}}h2{{font-size:1.1em;margin-top:1.6em}}</style></head>
<body><h1>Switchboard load test: {title}</h1><p>{desc}</p><table>{table}</table>
{lat}{tput}{hist}{conn}
<p style="font-size:.8em;color:#777">Latency is end to end: the sender's send time (carried in the message body) to the receiver's receipt, recorded in an HDR histogram. Generated by switchboard-loadtest.</p></body></html>
"#,
        title = esc(&s.scenario),
        desc = esc(&s.description),
        lat = lines(
            "Latency percentiles over time",
            "ms",
            &xs,
            &[
                ("p50", col(|p| p.p50_ms)),
                ("p90", col(|p| p.p90_ms)),
                ("p99", col(|p| p.p99_ms)),
                ("max", col(|p| p.max_ms))
            ]
        ),
        tput = lines(
            "Throughput over time",
            "messages per second",
            &xs,
            &[("sent", col(|p| p.sent as f64)), ("delivered", col(|p| p.delivered as f64))]
        ),
        hist = bars("End-to-end latency histogram", &s.latency_histogram),
        conn = lines(
            "Connection ramp",
            "connections",
            &xs,
            &[
                ("open", col(|p| p.connected as f64)),
                ("new per second", col(|p| p.connects as f64))
            ]
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.2), 5.0);
        assert_eq!(nice(120.0), 200.0);
        assert_eq!(esc("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
