//! HTTP: the REST API under `/api/v1`, the WebSocket upgrade at `/ws`, `/healthz`, and
//! the web client's files (`web`).
//! Every error is a JSON [`switchboard_protocol::ErrorBody`] with a stable code.

use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use std::net::IpAddr;

use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use switchboard_protocol::rest::{
    ConversationsResponse, CreateUserRequest, EditRequest, HistoryResponse, LoginRequest,
    LoginResponse, OpenDirectRequest, PresenceResponse, ReadCursor, ReadsResponse, SearchParams,
    SearchResponse, SendRequest, SendResponse, SetPresenceRequest, ThreadResponse, UsersResponse,
};
use switchboard_protocol::{ErrorCode, MessageKind};
use switchboard_storage::User;

use crate::ops::Target;
use crate::{ApiError, AuditEvent, Gateway, auth, session};

pub fn routes(gateway: Gateway) -> Router {
    // Room for the largest body plus JSON quoting and the other fields.
    let body_limit = gateway.config().max_body_bytes * 2 + 16 * 1024;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ws", get(websocket))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", post(create_user).get(directory))
        .route("/api/v1/contacts", get(contacts))
        .route("/api/v1/messages", post(send))
        .route("/api/v1/conversations", get(conversations))
        .route("/api/v1/conversations/direct", post(open_direct))
        .route("/api/v1/conversations/{id}/messages", get(history))
        .route("/api/v1/conversations/{id}/reads", get(reads))
        .route(
            "/api/v1/conversations/{id}/messages/{seq}",
            axum::routing::patch(edit_message).delete(delete_message),
        )
        .route("/api/v1/conversations/{id}/messages/{seq}/thread", get(thread))
        .route("/api/v1/presence", get(presence).put(set_presence))
        .route("/api/v1/search", get(search))
        .route("/api/v1/admin/provision", post(crate::provision::provision))
        .merge(crate::org::routes())
        .merge(crate::reactions::routes())
        .merge(crate::attachments::routes())
        .merge(crate::retention::routes())
        .merge(crate::audit::routes())
        .merge(crate::export::routes())
        .merge(crate::admin::routes())
        .merge(crate::directory::routes())
        .merge(crate::web::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(json_errors))
        // Outermost, so error answers carry the CORS headers too.
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), crate::origin::cors))
        .with_state(gateway)
}

/// A JSON body whose rejections (bad JSON, too large) are our JSON errors.
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::MessageTooLarge, "the request body is too large")
            } else {
                ApiError::invalid(e.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            ApiError::new(ErrorCode::MalformedFrame, format!("invalid JSON body: {e}"))
        })
    }
}

/// The bearer token of a request, from `Authorization: Bearer ...`.
struct Token(String);

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        bearer(&parts.headers).map(Token).ok_or_else(|| {
            ApiError::new(ErrorCode::Unauthenticated, "missing Authorization: Bearer <token>")
        })
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ")?.trim().to_owned())
}

/// The client's address, for the per-IP limits: the TCP peer, or the configured header
/// a reverse proxy sets ([`crate::Config::client_ip_header`]) when the request has it.
/// None when unknown (a gateway not served by [`crate::run`]).
pub(crate) struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<Gateway> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Gateway,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<crate::Peer>>().map(|c| c.0.0.ip());
        let Some(name) = &gateway.config().client_ip_header else { return Ok(ClientIp(peer)) };
        let value = parts.headers.get(name.as_str()).and_then(|v| v.to_str().ok());
        let forwarded = value.and_then(|v| {
            let last = if name.eq_ignore_ascii_case("x-forwarded-for") {
                v.rsplit(',').next().unwrap_or(v)
            } else {
                v
            };
            last.trim().parse().ok()
        });
        // Without the header (a client that reached the gateway directly), the peer.
        Ok(ClientIp(forwarded.or(peer)))
    }
}

/// The signed-in user of a request.
pub(crate) struct Caller(pub User);

impl FromRequestParts<Gateway> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Gateway,
    ) -> Result<Self, Self::Rejection> {
        let Token(token) = Token::from_request_parts(parts, gateway).await?;
        Ok(Caller(auth::authenticate(gateway.store().as_ref(), &token).await?))
    }
}

/// Turns the framework's own plain-text rejections (a bad path or query parameter, a
/// wrong method, a failed upgrade) into JSON errors, so every error a client sees has a
/// code. Our handlers' errors are JSON already and pass through.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("request failed").to_owned()
    } else {
        text.into_owned()
    };
    let code = match status.as_u16() {
        404 => ErrorCode::NotFound,
        413 => ErrorCode::MessageTooLarge,
        500.. => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let mut response = ApiError::new(code, message).into_response();
    *response.status_mut() = status;
    response
}

/// Liveness: the process answers.
async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: whether load balancers should send new clients here.
async fn readyz(State(gateway): State<Gateway>) -> Response {
    match gateway.ready().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(why) => {
            ApiError::new(ErrorCode::Unavailable, format!("not ready: {why}")).into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint; see docs/protocol.md")
}

#[derive(Deserialize)]
struct WsQuery {
    token: Option<String>,
}

async fn websocket(
    State(gateway): State<Gateway>,
    ClientIp(ip): ClientIp,
    Query(query): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(e) = crate::origin::check_upgrade(&gateway, &headers) {
        return e.into_response();
    }
    if *gateway.inner.draining.borrow() {
        return ApiError::new(
            ErrorCode::ShuttingDown,
            "this gateway is draining; connect to another",
        )
        .into_response();
    }
    let token = bearer(&headers).or(query.token);
    let frame_limit = gateway.config().max_frame_bytes;
    upgrade
        // A small read buffer: tungstenite would otherwise touch 128 KiB per connection on
        // its first read, and it is allocated whole for every idle connection. Client
        // frames are mostly well under 1 KiB; larger ones are read in several steps.
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        .on_upgrade(move |socket| session::serve(socket, gateway, token, ip))
}

async fn login(
    State(gateway): State<Gateway>,
    ClientIp(ip): ClientIp,
    Body(req): Body<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    match gateway.login_from(ip, &req.username, &req.password).await {
        Ok((token, expires_at, user)) => {
            gateway.audit(AuditEvent {
                actor: &user.username,
                action: "auth.login",
                target: "",
                ip,
                detail: "",
            });
            Ok(Json(LoginResponse { token, expires_at, user: user.info() }))
        }
        Err(e) => {
            let reason = if e.code() == ErrorCode::InvalidCredentials {
                gateway.why_login_failed(&req.username).await
            } else {
                e.to_string()
            };
            gateway.audit(AuditEvent {
                actor: &req.username,
                action: "auth.login_failed",
                target: "",
                ip,
                detail: &reason,
            });
            Err(e)
        }
    }
}

/// Revokes the caller's token and ends the WebSocket sessions signed in with it (an
/// unknown or revoked token is answered alike, 204).
async fn logout(
    State(gateway): State<Gateway>,
    ClientIp(ip): ClientIp,
    Token(token): Token,
) -> Result<StatusCode, ApiError> {
    let hash = auth::token_hash(&token);
    let owner = gateway.store().user_by_token(&hash).await?;
    gateway.store().revoke_token(&hash).await?;
    if let Some(owner) = owner {
        // WebSocket sessions signed in with this token end with it (on every gateway).
        gateway.end_sessions(owner.id, Some(hash), "signed out: this token was revoked");
        gateway.audit(AuditEvent {
            actor: &owner.username,
            action: "auth.logout",
            target: "",
            ip,
            detail: "token revoked",
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn me(Caller(user): Caller) -> impl IntoResponse {
    Json(user.info())
}

async fn create_user(
    State(gateway): State<Gateway>,
    Caller(admin): Caller,
    ClientIp(ip): ClientIp,
    Body(req): Body<CreateUserRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let user = gateway
        .create_user(
            Some(&admin),
            &req.username,
            req.password,
            &req.display_name,
            &req.org,
            req.admin,
        )
        .await?;
    gateway.audit(AuditEvent {
        actor: &admin.username,
        action: "user.create",
        target: &user.username,
        ip,
        detail: if user.admin { "admin" } else { "" },
    });
    Ok((StatusCode::CREATED, Json(user.info())))
}

/// The idempotency key of a REST write that named none: random, and starting with the
/// time like our clients' keys (docs/protocol.md, `client_msg_id`), so it is stored at
/// the end of the retry index.
pub(crate) fn generated_key() -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{:012x}-rest-{}", now.as_millis(), auth::random_hex(16))
}

async fn send(
    State(gateway): State<Gateway>,
    ClientIp(ip): ClientIp,
    Caller(user): Caller,
    Body(req): Body<SendRequest>,
) -> Result<impl IntoResponse, ApiError> {
    gateway.check_ip_rate(ip)?;
    let target = Target::from_fields(req.conversation_id, req.to)?;
    let client_msg_id = req.client_msg_id.unwrap_or_else(generated_key);
    let kind = req.kind.unwrap_or(MessageKind::Text);
    let thread = req.thread_seq;
    Ok(stored(gateway.send_kind(&user, target, client_msg_id, req.body, kind, thread).await?))
}

async fn conversations(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
) -> Result<Json<ConversationsResponse>, ApiError> {
    let conversations = gateway.store().conversations_of(user.id).await?;
    let last_messages = gateway.store().last_messages(user.id).await?;
    Ok(Json(ConversationsResponse { conversations, last_messages }))
}

async fn open_direct(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Body(req): Body<OpenDirectRequest>,
) -> Result<Json<switchboard_protocol::Conversation>, ApiError> {
    Ok(Json(gateway.open_direct(&user, &req.user).await?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    after_seq: Option<i64>,
    before_seq: Option<i64>,
    limit: Option<u32>,
}

async fn history(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path(id): Path<i64>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let page = gateway.history(&user, id, q.after_seq, q.before_seq, q.limit).await?;
    Ok(Json(HistoryResponse {
        conversation_id: id,
        messages: page.messages,
        has_more: page.has_more,
    }))
}

#[derive(Deserialize)]
struct ThreadQuery {
    after_seq: Option<i64>,
    limit: Option<u32>,
}

/// One thread: its root (with the reply count) and a page of its replies.
async fn thread(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path((id, seq)): Path<(i64, i64)>,
    Query(q): Query<ThreadQuery>,
) -> Result<Json<ThreadResponse>, ApiError> {
    let (root, page) = gateway.thread(&user, id, seq, q.after_seq, q.limit).await?;
    Ok(Json(ThreadResponse {
        conversation_id: id,
        root,
        replies: page.messages,
        has_more: page.has_more,
    }))
}

async fn presence(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
) -> Result<Json<PresenceResponse>, ApiError> {
    Ok(Json(PresenceResponse { presences: gateway.contacts_presence(&user).await? }))
}

async fn set_presence(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Body(req): Body<SetPresenceRequest>,
) -> Result<StatusCode, ApiError> {
    gateway.set_presence(&user, req.status, &req.text).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct DirectoryQuery {
    #[serde(default)]
    q: String,
    limit: Option<u32>,
}

/// The directory: anyone signed in may look people up by name or org unit.
async fn directory(
    State(gateway): State<Gateway>,
    Caller(_): Caller,
    Query(q): Query<DirectoryQuery>,
) -> Result<Json<UsersResponse>, ApiError> {
    Ok(Json(UsersResponse { users: gateway.search_users(&q.q, q.limit).await? }))
}

/// Everyone who shares a conversation with the caller: the names a client shows.
async fn contacts(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
) -> Result<Json<UsersResponse>, ApiError> {
    let users = gateway.store().contacts(user.id).await?;
    Ok(Json(UsersResponse { users: users.iter().map(User::info).collect() }))
}

/// Every member's read cursor: what read receipts are drawn from after a (re)load; the
/// `read` pushes keep them current.
async fn reads(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path(id): Path<i64>,
) -> Result<Json<ReadsResponse>, ApiError> {
    let cursors = gateway.store().read_cursors(id, &user).await?;
    let reads = cursors.into_iter().map(|(user, seq)| ReadCursor { user, seq }).collect();
    Ok(Json(ReadsResponse { conversation_id: id, reads }))
}

/// Message search over the caller's conversations (see `SearchParams`).
async fn search(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Query(params): Query<SearchParams>,
) -> Result<Json<SearchResponse>, ApiError> {
    Ok(Json(gateway.search(&user, params).await?))
}

/// The answer to a send, edit or delete: `201` when stored now, `200` for a retry.
fn stored(appended: switchboard_storage::Appended) -> (StatusCode, Json<SendResponse>) {
    let status = if appended.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let m = appended.message;
    let response = SendResponse {
        conversation_id: m.conversation_id,
        seq: m.seq,
        ts: m.ts,
        client_msg_id: m.client_msg_id.unwrap_or_default(),
        duplicate: appended.duplicate,
    };
    (status, Json(response))
}

/// Replaces the text of one of the caller's messages (an `edit` entry is stored).
async fn edit_message(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path((id, seq)): Path<(i64, i64)>,
    Body(req): Body<EditRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let key = req.client_msg_id.unwrap_or_else(generated_key);
    Ok(stored(gateway.change_message(&user, id, seq, Some(req.body), key).await?))
}

#[derive(Deserialize)]
struct DeleteQuery {
    client_msg_id: Option<String>,
}

/// Deletes one of the caller's messages (a `delete` entry is stored).
async fn delete_message(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path((id, seq)): Path<(i64, i64)>,
    Query(q): Query<DeleteQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let key = q.client_msg_id.unwrap_or_else(generated_key);
    Ok(stored(gateway.change_message(&user, id, seq, None, key).await?))
}
