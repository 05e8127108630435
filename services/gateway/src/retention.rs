//! Retention policies and legal holds, for admins: `GET`/`PUT /api/v1/admin/retention`,
//! `DELETE /api/v1/admin/retention/{default|conversation id}`, and
//! `GET`/`POST /api/v1/admin/holds`, `DELETE /api/v1/admin/holds/{id}`.
//!
//! The gateway only records what admins decide; the job that deletes runs in storage
//! (`switchboard_storage::retention`), in `switchboard storage` or the embedded server.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use switchboard_protocol::ErrorCode;
use switchboard_protocol::rest::{
    HoldRequest, HoldsResponse, LegalHold, RetentionPolicies, RetentionPolicy,
};
use switchboard_storage::User;

use crate::rest::{Body, Caller, ClientIp};
use crate::{ApiError, AuditEvent, Gateway};

fn admin_only(user: &User) -> Result<(), ApiError> {
    if user.admin {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::Forbidden, "only admins manage retention and legal holds"))
    }
}

pub fn routes() -> Router<Gateway> {
    Router::new()
        .route("/api/v1/admin/retention", get(policies).put(set_policy))
        .route("/api/v1/admin/retention/{scope}", delete(clear_policy))
        .route("/api/v1/admin/holds", get(holds).post(add_hold))
        .route("/api/v1/admin/holds/{id}", delete(remove_hold))
}

async fn policies(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
) -> Result<Json<RetentionPolicies>, ApiError> {
    admin_only(&user)?;
    Ok(Json(RetentionPolicies { policies: gateway.store().retention_policies().await? }))
}

async fn set_policy(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    ClientIp(ip): ClientIp,
    Body(req): Body<RetentionPolicy>,
) -> Result<Json<RetentionPolicy>, ApiError> {
    admin_only(&user)?;
    if req.keep_days.is_some_and(|d| d < 1) {
        return Err(ApiError::invalid("keep_days must be at least 1 (omit it to keep forever)"));
    }
    gateway.store().set_retention(req.conversation_id, req.keep_days).await?;
    let keep = req.keep_days.map_or("keep forever".to_owned(), |d| format!("keep {d} days"));
    gateway.audit(AuditEvent {
        actor: &user.username,
        action: "retention.set",
        target: &scope_name(req.conversation_id),
        ip,
        detail: &keep,
    });
    Ok(Json(req))
}

/// `{scope}` is `default` (the organisation's default: then everything without its own
/// policy is kept) or a conversation id (it follows the default again).
async fn clear_policy(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    ClientIp(ip): ClientIp,
    Path(scope): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_only(&user)?;
    let conversation = match scope.as_str() {
        "default" => None,
        id => Some(
            id.parse::<i64>()
                .map_err(|_| ApiError::invalid("the scope is `default` or a conversation id"))?,
        ),
    };
    gateway.store().clear_retention(conversation).await?;
    gateway.audit(AuditEvent {
        actor: &user.username,
        action: "retention.clear",
        target: &scope_name(conversation),
        ip,
        detail: "",
    });
    Ok(StatusCode::NO_CONTENT)
}

async fn holds(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
) -> Result<Json<HoldsResponse>, ApiError> {
    admin_only(&user)?;
    Ok(Json(HoldsResponse { holds: gateway.store().legal_holds().await? }))
}

async fn add_hold(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    ClientIp(ip): ClientIp,
    Body(req): Body<HoldRequest>,
) -> Result<(StatusCode, Json<LegalHold>), ApiError> {
    admin_only(&user)?;
    let held = match (&req.user, req.conversation_id) {
        (Some(name), None) => Some(gateway.store().user_by_name(name).await?),
        (None, Some(_)) => None,
        _ => return Err(ApiError::invalid("a hold names either a user or a conversation_id")),
    };
    let hold =
        gateway.store().add_hold(held.as_ref(), req.conversation_id, &req.reason, &user).await?;
    let target = match (&hold.user, hold.conversation_id) {
        (Some(name), _) => name.clone(),
        (None, conversation) => scope_name(conversation),
    };
    gateway.audit(AuditEvent {
        actor: &user.username,
        action: "hold.add",
        target: &target,
        ip,
        detail: &format!("hold {}: {}", hold.id, hold.reason),
    });
    Ok((StatusCode::CREATED, Json(hold)))
}

async fn remove_hold(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    ClientIp(ip): ClientIp,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    admin_only(&user)?;
    gateway.store().remove_hold(id).await?;
    gateway.audit(AuditEvent {
        actor: &user.username,
        action: "hold.remove",
        target: &format!("hold:{id}"),
        ip,
        detail: "",
    });
    Ok(StatusCode::NO_CONTENT)
}

/// A retention policy's scope as the audit log names it.
fn scope_name(conversation: Option<i64>) -> String {
    conversation.map_or("default".to_owned(), |id| format!("conversation:{id}"))
}
