//! Bodies of the REST API (`/api/v1/...`). Errors use [`crate::ErrorBody`].

use serde::{Deserialize, Serialize};

use crate::{
    Conversation, Message, MessageKind, Presence, PresenceStatus, SearchHit, SearchSort, UserInfo,
};

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
    /// Reply in the thread of this message of `conversation_id` (which must be given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_seq: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendResponse {
    pub conversation_id: i64,
    pub seq: i64,
    pub ts: i64,
    pub client_msg_id: String,
    pub duplicate: bool,
}

/// Answer to `POST /api/v1/conversations/{id}/attachments`: the message that carries the
/// file (as for a send) and the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadResponse {
    pub conversation_id: i64,
    pub seq: i64,
    pub ts: i64,
    pub client_msg_id: String,
    pub duplicate: bool,
    pub attachment: crate::Attachment,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub conversation_id: i64,
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// Answer to `GET /api/v1/conversations/{id}/messages/{seq}/thread`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadResponse {
    pub conversation_id: i64,
    /// The thread's first message, with its `reply_count`.
    pub root: Message,
    /// Replies with `seq > after_seq`, oldest first.
    pub replies: Vec<Message>,
    /// More replies follow: ask again with `after_seq` = the last reply's seq.
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

/// `POST /api/v1/admin/bots` (admins only): creates a bot account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBotRequest {
    pub username: String,
    #[serde(default)]
    pub display_name: String,
}

/// A new bot and its API token (shown once; the server keeps only its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BotCreated {
    pub user: UserInfo,
    pub token: String,
    pub expires_at: i64,
}

/// `POST /api/v1/conversations/{id}/webhooks` (admins and the group's owner).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Shown as the author of posts whose payload names no `username`.
    #[serde(default)]
    pub name: String,
}

/// A new incoming webhook. `url` holds the secret: it is shown once and never again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookCreated {
    pub id: i64,
    pub conversation_id: i64,
    pub name: String,
    /// Path (`/hooks/whk_...`) to POST to, relative to the server's URL.
    pub path: String,
}

/// What an incoming webhook accepts: the shape of Slack's incoming webhooks. Fields Slack
/// knows and Switchboard does not (`icon_emoji`, `channel`, `blocks`, ...) are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookPayload {
    pub text: String,
    /// Shown as the author instead of the webhook's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// Answer to a webhook post.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookPosted {
    pub ok: bool,
    pub conversation_id: i64,
    pub seq: i64,
}

/// `POST /api/v1/broadcasts`: to everyone under `to` (an org-unit path; empty for all).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    #[serde(default)]
    pub to: String,
    pub body: String,
    #[serde(default)]
    pub ack: bool,
    #[serde(default)]
    pub priority: bool,
}

/// `GET /api/v1/broadcasts/{id}`: who was sent a broadcast and who acknowledged it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BroadcastStatus {
    pub broadcast: crate::Broadcast,
    /// Recipients (everyone under the path now) who acknowledged it, by username.
    pub acknowledged: Vec<BroadcastAck>,
    /// Recipients who have not, by username.
    pub pending: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastAck {
    pub user: String,
    /// When, in milliseconds since the Unix epoch.
    pub ts: i64,
}

/// Answer to `POST /api/v1/admin/directory` (a CSV import).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Accounts created, by username.
    pub created: Vec<String>,
    /// Accounts whose directory fields changed, by username.
    pub updated: Vec<String>,
    /// Rows that matched their account already.
    pub unchanged: u64,
    /// True when nothing was written (`?dry_run=true`).
    #[serde(default)]
    pub dry_run: bool,
}

/// `PATCH /api/v1/conversations/{id}/messages/{seq}`: new text for one's own message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    pub body: String,
    /// Idempotency key, as for a send; when absent the server makes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

/// A message search (`GET /api/v1/search?q=...`, and the WebSocket `search` frame): only
/// the searcher's conversations are searched. `q` holds words, `"phrases"`, `prefix*` and
/// the operators `from:`, `in:`, `before:`, `after:` and `on:`; the other fields do the
/// same as those operators and win over them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    #[serde(default)]
    pub q: String,
    /// Only messages sent by this username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Only this conversation: an id, a group's name, or a username (your direct
    /// conversation with them).
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub in_conversation: Option<String>,
    /// Only messages sent before this day (`YYYY-MM-DD`, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Only messages sent on or after this day (`YYYY-MM-DD`, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<SearchSort>,
    /// Results to skip: the previous pages' results (at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    /// Results per page: default 20, at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Answer to a message search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResponse {
    pub results: Vec<SearchHit>,
    /// More results exist: ask again with `offset` + the number of results so far.
    pub has_more: bool,
}

/// Answer to `PUT`/`DELETE /api/v1/conversations/{id}/messages/{seq}/reactions/{emoji}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionResponse {
    /// The seq of the `react`/`unreact` entry stored; absent when nothing changed (the
    /// reaction was already there, or already gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

/// A retention policy (`GET`/`PUT /api/v1/admin/retention`). Without `conversation_id`
/// it is the organisation's default, which every conversation without its own follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<i64>,
    /// Messages older than this many days are deleted; absent: kept forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<i64>,
}

/// `GET /api/v1/admin/retention`: the organisation's default (absent: keep forever) and
/// every conversation's own policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicies {
    pub policies: Vec<RetentionPolicy>,
}

/// `POST /api/v1/admin/holds`: keep a user's messages (everywhere) or a conversation's
/// (all of them) whatever the retention policy says. Exactly one of `user` and
/// `conversation_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<i64>,
    #[serde(default)]
    pub reason: String,
}

/// A legal hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalHold {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<i64>,
    pub reason: String,
    /// The admin who placed it.
    pub created_by: String,
    pub created_at: i64,
}

/// `GET /api/v1/admin/holds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldsResponse {
    pub holds: Vec<LegalHold>,
}

/// One entry of the audit log (`GET /api/v1/admin/audit`): a security-relevant event.
/// Messages themselves are never audited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increasing, unique; page with `before` = the last id you got.
    pub id: i64,
    /// When it happened, milliseconds since the Unix epoch.
    pub ts: i64,
    /// Username of who did it (for a failed sign-in, the name that was tried); `-` for a
    /// local admin command run on the server's own data.
    pub actor: String,
    /// What happened, e.g. `auth.login`, `auth.login_failed`, `user.update` (the list is in
    /// `docs/security.md`).
    pub action: String,
    /// What it was done to: a username, `conversation:12`, `webhook:3`, an org path; may be
    /// empty.
    #[serde(default)]
    pub target: String,
    /// The client's IP address as the gateway saw it; empty for local commands.
    #[serde(default)]
    pub ip: String,
    /// Details in words, e.g. the reason a sign-in failed or the flags that changed.
    #[serde(default)]
    pub detail: String,
}

/// `GET /api/v1/admin/audit`: newest first, at most `limit` (default 100, at most 1000).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only entries by this username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only this action (`auth.login_failed`), or every action under a prefix ending in
    /// `.` (`auth.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only entries at or after this time (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Only entries before this time (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Paging: only entries with an id below this (the previous page's `next_before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Answer to `GET /api/v1/admin/audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditResponse {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Set when older entries may follow: ask again with `before` = this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// `PUT /api/v1/admin/users/{name}`: changes an account's role or disables it. Absent
/// fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
    /// A disabled account cannot sign in and its tokens stop working (until enabled again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// Answer to `PUT /api/v1/admin/users/{name}`: the account's flags now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFlags {
    pub username: String,
    pub admin: bool,
    pub disabled: bool,
}

/// `GET /api/v1/admin/export` (admins): one page of the compliance export, in
/// `(conversation_id, seq)` order. Lists are comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Messages sent at or after this time (milliseconds since the Unix epoch).
    pub from: i64,
    /// Messages sent before this time (milliseconds).
    pub to: i64,
    /// Only these conversations (ids, comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversations: Option<String>,
    /// Only messages sent by these users (usernames, comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<String>,
    /// The page starts after this `CONVERSATION:SEQ` (the previous page's `next_after`);
    /// absent: a new export starts (audited as `export.start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Records per page (default 500, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Also answer `total`: how many records the whole export has (a count query).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub count: bool,
    /// This page resumes an interrupted export (audited as `export.resume`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
    /// The file format the client writes (`jsonl`, `csv`, `eml`), for the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// Answer to `GET /api/v1/admin/export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportResponse {
    pub records: Vec<ExportRecord>,
    /// Set when more records may follow: ask again with `after` = this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
    /// Records in the whole export (when asked with `count`); more may arrive while it
    /// runs if `to` is in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

/// One message as the compliance export has it: the message (its `body` is the text
/// now, even when `deleted`), where it was said, and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub conversation: ExportConversation,
    /// The message as storage holds it (reactions are in the record's own `reactions`).
    pub message: Message,
    /// The sender's display name now.
    pub sender_name: String,
    /// The text as first sent, when it was edited since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_body: Option<String>,
    /// Every edit still stored, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<ExportEdit>,
    /// When it was deleted (milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    /// Who deleted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    /// Reactions now, each emoji with who gave it, in the order first given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ExportReaction>,
}

/// The conversation an exported message belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportConversation {
    pub id: i64,
    pub kind: crate::ConversationKind,
    /// A group's name; empty for a direct conversation.
    pub name: String,
    /// A direct conversation's members (usernames, sorted); empty for groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// One edit of an exported message: its own entry's seq, when, by whom, the new text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEdit {
    pub seq: i64,
    pub edited_at: i64,
    pub by: String,
    pub body: String,
}

/// One emoji on an exported message and who reacted with it (usernames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportReaction {
    pub emoji: String,
    pub users: Vec<String>,
}
