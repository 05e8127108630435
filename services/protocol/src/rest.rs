//! Bodies of the REST API (`/api/v1/...`). Errors use [`crate::ErrorBody`].

use serde::{Deserialize, Serialize};

use crate::{Conversation, Message, MessageKind, Presence, PresenceStatus, UserInfo};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Bearer token for `Authorization: Bearer ...` and the WebSocket `auth` frame.
    pub token: String,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at: i64,
    pub user: UserInfo,
}

/// `POST /api/v1/messages`: exactly one of `to` (a username) or `conversation_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<i64>,
    pub body: String,
    /// Idempotency key; when absent the server makes one, so the send is not retry-safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// `text` (the default) or, for admin accounts, `broadcast`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MessageKind>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendResponse {
    pub conversation_id: i64,
    pub seq: i64,
    pub ts: i64,
    pub client_msg_id: String,
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub conversation_id: i64,
    pub messages: Vec<Message>,
    pub has_more: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationsResponse {
    pub conversations: Vec<Conversation>,
    /// The newest message of each conversation that has one, by conversation id: what a
    /// conversation list shows under each name.
    #[serde(default)]
    pub last_messages: Vec<Message>,
}

/// `GET /api/v1/conversations/{id}/reads`: every member's read cursor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadsResponse {
    pub conversation_id: i64,
    /// By username.
    pub reads: Vec<ReadCursor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCursor {
    pub user: String,
    pub seq: i64,
}

/// `GET /api/v1/users?q=...` (the directory) and `GET /api/v1/contacts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsersResponse {
    pub users: Vec<UserInfo>,
}

/// `POST /api/v1/users` (admins only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateUserRequest {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub org: String,
    #[serde(default)]
    pub admin: bool,
}

/// `PUT /api/v1/presence`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetPresenceRequest {
    pub status: PresenceStatus,
    #[serde(default)]
    pub text: String,
}

/// `GET /api/v1/presence`: the presence of everyone the caller shares a conversation with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PresenceResponse {
    pub presences: Vec<Presence>,
}

/// `POST /api/v1/conversations/direct`: opens (creating on first use) the direct
/// conversation with `user`; answers with the [`crate::Conversation`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenDirectRequest {
    pub user: String,
}
