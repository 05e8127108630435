//! Presence: who is online, and with what status, as everyone else sees it.
//!
//! [`PresenceTracker`] is the seam. [`LocalPresence`] keeps it in memory for the embedded
//! server, where every session is in one process; [`RedisPresence`] keeps it in Redis for
//! a cluster, where a user's sessions are spread over gateways. Both tell every subscriber
//! (each gateway's hub) about every change, and the hub pushes changes to the sessions
//! that watch that user.
//!
//! The rules both follow: a user is online while they have at least one session anywhere;
//! while online others see the status they chose (`offline` as a choice means "appear
//! offline"); the last session leaving makes them `offline` at once, and a gateway that
//! dies without saying so takes its users offline within the heartbeat TTL.
//!
//! (The design card calls this seam `Presence`; here that name is the wire record
//! [`switchboard_protocol::Presence`], so the trait is `PresenceTracker`.)

mod conn;
mod local;
pub mod metrics;
mod redis;
#[doc(hidden)]
pub mod testing;

pub use conn::RedisTarget;
pub use local::LocalPresence;
pub use redis::{RedisConfig, RedisLocator, RedisPresence};

use async_trait::async_trait;
use switchboard_protocol::{Presence, PresenceStatus};
use tokio::sync::{broadcast, watch};

/// Who a presence call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRef<'a> {
    pub id: i64,
    pub username: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The presence store (Redis) failed or is unreachable; nothing was recorded.
    #[error("presence unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = PresenceError> = std::result::Result<T, E>;

#[async_trait]
pub trait PresenceTracker: Send + Sync + 'static {
    /// A session of `user` opened on this gateway; `chosen` is the status they chose
    /// (kept in storage). Announces them if this is their first session anywhere.
    async fn connected(&self, user: UserRef<'_>, chosen: PresenceStatus, text: &str) -> Result<()>;
    /// A session of `user` on this gateway closed; announces `offline` if it was their
    /// last anywhere.
    async fn disconnected(&self, user: UserRef<'_>) -> Result<()>;
    /// The user chose a new status; announced if they are online.
    async fn set_status(&self, user: UserRef<'_>, status: PresenceStatus, text: &str)
    -> Result<()>;
    /// What others see of each user now, in the order asked.
    async fn lookup(&self, users: &[UserRef<'_>]) -> Result<Vec<Presence>>;
    /// Every change from now on, from every gateway. A lagging receiver misses changes
    /// (presence is eventually consistent: watchers can `lookup` again).
    fn subscribe(&self) -> broadcast::Receiver<Presence>;
    /// Changes each time this tracker recovers from losing its shared state (Redis came
    /// back, or restarted empty, and this gateway wrote its sessions back). Meanwhile
    /// routes to this gateway's users and presence changes may have been missed, so the
    /// gateway repairs: sessions backfill by seq and watchers look presence up again.
    /// In-process trackers never lose anything: the default never changes.
    fn recovered(&self) -> watch::Receiver<u64> {
        watch::channel(0).1
    }
    /// The gateway is shutting down: stop announcing it and take whatever sessions it
    /// still holds offline now (not after the heartbeat TTL). Nothing may be recorded
    /// after this. In-process trackers have nothing to leave: the default does nothing.
    async fn leave(&self) -> Result<()> {
        Ok(())
    }
}

/// Capacity of the change channel of each tracker.
const CHANGES: usize = 4096;

/// What others see of a user with `sessions` sessions and this chosen status.
fn visible(username: &str, online: bool, status: PresenceStatus, text: &str) -> Presence {
    match (online, status) {
        (true, PresenceStatus::Offline) | (false, _) => Presence {
            user: username.to_owned(),
            status: PresenceStatus::Offline,
            text: String::new(),
        },
        (true, status) => Presence { user: username.to_owned(), status, text: text.to_owned() },
    }
}
