//! Plain records passed across the [`crate::Store`] seam.

use switchboard_protocol::{Message, MessageKind, PresenceStatus, UserInfo};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub org: String,
    pub admin: bool,
    /// The status the user chose; others see it while the user has a session.
    pub status: PresenceStatus,
    pub status_text: String,
    pub department: String,
    pub title: String,
    /// A bot account: its messages carry its display name as `author`.
    pub bot: bool,
    /// The org-unit subtree this user may broadcast to; empty for none (admins may
    /// broadcast anywhere).
    pub broadcast_scope: String,
}

impl User {
    pub fn info(&self) -> UserInfo {
        UserInfo {
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            org: self.org.clone(),
            admin: self.admin,
            department: self.department.clone(),
            title: self.title.clone(),
            bot: self.bot,
        }
    }
}

/// An account's failed sign-ins, as storage keeps them (see the gateway's lockout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginLock {
    /// Failed sign-ins in a row; a success resets it.
    pub failures: i64,
    /// Password checks are refused until then (Unix ms); 0 = not locked.
    pub locked_until: i64,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub org: String,
    pub admin: bool,
    /// argon2id PHC string; the store never sees the password.
    pub password_hash: String,
    pub department: String,
    pub title: String,
    pub bot: bool,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: i64,
    pub sender: User,
    pub client_msg_id: Option<String>,
    pub kind: MessageKind,
    pub body: String,
    /// The name an automated message shows (a bot's display name, a webhook's name); None
    /// for people. A `system` message with an author (a webhook post) is stored without
    /// checking that the sender is a member.
    pub author: Option<String>,
}

/// One row of a directory import: an account to create, or whose fields to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub username: String,
    pub display_name: String,
    pub org: String,
    pub department: String,
    pub title: String,
    pub broadcast_scope: String,
}

/// A user who signed in through the directory (LDAP): created when missing, with
/// `password_hash` (a value no password matches, so they have no local password), and
/// otherwise kept in step: each field that is `Some` is set, `None` leaves it as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub username: String,
    pub display_name: Option<String>,
    pub org: Option<String>,
    pub admin: Option<bool>,
    pub password_hash: String,
}

/// An incoming webhook, without its secret (only the secret's SHA-256 is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub conversation_id: i64,
    pub name: String,
    pub secret_hash: Vec<u8>,
    /// Who made it: posts are stored as `system` messages sent by this user.
    pub creator: User,
}

#[derive(Debug, Clone)]
pub struct NewBroadcast {
    pub sender: User,
    pub org: String,
    pub body: String,
    pub ack_required: bool,
    pub priority: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub message: Message,
    /// True when this `(sender, client_msg_id)` was stored before: `message` is that copy.
    pub duplicate: bool,
    /// The conversation's members when the message was committed, read in the same
    /// transaction (so the gateway fans out without another query); empty for a
    /// duplicate, which is not fanned out again.
    pub members: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    /// More messages exist past this page in the direction read.
    pub has_more: bool,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One thing a search looks for. Words are lower-case runs of letters and digits (the
/// gateway's query parser makes them so), which both engines tokenize alike and which
/// cannot carry query syntax into either engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchTerm {
    /// The whole word.
    Word(String),
    /// Any word starting with this (`budg*`).
    Prefix(String),
    /// These words in this order, next to each other (`"budget 2027"`).
    Phrase(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchSort {
    /// Best match first (PostgreSQL `ts_rank`, SQLite `bm25`), newest first among equals.
    #[default]
    Relevance,
    /// Newest first.
    Recent,
}

/// A message search, always limited to the searcher's own conversations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchQuery {
    /// All must match. Empty: every message passing the filters (then newest first).
    pub terms: Vec<SearchTerm>,
    /// Only messages sent by this user id.
    pub from: Option<i64>,
    /// Only these conversations (still only those the searcher is a member of).
    pub conversations: Option<Vec<i64>>,
    /// Only messages with `ts >= after` (milliseconds).
    pub after: Option<i64>,
    /// Only messages with `ts < before` (milliseconds).
    pub before: Option<i64>,
    pub sort: SearchSort,
    /// Results to skip (paging); at most [`crate::MAX_SEARCH_OFFSET`].
    pub offset: u32,
    /// Results to return; capped at [`crate::MAX_SEARCH_PAGE`].
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Best first (or newest first), as the query's sort says.
    pub messages: Vec<Message>,
    /// More results exist past this page.
    pub has_more: bool,
}

/// An audit log entry to store (see [`crate::Store::record_audit`]). `ts` is when the
/// event happened: the gateway writes entries in the background, a little later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: String,
    pub detail: String,
}

/// Which audit entries to read: every filter that is set must match. Newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// One action, or (ending in `.`) every action under that prefix.
    pub action: Option<String>,
    /// Only entries with `ts >= since` (milliseconds).
    pub since: Option<i64>,
    /// Only entries with `ts < until` (milliseconds).
    pub until: Option<i64>,
    /// Only entries with an id below this (paging).
    pub before: Option<i64>,
    /// Entries to return; capped at [`crate::MAX_PAGE`].
    pub limit: u32,
}

/// Which messages a compliance export reads (see [`crate::Store::export`]): every filter
/// that is set must match. Records come in `(conversation_id, seq)` order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportQuery {
    /// Messages with `ts >= from` (milliseconds).
    pub from: i64,
    /// Messages with `ts < to` (milliseconds).
    pub to: i64,
    /// Only these conversations; empty: all.
    pub conversations: Vec<i64>,
    /// Only messages sent by these user ids; empty: everyone's.
    pub senders: Vec<i64>,
    /// The page starts after this `(conversation_id, seq)`.
    pub after: Option<(i64, i64)>,
    /// Records to return; capped at [`crate::MAX_PAGE`].
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPage {
    pub records: Vec<switchboard_protocol::rest::ExportRecord>,
    /// More records may follow the last one.
    pub has_more: bool,
}

/// A file to store with a new message ([`crate::Store::attach`]). Its bytes are already in
/// the object store under `storage_key`; the gateway checked its size and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttachment {
    pub name: String,
    pub content_type: String,
    pub size: i64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
    /// Where the bytes are in the object store.
    pub storage_key: String,
}

/// An attachment's whole row: what a download needs (the key) and what a compliance
/// export lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    pub id: i64,
    pub conversation_id: i64,
    /// The message that carries it.
    pub seq: i64,
    /// Username of who uploaded it (the message's sender).
    pub uploader: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
    pub storage_key: String,
}

impl StoredAttachment {
    /// As readers see it on a message.
    pub fn info(&self) -> switchboard_protocol::Attachment {
        switchboard_protocol::Attachment {
            id: self.id,
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
        }
    }
}

/// What one retention transaction ([`crate::Store::retention_delete`]) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionBatch {
    /// Messages deleted.
    pub deleted: u64,
    /// Nothing more of the conversation was due when it committed; false when the
    /// transaction stopped at its row limit or its time budget with more left.
    pub done: bool,
}
