//! What organisations' own systems use to reach people: bot accounts, incoming webhooks
//! and org broadcasts. The operations (on [`Gateway`]) and their HTTP endpoints; the
//! directory import is `directory.rs`.
//!
//! - A **bot** is an account flagged `bot`, with no password and a long-lived API token.
//!   It posts and listens like anyone (same membership checks); its messages carry its
//!   display name as `author`.
//! - A **webhook** belongs to a conversation. Its URL is `/hooks/whk_{id}_{secret}`; only
//!   the secret's SHA-256 is stored, compared in constant time, and the URL is never
//!   logged. A post is stored as a `system` message sent by the webhook's creator with the
//!   payload's `username` (else the webhook's name) as `author`, through the same append
//!   and fan-out as any message.
//! - A **broadcast** is stored once (one row) and fanned out per gateway: each gateway
//!   pushes it to its own sessions whose user is under the org-unit path (in a cluster the
//!   router hands it to every gateway, looking nobody up). People offline get it when a
//!   session next signs in (`Outbound::PendingBroadcasts`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use switchboard_protocol::rest::{
    BotCreated, BroadcastAck, BroadcastRequest, BroadcastStatus, CreateBotRequest,
    CreateWebhookRequest, WebhookCreated, WebhookPayload, WebhookPosted,
};
use switchboard_protocol::{Broadcast, ErrorCode, MessageKind, ServerFrame, org_under};
use switchboard_storage::{Appended, NewBroadcast, NewMessage, NewUser, User, Webhook, now_ms};

use crate::hub::Outbound;
use crate::rest::{Body, Caller, ClientIp};
use crate::{ApiError, AuditEvent, Gateway, auth};

/// Bot tokens live ten years: scripts should not break every month. Revoke with logout.
const BOT_TOKEN_TTL_MS: i64 = 10 * 365 * 24 * 3600 * 1000;
/// A password hash no password matches: bots and imported accounts cannot sign in with a
/// password until one is set.
pub(crate) const NO_PASSWORD: &str = "!";
/// Prefix of webhook keys, so secret scanners and people can recognise one.
const WEBHOOK_PREFIX: &str = "whk_";
/// Longest author name a webhook post may set, in characters (Slack's limit too).
const MAX_AUTHOR: usize = 80;
/// Longest org-unit path, in bytes.
const MAX_ORG_PATH: usize = 500;

/// `a == b` in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The webhook id and secret in a key `whk_{id}_{secret}`.
fn parse_webhook_key(key: &str) -> Option<(i64, &str)> {
    let (id, secret) = key.strip_prefix(WEBHOOK_PREFIX)?.split_once('_')?;
    Some((id.parse().ok()?, secret))
}

/// An org-unit path as stored: trimmed, no trailing `/`, no empty segment.
pub(crate) fn normalize_org(path: &str) -> Result<String, ApiError> {
    let path = path.trim().trim_end_matches('/');
    if path.len() > MAX_ORG_PATH {
        return Err(ApiError::invalid(format!("an org path has at most {MAX_ORG_PATH} bytes")));
    }
    if !path.is_empty() && path.split('/').any(|segment| segment.trim().is_empty()) {
        return Err(ApiError::invalid(format!("org path {path:?} has an empty segment")));
    }
    Ok(path.to_owned())
}

fn webhook_not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such webhook (unknown or revoked)")
}

impl Gateway {
    /// Creates a bot account and a long-lived token for it. `actor` must be an admin
    /// (None: a local admin command).
    pub async fn create_bot(
        &self,
        actor: Option<&User>,
        username: &str,
        display_name: &str,
    ) -> Result<(User, String, i64), ApiError> {
        if actor.is_some_and(|a| !a.admin) {
            return Err(ApiError::new(ErrorCode::Forbidden, "only admins may create bots"));
        }
        auth::validate_username(username)?;
        let display_name = if display_name.trim().is_empty() { username } else { display_name };
        let user = self
            .store()
            .create_user(NewUser {
                username: username.to_owned(),
                display_name: display_name.trim().to_owned(),
                org: String::new(),
                admin: false,
                password_hash: NO_PASSWORD.to_owned(),
                department: String::new(),
                title: String::new(),
                bot: true,
            })
            .await?;
        let token = auth::new_token();
        let expires_at = now_ms() + BOT_TOKEN_TTL_MS;
        self.store().insert_token(&auth::token_hash(&token), user.id, expires_at).await?;
        Ok((user, token, expires_at))
    }

    /// Creates a webhook for `conversation` (admins and the group's owner). Returns it and
    /// its key, which is shown once.
    pub async fn create_webhook(
        &self,
        actor: &User,
        conversation: i64,
        name: &str,
    ) -> Result<(Webhook, String), ApiError> {
        let name = name.trim();
        let name = if name.is_empty() { "Webhook" } else { name };
        if name.chars().count() > MAX_AUTHOR {
            return Err(ApiError::invalid(format!(
                "a webhook name has at most {MAX_AUTHOR} characters"
            )));
        }
        let secret = auth::random_hex(32);
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let webhook = self.store().create_webhook(conversation, actor, name, &hash).await?;
        let key = format!("{WEBHOOK_PREFIX}{}_{secret}", webhook.id);
        Ok((webhook, key))
    }

    pub async fn revoke_webhook(&self, actor: &User, id: i64) -> Result<(), ApiError> {
        Ok(self.store().revoke_webhook(id, actor).await?)
    }

    /// Posts a webhook payload into its conversation. An unknown, malformed or revoked key
    /// is `not_found`, all alike.
    pub async fn post_webhook(
        &self,
        key: &str,
        payload: WebhookPayload,
    ) -> Result<Appended, ApiError> {
        let (id, secret) = parse_webhook_key(key).ok_or_else(webhook_not_found)?;
        let webhook = self.store().webhook(id).await?.ok_or_else(webhook_not_found)?;
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if !constant_time_eq(&hash, &webhook.secret_hash) {
            return Err(webhook_not_found());
        }
        let max = self.config().max_body_bytes;
        if payload.text.len() > max {
            return Err(ApiError::new(
                ErrorCode::MessageTooLarge,
                format!("the text has {} bytes; the limit is {max}", payload.text.len()),
            ));
        }
        if payload.text.trim().is_empty() {
            return Err(ApiError::invalid("text is required and may not be empty"));
        }
        let author = match payload.username.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => webhook.name.clone(),
        };
        if author.chars().count() > MAX_AUTHOR {
            return Err(ApiError::invalid(format!("username has at most {MAX_AUTHOR} characters")));
        }
        // Webhooks share the per-user rate limit's machinery, keyed apart from users.
        self.inner.rate.check(-webhook.id).map_err(ApiError::rate_limited)?;
        let appended = self
            .store()
            .append(NewMessage {
                conversation_id: webhook.conversation_id,
                sender: webhook.creator,
                client_msg_id: None,
                kind: MessageKind::System,
                body: payload.text,
                author: Some(author),
            })
            .await?;
        let members = Some(appended.members.as_slice()).filter(|m| !m.is_empty());
        self.publish(&appended.message, members, None).await;
        Ok(appended)
    }

    /// Sends an org broadcast to everyone under `to` (empty: everyone). Admins may send
    /// anywhere; others within their `broadcast_scope`.
    pub async fn broadcast(
        &self,
        sender: &User,
        to: &str,
        body: String,
        ack_required: bool,
        priority: bool,
    ) -> Result<Broadcast, ApiError> {
        let org = normalize_org(to)?;
        let scope = sender.broadcast_scope.as_str();
        if !sender.admin && (scope.is_empty() || !org_under(&org, scope)) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("{} may not broadcast to {org:?}", sender.username),
            ));
        }
        self.check_body(&body)?;
        let broadcast = self
            .store()
            .create_broadcast(NewBroadcast {
                sender: sender.clone(),
                org: org.clone(),
                body,
                ack_required,
                priority,
            })
            .await?;
        let frame: axum::extract::ws::Utf8Bytes =
            ServerFrame::Broadcast { broadcast: broadcast.clone() }.to_json().into();
        if let Some(router) = &self.inner.router
            && !router.route(Outbound::routed_broadcast(broadcast.id, &org, &frame))
        {
            tracing::warn!(
                broadcast = broadcast.id,
                "no router linked; other gateways get it on sign-in"
            );
        }
        let local =
            self.inner.hub.deliver_org(&org, Outbound::Broadcast { id: broadcast.id, frame });
        tracing::info!(broadcast = broadcast.id, %org, local, "broadcast sent");
        Ok(broadcast)
    }

    pub async fn ack_broadcast(&self, user: &User, id: i64) -> Result<(), ApiError> {
        Ok(self.store().ack_broadcast(id, user).await?)
    }

    /// Who was sent a broadcast and who acknowledged it: for its sender and admins.
    pub async fn broadcast_status(
        &self,
        viewer: &User,
        id: i64,
    ) -> Result<BroadcastStatus, ApiError> {
        let (broadcast, recipients) = self.store().broadcast_status(id).await?;
        if !viewer.admin && viewer.username != broadcast.sender {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the sender and admins may see a broadcast's acknowledgements",
            ));
        }
        let mut acknowledged = Vec::new();
        let mut pending = Vec::new();
        for (user, acked) in recipients {
            match acked {
                Some(ts) => acknowledged.push(BroadcastAck { user, ts }),
                None => pending.push(user),
            }
        }
        Ok(BroadcastStatus { broadcast, acknowledged, pending })
    }
}

pub fn routes() -> Router<Gateway> {
    Router::new()
        .route("/api/v1/admin/bots", post(create_bot))
        .route("/api/v1/conversations/{id}/webhooks", post(create_webhook))
        .route("/api/v1/webhooks/{id}", delete(revoke_webhook))
        .route("/hooks/{key}", post(post_webhook))
        .route("/api/v1/broadcasts", post(broadcast))
        .route("/api/v1/broadcasts/{id}", get(broadcast_status))
        .route("/api/v1/broadcasts/{id}/ack", post(ack_broadcast))
}

async fn create_bot(
    State(gateway): State<Gateway>,
    Caller(admin): Caller,
    ClientIp(ip): ClientIp,
    Body(req): Body<CreateBotRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (user, token, expires_at) =
        gateway.create_bot(Some(&admin), &req.username, &req.display_name).await?;
    gateway.audit(AuditEvent {
        actor: &admin.username,
        action: "bot.create",
        target: &user.username,
        ip,
        detail: "",
    });
    Ok((StatusCode::CREATED, Json(BotCreated { user: user.info(), token, expires_at })))
}

async fn create_webhook(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    ClientIp(ip): ClientIp,
    Path(id): Path<i64>,
    Body(req): Body<CreateWebhookRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let (webhook, key) = gateway.create_webhook(&user, id, &req.name).await?;
    gateway.audit(AuditEvent {
        actor: &user.username,
        action: "webhook.create",
        target: &format!("webhook:{}", webhook.id),
        ip,
        detail: &format!("conversation {} name {:?}", webhook.conversation_id, webhook.name),
    });
    let created = WebhookCreated {
        id: webhook.id,
        conversation_id: webhook.conversation_id,
        name: webhook.name,
        path: format!("/hooks/{key}"),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

async fn revoke_webhook(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    ClientIp(ip): ClientIp,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    gateway.revoke_webhook(&user, id).await?;
    gateway.audit(AuditEvent {
        actor: &user.username,
        action: "webhook.revoke",
        target: &format!("webhook:{id}"),
        ip,
        detail: "",
    });
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /hooks/{key}`: no bearer token, the key is the credential. Not instrumented and
/// never logged: the key is a secret.
async fn post_webhook(
    State(gateway): State<Gateway>,
    Path(key): Path<String>,
    Body(payload): Body<WebhookPayload>,
) -> Result<Json<WebhookPosted>, ApiError> {
    let appended = gateway.post_webhook(&key, payload).await?;
    Ok(Json(WebhookPosted {
        ok: true,
        conversation_id: appended.message.conversation_id,
        seq: appended.message.seq,
    }))
}

async fn broadcast(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    ClientIp(ip): ClientIp,
    Body(req): Body<BroadcastRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let broadcast = gateway.broadcast(&user, &req.to, req.body, req.ack, req.priority).await?;
    gateway.audit(AuditEvent {
        actor: &user.username,
        action: "broadcast.send",
        target: &broadcast.org,
        ip,
        detail: &format!(
            "broadcast {}{}{}",
            broadcast.id,
            if broadcast.ack_required { ", ack required" } else { "" },
            if broadcast.priority { ", priority" } else { "" }
        ),
    });
    Ok((StatusCode::CREATED, Json(broadcast)))
}

async fn broadcast_status(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path(id): Path<i64>,
) -> Result<Json<BroadcastStatus>, ApiError> {
    Ok(Json(gateway.broadcast_status(&user, id).await?))
}

async fn ack_broadcast(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    gateway.ack_broadcast(&user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_keys_parse_strictly() {
        assert_eq!(parse_webhook_key("whk_12_abc"), Some((12, "abc")));
        assert_eq!(parse_webhook_key("whk_x_abc"), None);
        assert_eq!(parse_webhook_key("sbt_12_abc"), None);
        assert_eq!(parse_webhook_key("whk_12"), None);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn org_paths_are_normalized() {
        assert_eq!(normalize_org(" HQ/Building 2/ ").ok().as_deref(), Some("HQ/Building 2"));
        assert_eq!(normalize_org("").ok().as_deref(), Some(""));
        assert!(normalize_org("HQ//Floor").is_err());
    }
}
