//! The embedded store: SQLite in WAL mode, one file in the data dir.
//!
//! Two pools: `reader` (several connections; WAL lets reads run beside the writer) and
//! `writer` (exactly one connection). Every write goes through `writer`, so our own
//! writers never contend for SQLite's single write lock; message appends additionally
//! go through one appender task, which commits them in groups. The SQL itself is shared
//! with PostgreSQL (see "One SQL text, two drivers" in the crate docs).
//!
//! The search index (FTS5) keeps every transaction's entries as a new segment and
//! merges segments as they pile up. FTS5 would do that merging inside whichever commit
//! added a segment, up to hundreds of pages at once, and every append queued behind that
//! commit would wait 50 to 150 ms (SQLite migration 0013). So the store runs a merger
//! task instead ([`merge_search_index`]): a few pages of merging per transaction, resting
//! between steps, like the retention job.
//!
//! Appends do not write the search index: indexing a message in the append's transaction
//! cost the single writer a fifth of its CPU and a new index segment per commit. An
//! append notes the message (SQLite migration 0014) and the indexer task
//! ([`index_messages`]) indexes what is noted every [`INDEX_EVERY`] in one transaction,
//! one segment for hundreds of messages. A search first indexes what is still noted
//! ([`SqliteStore::search_ready`]), so it sees every message stored before it.
//!
//! Commits write whole pages to the log (WAL); a checkpoint copies them into the
//! database file once the log holds [`LOG_PAGES_PER_CHECKPOINT`]. Busy pages (a
//! conversation's newest messages, its `last_seq`) are in the log many times over, and
//! a checkpoint copies each once, so checkpointing after 10,000 pages instead of
//! SQLite's 1,000 writes less to the disk and costs less per message (docs/benchmarks.md,
//! "What a message writes"). The checkpointer task ([`checkpoint_log`]) runs them beside
//! the writer, on a connection of its own, so that appends do not wait while thousands
//! of pages are copied and synced; the writer only copies the last few pages, which lets
//! the log start over.

// The SQL shared with PostgreSQL, compiled for SQLite.
crate::backend::sql_queries!(
    sqlx::sqlite::SqliteConnection,
    sqlx::sqlite::SqlitePool,
    sqlx::sqlite::SqliteRow,
    "append.rs",
    "search_sqlite.rs"
);

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use switchboard_protocol::{Conversation, Message, PresenceStatus};
use tokio::sync::oneshot;

use crate::appender::{Appenders, Pipeline};
use crate::{Appended, HistoryPage, NewMessage, NewUser, Result, StoreError, User};

/// What a commit of the embedded store, and so a message's ack, survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// A power loss: every commit waits for the disk to have the log (`synchronous=FULL`,
    /// an `fsync` per commit). The default.
    #[default]
    PowerLoss,
    /// A crash of the server process, not of the machine (`synchronous=NORMAL`): commits
    /// are written to the log without waiting for the disk, which syncs at checkpoints.
    /// After a power loss or an OS crash the last commits before it may be gone, acked
    /// messages with them, and their seqs are then given again to new messages. Where the
    /// disk's flushes stall (shared or throttled VM disks), acks no longer wait for them.
    Crash,
}

/// Pages of log (WAL) after which the checkpointer copies the log into the database file.
const LOG_PAGES_PER_CHECKPOINT: u32 = 10_000;

/// Name of the database file inside the data dir.
pub const DB_FILE: &str = "switchboard.db";

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    appender: Appenders,
    /// Dropping it stops the search index's merger.
    _merger: oneshot::Sender<()>,
    /// Dropping it stops the search indexer.
    _indexer: oneshot::Sender<()>,
    /// Dropping it stops the checkpointer.
    _checkpointer: oneshot::Sender<()>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database in `data_dir` and applies migrations,
    /// with commits that survive a power loss. Must be called inside a tokio runtime: it
    /// spawns the appender task.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with(data_dir, Durability::PowerLoss).await
    }

    /// [`SqliteStore::open`], with commits as durable as `durability` says.
    pub async fn open_with(data_dir: &Path, durability: Durability) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create data dir {}: {e}", data_dir.display()))
        })?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(data_dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL by default: a commit (and so an ack) survives power loss, not only a crash.
            .synchronous(match durability {
                Durability::PowerLoss => SqliteSynchronous::Full,
                Durability::Crash => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            // Another process (an admin command) may hold the write lock for a moment.
            .busy_timeout(Duration::from_secs(10))
            // No commit checkpoints: the checkpointer does (see the module docs).
            .pragma("wal_autocheckpoint", "0");
        forget_search_index_statistics(&options).await?;
        let writer =
            SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        let checkpointer =
            SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        // One appender: SQLite has one writer anyway.
        let pool = writer.clone();
        let pipeline = Pipeline { depth: 1, linger: Duration::from_millis(1), linger_until: 8 };
        let appender = Appenders::spawn(1, pipeline, move |batch| {
            let pool = pool.clone();
            Box::pin(async move { queries::commit_batch(&pool, &batch).await })
        });
        let (merger, stop) = oneshot::channel();
        tokio::spawn(merge_search_index(writer.clone(), stop));
        let (indexer, stop) = oneshot::channel();
        tokio::spawn(index_messages(reader.clone(), writer.clone(), stop));
        let (checkpoints, stop) = oneshot::channel();
        let log_index = data_dir.join(format!("{DB_FILE}-shm"));
        tokio::spawn(checkpoint_log(log_index, checkpointer, writer.clone(), stop));
        Ok(Self {
            reader,
            writer,
            appender,
            _merger: merger,
            _indexer: indexer,
            _checkpointer: checkpoints,
        })
    }

    /// Indexes the messages still noted for the search index, so that a search sees
    /// every message stored before it.
    async fn search_ready(&self) -> Result<()> {
        index_noted(&self.reader, &self.writer).await
    }

    /// Indexes every noted message, merges the search index into one segment (FTS5
    /// `optimize`) and then gathers the query planner's statistics (`ANALYZE`): for a
    /// database just filled in bulk, such as the search benchmark's seeder's, so that a
    /// server started on it has no indexing or merging to catch up on and plans its
    /// queries on what is there. Holds the writer for the merge (tens of seconds at a
    /// million messages).
    pub async fn settle_search_index(&self) -> Result<()> {
        index_noted(&self.reader, &self.writer).await?;
        sqlx::raw_sql("INSERT INTO message_search (message_search) VALUES ('optimize'); ANALYZE")
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

/// Drops the query planner's statistics (`sqlite_stat1`, `sqlite_stat4`, which only an
/// `ANALYZE` writes) for the search index's own tables, before the store's connections
/// open and load them. FTS5 reaches those tables by key alone, and statistics can only
/// mislead it: gathered while the index was small, they say its pages table
/// (`message_search_data`) holds a handful of rows, and SQLite then scans all of it for
/// each range of pages a merge step deletes, 40 ms a step at a million messages instead
/// of half a millisecond, with every append waiting (docs/benchmarks.md, "Statistics
/// gathered too early").
async fn forget_search_index_statistics(options: &SqliteConnectOptions) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = options.connect().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE name IN ('sqlite_stat1', 'sqlite_stat4')",
    )
    .fetch_all(&mut conn)
    .await?;
    for table in tables {
        sqlx::query(&format!("DELETE FROM {table} WHERE tbl GLOB 'message_search_*'"))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

/// Waits `rest`; whether `stop` resolved (the store was dropped) meanwhile.
async fn stopped_after(stop: &mut oneshot::Receiver<()>, rest: Duration) -> bool {
    tokio::select! {
        _ = stop => true,
        () = tokio::time::sleep(rest) => false,
    }
}

/// How often the indexer adds the messages noted since to the search index.
const INDEX_EVERY: Duration = Duration::from_millis(250);

/// Adds the messages appends noted to the search index every [`INDEX_EVERY`], until
/// `stop` resolves (the store is dropped).
async fn index_messages(reader: SqlitePool, writer: SqlitePool, mut stop: oneshot::Receiver<()>) {
    while !stopped_after(&mut stop, INDEX_EVERY).await {
        if let Err(e) = index_noted(&reader, &writer).await {
            tracing::warn!(error = %e, "indexing messages for search failed");
        }
    }
}

/// Most noted messages one indexing transaction takes: about 10 ms of the writer. A
/// backlog (a database filled in bulk, a server that stopped behind) is indexed in as
/// many transactions, so appends get the writer between them instead of waiting seconds.
const INDEX_CHUNK: i64 = 1000;

/// Indexes the messages noted in `message_search_pending` (those since deleted are
/// skipped, edited ones indexed as they are now) and clears the notes, [`INDEX_CHUNK`]
/// at a time, each chunk a transaction on the writer; nothing when no message is noted
/// (read on `reader`, so an idle store does not take the writer).
async fn index_noted(reader: &SqlitePool, writer: &SqlitePool) -> Result<()> {
    let noted: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM message_search_pending)")
        .fetch_one(reader)
        .await?;
    if !noted {
        return Ok(());
    }
    while index_chunk(writer).await? {}
    Ok(())
}

/// Indexes the [`INDEX_CHUNK`] lowest noted ids in one transaction; whether more remain.
async fn index_chunk(writer: &SqlitePool) -> Result<bool> {
    let mut timer = crate::slow::WriteTimer::start("search indexing");
    let mut tx = writer.begin().await?;
    timer.began();
    // The chunk's highest id, or every note when fewer remain.
    let last: Option<i64> =
        sqlx::query_scalar("SELECT id FROM message_search_pending ORDER BY id LIMIT 1 OFFSET ?")
            .bind(INDEX_CHUNK - 1)
            .fetch_optional(&mut *tx)
            .await?;
    let last = last.unwrap_or(i64::MAX);
    let indexed = sqlx::query(
        "INSERT INTO message_search (rowid, body, conv)
         SELECT p.id, m.body, 'c' || m.conversation_id
         FROM message_search_pending p
         JOIN messages m ON m.conversation_id = p.id >> 32 AND m.seq = p.id & 4294967295
         WHERE p.id <= ? AND m.deleted_at IS NULL
         ORDER BY p.id",
    )
    .bind(last)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("DELETE FROM message_search_pending WHERE id <= ?")
        .bind(last)
        .execute(&mut *tx)
        .await?;
    let more: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM message_search_pending)")
        .fetch_one(&mut *tx)
        .await?;
    timer.committing();
    tx.commit().await?;
    timer.done(usize::try_from(indexed).unwrap_or(usize::MAX));
    Ok(more)
}

/// Pages of the search index one merge step writes: about a millisecond of work.
const MERGE_PAGES: i64 = 8;
/// How long the merger waits before looking again when nothing needed merging.
const MERGE_IDLE: Duration = Duration::from_millis(250);
/// Most of the writer's time the merger takes, in percent (the retention job's default).
const MERGE_SHARE_PERCENT: u32 = 25;

/// Merges the search index's segments, [`MERGE_PAGES`] at a time, each step its own
/// transaction on the writer, until `stop` resolves (the store is dropped). FTS5's own
/// merging inside commits is off (migration 0013). After a step that did work it rests
/// so that it holds the writer at most [`MERGE_SHARE_PERCENT`] of the time, paced as the
/// retention job is; when nothing needed merging (FTS5 merges a level once 4 segments
/// are on it), [`MERGE_IDLE`].
async fn merge_search_index(writer: SqlitePool, mut stop: oneshot::Receiver<()>) {
    loop {
        let rest = match merge_step(&writer).await {
            Ok(Some(took)) => crate::retention::rest_for_share(took, MERGE_SHARE_PERCENT)
                .max(Duration::from_millis(1)),
            Ok(None) => MERGE_IDLE,
            Err(e) => {
                tracing::warn!(error = %e, "merging the search index failed");
                MERGE_IDLE * 4
            }
        };
        if stopped_after(&mut stop, rest).await {
            return;
        }
    }
}

/// One merge step; the time it held the writer when it did any work, `None` when there
/// was nothing to merge.
async fn merge_step(writer: &SqlitePool) -> Result<Option<Duration>> {
    let mut timer = crate::slow::WriteTimer::start("search index merge");
    let mut conn = writer.acquire().await?;
    timer.began();
    let started = std::time::Instant::now();
    let changes = "SELECT total_changes()";
    let before: i64 = sqlx::query_scalar(changes).fetch_one(&mut *conn).await?;
    sqlx::query("INSERT INTO message_search (message_search, rank) VALUES ('merge', $1)")
        .bind(MERGE_PAGES)
        .execute(&mut *conn)
        .await?;
    // The statement is its own transaction: its time includes the commit.
    timer.done(usize::try_from(MERGE_PAGES).unwrap_or(0));
    let after: i64 = sqlx::query_scalar(changes).fetch_one(&mut *conn).await?;
    // FTS5 counts 2 or more changes when the command merged anything.
    Ok((after - before >= 2).then(|| started.elapsed()))
}

/// How often the checkpointer looks at the log's length.
const CHECKPOINT_POLL: Duration = Duration::from_millis(20);
/// Pages of log still to copy at or below which the writer copies them itself.
const CHECKPOINT_FINISH: u32 = 256;

/// Keeps the log (WAL) short without making appends wait for a whole checkpoint, until
/// `stop` resolves (the store is dropped). Every [`CHECKPOINT_POLL`] it reads the log's
/// length from the WAL index (`log_index`, the `-shm` file); once that passes
/// [`LOG_PAGES_PER_CHECKPOINT`], it copies the log into the database file with
/// `PASSIVE` checkpoints on its own connection, which neither wait for the writer nor
/// stop it. Those never catch up with a writer that commits every few milliseconds,
/// and SQLite starts the log over only after a checkpoint has copied all of it; so once
/// at most [`CHECKPOINT_FINISH`] pages are left, one checkpoint on the writer copies
/// them (a millisecond or two), and the next commit starts the log over.
async fn checkpoint_log(
    log_index: std::path::PathBuf,
    own: SqlitePool,
    writer: SqlitePool,
    mut stop: oneshot::Receiver<()>,
) {
    let mut rest = CHECKPOINT_POLL;
    while !stopped_after(&mut stop, rest).await {
        rest = CHECKPOINT_POLL;
        let Some(log) = LogLength::read(&log_index) else { continue };
        if log.frames < LOG_PAGES_PER_CHECKPOINT || log.copied >= log.frames {
            continue;
        }
        let finish = log.frames - log.copied <= CHECKPOINT_FINISH;
        let done = if finish {
            let timer = crate::slow::WriteTimer::start("checkpoint");
            let done = checkpoint(&writer).await;
            timer.done(usize::try_from(log.frames - log.copied).unwrap_or(0));
            done
        } else {
            checkpoint(&own).await
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "checkpointing the log failed");
            rest = CHECKPOINT_POLL * 50;
        }
    }
}

/// A `PASSIVE` checkpoint on a connection of `pool`: copies what it can of the log
/// without waiting for anyone.
async fn checkpoint(pool: &SqlitePool) -> Result<()> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(pool).await?;
    Ok(())
}

/// The log's length and how much of it checkpoints have copied into the database file.
struct LogLength {
    /// Pages (frames) in the log: `mxFrame`, byte 16 of the WAL index's header.
    frames: u32,
    /// Of those, copied: `nBackfill`, byte 96 (after the header's two copies).
    copied: u32,
}

impl LogLength {
    /// Reads it from the WAL index (native byte order); `None` while there is none.
    fn read(log_index: &Path) -> Option<Self> {
        use std::io::Read;
        let mut header = [0u8; 100];
        std::fs::File::open(log_index).ok()?.read_exact(&mut header).ok()?;
        let word = |at: usize| header[at..at + 4].try_into().ok().map(u32::from_ne_bytes);
        Some(Self { frames: word(16)?, copied: word(96)? })
    }
}

crate::backend::sql_store!(SqliteStore, read = reader, write = writer, append = appender);
