//! The compliance export, for admins: `GET /api/v1/admin/export` answers one page of
//! every message in a time range (optionally of some conversations, or sent by some
//! users), with the text of deleted messages, every edit, deletions and reactions
//! (`Store::export`). Pages follow a `CONVERSATION:SEQ` cursor, so a client streams an
//! export of any size page by page and resumes it after an interruption.
//!
//! The page that starts an export (no cursor) is audited as `export.start`, and one that
//! resumes it (`resume`) as `export.resume`, with the filters; the pages in between are
//! only logged (target `audit`, `export.page`), so a long export is one or a few stored
//! entries, not thousands.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use switchboard_protocol::ErrorCode;
use switchboard_protocol::rest::{ExportParams, ExportResponse};
use switchboard_protocol::time::rfc3339;
use switchboard_storage::ExportQuery;

use crate::rest::{Caller, ClientIp};
use crate::{ApiError, AuditEvent, Gateway};

/// Records per page unless the client asks otherwise.
const DEFAULT_PAGE: u32 = 200;
/// Most conversations or users one export may name.
const MAX_FILTER: usize = 1000;

pub(crate) fn routes() -> Router<Gateway> {
    Router::new().route("/api/v1/admin/export", get(export))
}

/// A comma-separated list's items, trimmed, empty ones skipped.
fn items(list: Option<&str>) -> Vec<&str> {
    list.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
}

fn parse_cursor(text: &str) -> Option<(i64, i64)> {
    let (conversation, seq) = text.split_once(':')?;
    Some((conversation.parse().ok()?, seq.parse().ok()?))
}

async fn export(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    ClientIp(ip): ClientIp,
    Query(params): Query<ExportParams>,
) -> Result<Json<ExportResponse>, ApiError> {
    if !user.admin {
        return Err(ApiError::new(ErrorCode::Forbidden, "only admins may export history"));
    }
    if params.from >= params.to {
        return Err(ApiError::invalid("`from` must be before `to`"));
    }
    let conversation_ids = items(params.conversations.as_deref());
    let usernames = items(params.users.as_deref());
    if conversation_ids.len() > MAX_FILTER || usernames.len() > MAX_FILTER {
        return Err(ApiError::invalid(format!(
            "an export names at most {MAX_FILTER} conversations and {MAX_FILTER} users"
        )));
    }
    let conversations = conversation_ids
        .iter()
        .map(|id| {
            id.parse::<i64>().map_err(|_| {
                ApiError::invalid(format!("conversations: {id:?} is not a conversation id"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut senders = Vec::with_capacity(usernames.len());
    for name in &usernames {
        senders.push(gateway.store().user_by_name(name).await?.id);
    }
    let after = match params.after.as_deref() {
        None => None,
        Some(text) => Some(parse_cursor(text).ok_or_else(|| {
            ApiError::invalid("`after` is CONVERSATION:SEQ, as `next_after` gave it")
        })?),
    };
    let limit = params.limit.unwrap_or(DEFAULT_PAGE).clamp(1, switchboard_storage::MAX_PAGE);
    let query =
        ExportQuery { from: params.from, to: params.to, conversations, senders, after, limit };
    let total = if params.count { Some(gateway.store().export_count(&query).await?) } else { None };
    let page = gateway.store().export(&query).await?;

    if after.is_none() || params.resume {
        let target = if query.conversations.is_empty() {
            "all conversations".to_owned()
        } else {
            query
                .conversations
                .iter()
                .map(|id| format!("conversation:{id}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut detail = format!("from {} to {}", rfc3339(params.from), rfc3339(params.to));
        if !usernames.is_empty() {
            detail.push_str(&format!(" users {}", usernames.join(",")));
        }
        if let Some(format) = params.format.as_deref().filter(|f| !f.is_empty()) {
            detail.push_str(&format!(" format {format}"));
        }
        if let Some((conversation, seq)) = after {
            detail.push_str(&format!(" resumed after {conversation}:{seq}"));
        }
        gateway.audit(AuditEvent {
            actor: &user.username,
            action: if after.is_none() { "export.start" } else { "export.resume" },
            target: &target,
            ip,
            detail: &detail,
        });
    } else if let Some((conversation, seq)) = after {
        // Not stored (a long export would be thousands of entries), but in the log stream.
        tracing::info!(
            target: "audit",
            actor = %user.username,
            action = "export.page",
            after = %format!("{conversation}:{seq}"),
            "audit"
        );
    }
    let next_after = if page.has_more {
        page.records.last().map(|r| format!("{}:{}", r.conversation.id, r.message.seq))
    } else {
        None
    };
    Ok(Json(ExportResponse { records: page.records, next_after, total }))
}
