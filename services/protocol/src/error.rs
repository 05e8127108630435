//! The stable error code table. Codes are part of the protocol: clients match on them,
//! so a code is never renamed or reused; new failures get new codes.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes sent in `error` frames and JSON error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON or does not match any frame shape.
    MalformedFrame,
    /// The JSON names a frame `type` the server does not know.
    UnknownFrameType,
    /// A binary frame was sent; this server speaks JSON text frames.
    UnsupportedFrame,
    /// A text frame was not valid UTF-8. The connection is closed (RFC 6455 1007).
    InvalidUtf8,
    /// The frame exceeded the frame limit. The connection is closed (RFC 6455 1009).
    FrameTooLarge,
    /// The message body exceeded the configured maximum; nothing was stored.
    MessageTooLarge,
    /// A field is missing, empty or out of range.
    InvalidRequest,
    /// No valid token was presented, or it expired or was revoked.
    Unauthenticated,
    /// Username or password is wrong.
    InvalidCredentials,
    /// The caller is authenticated but may not do this (e.g. not an admin).
    Forbidden,
    /// The caller is not a member of the conversation.
    NotMember,
    /// The conversation does not exist.
    ConversationNotFound,
    /// The user does not exist.
    UserNotFound,
    /// No such endpoint.
    NotFound,
    /// The username is taken.
    UserExists,
    /// Too many requests, or too many failed sign-ins (from this account or address);
    /// retry after `retry_after_ms`.
    RateLimited,
    /// The user already holds the most WebSocket sessions a gateway allows; the new one
    /// is closed (1008). Close another session first.
    TooManyConnections,
    /// The group would have more members than the server allows; nothing was changed.
    GroupTooLarge,
    /// The session could not keep up with its deliveries and is being closed; reconnect
    /// and sync.
    SlowConsumer,
    /// The server is shutting down; reconnect (elsewhere) and sync.
    ShuttingDown,
    /// The uploaded file exceeded the configured maximum; nothing was stored.
    AttachmentTooLarge,
    /// The upload declared an image type its bytes are not; nothing was stored.
    AttachmentTypeMismatch,
    /// Storage is unavailable; the request was not applied and may be retried.
    Unavailable,
    /// An unexpected server fault; the request was not applied.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedFrame => "malformed_frame",
            Self::UnknownFrameType => "unknown_frame_type",
            Self::UnsupportedFrame => "unsupported_frame",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::FrameTooLarge => "frame_too_large",
            Self::MessageTooLarge => "message_too_large",
            Self::InvalidRequest => "invalid_request",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::NotMember => "not_member",
            Self::ConversationNotFound => "conversation_not_found",
            Self::UserNotFound => "user_not_found",
            Self::NotFound => "not_found",
            Self::UserExists => "user_exists",
            Self::RateLimited => "rate_limited",
            Self::TooManyConnections => "too_many_connections",
            Self::GroupTooLarge => "group_too_large",
            Self::SlowConsumer => "slow_consumer",
            Self::ShuttingDown => "shutting_down",
            Self::AttachmentTooLarge => "attachment_too_large",
            Self::AttachmentTypeMismatch => "attachment_type_mismatch",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status a REST endpoint answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::MalformedFrame
            | Self::UnknownFrameType
            | Self::UnsupportedFrame
            | Self::InvalidUtf8
            | Self::InvalidRequest
            | Self::GroupTooLarge => 400,
            Self::Unauthenticated | Self::InvalidCredentials => 401,
            Self::Forbidden | Self::NotMember => 403,
            Self::ConversationNotFound | Self::UserNotFound | Self::NotFound => 404,
            Self::UserExists => 409,
            Self::FrameTooLarge | Self::MessageTooLarge | Self::AttachmentTooLarge => 413,
            Self::AttachmentTypeMismatch => 415,
            Self::RateLimited | Self::TooManyConnections => 429,
            Self::SlowConsumer | Self::ShuttingDown | Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// Whether retrying the same request later can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::ShuttingDown | Self::Unavailable | Self::SlowConsumer
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every REST error, and the payload of an `error` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// A sentence for people; do not match on it.
    pub message: String,
    /// Set with `rate_limited`: how long to wait before retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_ms: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for code in [ErrorCode::NotMember, ErrorCode::MessageTooLarge, ErrorCode::InvalidUtf8] {
            let json = serde_json::to_string(&code).expect("serialize");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
