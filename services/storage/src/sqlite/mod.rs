//! The embedded store: SQLite in WAL mode, one file in the data dir.
//!
//! Two pools: `reader` (several connections; WAL lets reads run beside the writer) and
//! `writer` (exactly one connection). Every write goes through `writer`, so our own
//! writers never contend for SQLite's single write lock; message appends additionally
//! go through one appender task, which commits them in groups. The SQL itself is shared
//! with PostgreSQL (see `crate::sql` in the crate docs).

/// The SQL shared with PostgreSQL, compiled for SQLite.
mod queries {
    use std::collections::BTreeSet;

    use sqlx::Row;
    use switchboard_protocol::{
        Conversation, ConversationKind, Message, MessageKind, PresenceStatus,
    };

    use crate::{
        Appended, HistoryPage, MAX_PAGE, NewMessage, NewUser, Result, StoreError, User, now_ms,
    };

    type Conn = sqlx::sqlite::SqliteConnection;
    type Pool = sqlx::sqlite::SqlitePool;
    type DbRow = sqlx::sqlite::SqliteRow;

    include!("../sql/users.rs");
    include!("../sql/conversations.rs");
    include!("../sql/append.rs");
}

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use switchboard_protocol::{Conversation, Message, PresenceStatus};

use crate::appender::Appenders;
use crate::{Appended, HistoryPage, NewMessage, NewUser, Result, Store, StoreError, User};

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
        let appender = Appenders::spawn(1, move |batch| {
            let pool = pool.clone();
            Box::pin(async move { queries::commit_batch(&pool, &batch).await })
        });
        Ok(Self { reader, writer, appender })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser) -> Result<User> {
        queries::create_user(&self.writer, user).await
    }

    async fn user_count(&self) -> Result<i64> {
        queries::user_count(&self.reader).await
    }

    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>> {
        queries::credentials(&self.reader, username).await
    }

    async fn user_by_name(&self, username: &str) -> Result<User> {
        queries::user_by_name(&self.reader, username).await
    }

    async fn set_status(&self, user_id: i64, status: PresenceStatus, text: &str) -> Result<()> {
        queries::set_status(&self.writer, user_id, status, text).await
    }

    async fn contacts(&self, user_id: i64) -> Result<Vec<User>> {
        queries::contacts(&self.reader, user_id).await
    }

    async fn insert_token(&self, hash: &[u8], user_id: i64, expires_at: i64) -> Result<()> {
        queries::insert_token(&self.writer, hash, user_id, expires_at).await
    }

    async fn user_by_token(&self, hash: &[u8]) -> Result<Option<User>> {
        queries::user_by_token(&self.reader, hash).await
    }

    async fn revoke_token(&self, hash: &[u8]) -> Result<()> {
        queries::revoke_token(&self.writer, hash).await
    }

    async fn open_direct(&self, a: &User, b: &User) -> Result<(Conversation, bool)> {
        queries::open_direct(&self.writer, a, b).await
    }

    async fn create_group(
        &self,
        owner: &User,
        name: &str,
        members: &[User],
    ) -> Result<(Conversation, Message)> {
        queries::create_group(&self.writer, owner, name, members).await
    }

    async fn add_members(
        &self,
        actor: &User,
        conversation: i64,
        users: &[User],
    ) -> Result<(Conversation, Message)> {
        queries::add_members(&self.writer, actor, conversation, users).await
    }

    async fn remove_member(
        &self,
        actor: &User,
        conversation: i64,
        user: &User,
    ) -> Result<(Conversation, Message)> {
        queries::remove_member(&self.writer, actor, conversation, user).await
    }

    async fn conversation(&self, conversation: i64, viewer: &User) -> Result<Conversation> {
        queries::load(&self.reader, conversation, viewer).await
    }

    async fn conversations_of(&self, user_id: i64) -> Result<Vec<Conversation>> {
        queries::list(&self.reader, user_id).await
    }

    async fn conversation_seqs(&self, user_id: i64) -> Result<Vec<(i64, i64)>> {
        queries::conversation_seqs(&self.reader, user_id).await
    }

    async fn member_ids(&self, conversation: i64) -> Result<Vec<i64>> {
        queries::member_ids(&self.reader, conversation).await
    }

    async fn append(&self, message: NewMessage) -> Result<Appended> {
        self.appender.append(message).await
    }

    async fn history(
        &self,
        conversation: i64,
        viewer: &User,
        after: Option<i64>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage> {
        queries::history(&self.reader, conversation, viewer, after, before, limit).await
    }

    async fn mark_read(&self, conversation: i64, viewer: &User, seq: i64) -> Result<i64> {
        queries::mark_read(&self.writer, conversation, viewer, seq).await
    }
}
