//! What the storage side measures: the group-commit appenders (in `switchboard storage`
//! and the embedded server) and the gateway's gRPC client of the storage service.
//! Written by [`encode_appenders`] and [`encode_client`]; see `docs/operations.md`.

use switchboard_telemetry::metrics::{BATCH_SIZES, Counter, Encoder, Gauge, Histogram, LATENCY_US};

/// The appenders (group commit).
pub struct Appenders {
    /// Messages in batches that committed (duplicates included: they were answered).
    pub appended: Counter,
    /// Batches whose commit failed (every message in them got `unavailable`).
    pub failed_batches: Counter,
    /// Time of one batch's commit (`append_batch` on PostgreSQL, a transaction on SQLite).
    pub commit: Histogram<14>,
    pub batch_size: Histogram<11>,
    /// From an append entering the queue to its answer: queue wait, linger and commit.
    pub append: Histogram<14>,
    /// Appends queued, not yet in a batch.
    pub queued: Gauge,
    /// Messages deleted by the retention job (which runs where the appenders run).
    pub retention_deleted: Counter,
}

pub static APPENDERS: Appenders = Appenders {
    appended: Counter::new(),
    failed_batches: Counter::new(),
    commit: Histogram::seconds(LATENCY_US),
    batch_size: Histogram::sizes(BATCH_SIZES),
    append: Histogram::seconds(LATENCY_US),
    queued: Gauge::new(),
    retention_deleted: Counter::new(),
};

pub fn encode_appenders(e: &mut Encoder) {
    let m = &APPENDERS;
    e.counter(
        "switchboard_storage_messages_appended_total",
        "Messages answered by a committed append batch.",
        &m.appended,
    );
    e.counter(
        "switchboard_storage_append_batch_failures_total",
        "Append batches whose commit failed.",
        &m.failed_batches,
    );
    e.histogram(
        "switchboard_storage_commit_duration_seconds",
        "Time to commit one append batch.",
        &m.commit,
    );
    e.histogram(
        "switchboard_storage_append_batch_size",
        "Messages per committed batch.",
        &m.batch_size,
    );
    e.histogram(
        "switchboard_storage_append_duration_seconds",
        "Time from an append entering the queue to its answer.",
        &m.append,
    );
    e.gauge("switchboard_storage_append_queue_depth", "Appends waiting for a batch.", &m.queued);
    e.counter(
        "switchboard_retention_messages_deleted_total",
        "Messages deleted by the retention job.",
        &m.retention_deleted,
    );
}

/// The storage service's client, in a cluster gateway.
pub struct Client {
    /// Storage calls that failed with `unavailable` (transport errors, timeouts, storage
    /// down or draining).
    pub unavailable: Counter,
    /// One append, from the gateway's call to its answer (batching included).
    pub append: Histogram<14>,
    /// Appends per `AppendMany` call.
    pub batch_size: Histogram<11>,
}

pub static CLIENT: Client = Client {
    unavailable: Counter::new(),
    append: Histogram::seconds(LATENCY_US),
    batch_size: Histogram::sizes(BATCH_SIZES),
};

pub fn encode_client(e: &mut Encoder) {
    let m = &CLIENT;
    e.counter(
        "switchboard_gateway_storage_unavailable_total",
        "Storage calls that failed as unavailable (retryable).",
        &m.unavailable,
    );
    e.histogram(
        "switchboard_gateway_storage_append_duration_seconds",
        "One append through the storage service, batching included.",
        &m.append,
    );
    e.histogram(
        "switchboard_gateway_storage_append_batch_size",
        "Appends per AppendMany call.",
        &m.batch_size,
    );
}

/// `/metrics` of `switchboard storage`.
pub fn render_service() -> String {
    let mut e = Encoder::new();
    encode_appenders(&mut e);
    switchboard_telemetry::grpc::encode(&mut e);
    e.gauge("switchboard_storage_draining", "1 while the service drains.", &DRAINING);
    e.process();
    e.finish()
}

/// 1 while `switchboard storage` drains.
pub static DRAINING: Gauge = Gauge::new();
