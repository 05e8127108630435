//! The cluster store: PostgreSQL (or a Postgres-compatible engine) through one pool.
//!
//! Several storage processes may share the database: every seq is assigned by
//! `UPDATE conversations SET last_seq = last_seq + 1 ... RETURNING`, whose row lock is
//! held until commit, so concurrent writers to one conversation serialise on that row and
//! seqs stay gapless. Appends go through a few appender tasks (one per sender shard)
//! that commit each group in one statement (`append.rs`); each batch locks conversation
//! rows in ascending id order, so concurrent batches cannot deadlock. The words of new
//! messages reach the prefix dictionary later, from a background task
//! (`search_words.rs`), which also merges the search index's pending list off the append
//! path (`search_pending.rs`). The rest of the SQL is shared with SQLite (see the crate docs).

// The SQL shared with SQLite, compiled for PostgreSQL (appends have their own, set-based
// version: `append.rs`).
crate::backend::sql_queries!(
    sqlx::postgres::PgConnection,
    sqlx::postgres::PgPool,
    sqlx::postgres::PgRow,
    "search_postgres.rs"
);

mod append;
#[cfg(test)]
mod partitions;
mod search_pending;
mod search_words;
#[cfg(test)]
mod search_words_tests;

pub use search_words::SearchWordsConfig;

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use switchboard_protocol::{Conversation, Message, PresenceStatus};

use crate::appender::{Appenders, Pipeline};
use crate::{Appended, HistoryPage, NewMessage, NewUser, Result, StoreError, User};

/// Appender tasks (each with its share of the senders); each holds a connection per
/// batch it commits ([`PIPELINE`]). One: a batch's cost is mostly per batch, not per
/// message (see `appender.rs`), so more appenders would only split the load into
/// smaller, costlier batches; one commits hundreds of messages a millisecond. (Two,
/// each with its half of the conversations, cost PostgreSQL 10-15% more CPU per message
/// than one at 3,000 msg/s: docs/benchmarks.md, "One batch committing at a time".)
const APPENDERS: usize = 1;
/// How the appender batches (see `appender.rs`): by default one batch commits at a time
/// and the next gathers meanwhile. [`PgOptions::commit_pipeline`] lets more commit at
/// once (each on its own connection; they lock their conversations in id order, and one
/// sender's appends never commit in two at once), but two batches in flight wait on each
/// other's conversation locks: under load each commit took three times as long and the
/// cluster fell behind (docs/benchmarks.md, "One batch committing at a time").
const PIPELINE: Pipeline = Pipeline { depth: 1, linger: Duration::from_millis(1), linger_until: 8 };

/// Tuning of a [`PgStore`] (`switchboard storage` flags).
#[derive(Clone, Copy, Debug)]
pub struct PgOptions {
    /// Batches of appends committing at once (at least one). One commits a batch at a
    /// time: larger batches, fewer commits per message; more let the next batch start
    /// while the last one's commit waits for the disk.
    pub commit_pipeline: usize,
    /// How the dictionary harvester paces itself.
    pub search_words: SearchWordsConfig,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self { commit_pipeline: PIPELINE.depth, search_words: SearchWordsConfig::default() }
    }
}

pub struct PgStore {
    pool: PgPool,
    appenders: Appenders,
    search_words: SearchWordsConfig,
    /// Dropped with the store, which stops the dictionary harvester.
    _stop_harvester: tokio::sync::oneshot::Sender<()>,
}

impl PgStore {
    /// Nothing to wait for: PostgreSQL indexes a message in the append's transaction.
    async fn search_ready(&self) -> Result<()> {
        Ok(())
    }

    /// Connects to `url`, applies migrations and starts the appenders and the dictionary
    /// harvester. Must be called inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// [`PgStore::connect`] with other options than the defaults.
    pub async fn connect_with(url: &str, options: PgOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Self::with_pool_and(pool, options).await
    }

    /// Uses an existing pool (tests point one at their own database).
    pub async fn with_pool(pool: PgPool) -> Result<Self> {
        Self::with_pool_and(pool, PgOptions::default()).await
    }

    async fn with_pool_and(pool: PgPool, options: PgOptions) -> Result<Self> {
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let batch_pool = pool.clone();
        let pipeline = Pipeline { depth: options.commit_pipeline.max(1), ..PIPELINE };
        let appenders = Appenders::spawn(APPENDERS, pipeline, move |batch| {
            let pool = batch_pool.clone();
            Box::pin(async move { append::commit_batch(&pool, &batch).await })
        });
        let search_words = options.search_words;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(search_words::run(pool.clone(), search_words, async move {
            let _ = stopped.await;
        }));
        Ok(Self { pool, appenders, search_words, _stop_harvester: stop })
    }

    /// Adds the words of every message committed before the call to the prefix
    /// dictionary now, instead of at the harvester's next round (waiting for another
    /// harvester's round first); returns how many words were new. For tests and tools
    /// that prefix-search right after writing.
    pub async fn harvest_search_words(&self) -> Result<u64> {
        search_words::harvest(&self.pool, &self.search_words, true).await
    }
}

crate::backend::sql_store!(PgStore, read = pool, write = pool, append = appenders);
