//! WebSocket frames. Every frame is a JSON object with a `type`; client frames may carry
//! an `id` that the server echoes on the frame answering it, so clients can match answers
//! to requests without relying on order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    Broadcast, Conversation, ErrorCode, Message, Presence, PresenceStatus, SearchHit, SearchSort,
    UserInfo,
};

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// First frame when the upgrade request carried no token. `since` (as in `sync`)
    /// resumes in one step: the backfill comes before any live message.
    Auth {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        token: String,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "some_conversation_map"
        )]
        since: Option<BTreeMap<i64, i64>>,
        /// False: this session's own sends come back as their `ack` only, in the place
        /// of the `message` frame (in seq order), not as both. Bots, bridges and load
        /// generators that keep their own copy save a frame per send. Default true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        echo: Option<bool>,
    },
    /// Resynchronise after a (re)connect: for each conversation, the last seq this client
    /// has. The server sends every message after it, in order, then `synced`.
    Sync {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, deserialize_with = "conversation_map")]
        since: BTreeMap<i64, i64>,
    },
    /// Send a message to a conversation, or to a user (opening the direct conversation).
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        client_msg_id: String,
        body: String,
        /// Reply in the thread of this message of `conversation_id` (which must be given).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_seq: Option<i64>,
    },
    OpenDirect {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        user: String,
    },
    CreateGroup {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        name: String,
        #[serde(default)]
        members: Vec<String>,
    },
    AddMembers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        users: Vec<String>,
    },
    RemoveMember {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        user: String,
    },
    ListConversations {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// A page of history: messages with `after_seq < seq < before_seq`, oldest first.
    /// With only `before_seq` (or neither), the newest `limit` of that range.
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before_seq: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// One thread: its root message `seq`, then its replies with `seq > after_seq`,
    /// oldest first (at most `limit`, default 100). Answered with `thread`.
    Thread {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        seq: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_seq: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    Typing {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
    },
    Read {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        seq: i64,
    },
    SetPresence {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        status: PresenceStatus,
        #[serde(default)]
        text: String,
    },
    Watch {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        users: Vec<String>,
    },
    Unwatch {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        users: Vec<String>,
    },
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Searches the directory (as `GET /api/v1/users?q=`); answered with `users`.
    SearchUsers {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default)]
        q: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Replaces the text of one of the user's own messages. Answered with `ack` (the seq of
    /// the `edit` entry); every member's sessions get the entry as a `message`.
    Edit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        seq: i64,
        client_msg_id: String,
        body: String,
    },
    /// Deletes one of the user's own messages; answered like `edit`.
    Delete {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        seq: i64,
        client_msg_id: String,
    },
    /// Reacts to message `seq` with `emoji` (see [`crate::check_reaction`]). Answered with
    /// `ok`; every member's sessions get a `react` entry as a `message` (none if the
    /// reaction was already there).
    React {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        seq: i64,
        emoji: String,
    },
    /// Takes back one's reaction; like `react` (the entry is an `unreact`).
    Unreact {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        seq: i64,
        emoji: String,
    },
    /// Searches the messages of the user's conversations; answered with `search_results`.
    /// The fields are those of [`crate::rest::SearchParams`].
    Search {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default)]
        q: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
        in_conversation: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sort: Option<SearchSort>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Acknowledges an organisation broadcast that asked for it.
    AckBroadcast {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        broadcast_id: i64,
    },
}

impl ClientFrame {
    /// Every `type` a client may send, for telling an unknown type from a malformed frame.
    pub const TYPES: &[&str] = &[
        "auth",
        "sync",
        "send",
        "open_direct",
        "create_group",
        "add_members",
        "remove_member",
        "list_conversations",
        "history",
        "thread",
        "typing",
        "read",
        "set_presence",
        "watch",
        "unwatch",
        "ping",
        "search_users",
        "search",
        "edit",
        "delete",
        "react",
        "unreact",
        "ack_broadcast",
    ];

    /// The request id the client attached, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Auth { id, .. }
            | Self::Sync { id, .. }
            | Self::Send { id, .. }
            | Self::OpenDirect { id, .. }
            | Self::CreateGroup { id, .. }
            | Self::AddMembers { id, .. }
            | Self::RemoveMember { id, .. }
            | Self::ListConversations { id }
            | Self::History { id, .. }
            | Self::Thread { id, .. }
            | Self::Typing { id, .. }
            | Self::Read { id, .. }
            | Self::SetPresence { id, .. }
            | Self::Watch { id, .. }
            | Self::Unwatch { id, .. }
            | Self::Ping { id }
            | Self::SearchUsers { id, .. }
            | Self::Search { id, .. }
            | Self::Edit { id, .. }
            | Self::Delete { id, .. }
            | Self::React { id, .. }
            | Self::Unreact { id, .. }
            | Self::AckBroadcast { id, .. } => id.as_deref(),
        }
    }

    /// Decodes a text frame, telling malformed JSON, an unknown `type` and a known type
    /// with bad fields apart. On failure returns the code, a message and the request id
    /// when one could be read.
    pub fn decode(text: &str) -> Result<Self, (ErrorCode, String, Option<String>)> {
        // Fast path: one parse. Only a failure pays for a second look to classify it.
        let err = match serde_json::from_str::<Self>(text) {
            Ok(frame) => return Ok(frame),
            Err(e) => e,
        };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| (ErrorCode::MalformedFrame, format!("invalid JSON: {e}"), None))?;
        let id = value.get("id").and_then(|v| v.as_str()).map(str::to_owned);
        match value.get("type").and_then(|t| t.as_str()) {
            None => Err((
                ErrorCode::MalformedFrame,
                "a frame must be a JSON object with a string \"type\"".into(),
                id,
            )),
            Some(kind) if !Self::TYPES.contains(&kind) => {
                Err((ErrorCode::UnknownFrameType, format!("unknown frame type {kind:?}"), id))
            }
            Some(kind) => Err((ErrorCode::MalformedFrame, format!("bad {kind} frame: {err}"), id)),
        }
    }
}

/// Reads `{"12": 40}` into `{12: 40}`. JSON object keys are strings, and serde cannot turn
/// them into integers once an internally tagged enum has buffered the frame.
fn conversation_map<'de, D>(de: D) -> Result<BTreeMap<i64, i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = BTreeMap::<String, i64>::deserialize(de)?;
    raw.into_iter()
        .map(|(k, v)| {
            k.parse::<i64>()
                .map(|k| (k, v))
                .map_err(|_| serde::de::Error::custom(format!("{k:?} is not a conversation id")))
        })
        .collect()
}

fn some_conversation_map<'de, D>(de: D) -> Result<Option<BTreeMap<i64, i64>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    conversation_map(de).map(Some)
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Authentication succeeded; the session is live.
    Welcome {
        user: UserInfo,
        session_id: u64,
    },
    /// The message was durably committed with this seq. `duplicate` is true when this
    /// `client_msg_id` had already been stored (a retry): nothing new was stored.
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        client_msg_id: String,
        conversation_id: i64,
        seq: i64,
        ts: i64,
        duplicate: bool,
    },
    /// A message in one of the user's conversations, live or from a sync.
    Message {
        message: Message,
    },
    /// A conversation was opened, created or changed (answer or push).
    Conversation {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation: Conversation,
    },
    Conversations {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversations: Vec<Conversation>,
    },
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        messages: Vec<Message>,
        /// More messages exist beyond this page in the direction asked.
        has_more: bool,
    },
    /// Answer to `thread`: the root (with its `reply_count`) and a page of its replies.
    Thread {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversation_id: i64,
        root: Message,
        replies: Vec<Message>,
        /// More replies follow: ask again with `after_seq` = the last reply's seq.
        has_more: bool,
    },
    /// The sync's backfill is complete; every later message arrives live. Lists the user's
    /// conversations with their current `last_seq`.
    Synced {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversations: Vec<Conversation>,
    },
    Typing {
        conversation_id: i64,
        user: String,
    },
    Read {
        conversation_id: i64,
        user: String,
        seq: i64,
    },
    Presence {
        presence: Presence,
    },
    /// Answer to `watch`: the current presence of each watched user.
    PresenceList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        presences: Vec<Presence>,
    },
    /// Answer to a request that has no other answer (`read`, `set_presence`, `unwatch`,
    /// `typing`), sent only when the request carried an `id`.
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Answer to `search_users`: matching directory entries.
    Users {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        users: Vec<UserInfo>,
    },
    /// Answer to `search`: the page of results.
    SearchResults {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        results: Vec<SearchHit>,
        has_more: bool,
    },
    /// An organisation broadcast for this user: pushed live, and on sign-in for those
    /// sent since the user's sessions last received one.
    Broadcast {
        broadcast: Broadcast,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerFrame {
    pub fn error(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error { id, code, message: message.into(), retry_after_ms: None }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_tells_errors_apart() {
        let bad_json = ClientFrame::decode("{nope").unwrap_err();
        assert_eq!(bad_json.0, ErrorCode::MalformedFrame);
        let unknown = ClientFrame::decode(r#"{"type":"dance","id":"7"}"#).unwrap_err();
        assert_eq!((unknown.0, unknown.2.as_deref()), (ErrorCode::UnknownFrameType, Some("7")));
        let missing = ClientFrame::decode(r#"{"type":"send","id":"8","body":"x"}"#).unwrap_err();
        assert_eq!(missing.0, ErrorCode::MalformedFrame);
        assert_eq!(missing.2.as_deref(), Some("8"));
    }

    #[test]
    fn sync_keys_are_conversation_ids() {
        let frame = ClientFrame::decode(r#"{"type":"sync","since":{"12":40}}"#).expect("decode");
        let ClientFrame::Sync { since, .. } = frame else { panic!("not sync") };
        assert_eq!(since.get(&12), Some(&40));
    }
}
