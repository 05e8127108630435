//! `switchboard-loadtest`: the bundled load generator. It provisions users through the
//! admin API, drives them over real WebSockets according to a scenario, verifies every
//! delivery against the server's `seq`, and reports latency, throughput and losses.
//!
//! Module map, in the order data flows:
//!
//! - [`scenario`]: the TOML scenario files and command-line overrides.
//! - [`plan`]: provisioning (`POST /api/v1/admin/provision`) and what each user does.
//! - [`run`]: the orchestrator: workers, progress, result files, thresholds.
//! - [`worker`]: one process's share of the users; also the hidden `__worker` mode.
//! - [`client`]: one simulated user over one WebSocket.
//! - [`verify`]: message stamps and per-conversation seq checks.
//! - [`target`]: gateway URLs, the loopback policy, source addresses, OS limits.
//! - [`stats`], [`report`], [`html`]: measurements, `result.json`, `report.html`.
//! - [`orgcast`]: the `broadcast-latency` benchmark of org broadcasts.
//! - [`searchbench`]: `search-seed` and `search-bench`, the message search benchmark.

pub mod client;
pub mod html;
mod http;
pub mod orgcast;
pub mod plan;
pub mod report;
mod rng;
pub mod run;
pub mod scenario;
pub mod searchbench;
pub mod stats;
pub mod target;
pub mod verify;
pub mod worker;
pub mod xmpp;
pub mod xmpp_client;
