//! The retention job: applies retention policies (and legal holds) by deleting old
//! messages in small transactions, so it never holds the database for long.
//!
//! It runs where the data is: in `switchboard storage` (one per cluster: every storage
//! replica may run it, and two sweeps deleting the same rows only find less to do) and
//! in the embedded server, never in a gateway. The policies, holds and deletes are the
//! [`Store`]'s; this module only paces them.
//!
//! After each sweep it empties the attachment trash (the objects of attachments whose
//! messages it deleted): each object is deleted from the [`Blobs`], then its key is
//! forgotten, so a crash in between only means deleting an object that is already gone.
//! A process with no attachment store configured leaves the trash for one that has.

use std::sync::Arc;
use std::time::Duration;

use crate::attachments::Blobs;
use crate::metrics::APPENDERS;
use crate::{Result, Store, now_ms};

/// How the job paces itself.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Time between two sweeps (a sweep goes through every conversation a policy
    /// applies to). Zero turns the job off.
    pub interval: Duration,
    /// Most messages deleted per transaction: bounds how long one delete holds locks
    /// (SQLite's single writer, PostgreSQL row locks) next to live traffic.
    pub batch: u32,
    /// Pause after every `batch` messages deleted (counted across conversations, so a
    /// history of many small conversations is paced like one long one), and after each
    /// transaction at least as long as it took: the job holds the writer (SQLite's, or
    /// PostgreSQL's row locks) at most half the time, whatever the disk's speed, so
    /// appends get it in between.
    pub pause: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(3600), batch: 1000, pause: Duration::from_millis(50) }
    }
}

/// One sweep: deletes everything due now, a batch at a time. Returns how many messages
/// went. Also counted in `switchboard_retention_messages_deleted_total`.
pub async fn sweep(store: &dyn Store, config: &RetentionConfig) -> Result<u64> {
    let batch = u64::from(config.batch.max(1));
    let (mut total, mut since_pause) = (0, 0);
    for (conversation, cutoff) in store.retention_targets(now_ms()).await? {
        loop {
            let started = std::time::Instant::now();
            let deleted = store.retention_delete(conversation, cutoff, config.batch).await?;
            APPENDERS.retention_deleted.add(deleted);
            total += deleted;
            since_pause += deleted;
            let mut pause = Duration::ZERO;
            if deleted > 0 {
                pause = started.elapsed();
            }
            if since_pause >= batch {
                since_pause = 0;
                pause = pause.max(config.pause);
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if deleted < batch {
                break;
            }
        }
    }
    Ok(total)
}

/// Deletes the objects of attachments retention removed (see the module docs); returns
/// how many. An object that cannot be deleted now stays in the trash for the next time.
pub async fn empty_trash(store: &dyn Store, blobs: &Blobs) -> Result<u64> {
    let mut total = 0;
    loop {
        let keys = store.attachment_trash(TRASH_BATCH).await?;
        let mut gone = Vec::with_capacity(keys.len());
        for key in keys.iter() {
            match blobs.delete(key).await {
                Ok(()) => gone.push(key.clone()),
                Err(e) => tracing::warn!(key = %key, error = %e, "deleting an attachment failed"),
            }
        }
        store.forget_attachment_trash(&gone).await?;
        total += gone.len() as u64;
        if gone.len() < keys.len() || keys.len() < TRASH_BATCH as usize {
            return Ok(total);
        }
    }
}

/// Trash keys handled per round trip.
const TRASH_BATCH: u32 = 500;

/// Sweeps every `config.interval` (the first one shortly after start) until `shutdown`
/// resolves, then empties the attachment trash into `blobs`. A failed sweep is logged
/// and tried again at the next interval.
pub async fn run(
    store: Arc<dyn Store>,
    config: RetentionConfig,
    blobs: Option<Blobs>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    if config.interval.is_zero() {
        return;
    }
    let work = async {
        // Let the server come up before the first sweep.
        tokio::time::sleep(Duration::from_secs(5).min(config.interval)).await;
        loop {
            match sweep(store.as_ref(), &config).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "retention sweep"),
                Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
            }
            if let Some(blobs) = &blobs {
                match empty_trash(store.as_ref(), blobs).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "attachments deleted by retention"),
                    Err(e) => tracing::warn!(error = %e, "emptying the attachment trash failed"),
                }
            }
            tokio::time::sleep(config.interval).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => {}
    }
}
