//! The embedded store: SQLite in WAL mode, one file in the data dir.
//!
//! Two pools: `reader` (several connections; WAL lets reads run beside the writer) and
//! `writer` (exactly one connection). Every write goes through `writer`, so our own
//! writers never contend for SQLite's single write lock; message appends additionally
//! go through one appender task, which commits them in groups. The SQL itself is shared
//! with PostgreSQL (see "One SQL text, two drivers" in the crate docs).

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

use crate::appender::{Appenders, Pipeline};
use crate::{Appended, HistoryPage, NewMessage, NewUser, Result, StoreError, User};

/// Name of the database file inside the data dir.
pub const DB_FILE: &str = "switchboard.db";

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    appender: Appenders,
}

impl SqliteStore {
    /// Opens (creating when missing) the database in `data_dir` and applies migrations.
    /// Must be called inside a tokio runtime: it spawns the appender task.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create data dir {}: {e}", data_dir.display()))
        })?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(data_dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit (and so an ack) survives power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Another process (an admin command) may hold the write lock for a moment.
            .busy_timeout(Duration::from_secs(10));
        let writer =
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
        Ok(Self { reader, writer, appender })
    }
}

crate::backend::sql_store!(SqliteStore, read = reader, write = writer, append = appender);
