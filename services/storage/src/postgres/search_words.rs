//! The dictionary harvester: adds the words of new messages to `search_words`, the
//! dictionary prefix searches expand from (`search_postgres.rs`), off the append path.
//!
//! Until migration 0015 triggers did this inside every `append_batch`, while the batch
//! held its conversations' row locks. Now a task of each [`super::PgStore`] does it every
//! [`SearchWordsConfig::interval`]: a prefix search sees a message's new words about that
//! much later (whole words are searchable at once: they are in the GIN index with the
//! row). Not here: the search itself, the index, SQLite (FTS5 needs no dictionary).
//!
//! A round is one transaction. It takes a transaction-scoped advisory lock, so of several
//! storage replicas on one database one harvests at a time (the others skip the round),
//! then one statement finds conversations whose `last_seq` passed their progress
//! (`search_words_progress`), reads those messages by primary key, inserts their distinct
//! words, sorted, `ON CONFLICT DO NOTHING`, and advances the progress. One statement has
//! one snapshot, and a message is committed with the `last_seq` that counts it, so
//! every message up to the `last_seq` the statement read is visible to it: progress never
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
#[derive(Debug, Clone)]
pub struct SearchWordsConfig {
    /// Time between rounds: how much later than a message a prefix search sees its new
    /// words. Zero turns the harvester off (another process on the database runs one:
    /// without any, prefixes never learn new words).
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

/// The step's statement: `$1` conversations at most, `$2` messages of each. Messages are
/// read per conversation, by primary key (`OFFSET 0` keeps the lateral subquery a
/// subquery: flattened, the planner may join the due conversations against a scan of
/// every partition of `messages`).
pub(crate) const HARVEST: &str = "
    WITH due AS MATERIALIZED (
        SELECT c.id, coalesce(p.seq, 0) AS done, c.last_seq
        FROM conversations c LEFT JOIN search_words_progress p ON p.conversation_id = c.id
        WHERE c.last_seq > coalesce(p.seq, 0)
        ORDER BY c.id
        LIMIT $1),
    step AS MATERIALIZED (
        SELECT id, done, least(last_seq, done + $2) AS upto, last_seq FROM due),
    added AS (
        INSERT INTO search_words (word)
        SELECT DISTINCT w.word
        FROM step s
        CROSS JOIN LATERAL (
            SELECT m.search FROM messages m
            WHERE m.conversation_id = s.id AND m.seq > s.done AND m.seq <= s.upto
              AND m.deleted_at IS NULL AND m.kind IN ('text', 'broadcast', 'system', 'edit')
            OFFSET 0
        ) m
        CROSS JOIN unnest(tsvector_to_array(m.search)) AS w(word)
        ORDER BY w.word
        ON CONFLICT DO NOTHING
        RETURNING word),
    advanced AS (
        INSERT INTO search_words_progress AS p (conversation_id, seq)
        SELECT id, upto FROM step
        ON CONFLICT (conversation_id) DO UPDATE SET seq = greatest(p.seq, excluded.seq))
    SELECT (SELECT count(*) FROM step) AS conversations,
           (SELECT count(*) FROM step WHERE upto < last_seq) AS unfinished,
           (SELECT count(*) FROM added) AS words";

/// One harvesting step inside `conn`'s open transaction, after taking the lock: waiting
/// for it (`wait`), or giving up at once if another harvester holds it (`None`). The
/// lock and the writes last until the caller's commit.
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
    let row = sqlx::query(HARVEST)
        .bind(i64::from(config.conversations.max(1)))
        .bind(i64::from(config.messages.max(1)))
        .fetch_one(&mut *conn)
        .await?;
    let conversations: i64 = row.try_get("conversations")?;
    let unfinished: i64 = row.try_get("unfinished")?;
    let words: i64 = row.try_get("words")?;
    let full = conversations >= i64::from(config.conversations.max(1));
    Ok(Some(Step {
        conversations: conversations as u64,
        words: words as u64,
        more: full || unfinished > 0,
    }))
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

/// Harvests every `config.interval` until `stop` resolves (the store is dropped). A
/// failed round is logged and tried again at the next interval.
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
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}
