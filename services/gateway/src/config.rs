//! Gateway configuration: limits and timeouts. Parsed once by the binary (clap) and passed
//! down by value; nothing here reads the environment.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Largest message body in bytes (UTF-8). A bigger send gets `message_too_large`,
    /// stores nothing, and the connection stays open.
    pub max_body_bytes: usize,
    /// Largest WebSocket frame/message in bytes. A bigger frame gets `frame_too_large`
    /// and the connection is closed (1009): the rest of that frame cannot be skipped safely.
    pub max_frame_bytes: usize,
    /// Messages a user may send per second, sustained, over all their sessions; 0 turns
    /// rate limiting off. Over it, sends get `rate_limited` with `retry_after_ms`.
    pub rate_per_user: f64,
    /// How many messages a user may send in a burst above `rate_per_user`.
    pub rate_burst: f64,
    /// Deliveries queued per session. A session whose queue is full is closed with
    /// `slow_consumer` (it reconnects and syncs), so one stalled client cannot grow memory.
    pub session_queue: usize,
    /// How long a new connection may take to send its `auth` frame.
    pub auth_timeout: Duration,
    /// Lifetime of tokens issued by sign-in.
    pub token_ttl: Duration,
    /// Most users one session may watch.
    pub max_watch: usize,
    /// When the gateway drains, each session is told to reconnect after a random delay
    /// between 0 and this (`retry_after_ms` of `shutting_down`), so its clients arrive at
    /// the other gateways spread out instead of all at once.
    pub reconnect_spread: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_body_bytes: switchboard_protocol::DEFAULT_MAX_BODY_BYTES,
            max_frame_bytes: 256 * 1024,
            rate_per_user: 50.0,
            rate_burst: 100.0,
            session_queue: 1024,
            auth_timeout: Duration::from_secs(10),
            token_ttl: Duration::from_secs(30 * 24 * 3600),
            max_watch: 2000,
            reconnect_spread: Duration::from_secs(5),
        }
    }
}
