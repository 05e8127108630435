//! Presence in Redis (one server or a Redis Cluster), for a cluster of gateways.
//!
//! Keys (all under `{prefix}:`; `{user}` is a hash tag, so a user's keys share a shard):
//! - `presence:{user}`: hash gateway id -> sessions of that user on that gateway. The
//!   user is online while it is not empty.
//! - `status:{user}`: the chosen status and text (`status\ntext`), for other gateways'
//!   lookups and announcements.
//! - `gateway:{gateway}`: exists while that gateway heartbeats (TTL = `ttl`).
//! - `gateway-users:{gateway}`: hash user id -> username of users with sessions there,
//!   so a dead gateway's users can be taken offline by whoever notices.
//! - `gateways`: sorted set gateway id -> time of its last heartbeat (ms).
//! - channel `presence` (one server) or sharded channels `changes:{0..16}` (a cluster):
//!   every change, as the JSON of [`Presence`].
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
use redis::{AsyncCommands, PushKind, Value};
use switchboard_protocol::{Presence, PresenceStatus};
use tokio::sync::{broadcast, mpsc, watch};

use crate::conn::{
    CHANGE_SHARDS, Conn, change_channel, cluster_client, per_user, shard_channel, user_key,
};
use crate::{CHANGES, PresenceError, PresenceTracker, RedisTarget, Result, UserRef, visible};

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// One Redis server or a Redis Cluster.
    pub redis: RedisTarget,
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
    redis: Conn,
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
        if config.prefix.contains(['{', '}']) {
            return Err(PresenceError::Unavailable(
                "the Redis prefix may not contain '{' or '}' (they pick cluster shards)".into(),
            ));
        }
        let redis = Conn::connect(&config.redis).await?;
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
        let listener = match &inner.config.redis {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(inner.key("presence")).await?;
                tokio::spawn(listen(client, pubsub, Arc::clone(&inner)))
            }
            RedisTarget::Cluster(nodes) => {
                let subscription = subscribe_sharded(nodes, &inner.config.prefix).await?;
                tokio::spawn(listen_sharded(nodes.clone(), subscription, Arc::clone(&inner)))
            }
        };
        let tasks = vec![listener, tokio::spawn(beat(Arc::clone(&inner)))];
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

    fn user_key(&self, what: &str, user: i64) -> String {
        user_key(&self.config.prefix, what, user)
    }

    fn conn(&self) -> Conn {
        self.redis.clone()
    }

    async fn announce(&self, presence: &Presence) -> Result<()> {
        let payload = serde_json::to_string(presence).unwrap_or_default();
        let cluster = self.redis.is_cluster();
        let channel = change_channel(&self.config.prefix, cluster, &presence.user);
        let publish = if cluster { "SPUBLISH" } else { "PUBLISH" };
        let _: i64 =
            redis::cmd(publish).arg(channel).arg(payload).query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn heartbeat(&self) -> Result<()> {
        let gateway = &self.config.gateway;
        let ttl_ms = self.config.ttl.as_millis() as u64;
        let now = now_ms();
        // Two calls, not a pipeline: the keys may live on different cluster shards.
        let was_alive: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("gateway:{gateway}")))
            .arg(1)
            .arg("EX")
            .arg(ttl_ms.div_ceil(1000).max(1))
            .arg("GET")
            .query_async(&mut self.conn())
            .await?;
        let _: i64 = self.conn().zadd(self.key("gateways"), gateway, now).await?;
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
        let users: Vec<(i64, &str)> =
            mine.iter().map(|(id, username, ..)| (*id, username.as_str())).collect();
        let _: () = self
            .conn()
            .hset_multiple(self.key(&format!("gateway-users:{gateway}")), &users)
            .await?;
        let ids: Vec<i64> = mine.iter().map(|(id, ..)| *id).collect();
        let by_id: HashMap<i64, (i64, String)> = mine
            .iter()
            .map(|(id, _, sessions, status, text)| {
                (*id, (*sessions, format!("{}\n{text}", status.as_str())))
            })
            .collect();
        per_user(&self.redis, &ids, |pipe, id| {
            let (sessions, status) = &by_id[&id];
            pipe.hset(self.user_key("presence", id), gateway, sessions);
            pipe.set(self.user_key("status", id), status);
        })
        .await?;
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
                .arg(self.user_key("presence", id))
                .arg(gateway)
                .query_async(&mut self.conn())
                .await?;
            if last == 1 {
                self.announce(&visible(&username, false, PresenceStatus::Offline, "")).await?;
            }
        }
        // One call per key: they may live on different cluster shards.
        let _: () = self.conn().del(&users_key).await?;
        let _: () = self.conn().zrem(self.key("gateways"), gateway).await?;
        let _: () = self.conn().del(self.key(&format!("gateway:{gateway}"))).await?;
        Ok(())
    }

    async fn chosen(&self, user: i64) -> Result<(PresenceStatus, String)> {
        let raw: Option<String> = self.conn().get(self.user_key("status", user)).await?;
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

/// A cluster connection subscribed to every sharded change channel, and the pushes it
/// receives.
type Subscription =
    (redis::cluster_async::ClusterConnection, mpsc::UnboundedReceiver<redis::PushInfo>);

async fn subscribe_sharded(nodes: &[String], prefix: &str) -> redis::RedisResult<Subscription> {
    let (pushes, received) = mpsc::unbounded_channel();
    let mut subscriber = cluster_client(nodes)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .build()?
        .get_async_connection()
        .await?;
    // One channel per call: a sharded subscription may name one slot only.
    for shard in 0..CHANGE_SHARDS {
        subscriber.ssubscribe(shard_channel(prefix, shard)).await?;
    }
    Ok((subscriber, received))
}

/// Forwards changes from the sharded channels of a Redis Cluster to local subscribers.
///
/// A subscription can break silently: a primary that stops answering (an unreachable
/// pod) neither closes the connection nor sends anything, and its replica takes over
/// the channel. So every `ttl / 3` this gateway publishes a probe on each channel and
/// expects to hear each back before the next round. When a probe goes unheard, a node's
/// connection drops, or a shard unsubscribes us (its slots moved), it subscribes again
/// from scratch, through a fresh slot map, and tells watchers to look again (changes
/// meanwhile were missed).
async fn listen_sharded(nodes: Vec<String>, subscription: Subscription, inner: Arc<Inner>) {
    let (mut _subscriber, mut pushes) = subscription;
    let probe = format!("probe from {}", inner.config.gateway).into_bytes();
    let channels: Vec<String> =
        (0..CHANGE_SHARDS).map(|shard| shard_channel(&inner.config.prefix, shard)).collect();
    let mut rounds = tokio::time::interval(inner.config.ttl / 3);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unheard: std::collections::HashSet<Vec<u8>> = Default::default();
    loop {
        let why = loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { break "the connection ended" };
                    match push.kind {
                        PushKind::SMessage => {
                            if let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                                (push.data.first(), push.data.get(1))
                            {
                                if *payload == probe {
                                    unheard.remove(channel);
                                } else if let Ok(presence) = serde_json::from_slice(payload) {
                                    let _ = inner.changes.send(presence);
                                }
                            }
                        }
                        PushKind::SUnsubscribe => break "a shard unsubscribed us",
                        PushKind::Disconnection => break "a node's connection dropped",
                        _ => {}
                    }
                }
                _ = rounds.tick() => {
                    if !unheard.is_empty() {
                        break "a probe went unheard";
                    }
                    unheard.extend(channels.iter().map(|c| c.clone().into_bytes()));
                    // Published from another task: a shard that does not answer must not
                    // hold up the changes of the others.
                    let (conn, channels, probe) = (inner.conn(), channels.clone(), probe.clone());
                    tokio::spawn(async move {
                        for channel in channels {
                            let _: redis::RedisResult<i64> = redis::cmd("SPUBLISH")
                                .arg(channel)
                                .arg(&probe)
                                .query_async(&mut conn.clone())
                                .await;
                        }
                    });
                }
            }
        };
        tracing::warn!(why, "presence subscription interrupted; subscribing again");
        (_subscriber, pushes) = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match subscribe_sharded(&nodes, &inner.config.prefix).await {
                Ok(fresh) => {
                    inner.recovered.send_modify(|n| *n += 1);
                    break fresh;
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to presence changes"),
            }
        };
        unheard.clear();
        rounds.reset();
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
        // Listed on this gateway first, so a reaper that finds the session finds it here.
        let _: () = inner
            .conn()
            .hset(inner.key(&format!("gateway-users:{gateway}")), user.id, user.username)
            .await?;
        let (counts,): (Vec<i64>,) = redis::pipe()
            .atomic()
            .set(inner.user_key("status", user.id), format!("{}\n{text}", chosen.as_str()))
            .ignore()
            .hincr(inner.user_key("presence", user.id), gateway, 1)
            .ignore()
            .hvals(inner.user_key("presence", user.id))
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
            .arg(inner.user_key("presence", user.id))
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
            .set(inner.user_key("status", user.id), format!("{}\n{text}", status.as_str()))
            .ignore()
            .hvals(inner.user_key("presence", user.id))
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
        let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
        let replies = per_user(&inner.redis, &ids, |pipe, id| {
            pipe.hlen(inner.user_key("presence", id));
            pipe.get(inner.user_key("status", id));
        })
        .await?;
        let answers = replies.iter().map(|pair| {
            let sessions: Option<i64> = pair.first().and_then(|v| redis::from_redis_value(v).ok());
            let sessions = sessions.unwrap_or(0);
            let status: Option<String> =
                pair.get(1).and_then(|v| redis::from_redis_value(v).ok()).flatten();
            (sessions, status)
        });
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
    redis: Conn,
    prefix: String,
}

impl RedisLocator {
    pub async fn connect(redis: &RedisTarget, prefix: &str) -> Result<Self> {
        Ok(Self { redis: Conn::connect(redis).await?, prefix: prefix.to_owned() })
    }

    /// Gateway id -> the users in `users` with sessions there. One round trip on a single
    /// server; on a cluster, one per user, concurrently.
    pub async fn locate(&self, users: &[i64]) -> Result<Vec<(String, Vec<i64>)>> {
        let replies = per_user(&self.redis, users, |pipe, user| {
            pipe.hkeys(user_key(&self.prefix, "presence", user));
        })
        .await?;
        let mut by_gateway: std::collections::HashMap<String, Vec<i64>> = Default::default();
        for (user, reply) in users.iter().zip(replies) {
            let gateways: Vec<String> =
                reply.first().and_then(|v| redis::from_redis_value(v).ok()).unwrap_or_default();
            for gateway in gateways {
                by_gateway.entry(gateway).or_default().push(*user);
            }
        }
        Ok(by_gateway.into_iter().collect())
    }
}
