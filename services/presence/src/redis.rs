//! Presence in Redis, for a cluster of gateways sharing one Redis.
//!
//! Keys (all under `{prefix}:`):
//! - `presence:{user}`: hash gateway id -> sessions of that user on that gateway. The
//!   user is online while it is not empty.
//! - `status:{user}`: the chosen status and text (`status\ntext`), for other gateways'
//!   lookups and announcements.
//! - `gateway:{gateway}`: exists while that gateway heartbeats (TTL = `ttl`).
//! - `gateway-users:{gateway}`: hash user id -> username of users with sessions there,
//!   so a dead gateway's users can be taken offline by whoever notices.
//! - `gateways`: sorted set gateway id -> time of its last heartbeat (ms).
//! - channel `presence`: every change, as the JSON of [`Presence`].
//!
//! Each gateway heartbeats every `ttl / 3` and, in the same beat, reaps gateways whose
//! last heartbeat is older than `ttl`: it removes their sessions from `presence:*`, and
//! announces `offline` for users left with none. `HDEL` decides who announces, so two
//! reapers never announce twice. Changes arrive over a pub/sub connection that reconnects
//! by itself after a Redis restart. A gateway whose heartbeat key is found missing (Redis
//! restarted and lost everything, or the gateway was reaped) writes its sessions back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use switchboard_protocol::{Presence, PresenceStatus};
use tokio::sync::{broadcast, watch};

use crate::{CHANGES, PresenceError, PresenceTracker, Result, UserRef, visible};

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db`
    pub url: String,
    /// Key and channel prefix, so several clusters (and parallel tests) share one Redis.
    pub prefix: String,
    /// This gateway's id, unique in the cluster.
    pub gateway: String,
    /// A gateway silent for this long is dead and its users go offline.
    pub ttl: Duration,
}

pub struct RedisPresence {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Inner {
    config: RedisConfig,
    redis: ConnectionManager,
    changes: broadcast::Sender<Presence>,
    /// This gateway's own sessions, so it can write them back when Redis lost them (a
    /// restart, or this gateway reaped after a long pause). std Mutex: no await under it.
    mine: std::sync::Mutex<HashMap<i64, Mine>>,
    /// Bumped after this gateway recovered from a Redis outage (see
    /// [`PresenceTracker::recovered`]).
    recovered: watch::Sender<u64>,
}

struct Mine {
    username: String,
    sessions: i64,
    status: PresenceStatus,
    text: String,
}

impl From<redis::RedisError> for PresenceError {
    fn from(e: redis::RedisError) -> Self {
        crate::metrics::REDIS_ERRORS.inc();
        Self::Unavailable(e.to_string())
    }
}

/// Decrements a gateway's session count and drops the field at zero, atomically; returns
/// the user's session counts left on all gateways.
const DISCONNECT: &str = "local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return redis.call('HVALS', KEYS[1])";

/// Removes a dead gateway from a user's presence; 1 when this call removed the user's
/// last session (the caller announces `offline`), else 0.
const REAP: &str = "if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and redis.call('HLEN', KEYS[1]) == 0 then return 1 end
return 0";

impl RedisPresence {
    /// Connects, announces this gateway and starts its heartbeat and change listener.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let client = redis::Client::open(config.url.as_str())?;
        let redis = ConnectionManager::new(client.clone()).await?;
        let inner = Arc::new(Inner {
            config,
            redis,
            changes: broadcast::channel(CHANGES).0,
            mine: std::sync::Mutex::default(),
            recovered: watch::channel(0).0,
        });
        // A previous run under the same id (a crash, then a restart within the TTL) may
        // have left sessions behind that this run would otherwise keep alive for ever.
        let gateway = inner.config.gateway.clone();
        inner.reap(&gateway).await?;
        inner.heartbeat().await?;
        // Subscribe before returning, so no change announced after `connect` is missed.
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(inner.key("presence")).await?;
        let tasks = vec![
            tokio::spawn(listen(client, pubsub, Arc::clone(&inner))),
            tokio::spawn(beat(Arc::clone(&inner))),
        ];
        Ok(Self { inner, tasks })
    }

    /// Stops heartbeating without cleaning up, as a crashed gateway would (for tests).
    pub fn vanish(self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Inner {
    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.config.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.redis.clone()
    }

    async fn announce(&self, presence: &Presence) -> Result<()> {
        let payload = serde_json::to_string(presence).unwrap_or_default();
        let _: i64 = self.conn().publish(self.key("presence"), payload).await?;
        Ok(())
    }

    async fn heartbeat(&self) -> Result<()> {
        let gateway = &self.config.gateway;
        let ttl_ms = self.config.ttl.as_millis() as u64;
        let now = now_ms();
        let (was_alive,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.key(&format!("gateway:{gateway}")))
            .arg(1)
            .arg("EX")
            .arg(ttl_ms.div_ceil(1000).max(1))
            .arg("GET")
            .zadd(self.key("gateways"), gateway, now)
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        if was_alive.is_none() {
            self.restore().await?;
            self.recovered.send_modify(|n| *n += 1);
        }
        let dead: Vec<String> = self
            .conn()
            .zrangebyscore(self.key("gateways"), 0, now.saturating_sub(ttl_ms as i64))
            .await?;
        for gateway in dead {
            tracing::info!(%gateway, "gateway stopped heartbeating; taking its users offline");
            self.reap(&gateway).await?;
        }
        Ok(())
    }

    /// Writes this gateway's sessions back (Redis lost them: it restarted, or this gateway
    /// was reaped after missing heartbeats) and announces the users as present.
    async fn restore(&self) -> Result<()> {
        let gateway = &self.config.gateway;
        let mine: Vec<(i64, String, i64, PresenceStatus, String)> = {
            let mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
            mine.iter()
                .map(|(id, m)| (*id, m.username.clone(), m.sessions, m.status, m.text.clone()))
                .collect()
        };
        if mine.is_empty() {
            return Ok(());
        }
        tracing::info!(users = mine.len(), "restoring this gateway's presence in Redis");
        let mut pipe = redis::pipe();
        for (id, username, sessions, status, text) in &mine {
            pipe.hset(self.key(&format!("presence:{id}")), gateway, sessions).ignore();
            pipe.hset(self.key(&format!("gateway-users:{gateway}")), id, username).ignore();
            pipe.set(self.key(&format!("status:{id}")), format!("{}\n{text}", status.as_str()))
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        for (_, username, _, status, text) in &mine {
            if *status != PresenceStatus::Offline {
                self.announce(&visible(username, true, *status, text)).await?;
            }
        }
        Ok(())
    }

    /// Removes every session of `gateway` and announces users left with none.
    async fn reap(&self, gateway: &str) -> Result<()> {
        let users_key = self.key(&format!("gateway-users:{gateway}"));
        let users: Vec<(i64, String)> = self.conn().hgetall(&users_key).await?;
        for (id, username) in users {
            let last: i64 = redis::cmd("EVAL")
                .arg(REAP)
                .arg(1)
                .arg(self.key(&format!("presence:{id}")))
                .arg(gateway)
                .query_async(&mut self.conn())
                .await?;
            if last == 1 {
                self.announce(&visible(&username, false, PresenceStatus::Offline, "")).await?;
            }
        }
        let _: () = redis::pipe()
            .del(&users_key)
            .ignore()
            .zrem(self.key("gateways"), gateway)
            .ignore()
            .del(self.key(&format!("gateway:{gateway}")))
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn chosen(&self, user: i64) -> Result<(PresenceStatus, String)> {
        let raw: Option<String> = self.conn().get(self.key(&format!("status:{user}"))).await?;
        Ok(parse_status(raw.as_deref()))
    }
}

fn parse_status(raw: Option<&str>) -> (PresenceStatus, String) {
    let raw = raw.unwrap_or("available");
    let (status, text) = raw.split_once('\n').unwrap_or((raw, ""));
    (PresenceStatus::parse(status).unwrap_or(PresenceStatus::Available), text.to_owned())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Heartbeats every `ttl / 3` until aborted; a failed beat is logged and retried.
async fn beat(inner: Arc<Inner>) {
    let mut every = tokio::time::interval(inner.config.ttl / 3);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = inner.heartbeat().await {
            tracing::warn!(error = %e, "presence heartbeat failed");
        }
    }
}

/// Forwards published changes to local subscribers, reconnecting after failures.
async fn listen(client: redis::Client, mut pubsub: redis::aio::PubSub, inner: Arc<Inner>) {
    let channel = inner.key("presence");
    loop {
        {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else { continue };
                if let Ok(presence) = serde_json::from_str::<Presence>(&payload) {
                    let _ = inner.changes.send(presence);
                }
            }
        }
        tracing::warn!("presence subscription lost; reconnecting");
        pubsub = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match client.get_async_pubsub().await {
                Ok(mut fresh) => match fresh.subscribe(&channel).await {
                    Ok(()) => {
                        // Changes published meanwhile are lost: have watchers look again.
                        inner.recovered.send_modify(|n| *n += 1);
                        break fresh;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot subscribe to presence changes"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot reach Redis for presence changes"),
            }
        };
    }
}

#[async_trait]
impl PresenceTracker for RedisPresence {
    async fn connected(&self, user: UserRef<'_>, chosen: PresenceStatus, text: &str) -> Result<()> {
        let inner = &self.inner;
        {
            let mut mine = inner.mine.lock().unwrap_or_else(|e| e.into_inner());
            let entry = mine.entry(user.id).or_insert_with(|| Mine {
                username: user.username.to_owned(),
                sessions: 0,
                status: chosen,
                text: text.to_owned(),
            });
            entry.sessions += 1;
            (entry.status, entry.text) = (chosen, text.to_owned());
        }
        let gateway = &inner.config.gateway;
        let (counts,): (Vec<i64>,) = redis::pipe()
            .atomic()
            .set(inner.key(&format!("status:{}", user.id)), format!("{}\n{text}", chosen.as_str()))
            .ignore()
            .hset(inner.key(&format!("gateway-users:{gateway}")), user.id, user.username)
            .ignore()
            .hincr(inner.key(&format!("presence:{}", user.id)), gateway, 1)
            .ignore()
            .hvals(inner.key(&format!("presence:{}", user.id)))
            .query_async(&mut inner.conn())
            .await?;
        if counts.iter().sum::<i64>() == 1 && chosen != PresenceStatus::Offline {
            inner.announce(&visible(user.username, true, chosen, text)).await?;
        }
        Ok(())
    }

    async fn disconnected(&self, user: UserRef<'_>) -> Result<()> {
        let inner = &self.inner;
        {
            let mut mine = inner.mine.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = mine.get_mut(&user.id) {
                entry.sessions -= 1;
                if entry.sessions <= 0 {
                    mine.remove(&user.id);
                }
            }
        }
        let counts: Vec<i64> = redis::cmd("EVAL")
            .arg(DISCONNECT)
            .arg(1)
            .arg(inner.key(&format!("presence:{}", user.id)))
            .arg(&inner.config.gateway)
            .query_async(&mut inner.conn())
            .await?;
        if counts.iter().sum::<i64>() <= 0 {
            let (status, _) = inner.chosen(user.id).await?;
            if status != PresenceStatus::Offline {
                inner.announce(&visible(user.username, false, status, "")).await?;
            }
        }
        Ok(())
    }

    async fn set_status(
        &self,
        user: UserRef<'_>,
        status: PresenceStatus,
        text: &str,
    ) -> Result<()> {
        let inner = &self.inner;
        if let Some(entry) = inner.mine.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&user.id)
        {
            (entry.status, entry.text) = (status, text.to_owned());
        }
        let before = inner.chosen(user.id).await?;
        let (counts,): (Vec<i64>,) = redis::pipe()
            .set(inner.key(&format!("status:{}", user.id)), format!("{}\n{text}", status.as_str()))
            .ignore()
            .hvals(inner.key(&format!("presence:{}", user.id)))
            .query_async(&mut inner.conn())
            .await?;
        let online = counts.iter().sum::<i64>() > 0;
        let was = visible(user.username, online, before.0, &before.1);
        let now = visible(user.username, online, status, text);
        if was != now {
            inner.announce(&now).await?;
        }
        Ok(())
    }

    async fn lookup(&self, users: &[UserRef<'_>]) -> Result<Vec<Presence>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hlen(inner.key(&format!("presence:{}", user.id)));
            pipe.get(inner.key(&format!("status:{}", user.id)));
        }
        let answers: Vec<(i64, Option<String>)> = {
            let flat: Vec<redis::Value> = pipe.query_async(&mut inner.conn()).await?;
            flat.chunks(2)
                .map(|pair| {
                    let sessions = redis::from_redis_value(&pair[0]).unwrap_or(0);
                    let status = redis::from_redis_value(&pair[1]).unwrap_or(None);
                    (sessions, status)
                })
                .collect()
        };
        Ok(users
            .iter()
            .zip(answers)
            .map(|(user, (gateways, raw))| {
                let (status, text) = parse_status(raw.as_deref());
                visible(user.username, gateways > 0, status, &text)
            })
            .collect())
    }

    fn recovered(&self) -> watch::Receiver<u64> {
        self.inner.recovered.subscribe()
    }

    /// Stops heartbeating and takes this gateway's remaining users offline now instead
    /// of after the TTL.
    async fn leave(&self) -> Result<()> {
        for task in &self.tasks {
            task.abort();
        }
        let gateway = self.inner.config.gateway.clone();
        self.inner.reap(&gateway).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Presence> {
        self.inner.changes.subscribe()
    }
}

/// Finds which gateways hold sessions of which users, from the presence keys. Used by
/// routers, which track no presence of their own.
#[derive(Clone)]
pub struct RedisLocator {
    redis: ConnectionManager,
    prefix: String,
}

impl RedisLocator {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self { redis: ConnectionManager::new(client).await?, prefix: prefix.to_owned() })
    }

    /// Gateway id -> the users in `users` with sessions there. One round trip.
    pub async fn locate(&self, users: &[i64]) -> Result<Vec<(String, Vec<i64>)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hkeys(format!("{}:presence:{user}", self.prefix));
        }
        let gateways: Vec<Vec<String>> = pipe.query_async(&mut self.redis.clone()).await?;
        let mut by_gateway: std::collections::HashMap<String, Vec<i64>> = Default::default();
        for (user, gateways) in users.iter().zip(gateways) {
            for gateway in gateways {
                by_gateway.entry(gateway).or_default().push(*user);
            }
        }
        Ok(by_gateway.into_iter().collect())
    }
}
