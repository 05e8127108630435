//! Attachments: uploading a file into a conversation (it arrives as a message carrying
//! it) and downloading it, members only. The bytes go to the configured
//! [`switchboard_storage::attachments::Blobs`]; the row linking them to their message is
//! stored in the same transaction as the message (`Store::attach`).
//!
//! - `POST /api/v1/conversations/{id}/attachments?name=..[&body=..][&client_msg_id=..]`:
//!   the request body is the file, streamed into the object store while its size is
//!   counted (over `Config::max_attachment_bytes`: `413 attachment_too_large`), hashed and
//!   its type checked (`415 attachment_type_mismatch`). Any refusal or failure leaves no
//!   row and no message, and no object, except when the store is unavailable (the row
//!   may have been committed unseen): the retention job deletes that object later if no
//!   row names it (its orphan sweep).
//! - `GET /api/v1/attachments/{id}`: the bytes, with the checked type, `nosniff` and a
//!   `Content-Disposition` (inline for images, a download for the rest); `404 not_found`
//!   alike for unknown ids, non-members and deleted messages.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    HeaderValue,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use switchboard_protocol::rest::UploadResponse;
use switchboard_protocol::{ErrorCode, MessageKind};
use switchboard_storage::attachments::UploadError;
use switchboard_storage::{NewAttachment, NewMessage, StoreError};

use crate::rest::{Caller, ClientIp};
use crate::{ApiError, Gateway, auth};

/// Longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 255;
/// After refusing an upload, at most this much more of its body is read (and dropped)
/// so the client, still sending, gets to read the answer; a longer body has the
/// connection closed on it instead.
const DRAIN_BYTES: u64 = 8 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(5);

pub fn routes() -> Router<Gateway> {
    Router::new()
        .route("/api/v1/conversations/{id}/attachments", post(upload))
        .route("/api/v1/attachments/{id}", get(download))
}

#[derive(Deserialize)]
struct UploadQuery {
    /// The file's name as the uploader's machine knew it; a directory part is dropped.
    name: String,
    /// A caption: the text of the message carrying the file.
    #[serde(default)]
    body: String,
    client_msg_id: Option<String>,
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        let code = match &e {
            UploadError::TooLarge { .. } => ErrorCode::AttachmentTooLarge,
            UploadError::TypeMismatch { .. } => ErrorCode::AttachmentTypeMismatch,
            UploadError::Empty | UploadError::Body(_) => ErrorCode::InvalidRequest,
            UploadError::Store(detail) => {
                tracing::error!(%detail, "attachment store failed");
                return ApiError::new(
                    ErrorCode::Unavailable,
                    "the attachment store is unavailable; retry",
                );
            }
        };
        ApiError::new(code, e.to_string())
    }
}

/// The last path component of `name`, checked: 1 to [`MAX_NAME_CHARS`] characters, no
/// control characters.
fn file_name(name: &str) -> Result<String, ApiError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if base.is_empty() || base == "." || base == ".." {
        return Err(ApiError::invalid("name must name the file"));
    }
    if base.chars().count() > MAX_NAME_CHARS || base.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "a file name has 1 to {MAX_NAME_CHARS} characters and no control characters"
        )));
    }
    Ok(base.to_owned())
}

#[tracing::instrument(skip_all, fields(user = %user.username, conversation = id))]
async fn upload(
    State(gateway): State<Gateway>,
    ClientIp(ip): ClientIp,
    Caller(user): Caller,
    Path(id): Path<i64>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(blobs) = gateway.config().attachments.clone() else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "attachments are not enabled on this server",
        ));
    };
    let limit = gateway.config().max_attachment_bytes;
    let name = file_name(&q.name)?;
    if q.body.len() > gateway.config().max_body_bytes {
        return Err(ApiError::new(ErrorCode::MessageTooLarge, "the caption is too long"));
    }
    let client_msg_id = q.client_msg_id.unwrap_or_else(crate::rest::generated_key);
    if client_msg_id.is_empty() || client_msg_id.len() > 128 {
        return Err(ApiError::invalid("client_msg_id must have 1 to 128 bytes"));
    }
    gateway.check_ip_rate(ip)?;
    gateway.check_user_rate(&user)?;
    // Refused before a byte is read: not a member, or a declared length over the limit.
    gateway.store().conversation(id, &user).await?;
    let declared_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if let Some(length) = declared_length.filter(|n| *n > limit) {
        if length <= limit.saturating_add(DRAIN_BYTES) {
            drain(&mut stream).await;
        }
        return Err(UploadError::TooLarge { limit }.into());
    }
    let declared = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = switchboard_storage::attachments::upload_key(id, &auth::random_hex(16));
    let received = match blobs.upload(&key, stream.by_ref(), declared, limit).await {
        Ok(received) => received,
        Err(e) => {
            if matches!(e, UploadError::TooLarge { .. } | UploadError::TypeMismatch { .. }) {
                drain(&mut stream).await;
            }
            return Err(e.into());
        }
    };
    let message = NewMessage {
        conversation_id: id,
        author: user.bot.then(|| user.display_name.clone()),
        sender: user.clone(),
        client_msg_id: Some(client_msg_id),
        kind: MessageKind::Text,
        body: q.body,
    };
    let file = NewAttachment {
        name,
        content_type: received.content_type,
        size: i64::try_from(received.size).unwrap_or(i64::MAX),
        sha256: received.sha256,
        storage_key: key.clone(),
    };
    let appended = match gateway.store().attach(message, file).await {
        Ok(appended) => appended,
        Err(e) => {
            // Unavailable: the row may have been committed with no answer getting back;
            // the retention job's orphan sweep deletes the object if it was not.
            if !matches!(e, StoreError::Unavailable(_)) {
                forget(&blobs, &key).await;
            }
            return Err(e.into());
        }
    };
    if appended.duplicate {
        // A retry: the first upload is the one kept.
        forget(&blobs, &key).await;
    } else {
        let members = Some(appended.members.as_slice()).filter(|m| !m.is_empty());
        gateway.publish(&appended.message, members, None).await;
    }
    let m = appended.message;
    let Some(attachment) = m.attachments.first().cloned() else {
        return Err(ApiError::new(ErrorCode::Internal, "the stored message carries no file"));
    };
    let status = if appended.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let response = UploadResponse {
        conversation_id: m.conversation_id,
        seq: m.seq,
        ts: m.ts,
        client_msg_id: m.client_msg_id.unwrap_or_default(),
        duplicate: appended.duplicate,
        attachment,
    };
    Ok((status, Json(response)).into_response())
}

/// Reads and drops what is left of a refused upload, within bounds (see [`DRAIN_BYTES`]).
async fn drain(stream: &mut axum::body::BodyDataStream) {
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            left = left.saturating_sub(chunk.len() as u64);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// Deletes an object no row refers to; a failure leaves an orphan, logged with its key
/// (the retention job's orphan sweep deletes it later).
async fn forget(blobs: &switchboard_storage::attachments::Blobs, key: &str) {
    if let Err(e) = blobs.delete(key).await {
        tracing::warn!(key, error = %e, "deleting an unused attachment object failed");
    }
}

#[tracing::instrument(skip_all, fields(user = %user.username, attachment = id))]
async fn download(
    State(gateway): State<Gateway>,
    Caller(user): Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let Some(blobs) = gateway.config().attachments.clone() else {
        return Err(ApiError::new(ErrorCode::NotFound, format!("attachment {id} does not exist")));
    };
    let file = gateway.store().attachment(id, &user).await?;
    let bytes = blobs.open(&file.storage_key).await.map_err(|e| {
        tracing::error!(key = %file.storage_key, error = %e, "attachment object unreadable");
        ApiError::new(ErrorCode::Unavailable, "the attachment store is unavailable; retry")
    })?;
    let info = file.info();
    let mut response = Body::from_stream(bytes).into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&info.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(file.size));
    let disposition = if info.is_image() { "inline" } else { "attachment" };
    if let Ok(value) = HeaderValue::from_str(&content_disposition(disposition, &file.name)) {
        headers.insert(CONTENT_DISPOSITION, value);
    }
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // Whatever it is, it runs nothing and loads nothing if opened directly.
    headers
        .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    Ok(response)
}

/// `inline; filename="..."; filename*=UTF-8''...` (RFC 6266): an ASCII fallback with
/// quotes and backslashes replaced, and the exact name percent-encoded.
fn content_disposition(kind: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' { c } else { '_' })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_directories_and_are_checked() {
        assert_eq!(file_name("C:\\Users\\ann\\plan.pdf").ok().as_deref(), Some("plan.pdf"));
        assert_eq!(file_name("../../etc/passwd").ok().as_deref(), Some("passwd"));
        assert!(file_name("dir/").is_err());
        assert!(file_name("..").is_err());
        assert!(file_name("a\nb").is_err());
    }

    #[test]
    fn disposition_quotes_nothing_unsafe() {
        assert_eq!(
            content_disposition("attachment", "a \"b\".txt"),
            "attachment; filename=\"a _b_.txt\"; filename*=UTF-8''a%20%22b%22.txt"
        );
        assert!(content_disposition("inline", "café.png").ends_with("caf%C3%A9.png"));
    }
}
