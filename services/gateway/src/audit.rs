//! The audit log: security-relevant events (sign-ins, sign-outs, admin actions, bots,
//! webhooks, broadcasts), stored through the `Store` and emitted at once as a structured
//! log line (target `audit`). Messages are never audited. The admin endpoint
//! `GET /api/v1/admin/audit` is here too; what each action means is in `docs/security.md`.
//!
//! Recording never waits for the database: [`AuditLog::record`] logs the event, then
//! queues it for a writer task that stores whatever is queued in one transaction. So an
//! audited request costs a log line and a channel send, and the message path records
//! nothing. A write that still fails after retries is logged at `error` (target `audit`)
//! and counted (`switchboard_gateway_audit_write_failures_total`); the action it records
//! has already happened and is not undone (`docs/security.md`, "When an audit write
//! fails"). The log line was written first, so the event is not lost from the logs.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use switchboard_protocol::ErrorCode;
use switchboard_protocol::rest::{AuditParams, AuditResponse};
use switchboard_storage::{AuditQuery, NewAuditEntry, Store, now_ms};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::METRICS;
use crate::rest::Caller;
use crate::{ApiError, Gateway};

/// Entries waiting for the writer, at most. Full (the database has been down for a
/// while): further entries are logged (they are in the log stream) but not stored.
const QUEUE: usize = 16_384;
/// Most entries stored in one transaction.
const BATCH: usize = 512;
/// Pauses between attempts to store a batch; after the last, the batch is given up.
const RETRIES: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];
/// Actor of events done by a local admin command on the server's own data.
pub const LOCAL_ACTOR: &str = "-";
/// Default and largest page of `GET /api/v1/admin/audit`.
const DEFAULT_PAGE: u32 = 100;

enum Job {
    Entry(NewAuditEntry),
    /// Answered once everything queued before it was stored (or given up).
    Flush(oneshot::Sender<()>),
}

/// The gateway's handle on the audit writer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditLog {
    queue: mpsc::Sender<Job>,
}

/// One event, as the operations that record it describe it.
pub struct Event<'a> {
    /// Who did it (a username; for a failed sign-in, the name that was tried).
    pub actor: &'a str,
    /// What happened, `area.verb` (`auth.login_failed`, `user.update`, ...).
    pub action: &'a str,
    /// What it was done to (a username, `conversation:12`, `webhook:3`, an org path).
    pub target: &'a str,
    /// The client's address; None for local commands.
    pub ip: Option<std::net::IpAddr>,
    /// Details in words (a failure's reason, the flags that changed).
    pub detail: &'a str,
}

impl AuditLog {
    /// Starts the writer task, which ends when every handle is dropped.
    pub(crate) fn spawn(store: std::sync::Arc<dyn Store>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, jobs));
        Self { queue }
    }

    /// Logs the event (target `audit`) and queues it to be stored. Never waits.
    pub(crate) fn record(&self, event: Event<'_>) {
        let Event { actor, action, target, ip, detail } = event;
        let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
        tracing::info!(target: "audit", actor, action, target, ip, detail, "audit");
        let entry = NewAuditEntry {
            ts: now_ms(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            ip,
            detail: detail.to_owned(),
        };
        if self.queue.try_send(Job::Entry(entry)).is_err() {
            METRICS.audit_write_failures.inc();
            tracing::error!(
                target: "audit",
                actor,
                action,
                "AUDIT ENTRY NOT STORED: the audit queue is full (storage down or too slow)"
            );
        }
    }

    /// Waits (at most a few seconds) until everything recorded before is stored or given
    /// up: an admin reading the log sees what they just did.
    pub(crate) async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.queue.send(Job::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), stored).await;
        }
    }
}

/// The writer: stores whatever is queued, in order, one transaction per batch.
async fn write(store: std::sync::Arc<dyn Store>, mut jobs: mpsc::Receiver<Job>) {
    let mut received = Vec::with_capacity(BATCH);
    let mut entries = Vec::with_capacity(BATCH);
    while jobs.recv_many(&mut received, BATCH).await > 0 {
        for job in received.drain(..) {
            match job {
                Job::Entry(entry) => entries.push(entry),
                Job::Flush(done) => {
                    store_batch(store.as_ref(), &mut entries).await;
                    let _ = done.send(());
                }
            }
        }
        store_batch(store.as_ref(), &mut entries).await;
    }
}

async fn store_batch(store: &dyn Store, entries: &mut Vec<NewAuditEntry>) {
    if entries.is_empty() {
        return;
    }
    let mut result = store.record_audit(entries).await;
    for pause in RETRIES {
        if result.is_ok() {
            break;
        }
        tokio::time::sleep(pause).await;
        result = store.record_audit(entries).await;
    }
    if let Err(e) = result {
        METRICS.audit_write_failures.add(entries.len() as u64);
        for entry in entries.iter() {
            tracing::error!(
                target: "audit",
                error = %e,
                actor = %entry.actor,
                action = %entry.action,
                target = %entry.target,
                ts = entry.ts,
                "AUDIT ENTRY NOT STORED: storage refused it"
            );
        }
    }
    entries.clear();
}

pub(crate) fn routes() -> Router<Gateway> {
    Router::new().route("/api/v1/admin/audit", get(audit_log))
}

/// `GET /api/v1/admin/audit`: admins only, newest first.
async fn audit_log(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Query(params): Query<AuditParams>,
) -> Result<Json<AuditResponse>, ApiError> {
    if !user.admin {
        return Err(ApiError::new(ErrorCode::Forbidden, "only admins may read the audit log"));
    }
    let limit = params.limit.unwrap_or(DEFAULT_PAGE).clamp(1, switchboard_storage::MAX_PAGE);
    gateway.inner.audit.flush().await;
    let query = AuditQuery {
        actor: params.actor.filter(|a| !a.is_empty()),
        action: params.action.filter(|a| !a.is_empty()),
        since: params.since,
        until: params.until,
        before: params.before,
        limit,
    };
    let entries = gateway.store().audit_log(&query).await?;
    let next_before =
        if entries.len() as u32 == limit { entries.last().map(|e| e.id) } else { None };
    Ok(Json(AuditResponse { entries, next_before }))
}
