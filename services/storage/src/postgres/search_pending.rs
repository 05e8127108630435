//! The search index's pending list, emptied off the append path.
//!
//! The GIN search index (`messages_search_by_time`, one per partition) takes new entries
//! into a pending list, cheap to append to, and merges that list into its tree once it
//! passes `gin_pending_list_limit` (4 MB: about 12,000 messages per partition). The merge
//! ran inside the `append_batch` that crossed the limit, 60-70 ms while that batch held
//! its conversations' locks, so every message in flight waited for it: under a steady
//! 5,000 msg/s, sixteen such stalls per 200,000 messages (docs/benchmarks.md, "The search
//! index's pending list"). Autovacuum, which also merges it, runs on an insert-only
//! table only after a fifth of the table again has been inserted.
//!
//! So each round of the store's background task (with the dictionary harvester,
//! `search_words.rs`) merges every partition's pending list with
//! `gin_clean_pending_list`: a second's worth of entries, a few milliseconds, never under
//! an append's locks. An append that finds a merge under way does not wait for it (it
//! leaves the merge to whoever holds the list). The merge needs the index's owner: the
//! role that ran the migrations, as the storage service does.

use sqlx::postgres::PgPool;

use crate::Result;

/// The search index's partitions (one per partition of `messages`).
const PARTITIONS: &str = "
    SELECT h.inhrelid::regclass::text FROM pg_inherits h
    WHERE h.inhparent = 'messages_search_by_time'::regclass
    ORDER BY 1";

/// Merges every search index partition's pending list into its tree, one partition per
/// statement (each a short transaction of its own); returns how many pending pages that
/// emptied.
pub(crate) async fn merge(pool: &PgPool) -> Result<i64> {
    let partitions: Vec<String> = sqlx::query_scalar(PARTITIONS).fetch_all(pool).await?;
    let mut pages = 0;
    for partition in partitions {
        let merged: i64 = sqlx::query_scalar("SELECT gin_clean_pending_list($1::regclass)")
            .bind(&partition)
            .fetch_one(pool)
            .await?;
        pages += merged;
    }
    Ok(pages)
}
