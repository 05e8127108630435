//! [`ApiError`]: the one error type both the WebSocket and REST paths answer with. It maps
//! storage errors onto the protocol's stable codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use switchboard_protocol::{ErrorBody, ErrorCode, ServerFrame};
use switchboard_storage::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ErrorBody::new(code, message))
    }

    pub fn code(&self) -> ErrorCode {
        self.0.code
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn rate_limited(retry_after_ms: u64) -> Self {
        let mut body = ErrorBody::new(ErrorCode::RateLimited, "too many messages; slow down");
        body.retry_after_ms = Some(retry_after_ms);
        Self(body)
    }

    /// The same error, telling the client how long to wait before retrying (unless it
    /// says so already).
    pub fn with_retry_after(mut self, retry_after_ms: u64) -> Self {
        self.0.retry_after_ms.get_or_insert(retry_after_ms);
        self
    }

    /// As an `error` frame answering request `id`.
    pub fn frame(self, id: Option<String>) -> ServerFrame {
        ServerFrame::Error {
            id,
            code: self.0.code,
            message: self.0.message,
            retry_after_ms: self.0.retry_after_ms,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NotMember { .. } => ErrorCode::NotMember,
            StoreError::ConversationNotFound(_) => ErrorCode::ConversationNotFound,
            StoreError::UserNotFound(_) => ErrorCode::UserNotFound,
            StoreError::UserExists(_) => ErrorCode::UserExists,
            StoreError::Invalid(_) => ErrorCode::InvalidRequest,
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::Forbidden(_) | StoreError::NotAuthor { .. } => ErrorCode::Forbidden,
            StoreError::Unavailable(detail) => {
                tracing::error!(%detail, "storage unavailable");
                return Self::new(ErrorCode::Unavailable, "storage is unavailable; retry");
            }
        };
        Self::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self.0)).into_response();
        if let Some(ms) = self.0.retry_after_ms {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(value) = secs.to_string().parse() {
                response.headers_mut().insert("retry-after", value);
            }
        }
        response
    }
}
