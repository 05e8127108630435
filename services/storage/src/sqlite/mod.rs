//! The embedded store: SQLite in WAL mode, one file in the data dir.
//!
//! Two pools: `reader` (several connections; WAL lets reads run beside the writer) and
//! `writer` (exactly one connection). Every write goes through `writer`, so our own
//! writers never contend for SQLite's single write lock; message appends additionally
//! go through the [`appender`] task, which commits them in groups. Users and tokens live
//! here; conversations and messages in [`conversations`].

mod appender;
mod conversations;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use switchboard_protocol::{Conversation, Message, PresenceStatus};
use tokio::sync::mpsc;

use crate::{Appended, HistoryPage, NewMessage, NewUser, Result, Store, StoreError, User, now_ms};

/// Name of the database file inside the data dir.
pub const DB_FILE: &str = "switchboard.db";

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    appender: mpsc::Sender<appender::Job>,
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
        let appender = appender::spawn(writer.clone());
        Ok(Self { reader, writer, appender })
    }
}

const USER_COLUMNS: &str = "id, username, display_name, org, admin, status, status_text";

fn user_from_row(row: &SqliteRow) -> Result<User> {
    let status: String = row.try_get("status")?;
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        org: row.try_get("org")?,
        admin: row.try_get("admin")?,
        status: PresenceStatus::parse(&status).unwrap_or(PresenceStatus::Available),
        status_text: row.try_get("status_text")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: NewUser) -> Result<User> {
        let result = sqlx::query(
            "INSERT INTO users (username, display_name, org, admin, password_hash, created_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING",
        )
        .bind(&user.username)
        .bind(&user.display_name)
        .bind(&user.org)
        .bind(user.admin)
        .bind(&user.password_hash)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::UserExists(user.username));
        }
        Ok(User {
            id: result.last_insert_rowid(),
            username: user.username,
            display_name: user.display_name,
            org: user.org,
            admin: user.admin,
            status: PresenceStatus::Available,
            status_text: String::new(),
        })
    }

    async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.reader).await?)
    }

    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = ?");
        let row = sqlx::query(&sql).bind(username).fetch_optional(&self.reader).await?;
        row.map(|row| Ok((user_from_row(&row)?, row.try_get("password_hash")?))).transpose()
    }

    async fn user_by_name(&self, username: &str) -> Result<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?");
        match sqlx::query(&sql).bind(username).fetch_optional(&self.reader).await? {
            Some(row) => user_from_row(&row),
            None => Err(StoreError::UserNotFound(username.to_owned())),
        }
    }

    async fn set_status(&self, user_id: i64, status: PresenceStatus, text: &str) -> Result<()> {
        sqlx::query("UPDATE users SET status = ?, status_text = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(text)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn contacts(&self, user_id: i64) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN (
                 SELECT other.user_id FROM members mine
                 JOIN members other ON other.conversation_id = mine.conversation_id
                 WHERE mine.user_id = ? AND other.user_id != mine.user_id)
             ORDER BY username"
        );
        let rows = sqlx::query(&sql).bind(user_id).fetch_all(&self.reader).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn insert_token(&self, hash: &[u8], user_id: i64, expires_at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn user_by_token(&self, hash: &[u8]) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = (
                 SELECT user_id FROM tokens WHERE hash = ? AND revoked = 0 AND expires_at > ?)"
        );
        let row = sqlx::query(&sql).bind(hash).bind(now_ms()).fetch_optional(&self.reader).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn revoke_token(&self, hash: &[u8]) -> Result<()> {
        sqlx::query("UPDATE tokens SET revoked = 1 WHERE hash = ?")
            .bind(hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn open_direct(&self, a: &User, b: &User) -> Result<(Conversation, bool)> {
        conversations::open_direct(self, a, b).await
    }

    async fn create_group(
        &self,
        owner: &User,
        name: &str,
        members: &[User],
    ) -> Result<(Conversation, Message)> {
        conversations::create_group(self, owner, name, members).await
    }

    async fn add_members(
        &self,
        actor: &User,
        conversation: i64,
        users: &[User],
    ) -> Result<(Conversation, Message)> {
        conversations::add_members(self, actor, conversation, users).await
    }

    async fn remove_member(
        &self,
        actor: &User,
        conversation: i64,
        user: &User,
    ) -> Result<(Conversation, Message)> {
        conversations::remove_member(self, actor, conversation, user).await
    }

    async fn conversation(&self, conversation: i64, viewer: &User) -> Result<Conversation> {
        conversations::load(&self.reader, conversation, viewer).await
    }

    async fn conversations_of(&self, user_id: i64) -> Result<Vec<Conversation>> {
        conversations::list(&self.reader, user_id).await
    }

    async fn member_ids(&self, conversation: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = ?")
            .bind(conversation)
            .fetch_all(&self.reader)
            .await?)
    }

    async fn append(&self, message: NewMessage) -> Result<Appended> {
        appender::append(&self.appender, message).await
    }

    async fn history(
        &self,
        conversation: i64,
        viewer: &User,
        after: Option<i64>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage> {
        conversations::history(&self.reader, conversation, viewer, after, before, limit).await
    }

    async fn mark_read(&self, conversation: i64, viewer: &User, seq: i64) -> Result<i64> {
        conversations::mark_read(self, conversation, viewer, seq).await
    }
}
