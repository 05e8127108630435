//! The retention job: applies retention policies (and legal holds) by deleting old
//! messages in short transactions, so it never holds the database for long.
//!
//! It runs where the data is: in `switchboard storage` (one per cluster: every storage
//! replica may run it, and two sweeps deleting the same rows only find less to do) and
//! in the embedded server, never in a gateway. The policies, holds and deletes are the
//! [`Store`]'s; this module only paces them.
//!
//! Pacing is by time, not rows: each transaction deletes until a time budget of work
//! passed inside it (`--retention-budget-ms`, 1 ms), then commits; after it the job
//! rests long enough that it holds the database at most `--retention-share-percent` of
//! the time. A row count alone let one transaction of many messages with big search
//! entries hold SQLite's single writer for tens of ms (docs/benchmarks.md).
//!
//! After each sweep it empties the attachment trash (the objects of attachments whose
//! messages it deleted): each object is deleted from the [`Blobs`], then its key is
//! forgotten, so a crash in between only means deleting an object that is already gone.
//! Then it deletes orphans: objects no attachment row or trash entry names, older than a
//! grace period (an upload whose message was never stored: the server stopped between
//! the two, or the store failed and the gateway could not tell whether the row was
//! committed). A process with no attachment store configured leaves both to one that has.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::attachments::Blobs;
use crate::metrics::APPENDERS;
use crate::{Result, Store, now_ms};

/// How the job paces itself.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Time between two sweeps (a sweep goes through every conversation a policy
    /// applies to). Zero turns the job off.
    pub interval: Duration,
    /// Most messages deleted per transaction (and per `pause`, see there). The time
    /// budget usually ends a transaction first; this bounds it on a fast disk.
    pub batch: u32,
    /// Work per transaction: it commits once this much time passed inside it (the last
    /// statement finishes first; statements are sized to fit). Bounds how long appends
    /// wait for SQLite's writer (or for PostgreSQL's row locks) behind a delete. Zero: no
    /// time limit, `batch` messages per transaction.
    pub budget: Duration,
    /// Most of the time the job holds the database, in percent (1 to 100): after each
    /// transaction it rests `took * (100 - share) / share` (at the default 25,
    /// three times as long as the transaction took; at 50, as long), whatever the disk's
    /// speed. 100: no rest.
    pub share_percent: u32,
    /// Also a rest of at least this long after every `batch` messages deleted (counted
    /// across conversations, so a history of many small conversations is paced like one
    /// long one): caps the deletion rate (at the defaults, 1,000 messages a second). The
    /// share alone does not bound what a delete costs outside the transaction: its pages
    /// go to disk with the appends' commits, which then wait longer for their fsync.
    pub pause: Duration,
    /// Attachment objects that no row names are deleted once they are this old (an
    /// upload completes moments before its row is committed). Zero: never (the bucket is
    /// shared with something else).
    pub orphan_grace: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            batch: 1000,
            budget: Duration::from_millis(1),
            share_percent: 25,
            pause: Duration::from_millis(1000),
            orphan_grace: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetentionConfig {
    /// The rest after a transaction that held the database for `took`.
    fn rest_after(&self, took: Duration) -> Duration {
        rest_for_share(took, self.share_percent)
    }
}

/// The rest after work that took `took`, so that the work holds the database at most
/// `share_percent` (1 to 100) of the time. Also paces SQLite's search index merger.
pub(crate) fn rest_for_share(took: Duration, share_percent: u32) -> Duration {
    let share = share_percent.clamp(1, 100);
    took * (100 - share) / share
}

/// One sweep: deletes everything due now, a transaction at a time. Returns how many
/// messages went. Also counted in `switchboard_retention_messages_deleted_total`.
pub async fn sweep(store: &dyn Store, config: &RetentionConfig) -> Result<u64> {
    let batch = u64::from(config.batch.max(1));
    let (mut total, mut since_pause) = (0, 0);
    for (conversation, cutoff) in store.retention_targets(now_ms()).await? {
        loop {
            let started = std::time::Instant::now();
            let step =
                store.retention_delete(conversation, cutoff, config.batch, config.budget).await?;
            APPENDERS.retention_deleted.add(step.deleted);
            total += step.deleted;
            since_pause += step.deleted;
            let mut rest = Duration::ZERO;
            if step.deleted > 0 {
                rest = config.rest_after(started.elapsed());
            }
            if since_pause >= batch {
                since_pause = 0;
                rest = rest.max(config.pause);
            }
            if !rest.is_zero() {
                tokio::time::sleep(rest).await;
            }
            if step.done {
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

/// Deletes attachment objects older than `grace` that no attachment row or trash entry
/// names (see the module docs); returns how many. Only keys of the shape uploads get
/// ([`crate::attachments::is_upload_key`]) are considered. Listing the store is one
/// request per 1,000 objects on S3.
pub async fn delete_orphans(store: &dyn Store, blobs: &Blobs, grace: Duration) -> Result<u64> {
    let before = std::time::SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    let mut listed = std::pin::pin!(blobs.keys_older_than(before));
    let mut total = 0;
    let mut page = Vec::with_capacity(TRASH_BATCH as usize);
    let mut listed_all = false;
    while !listed_all {
        match listed.next().await {
            Some(Ok(key)) => {
                if crate::attachments::is_upload_key(&key) {
                    page.push(key);
                }
                if page.len() < TRASH_BATCH as usize {
                    continue;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "listing the attachment store failed");
                return Ok(total);
            }
            None => listed_all = true,
        }
        if page.is_empty() {
            continue;
        }
        let known: std::collections::HashSet<String> =
            store.known_attachment_keys(&page).await?.into_iter().collect();
        for key in page.drain(..).filter(|key| !known.contains(key)) {
            match blobs.delete(&key).await {
                Ok(()) => {
                    tracing::info!(key = %key, "deleted an attachment object no message carries");
                    total += 1;
                }
                Err(e) => tracing::warn!(key = %key, error = %e, "deleting an orphan failed"),
            }
        }
    }
    Ok(total)
}

/// Sweeps every `config.interval` (the first one shortly after start) until `shutdown`
/// resolves; after each sweep empties the attachment trash into `blobs` and deletes its
/// orphans. A failed sweep is logged
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
                if !config.orphan_grace.is_zero() {
                    match delete_orphans(store.as_ref(), blobs, config.orphan_grace).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deleted = n, "orphaned attachment objects deleted"),
                        Err(e) => tracing::warn!(error = %e, "the orphan sweep failed"),
                    }
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
