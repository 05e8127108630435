//! In-process presence for the embedded server: one map, one broadcast channel.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use switchboard_protocol::{Presence, PresenceStatus};
use tokio::sync::broadcast;

use crate::{CHANGES, PresenceTracker, Result, UserRef, visible};

struct Online {
    sessions: usize,
    status: PresenceStatus,
    text: String,
}

pub struct LocalPresence {
    /// Users with at least one session. std Mutex: never held across an await.
    online: Mutex<HashMap<i64, Online>>,
    changes: broadcast::Sender<Presence>,
}

impl Default for LocalPresence {
    fn default() -> Self {
        Self { online: Mutex::default(), changes: broadcast::channel(CHANGES).0 }
    }
}

impl LocalPresence {
    fn announce(&self, presence: Presence) {
        // No subscriber is fine: nobody is watching.
        let _ = self.changes.send(presence);
    }
}

#[async_trait]
impl PresenceTracker for LocalPresence {
    async fn connected(&self, user: UserRef<'_>, chosen: PresenceStatus, text: &str) -> Result<()> {
        let first = {
            let mut online = self.online.lock().unwrap_or_else(|e| e.into_inner());
            let entry = online.entry(user.id).or_insert_with(|| Online {
                sessions: 0,
                status: chosen,
                text: text.to_owned(),
            });
            entry.sessions += 1;
            (entry.sessions == 1).then(|| visible(user.username, true, entry.status, &entry.text))
        };
        if let Some(presence) = first.filter(|p| p.status != PresenceStatus::Offline) {
            self.announce(presence);
        }
        Ok(())
    }

    async fn disconnected(&self, user: UserRef<'_>) -> Result<()> {
        let left = {
            let mut online = self.online.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entry) = online.get_mut(&user.id) else { return Ok(()) };
            entry.sessions -= 1;
            if entry.sessions > 0 {
                return Ok(());
            }
            let was_visible = entry.status != PresenceStatus::Offline;
            online.remove(&user.id);
            was_visible
        };
        if left {
            self.announce(visible(user.username, false, PresenceStatus::Offline, ""));
        }
        Ok(())
    }

    async fn set_status(
        &self,
        user: UserRef<'_>,
        status: PresenceStatus,
        text: &str,
    ) -> Result<()> {
        let changed = {
            let mut online = self.online.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entry) = online.get_mut(&user.id) else { return Ok(()) };
            let before = visible(user.username, true, entry.status, &entry.text);
            entry.status = status;
            entry.text = text.to_owned();
            let after = visible(user.username, true, status, text);
            (before != after).then_some(after)
        };
        if let Some(presence) = changed {
            self.announce(presence);
        }
        Ok(())
    }

    async fn lookup(&self, users: &[UserRef<'_>]) -> Result<Vec<Presence>> {
        let online = self.online.lock().unwrap_or_else(|e| e.into_inner());
        Ok(users
            .iter()
            .map(|u| match online.get(&u.id) {
                Some(entry) => visible(u.username, true, entry.status, &entry.text),
                None => visible(u.username, false, PresenceStatus::Offline, ""),
            })
            .collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<Presence> {
        self.changes.subscribe()
    }
}
