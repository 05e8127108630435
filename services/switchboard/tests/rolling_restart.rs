//! A rolling restart under load, as Kubernetes does it: a real cluster (storage over a
//! PostgreSQL database of this test's own, two routers, three gateways, the local Redis
//! under a key prefix of this test's own) carries the bundled load generator's office
//! traffic while every gateway, one after another, and then both routers get SIGTERM and
//! are started again on the same port. The load generator verifies every delivery by
//! seq: nothing may be lost, duplicated or reordered, every send must be acknowledged,
//! every client must be back, and presence must be right during and after.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Cluster, TestData, add_admin, all_ready, post_json};
use switchboard_loadtest::run::{Admin, RunConfig, run};
use switchboard_loadtest::scenario::Overrides;

/// Simulated users (one connection each) and the messages per second they send together.
const USERS: usize = 45;
const RATE: u32 = 60;
/// Seconds of traffic: enough for every restart to happen well inside it.
const TRAFFIC_SECS: u64 = 40;
/// Gateways' drain limit (`--drain-secs`) and reconnect spread (`--reconnect-spread-ms`).
const DRAIN_SECS: &str = "5";
const SPREAD_MS: &str = "1000";
/// How long a gateway may take to stop: the drain limit, plus the router links and
/// presence (a few seconds at most).
const GATEWAY_STOP: Duration = Duration::from_secs(5 + 5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_and_both_routers_restart_under_load_and_nothing_is_lost() {
    let data = TestData::new("rolling").await;
    add_admin(&data.database, "root");
    let mut cluster = Cluster::on(&data)
        .routers(2)
        .gateways(3)
        .gateway_args(&["--rate-per-user", "0", "--rate-per-ip", "0"])
        .gateway_args(&["--drain-secs", DRAIN_SECS, "--reconnect-spread-ms", SPREAD_MS])
        .start()
        .await;
    let ids = ["gw1", "gw2", "gw3"];
    let addrs = cluster.addrs();
    let (database, redis_url, prefix) = (&data.database, &data.redis_url, &data.prefix);

    // The load: office traffic (1:1 and groups, typing, watching) over all three gateways.
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("rolling.toml");
    std::fs::write(
        &scenario,
        format!(
            "name = \"rolling-restart\"\nkind = \"office\"\nusers = {USERS}\n\
             duration_secs = {TRAFFIC_SECS}\nramp_secs = 1\nrate = {RATE}\nbody_bytes = 16\n\
             drain_secs = 10\n[provision]\nprefix = \"rr\"\npassword = \"rr-password\"\n\
             group_sizes = [5, 10]\n[office]\ngroup_share = 0.4\npresence_every_secs = 0\n\
             typing_share = 0.2\nwatch = 3\n"
        ),
    )
    .unwrap();
    let config = RunConfig {
        scenario,
        gateways: addrs.iter().map(|a| format!("ws://{a}")).collect::<Vec<_>>().join(","),
        overrides: Overrides::default(),
        out: out.path().join("results"),
        admin: Admin::Password { user: "root".into(), password: "root-password".into() },
        xmpp: None,
        workers: 1,
        source_addrs: 0,
        allow_remote: false,
    };
    let started = Instant::now();
    // The load generator runs on a runtime of its own: the restarts below block while
    // processes stop and start.
    let load = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(config))
    });
    // Provisioning, the ramp, and a few seconds of steady traffic first.
    wait_for_online(database, redis_url, prefix, &ids, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every gateway, one after another: SIGTERM, then a new process on the same port.
    for (i, id) in ids.iter().enumerate() {
        let (status, took) = cluster.gateways[i].0.terminate();
        assert!(status.success(), "{id} exited with {status}");
        assert!(took < GATEWAY_STOP, "{id} took {took:?} to stop");
        assert_gateway_left(redis_url, prefix, id).await;
        cluster.gateways[i] = cluster.spawn_gateway(i, &addrs[i]);
        all_ready(&addrs).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Then both routers, the same way.
    for i in 0..cluster.routers.len() {
        let (status, took) = cluster.routers[i].0.terminate();
        assert!(status.success(), "router {i} exited with {status}");
        assert!(took < Duration::from_secs(8), "router {i} took {took:?} to stop");
        cluster.routers[i] = cluster.spawn_router(&cluster.routers[i].1);
        // Gateways link again within their backoff (at most 2 s).
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let restarts_done = started.elapsed();
    assert!(
        restarts_done < Duration::from_secs(TRAFFIC_SECS - 5),
        "the restarts took {restarts_done:?}, past the traffic; make TRAFFIC_SECS longer"
    );

    // Every client is back, each with exactly one session on a live gateway.
    wait_for_online(database, redis_url, prefix, &ids, Duration::from_secs(15)).await;

    let outcome = tokio::task::spawn_blocking(move || load.join().unwrap()).await.unwrap().unwrap();
    let s = &outcome.summary;
    let t = &s.totals;
    println!(
        "sent {} acked {} delivered {} (backfilled {}) lost {} duplicated {} out of order {} \
         connects {} p99 {:.1} ms max {:.1} ms kinds {:?}",
        t.sent,
        t.acked,
        t.delivered,
        t.backfilled,
        t.lost,
        t.duplicated,
        t.out_of_order,
        t.connects,
        s.p99_ms,
        s.max_ms,
        s.kinds
    );
    assert_eq!((t.lost, t.duplicated, t.out_of_order), (0, 0, 0), "kinds: {:?}", s.kinds);
    assert_eq!(t.sender_reordered, 0);
    assert!(t.sent > 1000 && t.delivered > t.sent, "too little traffic to mean anything: {t:?}");
    assert_eq!((t.unacked, t.acked), (0, t.sent), "every send acknowledged");
    assert_eq!(t.connect_failures, 0);
    assert!(!s.kinds.contains_key("abandoned_users"), "{:?}", s.kinds);
    assert!(!s.kinds.contains_key("drain_incomplete"), "{:?}", s.kinds);
    // Every client of every gateway was told to move, and came back (resuming by seq).
    assert!(
        s.kinds.get("shutting_down").copied().unwrap_or(0) >= USERS as u64,
        "clients told to reconnect: {:?}",
        s.kinds
    );
    assert!(t.connects >= 2 * USERS as u64, "reconnects: {}", t.connects);

    // The load generator has signed everyone out: nobody shows online, no session is left.
    let users = user_ids(database).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let sessions = sessions(redis_url, prefix, &users).await;
        if sessions.values().all(HashMap::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "sessions left after everyone left: {sessions:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let observer = presence_of(&addrs[0], &users).await;
    assert!(observer.iter().all(|(_, status)| status == "offline"), "{observer:?}");

    drop(cluster);
    data.remove().await;
}

/// The load generator's users (id, username), from the test's database.
async fn user_ids(database: &str) -> Vec<(i64, String)> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(database).await.unwrap();
    sqlx::query_as("SELECT id, username FROM users WHERE username LIKE 'rr-%' ORDER BY id")
        .fetch_all(&mut db)
        .await
        .unwrap()
}

/// Each user's sessions per gateway, as Redis presence records them.
async fn sessions(
    redis_url: &str,
    prefix: &str,
    users: &[(i64, String)],
) -> HashMap<String, HashMap<String, i64>> {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut all = HashMap::new();
    for (id, username) in users {
        let per_gateway: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(format!("{prefix}:presence:{{{id}}}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        all.insert(username.clone(), per_gateway);
    }
    all
}

/// Waits until every load-generator user is online with exactly one session, on one of
/// `gateways`, each of which heartbeats.
async fn wait_for_online(
    database: &str,
    redis_url: &str,
    prefix: &str,
    gateways: &[&str],
    within: Duration,
) {
    let deadline = Instant::now() + within;
    loop {
        let users = user_ids(database).await;
        if users.len() == USERS {
            let sessions = sessions(redis_url, prefix, &users).await;
            let right = sessions.values().all(|per_gateway| {
                per_gateway.values().sum::<i64>() == 1
                    && per_gateway.keys().all(|g| gateways.contains(&g.as_str()))
            });
            if right {
                return;
            }
            assert!(Instant::now() < deadline, "presence never settled: {sessions:?}");
        } else {
            assert!(Instant::now() < deadline, "only {} users provisioned", users.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A gateway that stopped left nothing behind in Redis: no heartbeat, no users, and no
/// session of anyone counted on it.
async fn assert_gateway_left(redis_url: &str, prefix: &str, gateway: &str) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let alive: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}:gateway:{gateway}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let users: i64 = redis::cmd("HLEN")
        .arg(format!("{prefix}:gateway-users:{gateway}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!alive, "{gateway} still heartbeats after it stopped");
    assert_eq!(users, 0, "{gateway} left users behind");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:presence:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in keys {
        let here: Option<i64> =
            redis::cmd("HGET").arg(&key).arg(gateway).query_async(&mut conn).await.unwrap();
        assert_eq!(here, None, "{key} still counts sessions on {gateway}");
    }
}

/// What a signed-in person sees of `users`' presence (`watch` over the WebSocket).
async fn presence_of(gateway: &str, users: &[(i64, String)]) -> Vec<(String, String)> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let (status, body) = post_json(
        gateway,
        "/api/v1/login",
        &json!({"username": "root", "password": "root-password"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{gateway}/ws")).await.unwrap();
    ws.send(WsMessage::text(json!({"type": "auth", "token": token}).to_string())).await.unwrap();
    let names: Vec<&str> = users.iter().map(|(_, n)| n.as_str()).collect();
    let watch = json!({"type": "watch", "id": "w", "users": names});
    ws.send(WsMessage::text(watch.to_string())).await.unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no presence list")
            .unwrap()
            .unwrap();
        let WsMessage::Text(text) = frame else { continue };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        if value["type"] == "presence_list" {
            return value["presences"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (p["user"].as_str().unwrap().to_owned(), p["status"].as_str().unwrap().into())
                })
                .collect();
        }
    }
}
