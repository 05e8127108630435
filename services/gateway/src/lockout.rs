//! Sign-in throttling: what stops a password-guessing script.
//!
//! Two layers, both answering `rate_limited` with `retry_after_ms` (HTTP 429 with
//! `Retry-After` on REST):
//!
//! - **Per account, in storage.** Failed password checks in a row are counted in the
//!   user's row, so every gateway of a cluster sees the same count and a restart forgets
//!   nothing. From [`Config::login_backoff_after`] failures on, each failure locks the
//!   account for a delay that doubles (from [`Config::login_backoff_base`]); at
//!   [`Config::login_lockout_after`] it locks for [`Config::login_lockout`]. While locked,
//!   no password is checked, the right one included. A success clears the count.
//!   Issued tokens keep working: the lock guards the password, not the sessions.
//! - **Per client IP, in memory** (per gateway process): a token bucket of failed sign-ins
//!   (wrong passwords, unknown users, bad tokens on the WebSocket). An empty bucket refuses
//!   every sign-in from that address until it refills.
//!
//! Unknown usernames get the same schedule as accounts, counted in memory here, so the
//! answers (401 `invalid_credentials`, then 429) do not tell who exists.
//!
//! Not here: the message rate limits (`rate`), connection caps (`hub`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use switchboard_protocol::{ErrorBody, ErrorCode};
use switchboard_storage::LoginLock;

use crate::rate::RateLimiter;
use crate::{ApiError, Config};

/// Unknown usernames remembered at most; past it the map starts over (an attacker who
/// sprays that many names is held by the per-IP limit anyway).
const MAX_UNKNOWN: usize = 10_000;

pub struct LoginGuard {
    backoff_after: i64,
    backoff_base: Duration,
    lockout_after: i64,
    lockout: Duration,
    /// Failed sign-ins per client address.
    by_ip: RateLimiter<IpAddr>,
    /// Unknown usernames' failures, as storage keeps them for real accounts.
    /// std Mutex: held only to look up or update, never across an await.
    unknown: Mutex<HashMap<String, LoginLock>>,
}

/// The error of a throttled sign-in, whatever the reason (same shape for all, so it does
/// not tell an account lock from an IP limit or an unknown name).
pub fn throttled(retry_after_ms: u64) -> ApiError {
    let mut body = ErrorBody::new(
        ErrorCode::RateLimited,
        "too many failed sign-ins; retry after retry_after_ms",
    );
    body.retry_after_ms = Some(retry_after_ms.max(1));
    ApiError(body)
}

impl LoginGuard {
    pub fn new(config: &Config) -> Self {
        Self {
            backoff_after: i64::from(config.login_backoff_after.max(1)),
            backoff_base: config.login_backoff_base,
            lockout_after: i64::from(config.login_lockout_after.max(1)),
            lockout: config.login_lockout,
            by_ip: RateLimiter::new(
                config.login_ip_failures_per_minute / 60.0,
                config.login_ip_failures_burst,
            ),
            unknown: Mutex::new(HashMap::new()),
        }
    }

    /// How long to lock an account after `failures` failures in a row (None: not yet).
    /// Doubles from the base once backoff starts, never beyond the lockout, and is the
    /// lockout from `lockout_after` on.
    pub fn lock_for(&self, failures: i64) -> Option<Duration> {
        if failures >= self.lockout_after {
            return Some(self.lockout);
        }
        if failures < self.backoff_after {
            return None;
        }
        let doublings = (failures - self.backoff_after).min(30) as u32;
        Some(self.backoff_base.saturating_mul(1 << doublings).min(self.lockout))
    }

    /// Refuses a sign-in from an address that failed too often.
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match ip {
            Some(ip) => self.by_ip.peek(ip).map_err(throttled),
            None => Ok(()),
        }
    }

    /// A sign-in from `ip` failed.
    pub fn ip_failed(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            let _ = self.by_ip.check(ip);
        }
    }

    /// Refuses a sign-in as an unknown `username` that is "locked" like an account would be.
    pub fn check_unknown(&self, username: &str, now_ms: i64) -> Result<(), ApiError> {
        let unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        match unknown.get(username) {
            Some(lock) if lock.locked_until > now_ms => {
                Err(throttled((lock.locked_until - now_ms) as u64))
            }
            _ => Ok(()),
        }
    }

    /// A sign-in as unknown `username` failed: counted as for an account.
    pub fn unknown_failed(&self, username: &str, now_ms: i64) {
        let mut unknown = self.unknown.lock().unwrap_or_else(|e| e.into_inner());
        if unknown.len() >= MAX_UNKNOWN && !unknown.contains_key(username) {
            unknown.clear();
        }
        let lock = unknown.entry(username.to_owned()).or_default();
        lock.failures += 1;
        if let Some(delay) = self.lock_for(lock.failures) {
            lock.locked_until = now_ms + delay.as_millis() as i64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> LoginGuard {
        LoginGuard::new(&Config {
            login_backoff_after: 3,
            login_backoff_base: Duration::from_secs(1),
            login_lockout_after: 10,
            login_lockout: Duration::from_secs(900),
            ..Config::default()
        })
    }

    #[test]
    fn delays_grow_then_lock() {
        let guard = guard();
        let delays: Vec<Option<u64>> =
            (1..=11).map(|n| guard.lock_for(n).map(|d| d.as_secs())).collect();
        assert_eq!(
            delays,
            [
                None,
                None,
                Some(1),
                Some(2),
                Some(4),
                Some(8),
                Some(16),
                Some(32),
                Some(64),
                Some(900),
                Some(900)
            ]
        );
    }

    #[test]
    fn unknown_names_lock_like_accounts() {
        let guard = guard();
        for _ in 0..2 {
            guard.unknown_failed("nobody", 1000);
            assert!(guard.check_unknown("nobody", 1000).is_ok());
        }
        guard.unknown_failed("nobody", 1000);
        let refused = guard.check_unknown("nobody", 1000).unwrap_err();
        assert_eq!(
            (refused.code(), refused.0.retry_after_ms),
            (ErrorCode::RateLimited, Some(1000))
        );
        assert!(guard.check_unknown("nobody", 2000).is_ok());
        assert!(guard.check_unknown("somebody", 1000).is_ok());
    }
}
