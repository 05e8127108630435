//! The storage service over gRPC: [`StorageService`] serves any [`crate::Store`] (in
//! practice [`crate::PgStore`], as `switchboard storage`), and [`RemoteStore`] is the
//! [`crate::Store`] a gateway uses to call it. Errors travel as a `StoreFailure` in the
//! status details, so the caller gets back the exact [`crate::StoreError`].

mod client;
/// Conversions between records and protobuf messages (public for the fuzz targets).
pub mod convert;
mod server;

pub use client::RemoteStore;
pub use server::{StorageService, serve, serve_tls};

/// Code generated from `proto/switchboard/v1/storage.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("switchboard.v1");
}
