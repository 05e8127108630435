//! What a gateway measures, and its `/metrics` page (which adds, in a cluster, the
//! storage client, the router links and Redis; in the embedded server, the appenders).
//! Counting is a relaxed atomic add; labels are frame types, never users.

use std::time::{SystemTime, UNIX_EPOCH};

use switchboard_telemetry::metrics::{Counter, CounterVec, Encoder, Gauge, Histogram, LATENCY_US};

use crate::Gateway;

/// Client frame types (`type` of a WebSocket text frame a client sent).
const CLIENT_FRAMES: [&str; 23] = [
    "auth",
    "sync",
    "send",
    "open_direct",
    "create_group",
    "add_members",
    "remove_member",
    "list_conversations",
    "history",
    "thread",
    "typing",
    "read",
    "set_presence",
    "watch",
    "unwatch",
    "ping",
    "search_users",
    "edit",
    "delete",
    "react",
    "unreact",
    "search",
    "ack_broadcast",
];

/// Server frame types.
const SERVER_FRAMES: [&str; 18] = [
    "welcome",
    "ack",
    "message",
    "conversation",
    "conversations",
    "history",
    "thread",
    "synced",
    "typing",
    "read",
    "presence",
    "presence_list",
    "ok",
    "pong",
    "users",
    "search_results",
    "broadcast",
    "error",
];

pub(crate) struct Metrics {
    /// WebSocket connections accepted (before sign-in).
    pub connections: Counter,
    /// Connections closed because sign-in failed.
    pub sign_in_failures: Counter,
    /// Sign-ins refused (`unavailable`, with `retry_after_ms`) because too many were
    /// under way or waiting (see `admission.rs`); part of `sign_in_failures`.
    pub sign_ins_refused: Counter,
    pub frames_in: CounterVec<23>,
    pub frames_out: CounterVec<18>,
    /// Messages stored from this gateway (not counting retries answered as duplicates).
    pub sent: Counter,
    /// Sends answered as duplicates of a stored message (client retries).
    pub duplicates: Counter,
    /// Message frames written to sessions (live and backfilled).
    pub delivered: Counter,
    /// A send, from the request to the ack (checks, append, local fan-out).
    pub send: Histogram<14>,
    /// From the origin gateway handing a committed message out to a session's socket,
    /// here (live deliveries only).
    pub delivery: Histogram<14>,
    pub slow_consumers: Counter,
    /// Gaps in a session's live delivery read from storage (a live message went missing
    /// or stayed overtaken longer than `reorder::WAIT`).
    pub gaps_filled: Counter,
    /// Sessions told to reconnect elsewhere because this gateway drains.
    pub drained_sessions: Counter,
    pub draining: Gauge,
    /// Audit entries logged but not stored (queue full, or storage refused them).
    pub audit_write_failures: Counter,
}

pub(crate) static METRICS: Metrics = Metrics {
    connections: Counter::new(),
    sign_in_failures: Counter::new(),
    sign_ins_refused: Counter::new(),
    frames_in: CounterVec::new(CLIENT_FRAMES),
    frames_out: CounterVec::new(SERVER_FRAMES),
    sent: Counter::new(),
    duplicates: Counter::new(),
    delivered: Counter::new(),
    send: Histogram::seconds(LATENCY_US),
    delivery: Histogram::seconds(LATENCY_US),
    slow_consumers: Counter::new(),
    gaps_filled: Counter::new(),
    drained_sessions: Counter::new(),
    draining: Gauge::new(),
    audit_write_failures: Counter::new(),
};

/// The `type` of a JSON frame (`"other"` when there is none), without parsing it: the
/// first `"type"` key's string value. A JSON string cannot hold an unescaped `"`, so
/// the key cannot be matched inside a value.
pub(crate) fn frame_type(json: &str) -> &str {
    let Some(at) = json.find("\"type\"") else { return "other" };
    let rest = json[at + 6..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else { return "other" };
    let Some(rest) = rest.trim_start().strip_prefix('"') else { return "other" };
    rest.find('"').map_or("other", |end| &rest[..end])
}

/// Now, in Unix microseconds (for delivery latency across processes).
pub(crate) fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Counts a live message written to a session that the origin gateway handed out at
/// `published_us` (0: unknown).
pub(crate) fn delivered_live(published_us: i64) {
    METRICS.delivered.inc();
    if published_us > 0 {
        let micros = (now_us() - published_us).max(0) as u64;
        METRICS.delivery.observe(micros);
    }
}

/// The `/metrics` page of this gateway's process.
pub(crate) fn render(gateway: &Gateway) -> String {
    let m = &METRICS;
    let mut e = Encoder::new();
    e.counter(
        "switchboard_gateway_connections_total",
        "WebSocket connections accepted.",
        &m.connections,
    );
    e.counter(
        "switchboard_gateway_sign_in_failures_total",
        "WebSocket connections closed because sign-in failed.",
        &m.sign_in_failures,
    );
    e.counter(
        "switchboard_gateway_sign_ins_refused_total",
        "WebSocket sign-ins refused as unavailable because too many were under way or waiting.",
        &m.sign_ins_refused,
    );
    e.gauge_value(
        "switchboard_gateway_sign_ins_waiting",
        "WebSocket sign-ins waiting for their turn to reach storage.",
        gateway.inner.sign_ins.waiting() as i64,
    );
    e.gauge_value(
        "switchboard_gateway_sessions",
        "Signed-in WebSocket sessions.",
        gateway.session_count() as i64,
    );
    e.counter_vec(
        "switchboard_gateway_frames_received_total",
        "WebSocket text frames received, by type.",
        "type",
        &m.frames_in,
    );
    e.counter_vec(
        "switchboard_gateway_frames_sent_total",
        "WebSocket text frames sent, by type.",
        "type",
        &m.frames_out,
    );
    e.counter(
        "switchboard_gateway_messages_sent_total",
        "Messages stored from this gateway.",
        &m.sent,
    );
    e.counter(
        "switchboard_gateway_messages_duplicate_total",
        "Sends answered as duplicates (retries of a stored message).",
        &m.duplicates,
    );
    e.counter(
        "switchboard_gateway_messages_delivered_total",
        "Message frames written to sessions, live and backfilled.",
        &m.delivered,
    );
    e.histogram(
        "switchboard_gateway_send_duration_seconds",
        "A send, from the request to the ack.",
        &m.send,
    );
    e.histogram(
        "switchboard_gateway_delivery_duration_seconds",
        "From the origin gateway handing a committed message out to a session's socket.",
        &m.delivery,
    );
    e.counter(
        "switchboard_gateway_slow_consumer_disconnects_total",
        "Sessions closed because their outbound queue overflowed.",
        &m.slow_consumers,
    );
    e.counter(
        "switchboard_gateway_delivery_gaps_filled_total",
        "Gaps in a session's live delivery filled from storage (messages lost on the way, \
         or overtaken for longer than the writer waits).",
        &m.gaps_filled,
    );
    e.counter(
        "switchboard_gateway_drained_sessions_total",
        "Sessions told to reconnect elsewhere because the gateway drained.",
        &m.drained_sessions,
    );
    e.gauge("switchboard_gateway_draining", "1 while the gateway drains.", &m.draining);
    e.counter(
        "switchboard_gateway_audit_write_failures_total",
        "Audit entries logged but not stored (see the `audit` error log lines).",
        &m.audit_write_failures,
    );
    if gateway.inner.router.is_some() {
        switchboard_storage::metrics::encode_client(&mut e);
        switchboard_router::metrics::encode_links(&mut e);
        switchboard_presence::metrics::encode(&mut e);
    } else {
        switchboard_storage::metrics::encode_appenders(&mut e);
    }
    e.process();
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::{CLIENT_FRAMES, frame_type};

    #[test]
    fn every_client_frame_type_has_its_own_counter() {
        for t in switchboard_protocol::ClientFrame::TYPES {
            assert!(CLIENT_FRAMES.contains(t), "add {t:?} to CLIENT_FRAMES");
        }
    }

    #[test]
    fn reads_the_frame_type_without_parsing() {
        assert_eq!(frame_type(r#"{"type":"ack","id":"1"}"#), "ack");
        assert_eq!(frame_type(r#"{"id":"1", "type" : "send","body":"x"}"#), "send");
        assert_eq!(frame_type(r#"{"body":"say \"type\":\"ping\"","type":"send"}"#), "send");
        assert_eq!(frame_type(r#"{"id":"1"}"#), "other");
        assert_eq!(frame_type("not json"), "other");
    }
}
