//! Cluster mode with real processes: one `storage` (over a PostgreSQL database of this
//! test's own), `router`s and `gateway`s sharing presence in Redis. People on different
//! gateways chat and see each other's presence; a router and a gateway are killed and
//! delivery goes on. Each scenario runs twice, from one body: on the local Redis under a
//! key prefix of the test's own (`..._on_one_redis`) and on a Redis Cluster of the test's
//! own, 3 primaries and 3 replicas (`..._on_a_redis_cluster`).

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use switchboard_presence::RedisTarget;
use switchboard_presence::testing::LocalCluster;

use serde_json::{Value, json};
use support::{BIN, Cluster, Proc, TestData, WsClient, add_user_in, add_users, post_json, ready};

/// Where a test's cluster keeps presence. Dropping it drops the Redis Cluster.
enum Redis {
    /// The local Redis, under the test data's key prefix.
    One,
    /// A Redis Cluster of the test's own.
    Cluster(LocalCluster),
}

impl Redis {
    /// A fresh local Redis Cluster (a few seconds to form).
    async fn cluster() -> Self {
        Self::Cluster(tokio::task::spawn_blocking(LocalCluster::start).await.unwrap())
    }

    /// A name for what depends on the backend (the test data), so the two runs of one
    /// scenario in one process do not collide.
    fn tag(&self) -> &'static str {
        match self {
            Self::One => "one",
            Self::Cluster(_) => "rc",
        }
    }

    /// The arguments routers and gateways take to reach it.
    fn args(&self, data: &TestData) -> Vec<String> {
        match self {
            Self::One => data.redis_args(),
            Self::Cluster(cluster) => {
                let RedisTarget::Cluster(nodes) = cluster.seeds() else { unreachable!() };
                vec!["--redis-cluster".into(), nodes.join(",")]
            }
        }
    }
}

/// Signs `user` in through the CLI against `gateway`; returns the token.
fn login(gateway: &str, user: &str, config: &std::path::Path) -> String {
    let mut child = Command::new(BIN)
        .args([
            "login",
            "--server",
            &format!("http://{gateway}"),
            "--user",
            user,
            "--password-stdin",
        ])
        .env("SWITCHBOARD_CONFIG_DIR", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{user}-password\n").as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "login {user}");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(config.join("credentials.json")).unwrap()).unwrap();
    saved["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_on_different_gateways_chat_and_survive_crashes_on_one_redis() {
    people_on_different_gateways_chat_and_survive_crashes(Redis::One).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_on_different_gateways_chat_and_survive_crashes_on_a_redis_cluster() {
    people_on_different_gateways_chat_and_survive_crashes(Redis::cluster().await).await;
}

/// Chat 1:1 and in a group across three gateways, presence across gateways, then a
/// router crash, a gateway crash (its user offline within the TTL, backfilled on another
/// gateway) and a storage outage.
async fn people_on_different_gateways_chat_and_survive_crashes(presence: Redis) {
    let data = TestData::new(&format!("cluster-{}", presence.tag())).await;
    let tmp = tempfile::tempdir().unwrap();
    add_users(&data.database, &["alice", "bob", "carol"]);
    let redis = presence.args(&data);
    let mut cluster = Cluster::on(&data)
        .redis(&redis.iter().map(String::as_str).collect::<Vec<_>>())
        .routers(2)
        .gateways(3)
        .gateway_args(&["--rate-per-user", "0", "--rate-per-ip", "0", "--presence-ttl", "3"])
        .start()
        .await;
    let gw = cluster.addrs();

    let alice_token = login(&gw[0], "alice", &tmp.path().join("alice"));
    let bob_token = login(&gw[1], "bob", &tmp.path().join("bob"));
    let carol_token = login(&gw[2], "carol", &tmp.path().join("carol"));
    let mut alice = WsClient::connect(&gw[0], &alice_token).await;
    let mut bob = WsClient::connect(&gw[1], &bob_token).await;
    let mut carol = WsClient::connect(&gw[2], &carol_token).await;

    // 1:1 across gateways.
    alice
        .send(
            json!({"type": "send", "to": "bob", "client_msg_id": "a1", "body": "hi bob, from gw1"}),
        )
        .await;
    let got = bob.message().await;
    assert_eq!(
        (got["sender"].as_str(), got["body"].as_str()),
        (Some("alice"), Some("hi bob, from gw1"))
    );
    let direct = got["conversation_id"].as_i64().unwrap();
    bob.send(json!({"type": "send", "conversation_id": direct, "client_msg_id": "b1", "body": "hello from gw2"})).await;
    assert_eq!(alice.message().await["seq"], 1);
    assert_eq!(alice.message().await["body"], "hello from gw2");

    // A group spread over three gateways.
    alice.send(json!({"type": "create_group", "name": "Ops", "members": ["bob", "carol"]})).await;
    let created = carol.message().await;
    assert_eq!(created["kind"], "system");
    let group = created["conversation_id"].as_i64().unwrap();
    carol.send(json!({"type": "send", "conversation_id": group, "client_msg_id": "c1", "body": "from gw3"})).await;
    for client in [&mut alice, &mut bob] {
        let message = client
            .expect(|f| {
                f["type"] == "message"
                    && f["message"]["conversation_id"] == group
                    && f["message"]["seq"] == 2
            })
            .await;
        assert_eq!(message["message"]["body"], "from gw3");
    }

    // Presence set on gw3 is seen on gw1.
    // (Wait for the watch to be in place: the two frames go to different gateways.)
    alice.send(json!({"type": "watch", "id": "w1", "users": ["carol"]})).await;
    alice.expect(|f| f["id"] == "w1").await;
    carol.send(json!({"type": "set_presence", "status": "busy", "text": "Building 2"})).await;
    let busy = alice.expect(|f| f["type"] == "presence" && f["presence"]["status"] == "busy").await;
    assert_eq!(busy["presence"]["text"], "Building 2");

    // One router dies: delivery goes on through the other. Deliveries already handed to
    // the dead router are lost on the live path; the next message shows receivers the gap,
    // which they fill from storage (the delivery contract), so after a last message
    // everyone has everything, in order, once.
    cluster.routers[0].0.kill();
    for i in 0..20 {
        let id = format!("after-crash-{i}");
        bob.send(json!({"type": "send", "conversation_id": group, "client_msg_id": id, "body": i.to_string()})).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    bob.send(
        json!({"type": "send", "conversation_id": group, "client_msg_id": "last", "body": "last"}),
    )
    .await;
    for client in [&mut alice, &mut carol] {
        let mut seen = Vec::new();
        while seen.last() != Some(&23) {
            let m = client.message().await;
            if m["conversation_id"] == group && m["sender"] == "bob" {
                seen.push(m["seq"].as_i64().unwrap());
            }
        }
        // seq 1 and 2 came before.
        assert_eq!(seen, (3..=23).collect::<Vec<_>>());
    }

    // carol's gateway is killed: watchers see her offline within the presence TTL (3 s
    // here); she reconnects to another gateway and gets exactly what she missed.
    let (gw3, _) = cluster.gateways.pop().unwrap();
    let killed = std::time::Instant::now();
    drop(gw3);
    for i in 0..3 {
        let id = format!("while-away-{i}");
        bob.send(json!({"type": "send", "conversation_id": group, "client_msg_id": id, "body": "missed"})).await;
    }
    alice
        .expect(|f| {
            f["type"] == "presence"
                && f["presence"]["user"] == "carol"
                && f["presence"]["status"] == "offline"
        })
        .await;
    assert!(killed.elapsed() < Duration::from_secs(8), "offline after {:?}", killed.elapsed());
    let mut carol = WsClient::connect_with(
        &gw[0],
        json!({"type": "auth", "token": carol_token, "since": {group.to_string(): 23}}),
    )
    .await;
    let mut backfilled = Vec::new();
    for _ in 0..3 {
        backfilled.push(carol.message().await["seq"].as_i64().unwrap());
    }
    assert_eq!(backfilled, [24, 25, 26]);
    carol.expect(|f| f["type"] == "synced").await;
    bob.send(json!({"type": "send", "conversation_id": group, "client_msg_id": "welcome-back", "body": "back?"})).await;
    assert_eq!(carol.message().await["seq"], 27);

    // Storage goes away: sends fail with a retryable error and nothing is acked; when it
    // is back (same address), the same send goes through.
    cluster.storage.0.kill();
    let send = json!({"type": "send", "id": "s1", "conversation_id": group, "client_msg_id": "during-outage", "body": "kept?"});
    alice.send(send.clone()).await;
    let refused = alice.expect(|f| f["id"] == "s1").await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("unavailable"))
    );
    assert!(!ready(&gw[0]).await, "/readyz must fail while storage is unreachable");
    cluster.storage = cluster.spawn_storage(&cluster.storage.1);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let acked = loop {
        alice.send(send.clone()).await;
        let answer = alice.expect(|f| f["id"] == "s1").await;
        if answer["type"] == "ack" {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "storage never came back: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(acked["seq"], 28, "the refused attempts took no seq");

    drop((cluster, presence));
    data.remove().await;
}

/// A Redis server of this test's own on a free port, killed on drop (so the test can
/// restart it without disturbing anyone else's).
struct PrivateRedis {
    port: u16,
    _child: Proc,
}

impl PrivateRedis {
    fn start_on(port: u16) -> Self {
        let port_arg = port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port_arg, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (run scripts/test)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "private Redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, _child: Proc(child) }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_during_traffic_loses_nothing() {
    let data = TestData::new("redis-restart").await;
    add_users(&data.database, &["alice", "bob"]);
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = PrivateRedis::start_on(port);
    let redis_url = redis.url();

    let cluster = Cluster::on(&data)
        .redis(&["--redis", &redis_url])
        .gateways(2)
        .gateway_args(&["--rate-per-user", "0", "--rate-per-ip", "0"])
        // Heartbeats every 3 s: after the restart, Redis knows no sessions for up to 3 s,
        // and the router drops what it routes meanwhile; the sessions repair it.
        .gateway_args(&["--presence-ttl", "9"])
        .start()
        .await;
    let gw = cluster.addrs();
    let alice_token = login(&gw[0], "alice", &tmp.path().join("alice"));
    let bob_token = login(&gw[1], "bob", &tmp.path().join("bob"));
    let mut alice = WsClient::connect(&gw[0], &alice_token).await;
    let mut bob = WsClient::connect(&gw[1], &bob_token).await;
    alice.send(json!({"type": "watch", "id": "w", "users": ["bob"]})).await;
    let watched = alice.expect(|f| f["id"] == "w").await;
    assert_eq!(watched["presences"][0]["status"], "available");

    // alice sends 300 messages to bob, one every 10 ms or so; meanwhile Redis dies and
    // comes back empty a second later (it keeps nothing on disk).
    let restart = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(redis);
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::spawn_blocking(move || PrivateRedis::start_on(port)).await.unwrap()
    });
    let mut acked = Vec::new();
    for i in 0..300 {
        let id = i.to_string();
        alice.send(json!({"type": "send", "id": id, "to": "bob", "client_msg_id": format!("m{i}"), "body": format!("m{i}")})).await;
        let answer = alice.expect(|f| f["id"] == id.as_str()).await;
        assert_eq!(answer["type"], "ack", "a send failed around the Redis restart: {answer}");
        acked.push(answer["seq"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let redis = restart.await.unwrap();
    assert_eq!(acked, (1..=300).collect::<Vec<_>>());

    // bob gets every message, once, in order, with no later message to reveal a gap:
    // what the live path dropped comes from storage once the cluster has recovered.
    let mut received = Vec::new();
    while received.len() < 300 {
        let message = bob.message().await;
        received.push(message["seq"].as_i64().unwrap());
    }
    assert_eq!(received, acked);

    // Again, but with the last messages sent while Redis, just back, knows no sessions
    // yet: no later message reveals the gap, so it is the recovery itself (sessions
    // catching up from storage once the gateways re-register) that must deliver them.
    drop(redis);
    let redis = tokio::task::spawn_blocking(move || PrivateRedis::start_on(port)).await.unwrap();
    for i in 300..310 {
        let id = i.to_string();
        alice.send(json!({"type": "send", "id": id, "to": "bob", "client_msg_id": format!("m{i}"), "body": format!("m{i}")})).await;
        assert_eq!(alice.expect(|f| f["id"] == id.as_str()).await["type"], "ack");
    }
    let mut received = Vec::new();
    while received.len() < 10 {
        received.push(bob.message().await["seq"].as_i64().unwrap());
    }
    assert_eq!(received, (301..=310).collect::<Vec<_>>());

    // Presence recovered: bob is still seen online, and his changes reach alice again.
    presence_flows_again(&mut alice, &mut bob, Duration::from_secs(15)).await;

    drop((cluster, redis));
    data.remove().await;
}

/// After a Redis outage or failover: bob's presence changes reach alice (watching him)
/// again within `within` (changes published before the subscriptions were back are lost
/// by design, so bob toggles until one arrives), and a fresh `watch` sees his status.
async fn presence_flows_again(alice: &mut WsClient, bob: &mut WsClient, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        bob.send(json!({"type": "set_presence", "id": "p", "status": "away", "text": "lunch"}))
            .await;
        bob.expect(|f| f["id"] == "p").await;
        let seen = tokio::time::timeout(
            Duration::from_secs(2),
            alice.expect(|f| f["type"] == "presence" && f["presence"]["status"] == "away"),
        )
        .await;
        if seen.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "presence changes never flowed again");
        bob.send(json!({"type": "set_presence", "id": "p", "status": "available", "text": ""}))
            .await;
        bob.expect(|f| f["id"] == "p").await;
    }
    alice.send(json!({"type": "watch", "id": "w2", "users": ["bob"]})).await;
    let watched = alice.expect(|f| f["id"] == "w2").await;
    assert_eq!(watched["presences"][0]["status"], "away", "{watched}");
}

/// Runs the CLI as the user whose sign-in is saved in `config`; returns the exit code
/// and stdout.
fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN)
        .args(args)
        .env("SWITCHBOARD_CONFIG_DIR", config)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8(output.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_bots_and_broadcasts_reach_people_on_every_gateway_on_one_redis() {
    webhooks_bots_and_broadcasts_reach_people_on_every_gateway(Redis::One).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_bots_and_broadcasts_reach_people_on_every_gateway_on_a_redis_cluster() {
    webhooks_bots_and_broadcasts_reach_people_on_every_gateway(Redis::cluster().await).await;
}

async fn webhooks_bots_and_broadcasts_reach_people_on_every_gateway(presence: Redis) {
    let data = TestData::new(&format!("cluster-org-{}", presence.tag())).await;
    let database = &data.database;
    let tmp = tempfile::tempdir().unwrap();
    for (user, org, admin) in [
        ("admin", "HQ", true),
        ("alice", "HQ/Building 2", false),
        ("bob", "HQ/Building 2/Floor 3", false),
        ("carol", "HQ/Building 20", false),
        ("dave", "HQ/Building 2", false),
    ] {
        add_user_in(database, user, org, admin);
    }
    let redis = presence.args(&data);
    let cluster = Cluster::on(&data)
        .redis(&redis.iter().map(String::as_str).collect::<Vec<_>>())
        .gateways(2)
        .gateway_args(&["--rate-per-user", "0", "--rate-per-ip", "0"])
        .start()
        .await;
    let gw = cluster.addrs();
    let admin_config = tmp.path().join("admin");
    let admin_token = login(&gw[0], "admin", &admin_config);
    let alice_token = login(&gw[0], "alice", &tmp.path().join("alice"));
    let bob_token = login(&gw[1], "bob", &tmp.path().join("bob"));
    let carol_token = login(&gw[1], "carol", &tmp.path().join("carol"));
    let dave_token = login(&gw[0], "dave", &tmp.path().join("dave"));
    let mut admin = WsClient::connect(&gw[0], &admin_token).await;
    let mut alice = WsClient::connect(&gw[0], &alice_token).await;
    let mut bob = WsClient::connect(&gw[1], &bob_token).await;
    let mut carol = WsClient::connect(&gw[1], &carol_token).await;

    // A webhook into a group spread over both gateways, posted to through either.
    admin
        .send(
            json!({"type": "create_group", "id": "g", "name": "Ops", "members": ["alice", "bob"]}),
        )
        .await;
    let group = admin.expect(|f| f["id"] == "g").await["conversation"]["id"].as_i64().unwrap();
    let (code, url) =
        cli(&admin_config, &["webhook", "add", &group.to_string(), "--name", "Monitoring"]);
    assert_eq!(code, 0);
    let path = url.trim().split_once(&gw[0]).unwrap().1.to_owned();
    let (status, answer) =
        post_json(&gw[1], &path, &json!({"text": "build 4411 failed", "username": "CI"})).await;
    assert_eq!(status, 200, "{answer}");
    for client in [&mut alice, &mut bob] {
        let m = client
            .expect(|f| {
                f["type"] == "message"
                    && f["message"]["kind"] == "system"
                    && f["message"]["author"] == "CI"
            })
            .await;
        assert_eq!(m["message"]["body"], "build 4411 failed");
    }

    // A bot: outside the group its post is refused (exit code 4), to a person it works.
    let bot = Command::new(BIN)
        .args(["bot", "add", "ci", "--display-name", "CI bot", "--database", database])
        .output()
        .unwrap();
    assert!(bot.status.success());
    let bot_token = String::from_utf8(bot.stdout).unwrap().trim().to_owned();
    let bot_config = tmp.path().join("bot");
    let server = format!("http://{}", gw[1]);
    let post = |to: &str| {
        cli(
            &bot_config,
            &["post", "--server", &server, "--token", &bot_token, "--to", to, "deploy done"],
        )
    };
    assert_eq!(post(&group.to_string()).0, 4);
    assert_eq!(post("alice").0, 0);
    let m = alice.expect(|f| f["type"] == "message" && f["message"]["sender"] == "ci").await;
    assert_eq!(m["message"]["author"], "CI bot");

    // A broadcast to HQ/Building 2: live on both gateways, not to Building 20, dave on
    // his next sign-in; acknowledgements reported.
    let (code, id) =
        cli(&admin_config, &["broadcast", "--to", "HQ/Building 2", "--ack", "Fire drill at 14:00"]);
    assert_eq!(code, 0);
    let id: i64 = id.trim().parse().unwrap();
    for client in [&mut alice, &mut bob] {
        let b = client.expect(|f| f["type"] == "broadcast").await;
        assert_eq!(
            (b["broadcast"]["id"].as_i64(), b["broadcast"]["body"].as_str()),
            (Some(id), Some("Fire drill at 14:00"))
        );
    }
    carol.send(json!({"type": "ping", "id": "p"})).await;
    let next = carol.expect(|f| f["type"] == "broadcast" || f["id"] == "p").await;
    assert_eq!(next["type"], "pong", "{next}");
    let mut dave = WsClient::connect(&gw[1], &dave_token).await;
    assert_eq!(dave.expect(|f| f["type"] == "broadcast").await["broadcast"]["id"], id);
    alice.send(json!({"type": "ack_broadcast", "id": "k", "broadcast_id": id})).await;
    assert_eq!(alice.expect(|f| f["id"] == "k").await["type"], "ok");
    let (code, status) = cli(&admin_config, &["broadcast", "status", &id.to_string(), "--json"]);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["acknowledged"][0]["user"], "alice");
    assert_eq!(status["pending"], json!(["bob", "dave"]));

    drop((cluster, presence));
    data.remove().await;
}

/// The cluster on a Redis Cluster (3 primaries, 3 replicas) instead of one Redis: people
/// on two gateways chat, and the primary of one shard stops answering during the traffic
/// (frozen, as an unreachable pod) until its replica takes over. Every acked message
/// arrives once, in order; presence flows again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_primary_failover_during_traffic_loses_nothing() {
    let data = TestData::new("redis-cluster").await;
    add_users(&data.database, &["alice", "bob"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut redis = tokio::task::spawn_blocking(LocalCluster::start).await.unwrap();
    let RedisTarget::Cluster(nodes) = redis.seeds() else { unreachable!() };
    let nodes = nodes.join(",");

    let cluster = Cluster::on(&data)
        .redis(&["--redis-cluster", &nodes])
        .gateways(2)
        .gateway_args(&["--rate-per-user", "0", "--rate-per-ip", "0", "--presence-ttl", "6"])
        .start()
        .await;
    let gw = cluster.addrs();
    let alice_token = login(&gw[0], "alice", &tmp.path().join("alice"));
    let bob_token = login(&gw[1], "bob", &tmp.path().join("bob"));
    let mut alice = WsClient::connect(&gw[0], &alice_token).await;
    let mut bob = WsClient::connect(&gw[1], &bob_token).await;
    alice.send(json!({"type": "watch", "id": "w", "users": ["bob"]})).await;
    let watched = alice.expect(|f| f["id"] == "w").await;
    assert_eq!(watched["presences"][0]["status"], "available");

    // alice sends 300 messages to bob, one every 10 ms or so; half a second in, a primary
    // freezes and (after the cluster's 1 s node timeout) its replica takes over.
    let failover = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(500));
        redis.freeze_a_primary();
        redis.wait_failed_over();
        redis
    });
    let mut acked = Vec::new();
    for i in 0..300 {
        let id = i.to_string();
        alice.send(json!({"type": "send", "id": id, "to": "bob", "client_msg_id": format!("m{i}"), "body": format!("m{i}")})).await;
        let answer = alice.expect(|f| f["id"] == id.as_str()).await;
        assert_eq!(answer["type"], "ack", "a send failed around the failover: {answer}");
        acked.push(answer["seq"].as_i64().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let redis = failover.await.unwrap();
    assert_eq!(acked, (1..=300).collect::<Vec<_>>());
    let mut received = Vec::new();
    while received.len() < 300 {
        received.push(bob.message().await["seq"].as_i64().unwrap());
    }
    assert_eq!(received, acked);

    // Presence flows again: bob's changes reach alice.
    presence_flows_again(&mut alice, &mut bob, Duration::from_secs(20)).await;

    drop((cluster, redis));
    data.remove().await;
}
