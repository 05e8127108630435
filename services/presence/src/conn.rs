//! One Redis server or a Redis Cluster, behind one connection type.
//!
//! Commands go through [`Conn`], which is either a single server's `ConnectionManager`
//! (reconnects by itself) or a cluster connection (follows `MOVED`/`ASK`, refreshes its
//! slot map after a failover, retries). Two rules keep every call valid on a cluster:
//! keys one call touches together share a hash tag (a user's keys are tagged with the
//! user id, see [`user_key`]), and work spanning many users goes through [`per_user`],
//! which pipelines it in one round trip on a single server and sends it per user,
//! concurrently, on a cluster (a pipeline there may only touch one slot).
//!
//! Changes are published on [`CHANGE_SHARDS`] channels, picked by user; on a cluster with
//! sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7) so each shard carries its share
//! instead of every node carrying every change.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where presence lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server: `redis://host:port/db`.
    Single(String),
    /// Seed nodes of a Redis Cluster (`redis://host:port` each); the rest are discovered.
    Cluster(Vec<String>),
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(url) => f.write_str(url),
            Self::Cluster(nodes) => write!(f, "Redis Cluster {}", nodes.join(",")),
        }
    }
}

/// Channels changes are spread over on a cluster (each a hash tag of its own, so they
/// land on different shards).
pub const CHANGE_SHARDS: u32 = 16;

/// A cluster client that gives up on a call after a few seconds (a node that died is
/// found out by timing out, then its replica takes over) instead of waiting for ever.
pub fn cluster_client(nodes: &[String]) -> redis::cluster::ClusterClientBuilder {
    redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        .retries(4)
}

/// Calls on one user's keys that run concurrently on a cluster.
const PER_USER_IN_FLIGHT: usize = 64;

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(Arc<ClusterConn>),
}

impl Conn {
    pub async fn connect(target: &RedisTarget) -> redis::RedisResult<Self> {
        Ok(match target {
            RedisTarget::Single(url) => {
                Self::Single(ConnectionManager::new(redis::Client::open(url.as_str())?).await?)
            }
            RedisTarget::Cluster(nodes) => Self::Cluster(Arc::new(ClusterConn {
                current: RwLock::new(cluster_client(nodes).build()?.get_async_connection().await?),
                nodes: nodes.clone(),
                last_refresh: Mutex::new(Instant::now()),
            })),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// A Redis Cluster connection that is replaced by a fresh one (a fresh slot map, asked of
/// the live seed nodes) when calls fail the way a dead node makes them fail. The client
/// library follows `MOVED`, but after a primary dies it keeps retrying the dead address
/// instead of asking the cluster who took over its slots.
pub struct ClusterConn {
    nodes: Vec<String>,
    current: RwLock<ClusterConnection>,
    last_refresh: Mutex<Instant>,
}

/// Fresh connections are made at most this often.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

impl ClusterConn {
    fn current(&self) -> ClusterConnection {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// After a failed call: if it looks like a node is gone, connect afresh in the
    /// background (at most once per [`REFRESH_EVERY`]); calls meanwhile use the old one.
    fn failed(self: &Arc<Self>, error: &redis::RedisError) {
        let node_gone = error.is_io_error()
            || error.is_timeout()
            || matches!(
                error.kind(),
                redis::ErrorKind::ClusterDown
                    | redis::ErrorKind::MasterDown
                    | redis::ErrorKind::ClusterConnectionNotFound
            );
        if !node_gone {
            return;
        }
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < REFRESH_EVERY {
                return;
            }
            *last = Instant::now();
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let fresh = async { cluster_client(&me.nodes).build()?.get_async_connection().await };
            match fresh.await {
                Ok(fresh) => {
                    tracing::info!("Redis Cluster connection renewed after a failed call");
                    *me.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                }
                Err(e) => tracing::warn!(error = %e, "cannot reach the Redis Cluster"),
            }
        });
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(shared) => {
                let (shared, mut conn) = (Arc::clone(shared), shared.current());
                Box::pin(async move {
                    let result = conn.req_packed_command(cmd).await;
                    if let Err(e) = &result {
                        shared.failed(e);
                    }
                    result
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(shared) => {
                let (shared, mut conn) = (Arc::clone(shared), shared.current());
                Box::pin(async move {
                    let result = conn.req_packed_commands(cmd, offset, count).await;
                    if let Err(e) = &result {
                        shared.failed(e);
                    }
                    result
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

/// A key of one user's: `{prefix}:{what}:{id}` with the id as the hash tag, so all of a
/// user's keys live on one cluster shard and can be changed together.
pub fn user_key(prefix: &str, what: &str, user: i64) -> String {
    format!("{prefix}:{what}:{{{user}}}")
}

/// The channel changes about `username` are published on: `{prefix}:presence` on a single
/// server, one of [`CHANGE_SHARDS`] sharded channels on a cluster.
pub fn change_channel(prefix: &str, cluster: bool, username: &str) -> String {
    if cluster {
        // FNV-1a: stable across processes and versions, unlike std's hasher.
        let hash = username
            .bytes()
            .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        shard_channel(prefix, hash % CHANGE_SHARDS)
    } else {
        format!("{prefix}:presence")
    }
}

pub fn shard_channel(prefix: &str, shard: u32) -> String {
    format!("{prefix}:changes:{{{shard}}}")
}

/// Runs `commands(pipe, user)` for every user (each user's commands touching only that
/// user's keys) and returns each user's replies, in order: one pipeline on a single server,
/// a pipeline per user, up to 64 at once, on a cluster.
pub async fn per_user(
    conn: &Conn,
    users: &[i64],
    commands: impl Fn(&mut Pipeline, i64),
) -> redis::RedisResult<Vec<Vec<Value>>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    if !conn.is_cluster() {
        let mut pipe = redis::pipe();
        let mut per = 0;
        for (i, user) in users.iter().enumerate() {
            let before = pipe.len();
            commands(&mut pipe, *user);
            if i == 0 {
                per = pipe.len() - before;
            }
        }
        let flat: Vec<Value> = pipe.query_async(&mut conn.clone()).await?;
        return Ok(flat.chunks(per.max(1)).map(<[Value]>::to_vec).collect());
    }
    let pipes: Vec<Pipeline> = users
        .iter()
        .map(|user| {
            let mut pipe = redis::pipe();
            commands(&mut pipe, *user);
            pipe
        })
        .collect();
    futures_util::stream::iter(pipes)
        .map(|pipe| {
            let mut conn = conn.clone();
            async move { pipe.query_async::<Vec<Value>>(&mut conn).await }
        })
        .buffered(PER_USER_IN_FLIGHT)
        .try_collect()
        .await
}
