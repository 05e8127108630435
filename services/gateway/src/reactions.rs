//! Emoji reactions: the operation (on [`Gateway`]) and its REST endpoints
//! (`PUT`/`DELETE /api/v1/conversations/{id}/messages/{seq}/reactions/{emoji}`); the
//! WebSocket `react`/`unreact` frames call the same [`Gateway::react`].
//!
//! A change is stored as a `react`/`unreact` entry with its own seq (see
//! `storage/src/sql/reactions.rs`) and fanned out like a message, so sessions order it
//! with everything else and a backfill by seq brings it.

use axum::extract::{Path, State};
use axum::routing::put;
use axum::{Json, Router};
use switchboard_protocol::check_reaction;
use switchboard_protocol::rest::ReactionResponse;
use switchboard_storage::User;

use crate::rest::Caller;
use crate::{ApiError, Gateway};

impl Gateway {
    /// Adds (`add`) or takes back `user`'s reaction on message `seq`. Returns the seq of
    /// the entry stored, None when nothing changed (then nothing is fanned out).
    pub async fn react(
        &self,
        user: &User,
        conversation: i64,
        seq: i64,
        emoji: &str,
        add: bool,
    ) -> Result<Option<i64>, ApiError> {
        check_reaction(emoji).map_err(ApiError::invalid)?;
        // Each change is a stored entry, like a send.
        self.inner.rate.check(user.id).map_err(ApiError::rate_limited)?;
        let Some(appended) = self.store().react(user, conversation, seq, emoji, add).await? else {
            return Ok(None);
        };
        let members = Some(appended.members.as_slice()).filter(|m| !m.is_empty());
        self.publish(&appended.message, members, None).await;
        Ok(Some(appended.message.seq))
    }
}

pub fn routes() -> Router<Gateway> {
    Router::new().route(
        "/api/v1/conversations/{id}/messages/{seq}/reactions/{emoji}",
        put(add_reaction).delete(remove_reaction),
    )
}

async fn add_reaction(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path((id, seq, emoji)): Path<(i64, i64, String)>,
) -> Result<Json<ReactionResponse>, ApiError> {
    Ok(Json(ReactionResponse { seq: gateway.react(&user, id, seq, &emoji, true).await? }))
}

async fn remove_reaction(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path((id, seq, emoji)): Path<(i64, i64, String)>,
) -> Result<Json<ReactionResponse>, ApiError> {
    Ok(Json(ReactionResponse { seq: gateway.react(&user, id, seq, &emoji, false).await? }))
}
