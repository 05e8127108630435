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
