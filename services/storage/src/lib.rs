//! Switchboard's storage: users, tokens, conversations, membership and messages.
//!
//! The [`Store`] trait is the seam between the gateway and the database, with an embedded
//! SQLite implementation ([`SqliteStore`]) and a PostgreSQL one ([`PgStore`]); cluster mode
//! adds a gRPC client behind the same trait. What every implementation promises:
//!
//! - [`Store::append`] assigns the message the next `seq` of its conversation inside the
//!   transaction that stores it, so seqs are gapless and strictly increasing, and returns
//!   only after the commit is durable. A retry with the same `(sender, client_msg_id)`
//!   returns the first copy with `duplicate: true` and stores nothing.
//! - Reads of a conversation check membership and fail with [`StoreError::NotMember`].
//!
//! Authentication (password hashing, token generation) lives in the gateway; the store
//! keeps only the argon2 hash and the SHA-256 of each token.
//!
//! # One SQL text, two drivers
//!
//! [`SqliteStore`] (embedded) and [`PgStore`] (cluster) run the same queries: the files in
//! `src/sql/` are `include!`d into a `queries` module of each backend (`sql_queries!` in
//! `backend.rs`), which first names its driver's connection, pool and row types (`Conn`,
//! `Pool`, `DbRow`), and both implement `Store` with the same `sql_store!`. Placeholders are
//! `$N`, which both drivers accept, and the SQL keeps to what both engines run. So the two
//! stores cannot drift apart; what differs (pools, pragmas, how many appenders) lives in
//! `sqlite/mod.rs` and `postgres/mod.rs`. Group commit is [`appender`]'s, for both.

mod appender;
pub mod attachments;
mod backend;
pub mod grpc;
pub mod metrics;
mod model;
mod postgres;
pub mod retention;
mod slow;
mod sqlite;

pub use model::{
    Appended, AuditQuery, DirectoryEntry, DirectoryUser, ExportPage, ExportQuery, HistoryPage,
    LoginLock, NewAttachment, NewAuditEntry, NewBroadcast, NewMessage, NewUser, RetentionBatch,
    SearchPage, SearchQuery, SearchSort, SearchTerm, StoredAttachment, User, Webhook, now_ms,
};
pub use postgres::{PgOptions, PgStore, SearchWordsConfig};
pub use sqlite::{DB_FILE as SQLITE_FILE, Durability, SqliteStore};

use async_trait::async_trait;
use switchboard_protocol::rest::{AuditEntry, ImportReport, LegalHold, RetentionPolicy};
use switchboard_protocol::{Broadcast, Conversation, Message, PresenceStatus};

/// Largest page a history read returns, whatever the caller asks for.
pub const MAX_PAGE: u32 = 1000;
/// Largest page of search results.
pub const MAX_SEARCH_PAGE: u32 = 100;
/// Deepest a search pages: ranking the results past it costs more than anyone reads.
pub const MAX_SEARCH_OFFSET: u32 = 1000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("user {user} is not a member of conversation {conversation}")]
    NotMember { conversation: i64, user: String },
    #[error("conversation {0} does not exist")]
    ConversationNotFound(i64),
    #[error("user {0:?} does not exist")]
    UserNotFound(String),
    #[error("username {0:?} is taken")]
    UserExists(String),
    #[error("{0}")]
    Invalid(String),
    /// No such webhook or broadcast (the string names it, e.g. `webhook 3`).
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("only the group's owner or an admin may {0}")]
    Forbidden(&'static str),
    /// Someone tried to edit or delete a message they did not send.
    #[error("only its sender may change message {conversation}:{seq}")]
    NotAuthor { conversation: i64, seq: i64 },
    /// The database failed or is unreachable. Nothing was applied; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the gateway needs from storage. See the crate docs for the guarantees.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_user(&self, user: NewUser) -> Result<User>;
    async fn user_count(&self) -> Result<i64>;
    /// The user and their argon2 password hash, for sign-in; None if unknown or disabled.
    async fn credentials(&self, username: &str) -> Result<Option<(User, String)>>;
    async fn user_by_name(&self, username: &str) -> Result<User>;
    /// Creates the user who just signed in through the directory, or brings their
    /// display name, org and admin flag in step with it (the fields that are `Some`).
    /// Only a person (not a bot) whose password hash is `user.password_hash` (the "no
    /// local password" mark) is changed; another of that name gives `UserExists`.
    async fn sync_directory_user(&self, user: DirectoryUser) -> Result<User>;
    async fn set_status(&self, user_id: i64, status: PresenceStatus, text: &str) -> Result<()>;
    /// Everyone who shares a conversation with the user (the user excluded).
    async fn contacts(&self, user_id: i64) -> Result<Vec<User>>;
    /// The directory: at most `limit` (capped at [`MAX_PAGE`]) users whose username,
    /// display name or org path contains `query`, ignoring ASCII case, by display name.
    async fn search_users(&self, query: &str, limit: u32) -> Result<Vec<User>>;

    async fn insert_token(&self, hash: &[u8], user_id: i64, expires_at: i64) -> Result<()>;
    /// The token's user if the token exists, is not revoked, has not expired and its
    /// account is not disabled.
    async fn user_by_token(&self, hash: &[u8]) -> Result<Option<User>>;
    async fn revoke_token(&self, hash: &[u8]) -> Result<()>;

    /// The account's failed sign-ins in a row and its lock, if any.
    async fn login_lock(&self, user_id: i64) -> Result<LoginLock>;
    /// Counts a failed sign-in (atomically, whichever gateway saw it); returns the number
    /// of failures in a row now.
    async fn login_failed(&self, user_id: i64) -> Result<i64>;
    /// Refuses password checks for the account until `until` (Unix ms); a later lock
    /// already in place is kept.
    async fn lock_login(&self, user_id: i64, until: i64) -> Result<()>;
    /// A successful sign-in: the count of failures and any lock are cleared.
    async fn login_succeeded(&self, user_id: i64) -> Result<()>;

    /// Opens (creating on first use) the direct conversation of `a` and `b`. Returns it as
    /// `a` sees it and whether it was created now.
    async fn open_direct(&self, a: &User, b: &User) -> Result<(Conversation, bool)>;
    /// Creates a group owned by `owner` with `members` (owner included automatically) and
    /// records a system message with seq 1.
    async fn create_group(
        &self,
        owner: &User,
        name: &str,
        members: &[User],
    ) -> Result<(Conversation, Message)>;
    /// Adds users to a group (any member may); records a system message.
    async fn add_members(
        &self,
        actor: &User,
        conversation: i64,
        users: &[User],
    ) -> Result<(Conversation, Message)>;
    /// Removes a user from a group: themselves (leaving), or anyone if `actor` owns the
    /// group or is an admin. Records a system message.
    async fn remove_member(
        &self,
        actor: &User,
        conversation: i64,
        user: &User,
    ) -> Result<(Conversation, Message)>;

    /// The conversation as `viewer` sees it; `NotMember` if they are not in it.
    async fn conversation(&self, conversation: i64, viewer: &User) -> Result<Conversation>;
    async fn conversations_of(&self, user_id: i64) -> Result<Vec<Conversation>>;
    /// `(conversation id, last seq)` of each of the user's conversations: what a session
    /// needs to start, without the member lists (which can be large).
    async fn conversation_seqs(&self, user_id: i64) -> Result<Vec<(i64, i64)>>;
    async fn member_ids(&self, conversation: i64) -> Result<Vec<i64>>;
    /// The newest message of each of the user's conversations (those with any), ordered
    /// by conversation id: the previews of a conversation list.
    async fn last_messages(&self, user_id: i64) -> Result<Vec<Message>>;

    async fn append(&self, message: NewMessage) -> Result<Appended>;
    /// Messages with `after < seq < before`, oldest first, at most `limit` (capped at
    /// [`MAX_PAGE`]). With `after` set the page starts right after it; otherwise it is the
    /// newest page below `before`.
    async fn history(
        &self,
        conversation: i64,
        viewer: &User,
        after: Option<i64>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage>;
    /// Stores `message` as a reply in the thread of message `thread_seq` of its
    /// conversation: an ordinary message with the next seq and `thread_seq` set, in one
    /// transaction with the checks (`NotMember`; `NotFound` if the root does not exist or
    /// was deleted; `Invalid` if it is a system message or itself a reply). A retry with
    /// the same `client_msg_id` returns the first reply (`duplicate`).
    async fn reply(&self, message: NewMessage, thread_seq: i64) -> Result<Appended>;
    /// The thread of message `seq` as `viewer` (a member) reads it: the root first, with
    /// its `reply_count`, then its replies with `seq > after`, oldest first, at most
    /// `limit` (capped at [`MAX_PAGE`]); `has_more` when more replies follow.
    async fn thread(
        &self,
        conversation: i64,
        viewer: &User,
        seq: i64,
        after: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage>;
    /// Edits (`body` Some: the new text) or deletes (None) message `seq`, which `editor`
    /// must have sent (`NotAuthor`; `NotFound` if it does not exist or was deleted;
    /// `Invalid` for system messages). Stores an `edit` or `delete` entry with the next
    /// seq (returned, with the members to fan it out to) and changes the message in the
    /// same transaction. A retry with the same `client_msg_id` returns the first entry.
    async fn change_message(
        &self,
        editor: &User,
        conversation: i64,
        seq: i64,
        body: Option<&str>,
        client_msg_id: Option<&str>,
    ) -> Result<Appended>;
    /// Adds (`add`) or takes back `user`'s reaction `emoji` (checked with
    /// `switchboard_protocol::check_reaction`: `Invalid`) on message `seq`, which must be a
    /// message (`NotFound` if it does not exist or was deleted; `Invalid` for an entry)
    /// of a conversation `user` is in (`NotMember`). Stores a `react`/`unreact` entry with
    /// the next seq, carrying the emoji's count after the change, and returns it with the
    /// members; None when nothing changed (already there, already gone).
    async fn react(
        &self,
        user: &User,
        conversation: i64,
        seq: i64,
        emoji: &str,
        add: bool,
    ) -> Result<Option<Appended>>;
    /// Sets the retention policy of a conversation (`ConversationNotFound`) or, with
    /// None, the organisation's default: delete messages older than `keep_days` days
    /// (`Invalid` under 1), or keep forever (None).
    async fn set_retention(&self, conversation: Option<i64>, keep_days: Option<i64>) -> Result<()>;
    /// Removes a conversation's own policy (it follows the default again) or the default.
    async fn clear_retention(&self, conversation: Option<i64>) -> Result<()>;
    /// The default (no `conversation_id`) first, then each conversation's own policy.
    async fn retention_policies(&self) -> Result<Vec<RetentionPolicy>>;
    /// Places a legal hold on a user's messages or on a conversation (exactly one of them,
    /// else `Invalid`).
    async fn add_hold(
        &self,
        user: Option<&User>,
        conversation: Option<i64>,
        reason: &str,
        creator: &User,
    ) -> Result<LegalHold>;
    /// Lifts a hold (`NotFound` if there is none with that id).
    async fn remove_hold(&self, id: i64) -> Result<()>;
    async fn legal_holds(&self) -> Result<Vec<LegalHold>>;
    /// `(conversation, cutoff)` of each conversation not on hold whose policy deletes:
    /// its messages with `ts < cutoff` (milliseconds) are due. The retention job's plan.
    async fn retention_targets(&self, now: i64) -> Result<Vec<(i64, i64)>>;
    /// Deletes messages of `conversation` older than `cutoff`, oldest first, in one
    /// transaction, sparing users and conversations on hold: at most `limit`, and no more
    /// once `budget` of work has passed inside the transaction (zero: no time limit). Says
    /// how many went and whether any are still due. Their reactions, attachments and
    /// search entries go with them (the attachments' objects are queued in
    /// [`Store::attachment_trash`]); seqs are never reused.
    async fn retention_delete(
        &self,
        conversation: i64,
        cutoff: i64,
        limit: u32,
        budget: std::time::Duration,
    ) -> Result<RetentionBatch>;

    /// Stores `message` (a text message, its body the caption, maybe empty) and the file
    /// it carries, in one transaction (`NotMember` unless the sender is a member). The
    /// message comes back with its `attachments`. A retry with the same `client_msg_id`
    /// returns the first message (`duplicate`) and stores nothing: the caller then
    /// deletes the object it uploaded for nothing.
    async fn attach(&self, message: NewMessage, file: NewAttachment) -> Result<Appended>;
    /// Attachment `id` for a download by `viewer`: `NotFound` unless it exists, `viewer`
    /// is a member of its conversation and its message is not deleted (the same answer
    /// for all three, so ids reveal nothing).
    async fn attachment(&self, id: i64, viewer: &User) -> Result<StoredAttachment>;
    /// Storage keys of objects whose attachments retention deleted, at most `limit`: the
    /// retention job deletes them from the object store, then calls
    /// [`Store::forget_attachment_trash`].
    async fn attachment_trash(&self, limit: u32) -> Result<Vec<String>>;
    async fn forget_attachment_trash(&self, keys: &[String]) -> Result<()>;
    /// Which of `keys` an attachment row or the trash still names (the others are
    /// objects no message ever came to carry: the retention job's orphan sweep deletes
    /// them).
    async fn known_attachment_keys(&self, keys: &[String]) -> Result<Vec<String>>;

    /// Full-text search over the messages of `viewer`'s conversations only (a conversation
    /// they are not a member of is never read, whatever `query.conversations` says).
    /// Deleted messages and edit/delete entries are not found; an edited message is found
    /// by its new text. PostgreSQL ranks the newest 5,000 matches only and reads a prefix
    /// as its 50 most frequent words (docs/protocol.md); SQLite ranks every match.
    async fn search(&self, viewer: &User, query: &SearchQuery) -> Result<SearchPage>;
    /// Moves the user's read cursor forward (never back); returns the cursor.
    async fn mark_read(&self, conversation: i64, viewer: &User, seq: i64) -> Result<i64>;
    /// `(username, read seq)` of every member, by username; `NotMember` unless `viewer`
    /// is a member. What read receipts are drawn from.
    async fn read_cursors(&self, conversation: i64, viewer: &User) -> Result<Vec<(String, i64)>>;

    /// Creates or updates an account per entry, in one transaction (all or nothing); new
    /// accounts get `password_hash`. With `dry_run` nothing is written. Fails with
    /// `Invalid` if an entry names a bot account.
    async fn import_directory(
        &self,
        entries: Vec<DirectoryEntry>,
        password_hash: String,
        dry_run: bool,
    ) -> Result<ImportReport>;

    /// A webhook posting into `conversation`; `creator` must be an admin or the group's
    /// owner (`Forbidden`). Only the secret's hash is stored.
    async fn create_webhook(
        &self,
        conversation: i64,
        creator: &User,
        name: &str,
        secret_hash: &[u8],
    ) -> Result<Webhook>;
    /// The webhook, unless unknown or revoked.
    async fn webhook(&self, id: i64) -> Result<Option<Webhook>>;
    /// Revokes a webhook; `actor` must be an admin, its creator or the group's owner.
    async fn revoke_webhook(&self, id: i64, actor: &User) -> Result<()>;

    /// Stores an org broadcast once (one row, whatever the number of recipients).
    async fn create_broadcast(&self, new: NewBroadcast) -> Result<Broadcast>;
    /// Broadcasts to the user's org unit newer than their broadcast cursor: the newest
    /// `limit`, oldest first. What a session sends on sign-in.
    async fn pending_broadcasts(&self, user: &User, limit: u32) -> Result<Vec<Broadcast>>;
    /// Moves each `(user id, broadcast id)` cursor forward (never back), in one
    /// transaction: the gateway batches what its sessions were sent.
    async fn broadcasts_seen(&self, seen: &[(i64, i64)]) -> Result<()>;
    /// Records the user's acknowledgement (`Forbidden` unless it was sent to them,
    /// `Invalid` if it asked for none, `NotFound` if unknown).
    async fn ack_broadcast(&self, id: i64, user: &User) -> Result<()>;
    /// The broadcast, and every person now under its path with the time they
    /// acknowledged it (None: not yet), by username.
    async fn broadcast_status(&self, id: i64) -> Result<(Broadcast, Vec<(String, Option<i64>)>)>;

    /// Sets an account's `admin` and `disabled` flags (None: unchanged); returns the
    /// account and whether it is now disabled. A disabled account is refused by
    /// [`Store::credentials`] and [`Store::user_by_token`] (its tokens are kept, so
    /// enabling it again brings them back).
    async fn update_user(
        &self,
        username: &str,
        admin: Option<bool>,
        disabled: Option<bool>,
    ) -> Result<(User, bool)>;
    /// Appends entries to the audit log, in one transaction.
    async fn record_audit(&self, entries: &[NewAuditEntry]) -> Result<()>;
    /// Audit entries matching `query`, newest first.
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;

    /// One page of the compliance export: the messages (text, broadcast and system; not
    /// the edit, delete and reaction entries, which are folded into the message they
    /// change) matching `query`, in `(conversation_id, seq)` order, each with its stored
    /// text even when deleted, its edits, its deletion and its reactions. For admins
    /// only: the caller checks. `ConversationNotFound` for an unknown conversation in
    /// the filter.
    async fn export(&self, query: &ExportQuery) -> Result<ExportPage>;
    /// How many records the whole export of `query` has (`after` and `limit` ignored).
    async fn export_count(&self, query: &ExportQuery) -> Result<i64>;
}
