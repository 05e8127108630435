//! Switchboard's telemetry, shared by every service crate:
//!
//! - [`metrics`]: counters, gauges and histograms on atomics, and the Prometheus text
//!   format each role's `/metrics` serves;
//! - [`logs`]: the process's `tracing` setup (text or JSON lines with trace ids) and the
//!   OpenTelemetry layer when an OTLP endpoint is configured;
//! - [`trace`]: W3C `traceparent` propagation across our gRPC hops and streams;
//! - [`grpc`]: tower layers for tonic servers (`/metrics`, server spans, call counts)
//!   and clients (client spans, `traceparent` header).
//!
//! What each service measures lives in that service's own `metrics.rs`.

pub mod grpc;
pub mod logs;
pub mod metrics;
pub mod trace;

pub use logs::{Config, LogFormat, Telemetry, init};
