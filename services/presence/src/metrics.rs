//! What presence measures: Redis failures (gateways' presence calls and routers'
//! lookups alike).

use switchboard_telemetry::metrics::{Counter, Encoder};

/// Redis commands that failed (connection lost, timeout, an error reply).
pub static REDIS_ERRORS: Counter = Counter::new();

pub fn encode(e: &mut Encoder) {
    e.counter("switchboard_redis_errors_total", "Redis commands that failed.", &REDIS_ERRORS);
}
