//! The router: a stateless gRPC service that forwards deliveries between gateways.
//!
//! Every gateway keeps a [`link`] to every router replica. A gateway delivers to its own
//! sessions itself and sends the rest of each delivery (`Addressed`: users, frame) to one
//! router; the router asks Redis which gateways hold those users ([`RedisLocator`]) and
//! queues the delivery, once per gateway, on those gateways' links, where a writer task
//! sends whatever is queued as one batch. Live delivery is the fast path: a dropped
//! delivery is repaired by the receiving session's seq check (see the gateway).
//!
//! [`RedisLocator`]: switchboard_presence::RedisLocator

pub mod link;
pub mod metrics;
mod service;

pub use link::RouterLinks;
pub use service::{serve, serve_tls};

/// Code generated from `proto/switchboard/v1/router.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("switchboard.v1");
}
