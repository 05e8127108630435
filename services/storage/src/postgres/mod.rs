//! The cluster store: PostgreSQL (or a Postgres-compatible engine) through one pool.
//!
//! Several storage processes may share the database: every seq is assigned by
//! `UPDATE conversations SET last_seq = last_seq + 1 ... RETURNING`, whose row lock is
//! held until commit, so concurrent writers to one conversation serialise on that row and
//! seqs stay gapless. Appends go through a few appender tasks (one per sender shard)
//! that commit each group in one statement (`append.rs`); each batch locks conversation
//! rows in ascending id order, so concurrent batches cannot deadlock. The
//! rest of the SQL is shared with SQLite (see the crate docs).

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

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use switchboard_protocol::{Conversation, Message, PresenceStatus};

use crate::appender::{Appenders, Pipeline};
use crate::{Appended, HistoryPage, NewMessage, NewUser, Result, StoreError, User};

/// Appender tasks (each with its share of the senders); each holds a connection per
/// batch it commits ([`PIPELINE`]). One: a batch's cost is mostly per batch, not per
/// message (see `appender.rs`), so more appenders would only split the load into
/// smaller, costlier batches; one commits hundreds of messages a millisecond.
const APPENDERS: usize = 1;
/// How the appender batches (see `appender.rs`): two batches commit at once, so the next
/// one gathers while the last commits (each on its own connection; they lock their
/// conversations in id order, and one sender's appends never commit in two at once).
const PIPELINE: Pipeline = Pipeline { depth: 2, linger: Duration::from_millis(1), linger_until: 8 };

pub struct PgStore {
    pool: PgPool,
    appenders: Appenders,
}

impl PgStore {
    /// Connects to `url`, applies migrations and starts the appenders. Must be called
    /// inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Self::with_pool(pool).await
    }

    /// Uses an existing pool (tests point one at their own database).
    pub async fn with_pool(pool: PgPool) -> Result<Self> {
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let batch_pool = pool.clone();
        let appenders = Appenders::spawn(APPENDERS, PIPELINE, move |batch| {
            let pool = batch_pool.clone();
            Box::pin(async move { append::commit_batch(&pool, &batch).await })
        });
        Ok(Self { pool, appenders })
    }
}

crate::backend::sql_store!(PgStore, read = pool, write = pool, append = appenders);
