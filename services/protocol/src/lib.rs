//! Switchboard's client protocol, shared by the server, the CLI and the tests.
//!
//! Everything a client can put on the wire lives here: WebSocket frames ([`ClientFrame`],
//! [`ServerFrame`]), the records they carry ([`Message`], [`Conversation`], [`UserInfo`],
//! [`Presence`]), REST bodies ([`rest`]) and the stable error code table ([`ErrorCode`]).
//! `docs/protocol.md` documents the same shapes for people writing their own clients; keep
//! the two in step. Nothing here does I/O.

mod error;
mod frame;
mod model;
pub mod rest;
pub mod time;

pub use error::{ErrorBody, ErrorCode};
pub use frame::{ClientFrame, ServerFrame};
pub use model::{
    Attachment, Broadcast, Conversation, ConversationKind, IMAGE_TYPES, MAX_REACTION_CHARS,
    Message, MessageKind, Presence, PresenceStatus, Reaction, SearchHit, SearchSort, UserInfo,
    check_reaction, org_under,
};

/// Default maximum size of a message body in bytes (UTF-8), per the delivery contract.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Default maximum size of an attachment in bytes (25 MiB).
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 25 * 1024 * 1024;
