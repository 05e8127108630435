//! The records frames carry: messages, conversations, users and presence.

use serde::{Deserialize, Serialize};

/// One stored message. `(conversation_id, seq)` identifies it; `seq` is gapless and
/// strictly increasing within a conversation, assigned when the message is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub conversation_id: i64,
    pub seq: i64,
    /// Username of the author; for `system` messages, the user whose action it records.
    pub sender: String,
    pub kind: MessageKind,
    pub body: String,
    /// The sender's idempotency key; retried sends with the same key return the same seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// Commit time, milliseconds since the Unix epoch (UTC).
    pub ts: i64,
    /// Set on automated messages only: the name to show for a bot account's message (its
    /// display name) or a webhook's (the payload's `username`, else the webhook's name).
    /// A message with an `author` was not typed by a person; clients mark it as such.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// On an `edit` or `delete` entry: the seq of the message it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_seq: Option<i64>,
    /// When the message was last edited; its `body` is the edited text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// The sender deleted it: `body` is empty. It keeps its place (its seq) in history.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Set on a thread reply: the seq of the thread's root message (in the same
    /// conversation). A reply is an ordinary message otherwise; clients show it in the
    /// thread and add one to the root's `reply_count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_seq: Option<i64>,
    /// On a thread's root as history, search and thread reads return it: how many
    /// replies it has (deleted replies not counted). Absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reply_count: i64,
    /// Emoji reactions. On a message as history and thread reads return it: each emoji
    /// with its count and whether the reader is among those who reacted, in the order
    /// the emoji were first used. On a `react`/`unreact` entry: one item, the emoji's
    /// count on message `ref_seq` after this change (`me` false: the entry is the same
    /// for everyone; the entry's `sender` is who reacted). Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// Files sent with the message (`POST /api/v1/conversations/{id}/attachments`), each
    /// downloadable by members at `GET /api/v1/attachments/{id}`. Empty on a deleted
    /// message as people read it. Absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A file sent with a message: what a client shows and how it downloads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Download it at `GET /api/v1/attachments/{id}` (members only).
    pub id: i64,
    /// The file name the uploader gave (no directory part).
    pub name: String,
    /// The type the server checked and serves it with: `image/png`, `image/jpeg`,
    /// `image/gif` and `image/webp` only when the bytes are one; `text/plain` and
    /// `application/pdf` as declared; anything else `application/octet-stream`.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

impl Attachment {
    /// Whether clients may show it as a picture (a thumbnail).
    pub fn is_image(&self) -> bool {
        IMAGE_TYPES.contains(&self.content_type.as_str())
    }
}

/// The image types whose content the server checks (by their magic bytes) and serves
/// inline; every other type is served as a download.
pub const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// One emoji's reactions on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    pub count: i64,
    /// The reader reacted with it.
    #[serde(default)]
    pub me: bool,
}

/// Longest reaction accepted, in characters (an emoji with skin tone and joiners is
/// several characters; a family is up to 11).
pub const MAX_REACTION_CHARS: usize = 16;

/// Checks a reaction: 1 to [`MAX_REACTION_CHARS`] characters, at most 64 bytes, no
/// whitespace and no control characters. Returns why not.
pub fn check_reaction(emoji: &str) -> Result<(), String> {
    let chars = emoji.chars().count();
    if chars == 0 || chars > MAX_REACTION_CHARS || emoji.len() > 64 {
        return Err(format!("a reaction has 1 to {MAX_REACTION_CHARS} characters"));
    }
    if emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a reaction has no whitespace or control characters".into());
    }
    Ok(())
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Message {
    /// Whether it is shown as a message of its own (not an edit or delete entry, which
    /// change another message).
    pub fn is_content(&self) -> bool {
        !matches!(
            self.kind,
            MessageKind::Edit | MessageKind::Delete | MessageKind::React | MessageKind::Unreact
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Written by a person (or a bot) in the conversation.
    Text,
    /// Written by the server: membership changes and similar events. Clients must show it
    /// differently from a person's message.
    System,
    /// Posted over REST by an admin account for a tool or bot (an alert, an announcement).
    /// Clients show it as a notice from that account, never as a person's chat.
    Broadcast,
    /// The sender changed the text of message `ref_seq`; `body` is the new text. Apply it
    /// to that message (history already shows it edited); do not show it on its own.
    Edit,
    /// The sender deleted message `ref_seq`; `body` is empty. Remove that message's text.
    Delete,
    /// The sender reacted to message `ref_seq` with emoji `body`; `reactions` holds the
    /// emoji's count after it. Set that count on the message; do not show it on its own.
    React,
    /// The sender took back their reaction `body` to message `ref_seq`; like `react`.
    Unreact,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::System => "system",
            Self::Broadcast => "broadcast",
            Self::Edit => "edit",
            Self::Delete => "delete",
            Self::React => "react",
            Self::Unreact => "unreact",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "system" => Some(Self::System),
            "broadcast" => Some(Self::Broadcast),
            "edit" => Some(Self::Edit),
            "delete" => Some(Self::Delete),
            "react" => Some(Self::React),
            "unreact" => Some(Self::Unreact),
            _ => None,
        }
    }
}

/// One search result: the message as it reads now, and where the search words are in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchHit {
    pub message: Message,
    /// The body (or, for a long body, an excerpt around the first match, with `…` where
    /// it was cut) in pieces: even positions are plain text, odd positions matched the
    /// search. Joined, they are the excerpt. Draw the odd ones highlighted, as text.
    pub highlight: Vec<String>,
}

/// Order of search results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchSort {
    /// Best match first, newest first among equals.
    #[default]
    Relevance,
    /// Newest first.
    Recent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    /// Exactly two people (or one, for notes to self); opened by either, never renamed.
    Direct,
    /// Named, any number of members, who can be added and removed.
    Group,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(Self::Direct),
            "group" => Some(Self::Group),
            _ => None,
        }
    }
}

/// A conversation as one member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: i64,
    pub kind: ConversationKind,
    /// Group name; for a direct conversation, empty (clients show the other member).
    pub name: String,
    /// Usernames of the members, sorted.
    pub members: Vec<String>,
    /// Seq of the newest message (0 when there is none yet).
    pub last_seq: i64,
    /// Username of a group's owner (its creator), who may remove members; absent for
    /// direct conversations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The viewer's read cursor: the highest seq they marked read. Set in answers and
    /// lists; absent in pushes, which go to every member alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<i64>,
}

/// A person (or bot) as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: String,
    pub display_name: String,
    /// Org-unit path such as `HQ/Building 2/Floor 3`; empty when unknown.
    pub org: String,
    pub admin: bool,
    /// Department, e.g. `Facilities`; omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub department: String,
    /// Job title, e.g. `Site manager`; omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// A bot account (made with `switchboard bot add`), not a person; omitted when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
}

/// An organisation broadcast: one notice to everyone under an org-unit path, stored once
/// (not one copy per recipient) and outside any conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// Increasing, unique across the server.
    pub id: i64,
    /// Username of the account that sent it.
    pub sender: String,
    /// The sender's display name, to show as the notice's author.
    pub author: String,
    /// The org-unit path it went to: everyone whose `org` is this path or below it; empty
    /// for everyone.
    pub org: String,
    pub body: String,
    /// Recipients are asked to acknowledge it (`ack_broadcast`); the sender sees who did.
    pub ack_required: bool,
    /// Urgent (safety): clients alert even on do-not-disturb.
    pub priority: bool,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
}

/// Whether `org` is the org unit `path` or inside it (`HQ/Building 2` holds
/// `HQ/Building 2/Floor 3` but not `HQ/Building 20`); the empty path holds everyone.
pub fn org_under(org: &str, path: &str) -> bool {
    path.is_empty()
        || org == path
        || (org.len() > path.len() && org.starts_with(path) && org.as_bytes()[path.len()] == b'/')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Available,
    Busy,
    Away,
    DoNotDisturb,
    /// Not connected, or connected but chose to appear offline.
    Offline,
}

impl PresenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Busy => "busy",
            Self::Away => "away",
            Self::DoNotDisturb => "do_not_disturb",
            Self::Offline => "offline",
        }
    }

    /// Parses the wire name, also accepting `dnd` and dashes for people typing it.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "available" => Some(Self::Available),
            "busy" => Some(Self::Busy),
            "away" => Some(Self::Away),
            "do_not_disturb" | "dnd" => Some(Self::DoNotDisturb),
            "offline" => Some(Self::Offline),
            _ => None,
        }
    }
}

/// What others see of a user's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub user: String,
    pub status: PresenceStatus,
    /// Free text such as "In a meeting until 3"; empty when unset or offline.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::org_under;

    #[test]
    fn org_paths_hold_their_subtree_only() {
        assert!(org_under("HQ/Building 2", "HQ/Building 2"));
        assert!(org_under("HQ/Building 2/Floor 3", "HQ/Building 2"));
        assert!(org_under("anything", ""));
        assert!(!org_under("HQ/Building 20", "HQ/Building 2"));
        assert!(!org_under("HQ", "HQ/Building 2"));
        assert!(!org_under("", "HQ"));
    }
}
