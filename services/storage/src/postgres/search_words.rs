//! The dictionary harvester: adds the words of new messages to `search_words`, the
//! dictionary prefix searches expand from (`search_postgres.rs`), off the append path.
//!
//! Until migration 0015 triggers did this inside every `append_batch`, while the batch
//! held its conversations' row locks. Now a task of each [`super::PgStore`] does it every
//! [`SearchWordsConfig::interval`]: a prefix search sees a message's new words about that
//! much later (whole words are searchable at once: they are in the GIN index with the
//! row). Not here: the search itself, the index, SQLite (FTS5 needs no dictionary).
//!
//! A round is a few short transactions (bounded by [`SearchWordsConfig::conversations`]
//! and [`SearchWordsConfig::messages`]; repeated while more is due). Each takes a
//! transaction-scoped advisory lock, so of several storage replicas on one database one
//! harvests at a time (the others skip the round), then finds conversations whose
//! `last_seq` passed their progress (`search_words_progress`), reads those messages by
//! primary key, inserts their distinct words, sorted, `ON CONFLICT DO NOTHING`, and
//! advances the progress. A message is committed with the `last_seq` that counts it, so
//! every message up to a `last_seq` read is visible to any later snapshot: progress never
//! passes a message whose words were not read. Rows are only read, never locked; the
//! dictionary and the progress are written by harvesters alone, so appends never wait
//! for one.
//!
//! Which rows give words: text, broadcast and system messages, and edit entries (an edit
//! is a new row carrying the new text, `sql/edits.rs`), unless deleted. Words are never
//! removed: one no message holds any more matches nothing.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};

use crate::Result;

/// How the harvester paces itself.
#[derive(Debug, Clone, Copy)]
pub struct SearchWordsConfig {
    /// Time between rounds: how much later than a message a prefix search sees its new
    /// words. Zero turns the harvester off (another process on the database runs one:
    /// without any, prefixes never learn new words), and with it the merging of the
    /// search index's pending list (`search_pending.rs`), which appends then do.
    pub interval: Duration,
    /// Most conversations one transaction harvests (a round repeats until none is left).
    pub conversations: u32,
    /// Most messages of one conversation one transaction reads (the rest in the next).
    pub messages: u32,
}

impl Default for SearchWordsConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(1), conversations: 1000, messages: 10_000 }
    }
}

/// The advisory lock (one per database) a harvesting transaction holds: "SBWORDS".
const LOCK: i64 = 0x53_42_57_4f_52_44_53;

/// What one transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Step {
    /// Conversations whose progress advanced.
    pub conversations: u64,
    /// Words new to the dictionary.
    pub words: u64,
    /// Whether more is due now (the bounds cut the step short).
    pub more: bool,
}

/// A conversation with messages to harvest: those with `done < seq <= upto`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Due {
    pub id: i64,
    pub done: i64,
    pub upto: i64,
}

/// The conversations whose `last_seq` passed their progress: `$1` at most, each up to
/// `$2` messages further (and whether it has more than that).
const DUE: &str = "
    SELECT c.id, coalesce(p.seq, 0) AS done, least(c.last_seq, coalesce(p.seq, 0) + $2) AS upto,
           c.last_seq > coalesce(p.seq, 0) + $2 AS more
    FROM conversations c LEFT JOIN search_words_progress p ON p.conversation_id = c.id
    WHERE c.last_seq > coalesce(p.seq, 0)
    ORDER BY c.id
    LIMIT $1";

/// Adds the words of the messages `$1` (a query, for `ts_stat`) reads, sorted as the
/// dictionary's index is, and advances the progress of conversations `$2` to seqs `$3`.
/// `ts_stat` gathers the distinct words of many vectors in one pass: ten times faster
/// than unnesting each vector and aggregating the rows.
const ADD: &str = "
    WITH added AS (
        INSERT INTO search_words (word)
        SELECT word FROM ts_stat($1) ORDER BY word COLLATE \"C\"
        ON CONFLICT DO NOTHING
        RETURNING 1),
    advanced AS (
        INSERT INTO search_words_progress AS p (conversation_id, seq)
        SELECT * FROM unnest($2::BIGINT[], $3::BIGINT[])
        ON CONFLICT (conversation_id) DO UPDATE SET seq = greatest(p.seq, excluded.seq))
    SELECT count(*) FROM added";

/// The query `ts_stat` runs: the searchable vectors of `due`'s messages, read per
/// conversation by primary key (`OFFSET 0` keeps the lateral subquery a subquery:
/// flattened, the planner may join the conversations against a scan of every partition
/// of `messages`). Numbers only, so writing them into the text is safe.
pub(crate) fn messages_sql(due: &[Due]) -> String {
    let rows: Vec<String> =
        due.iter().map(|d| format!("({}, {}, {})", d.id, d.done, d.upto)).collect();
    format!(
        "SELECT m.search FROM (VALUES {}) AS s(id, done, upto)
         CROSS JOIN LATERAL (
             SELECT m.search FROM messages m
             WHERE m.conversation_id = s.id AND m.seq > s.done AND m.seq <= s.upto
               AND m.deleted_at IS NULL AND m.kind IN ('text', 'broadcast', 'system', 'edit')
             OFFSET 0) m",
        rows.join(", ")
    )
}

/// One harvesting step inside `conn`'s open transaction, after taking the lock: waiting
/// for it (`wait`), or giving up at once if another harvester holds it (`None`). The
/// lock and the writes last until the caller's commit.
///
/// Two statements: the second reads messages up to the seqs the first saw as committed,
/// with a later snapshot, which sees them too (a message deleted in between is skipped,
/// as it should be).
pub(crate) async fn step_in(
    conn: &mut PgConnection,
    config: &SearchWordsConfig,
    wait: bool,
) -> Result<Option<Step>> {
    if wait {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK).execute(&mut *conn).await?;
    } else {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(LOCK)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(None);
        }
    }
    let limit = i64::from(config.conversations.max(1));
    let rows = sqlx::query(DUE)
        .bind(limit)
        .bind(i64::from(config.messages.max(1)))
        .fetch_all(&mut *conn)
        .await?;
    let mut due = Vec::with_capacity(rows.len());
    let mut more = rows.len() as i64 >= limit;
    for row in &rows {
        due.push(Due {
            id: row.try_get("id")?,
            done: row.try_get("done")?,
            upto: row.try_get("upto")?,
        });
        more |= row.try_get::<bool, _>("more")?;
    }
    if due.is_empty() {
        return Ok(Some(Step::default()));
    }
    let words: i64 = sqlx::query_scalar(ADD)
        .bind(messages_sql(&due))
        .bind(due.iter().map(|d| d.id).collect::<Vec<_>>())
        .bind(due.iter().map(|d| d.upto).collect::<Vec<_>>())
        .fetch_one(&mut *conn)
        .await?;
    Ok(Some(Step { conversations: due.len() as u64, words: words as u64, more }))
}

/// Harvests until nothing is due; returns the words added. With `wait`, waits for
/// another harvester's transaction and so sees everything committed before the call;
/// without, stops when another holds the lock.
pub(crate) async fn harvest(pool: &PgPool, config: &SearchWordsConfig, wait: bool) -> Result<u64> {
    let mut words = 0;
    loop {
        let mut tx = pool.begin().await?;
        let Some(step) = step_in(&mut tx, config, wait).await? else {
            return Ok(words);
        };
        tx.commit().await?;
        words += step.words;
        if !step.more {
            return Ok(words);
        }
    }
}

/// Harvests every `config.interval`, and merges the search index's pending list
/// (`search_pending.rs`), until `stop` resolves (the store is dropped). A failed round is
/// logged and tried again at the next interval.
pub(crate) async fn run(
    pool: PgPool,
    config: SearchWordsConfig,
    stop: impl std::future::Future<Output = ()>,
) {
    if config.interval.is_zero() {
        return;
    }
    let work = async {
        loop {
            tokio::time::sleep(config.interval).await;
            match harvest(&pool, &config, false).await {
                Ok(0) => {}
                Ok(words) => tracing::debug!(words, "search words harvested"),
                Err(e) => tracing::warn!(error = %e, "harvesting search words failed"),
            }
            match super::search_pending::merge(&pool).await {
                Ok(0) => {}
                Ok(pages) => tracing::debug!(pages, "search index pending list merged"),
                Err(e) => {
                    tracing::warn!(error = %e, "merging the search index's pending list failed")
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}
