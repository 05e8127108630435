//! Account administration: `PUT /api/v1/admin/users/{name}` changes an account's role
//! (admin or not) or disables it. A disabled account cannot sign in, its tokens are
//! refused (`Store::credentials`, `Store::user_by_token`) and its open sessions, on every
//! gateway, are ended; enabling it again brings the tokens back. Every change is audited (`user.update`).

use axum::extract::{Path, State};
use axum::routing::put;
use axum::{Json, Router};
use switchboard_protocol::ErrorCode;
use switchboard_protocol::rest::{UpdateUserRequest, UserFlags};
use switchboard_storage::User;

use crate::audit::Event;
use crate::rest::{Body, Caller, ClientIp};
use crate::{ApiError, Gateway};

impl Gateway {
    /// Sets `username`'s admin and disabled flags (None: unchanged). `actor` must be an
    /// admin (None: a local admin command). Admins cannot disable themselves or take
    /// their own admin role away, so the last admin cannot lock everyone out by mistake.
    pub async fn update_user(
        &self,
        actor: Option<&User>,
        username: &str,
        change: &UpdateUserRequest,
        ip: Option<std::net::IpAddr>,
    ) -> Result<UserFlags, ApiError> {
        if let Some(actor) = actor {
            if !actor.admin {
                return Err(ApiError::new(ErrorCode::Forbidden, "only admins may change accounts"));
            }
            if actor.username == username
                && (change.disabled == Some(true) || change.admin == Some(false))
            {
                return Err(ApiError::invalid(
                    "you cannot disable yourself or take away your own admin role",
                ));
            }
        }
        if change.admin.is_none() && change.disabled.is_none() {
            return Err(ApiError::invalid("say what to change: admin, disabled or both"));
        }
        let (user, disabled) =
            self.store().update_user(username, change.admin, change.disabled).await?;
        if change.disabled == Some(true) {
            // Its tokens are refused from now on; sessions signed in before end too.
            self.end_sessions(user.id, None, "this account was disabled by an administrator");
        }
        let mut detail = Vec::new();
        if let Some(admin) = change.admin {
            detail.push(format!("admin={admin}"));
        }
        if let Some(disabled) = change.disabled {
            detail.push(format!("disabled={disabled}"));
        }
        self.audit(Event {
            actor: actor.map_or(crate::LOCAL_ACTOR, |a| a.username.as_str()),
            action: "user.update",
            target: username,
            ip,
            detail: &detail.join(" "),
        });
        Ok(UserFlags { username: user.username, admin: user.admin, disabled })
    }
}

pub(crate) fn routes() -> Router<Gateway> {
    Router::new().route("/api/v1/admin/users/{name}", put(update_user))
}

async fn update_user(
    State(gateway): State<Gateway>,
    Caller(admin): Caller,
    ClientIp(ip): ClientIp,
    Path(name): Path<String>,
    Body(req): Body<UpdateUserRequest>,
) -> Result<Json<UserFlags>, ApiError> {
    Ok(Json(gateway.update_user(Some(&admin), &name, &req, ip).await?))
}
