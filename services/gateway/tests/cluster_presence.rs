//! Cluster gateways in one process: two gateways sharing one store and one real Redis
//! (`SWITCHBOARD_TEST_REDIS`, default `redis://127.0.0.1:6379`, own key prefix) see each
//! other's presence; a gateway that reaches no router says it is not ready.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::Server;
use switchboard_gateway::Gateway;
use switchboard_presence::{RedisConfig, RedisPresence, RedisTarget};
use switchboard_protocol::{PresenceStatus, ServerFrame};
use switchboard_storage::{SqliteStore, Store};

fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn gateway(store: Arc<dyn Store>, prefix: &str, id: &str) -> Gateway {
    let url = redis_url();
    let config = RedisConfig {
        redis: RedisTarget::Single(url),
        prefix: prefix.into(),
        gateway: id.into(),
        ttl: Duration::from_secs(15),
    };
    let presence = RedisPresence::connect(config)
        .await
        .unwrap_or_else(|e| panic!("Redis (run scripts/test): {e}"));
    Gateway::with_presence(store, Arc::new(presence), support::test_config())
}

#[tokio::test]
async fn presence_crosses_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let prefix = format!("sbtest:gw:{}", std::process::id());
    let one = Server::start_gateway(gateway(store.clone(), &prefix, "one").await, dir.path()).await;
    let two = Server::start_gateway(gateway(store.clone(), &prefix, "two").await, dir.path()).await;
    let (alice_token, bob_token) = (one.user("alice").await, one.user("bob").await);

    let mut alice = one.connect(&alice_token).await;
    let watched = alice.request(json!({"type": "watch", "users": ["bob"]})).await;
    let ServerFrame::PresenceList { presences, .. } = watched else { panic!("{watched:?}") };
    assert_eq!(presences[0].status, PresenceStatus::Offline);

    let is = |status: PresenceStatus| move |f: &ServerFrame| matches!(f, ServerFrame::Presence { presence } if presence.user == "bob" && presence.status == status);
    let mut bob = two.connect(&bob_token).await;
    alice.next_matching(is(PresenceStatus::Available)).await;
    bob.request(json!({"type": "set_presence", "status": "busy", "text": "Building 2, room 301"}))
        .await;
    let ServerFrame::Presence { presence } = alice.next_matching(is(PresenceStatus::Busy)).await
    else {
        unreachable!()
    };
    assert_eq!(presence.text, "Building 2, room 301");
    // Looked up from gateway one, bob (on gateway two) is busy too.
    let looked = alice.request(json!({"type": "watch", "users": ["bob"]})).await;
    let ServerFrame::PresenceList { presences, .. } = looked else { panic!("{looked:?}") };
    assert_eq!(presences[0].status, PresenceStatus::Busy);

    bob.close().await;
    alice.next_matching(is(PresenceStatus::Offline)).await;

    one.stop().await;
    two.stop().await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
    }
}

#[tokio::test]
async fn readyz_fails_while_no_router_is_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    // Nothing listens on the router's port.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cluster = switchboard_gateway::Cluster {
        routers: vec![format!("http://{nowhere}")],
        gateway_id: "lonely".into(),
        tls: None,
    };
    let presence = Arc::new(switchboard_presence::LocalPresence::default());
    let gateway = Gateway::clustered(store, presence, cluster, support::test_config());
    let server = Server::start_gateway(gateway, dir.path()).await;
    let (status, body) = support::http(server.addr, "GET", "/readyz", None, None).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")));
    assert!(body["message"].as_str().unwrap().contains("no router"), "{body}");
    let (status, _) = support::http(server.addr, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "alive, just not ready");
    server.stop().await;
}
