//! The cluster store: PostgreSQL (or a Postgres-compatible engine) through one pool.
//!
//! Several storage processes may share the database: every seq is assigned by
//! `UPDATE conversations SET last_seq = last_seq + 1 ... RETURNING`, whose row lock is
//! held until commit, so concurrent writers to one conversation serialise on that row and
//! seqs stay gapless. Appends go through several appender tasks (one per sender shard)
//! that commit in groups; each batch locks conversation rows in ascending id order, so
//! concurrent batches cannot deadlock. The SQL is shared with SQLite (see the crate docs).

/// The SQL shared with SQLite, compiled for PostgreSQL.
mod queries {
    use std::collections::BTreeSet;

    use sqlx::Row;
    use switchboard_protocol::{
        Conversation, ConversationKind, Message, MessageKind, PresenceStatus,
    };

    use crate::{
        Appended, HistoryPage, MAX_PAGE, NewMessage, NewUser, Result, StoreError, User, now_ms,
    };

    type Conn = sqlx::postgres::PgConnection;
    type Pool = sqlx::postgres::PgPool;
    type DbRow = sqlx::postgres::PgRow;

    include!("../sql/users.rs");
    include!("../sql/conversations.rs");
    include!("../sql/append.rs");
}

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use switchboard_protocol::{Conversation, Message, PresenceStatus};

use crate::appender::Appenders;
use crate::{Appended, HistoryPage, NewMessage, NewUser, Result, Store, StoreError, User};

/// Appender tasks: batches in flight at once. Each holds one connection while it commits.
const APPENDERS: usize = 4;

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
        let appenders = Appenders::spawn(APPENDERS, move |batch| {
            let pool = batch_pool.clone();
            Box::pin(async move { queries::commit_batch(&pool, &batch).await })
        });
        Ok(Self { pool, appenders })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn create_user(&self, user: NewUser) -> Result<User> {
        queries::create_user(&self.pool, user).await
    }

    async fn user_count(&self) -> Result<i64> {
        queries::user_count(&self.pool).await
    }

    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>> {
        queries::credentials(&self.pool, username).await
    }

    async fn user_by_name(&self, username: &str) -> Result<User> {
        queries::user_by_name(&self.pool, username).await
    }

    async fn set_status(&self, user_id: i64, status: PresenceStatus, text: &str) -> Result<()> {
        queries::set_status(&self.pool, user_id, status, text).await
    }

    async fn contacts(&self, user_id: i64) -> Result<Vec<User>> {
        queries::contacts(&self.pool, user_id).await
    }

    async fn insert_token(&self, hash: &[u8], user_id: i64, expires_at: i64) -> Result<()> {
        queries::insert_token(&self.pool, hash, user_id, expires_at).await
    }

    async fn user_by_token(&self, hash: &[u8]) -> Result<Option<User>> {
        queries::user_by_token(&self.pool, hash).await
    }

    async fn revoke_token(&self, hash: &[u8]) -> Result<()> {
        queries::revoke_token(&self.pool, hash).await
    }

    async fn open_direct(&self, a: &User, b: &User) -> Result<(Conversation, bool)> {
        queries::open_direct(&self.pool, a, b).await
    }

    async fn create_group(
        &self,
        owner: &User,
        name: &str,
        members: &[User],
    ) -> Result<(Conversation, Message)> {
        queries::create_group(&self.pool, owner, name, members).await
    }

    async fn add_members(
        &self,
        actor: &User,
        conversation: i64,
        users: &[User],
    ) -> Result<(Conversation, Message)> {
        queries::add_members(&self.pool, actor, conversation, users).await
    }

    async fn remove_member(
        &self,
        actor: &User,
        conversation: i64,
        user: &User,
    ) -> Result<(Conversation, Message)> {
        queries::remove_member(&self.pool, actor, conversation, user).await
    }

    async fn conversation(&self, conversation: i64, viewer: &User) -> Result<Conversation> {
        queries::load(&self.pool, conversation, viewer).await
    }

    async fn conversations_of(&self, user_id: i64) -> Result<Vec<Conversation>> {
        queries::list(&self.pool, user_id).await
    }

    async fn conversation_seqs(&self, user_id: i64) -> Result<Vec<(i64, i64)>> {
        queries::conversation_seqs(&self.pool, user_id).await
    }

    async fn member_ids(&self, conversation: i64) -> Result<Vec<i64>> {
        queries::member_ids(&self.pool, conversation).await
    }

    async fn append(&self, message: NewMessage) -> Result<Appended> {
        self.appenders.append(message).await
    }

    async fn history(
        &self,
        conversation: i64,
        viewer: &User,
        after: Option<i64>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage> {
        queries::history(&self.pool, conversation, viewer, after, before, limit).await
    }

    async fn mark_read(&self, conversation: i64, viewer: &User, seq: i64) -> Result<i64> {
        queries::mark_read(&self.pool, conversation, viewer, seq).await
    }
}
