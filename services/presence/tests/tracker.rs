//! The presence rules, checked on the in-process tracker and on Redis (a real server:
//! `SWITCHBOARD_TEST_REDIS`, default `redis://127.0.0.1:6379`, which `scripts/test` makes
//! sure is running). Each Redis test uses its own key prefix and deletes its keys after.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use switchboard_presence::{
    LocalPresence, PresenceTracker, RedisConfig, RedisLocator, RedisPresence, RedisTarget, UserRef,
    testing::LocalCluster,
};
use switchboard_protocol::{Presence, PresenceStatus};
use tokio::sync::broadcast;

const ALICE: UserRef<'static> = UserRef { id: 1, username: "alice" };
const BOB: UserRef<'static> = UserRef { id: 2, username: "bob" };

fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("sbtest:{}:{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn gateway(prefix: &str, id: &str, ttl: Duration) -> RedisPresence {
    let config = RedisConfig {
        redis: RedisTarget::Single(redis_url()),
        prefix: prefix.into(),
        gateway: id.into(),
        ttl,
    };
    RedisPresence::connect(config).await.unwrap_or_else(|e| panic!("Redis (run scripts/test): {e}"))
}

async fn forget(prefix: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
    }
}

async fn next(changes: &mut broadcast::Receiver<Presence>) -> Presence {
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("no change announced")
        .unwrap()
}

async fn quiet(changes: &mut broadcast::Receiver<Presence>) {
    let extra = tokio::time::timeout(Duration::from_millis(300), changes.recv()).await;
    assert!(extra.is_err(), "unexpected change {extra:?}");
}

fn presence(user: &str, status: PresenceStatus, text: &str) -> Presence {
    Presence { user: user.into(), status, text: text.into() }
}

/// The rules every tracker follows, seen by one subscriber.
async fn sessions_and_statuses(tracker: Arc<dyn PresenceTracker>) {
    let mut changes = tracker.subscribe();
    tracker.connected(ALICE, PresenceStatus::Busy, "In a meeting").await.unwrap();
    assert_eq!(next(&mut changes).await, presence("alice", PresenceStatus::Busy, "In a meeting"));
    // A second device changes nothing others see.
    tracker.connected(ALICE, PresenceStatus::Busy, "In a meeting").await.unwrap();
    quiet(&mut changes).await;

    tracker.set_status(ALICE, PresenceStatus::Available, "").await.unwrap();
    assert_eq!(next(&mut changes).await, presence("alice", PresenceStatus::Available, ""));
    let seen = tracker.lookup(&[ALICE, BOB]).await.unwrap();
    assert_eq!(
        seen,
        [
            presence("alice", PresenceStatus::Available, ""),
            presence("bob", PresenceStatus::Offline, "")
        ]
    );

    // Appearing offline looks like leaving.
    tracker.set_status(ALICE, PresenceStatus::Offline, "").await.unwrap();
    assert_eq!(next(&mut changes).await, presence("alice", PresenceStatus::Offline, ""));
    tracker.set_status(ALICE, PresenceStatus::Away, "lunch").await.unwrap();
    assert_eq!(next(&mut changes).await, presence("alice", PresenceStatus::Away, "lunch"));

    tracker.disconnected(ALICE).await.unwrap();
    quiet(&mut changes).await;
    tracker.disconnected(ALICE).await.unwrap();
    assert_eq!(next(&mut changes).await, presence("alice", PresenceStatus::Offline, ""));
    assert_eq!(tracker.lookup(&[ALICE]).await.unwrap()[0].status, PresenceStatus::Offline);
}

#[tokio::test]
async fn local_sessions_and_statuses() {
    sessions_and_statuses(Arc::new(LocalPresence::default())).await;
}

#[tokio::test]
async fn redis_sessions_and_statuses() {
    let prefix = unique_prefix();
    sessions_and_statuses(Arc::new(gateway(&prefix, "g1", Duration::from_secs(15)).await)).await;
    forget(&prefix).await;
}

#[tokio::test]
async fn gateways_see_each_others_users() {
    let prefix = unique_prefix();
    let one = gateway(&prefix, "g1", Duration::from_secs(15)).await;
    let two = gateway(&prefix, "g2", Duration::from_secs(15)).await;
    let mut on_two = two.subscribe();

    one.connected(BOB, PresenceStatus::Available, "").await.unwrap();
    assert_eq!(next(&mut on_two).await, presence("bob", PresenceStatus::Available, ""));
    // bob also opens a session on gateway two, then leaves gateway one: still online.
    two.connected(BOB, PresenceStatus::Available, "").await.unwrap();
    one.disconnected(BOB).await.unwrap();
    quiet(&mut on_two).await;
    assert_eq!(one.lookup(&[BOB]).await.unwrap()[0].status, PresenceStatus::Available);
    one.set_status(BOB, PresenceStatus::DoNotDisturb, "focus").await.unwrap();
    assert_eq!(next(&mut on_two).await, presence("bob", PresenceStatus::DoNotDisturb, "focus"));
    two.disconnected(BOB).await.unwrap();
    assert_eq!(next(&mut on_two).await, presence("bob", PresenceStatus::Offline, ""));
    drop((one, two));
    forget(&prefix).await;
}

#[tokio::test]
async fn a_dead_gateways_users_go_offline_within_the_ttl() {
    let prefix = unique_prefix();
    let ttl = Duration::from_secs(1);
    let doomed = gateway(&prefix, "doomed", ttl).await;
    let survivor = gateway(&prefix, "survivor", ttl).await;
    let mut changes = survivor.subscribe();
    doomed.connected(ALICE, PresenceStatus::Available, "").await.unwrap();
    assert_eq!(next(&mut changes).await.status, PresenceStatus::Available);

    let started = std::time::Instant::now();
    doomed.vanish();
    assert_eq!(next(&mut changes).await, presence("alice", PresenceStatus::Offline, ""));
    // The TTL, plus at most one heartbeat interval for someone to notice.
    assert!(started.elapsed() < ttl + ttl, "took {:?}", started.elapsed());
    assert_eq!(survivor.lookup(&[ALICE]).await.unwrap()[0].status, PresenceStatus::Offline);
    drop(survivor);
    forget(&prefix).await;
}

#[tokio::test]
async fn a_gateway_that_leaves_takes_its_users_offline_at_once() {
    let prefix = unique_prefix();
    let leaving = gateway(&prefix, "leaving", Duration::from_secs(60)).await;
    let other = gateway(&prefix, "other", Duration::from_secs(60)).await;
    let mut changes = other.subscribe();
    leaving.connected(ALICE, PresenceStatus::Busy, "").await.unwrap();
    next(&mut changes).await;
    leaving.leave().await.unwrap();
    assert_eq!(next(&mut changes).await, presence("alice", PresenceStatus::Offline, ""));
    drop(other);
    forget(&prefix).await;
}

/// A Redis server of this test's own on a free port, killed on drop.
struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (run scripts/test)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "private Redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn presence_comes_back_by_itself_after_a_redis_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = PrivateRedis::start_on(port);
    let config = |gateway: &str| RedisConfig {
        redis: RedisTarget::Single(redis.url()),
        prefix: "restart".into(),
        gateway: gateway.into(),
        ttl: Duration::from_secs(1),
    };
    let one = RedisPresence::connect(config("one")).await.unwrap();
    let two = RedisPresence::connect(config("two")).await.unwrap();
    one.connected(ALICE, PresenceStatus::Busy, "call").await.unwrap();
    assert_eq!(two.lookup(&[ALICE]).await.unwrap()[0].status, PresenceStatus::Busy);

    // Redis restarts empty (it keeps nothing on disk).
    drop(redis);
    let redis = PrivateRedis::start_on(port);
    let mut changes = two.subscribe();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(seen) = two.lookup(&[ALICE]).await
            && seen[0] == presence("alice", PresenceStatus::Busy, "call")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "presence never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And changes flow again over the re-established subscription. `two` resubscribes on
    // its own schedule (it may not have noticed the restart yet when presence is back),
    // and what is published before that is lost by design: publish until one arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    'flowing: for attempt in 0.. {
        let text = format!("back {attempt}");
        one.set_status(ALICE, PresenceStatus::Available, &text).await.unwrap();
        let wait = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Ok(change)) = tokio::time::timeout_at(wait, changes.recv()).await {
            if change == presence("alice", PresenceStatus::Available, &text) {
                break 'flowing;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "changes never flowed again");
    }
    drop((one, two, redis));
}

async fn cluster_gateway(cluster: &LocalCluster, id: &str, ttl: Duration) -> RedisPresence {
    let config =
        RedisConfig { redis: cluster.seeds(), prefix: "sb".into(), gateway: id.into(), ttl };
    RedisPresence::connect(config).await.unwrap()
}

#[tokio::test]
async fn redis_cluster_sessions_and_statuses() {
    let cluster = LocalCluster::start();
    let tracker = cluster_gateway(&cluster, "g1", Duration::from_secs(15)).await;
    sessions_and_statuses(Arc::new(tracker)).await;
}

/// Users spread over every shard; the primary of one shard stops answering during the
/// session and its replica takes over: presence and routing answer right again, changes flow again,
/// within the TTL, without anyone reconnecting.
#[tokio::test]
async fn a_redis_cluster_primary_failover_keeps_presence_and_routing() {
    let mut cluster = LocalCluster::start();
    let ttl = Duration::from_secs(3);
    let one = cluster_gateway(&cluster, "one", ttl).await;
    let two = cluster_gateway(&cluster, "two", ttl).await;
    let locator = RedisLocator::connect(&cluster.seeds(), "sb").await.unwrap();
    let names: Vec<String> = (1..=30).map(|i| format!("user{i}")).collect();
    let users: Vec<UserRef> = names
        .iter()
        .enumerate()
        .map(|(i, name)| UserRef { id: i as i64 + 1, username: name })
        .collect();
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    for user in &users {
        one.connected(*user, PresenceStatus::Busy, "").await.unwrap();
    }
    let seen = two.lookup(&users).await.unwrap();
    assert!(seen.iter().all(|p| p.status == PresenceStatus::Busy), "{seen:?}");
    assert_eq!(locator.locate(&ids).await.unwrap(), [("one".to_string(), ids.clone())]);
    // Let the replicas catch up (replication is asynchronous), then fail a shard over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut changes = two.subscribe();
    cluster.freeze_a_primary();
    cluster.wait_failed_over();

    let deadline = tokio::time::Instant::now() + ttl * 3;
    loop {
        let within = Duration::from_secs(5);
        let located = tokio::time::timeout(within, locator.locate(&ids)).await;
        let seen = tokio::time::timeout(within, two.lookup(&users)).await;
        if let (Ok(Ok(located)), Ok(Ok(seen))) = (&located, &seen)
            && *located == [("one".to_string(), ids.clone())]
            && seen.iter().all(|p| p.status == PresenceStatus::Busy)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "presence did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Changes flow again for every user (their channels are spread over all shards).
    // What was published before the subscriptions moved is lost by design: publish until
    // each arrives.
    for user in &users {
        let deadline = tokio::time::Instant::now() + ttl * 3;
        'flowing: for attempt in 0.. {
            let text = format!("back {attempt}");
            let set = one.set_status(*user, PresenceStatus::Available, &text);
            let _ = tokio::time::timeout(Duration::from_secs(5), set).await;
            let wait = tokio::time::Instant::now() + Duration::from_millis(500);
            while let Ok(Ok(change)) = tokio::time::timeout_at(wait, changes.recv()).await {
                if change == presence(user.username, PresenceStatus::Available, &text) {
                    break 'flowing;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no changes for {}", user.username);
        }
    }
    drop((one, two));
}
