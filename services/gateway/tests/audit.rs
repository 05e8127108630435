//! The audit log as an admin reads it over REST: every kind of event appears (with who,
//! what, on what, from where and why), only admins may read it, and its filters and
//! paging work. The same scenario runs on the embedded SQLite store, on PostgreSQL, and
//! on PostgreSQL behind the gRPC storage service (a cluster gateway's store).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};
use sqlx::Connection;
use support::{Server, http, test_config};
use switchboard_gateway::Gateway;
use switchboard_storage::grpc::{self, RemoteStore};
use switchboard_storage::{PgStore, Store, now_ms};

fn admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A PostgreSQL database of the test's own; returns its URL and name.
async fn fresh_database() -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "sbtest_audit_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        now_ms() % 100_000
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
    (format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0), name)
}

async fn drop_database(name: &str) {
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn sqlite_records_every_event_kind_for_admins() {
    let server = Server::start().await;
    every_event_kind_is_audited(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn postgres_records_every_event_kind_for_admins() {
    let (url, name) = fresh_database().await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_gateway(Gateway::new(store, test_config()), tmp.path()).await;
    every_event_kind_is_audited(&server).await;
    server.stop().await;
    drop_database(&name).await;
}

#[tokio::test]
async fn remote_storage_records_every_event_kind_for_admins() {
    let (url, name) = fresh_database().await;
    let pg: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(grpc::serve(listener, pg, async move {
        let _ = stopped.await;
    }));
    let store: Arc<dyn Store> =
        Arc::new(RemoteStore::connect_lazy(&format!("http://{addr}")).unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_gateway(Gateway::new(store, test_config()), tmp.path()).await;
    every_event_kind_is_audited(&server).await;
    server.stop().await;
    let _ = stop.send(());
    drop_database(&name).await;
}

async fn login(server: &Server, name: &str, password: &str) -> (u16, Value) {
    let body = json!({"username": name, "password": password});
    http(server.addr, "POST", "/api/v1/login", None, Some(body)).await
}

async fn audit(server: &Server, token: &str, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/admin/audit?{query}");
    let (status, body) = http(server.addr, "GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

/// `(actor, action, target)` of each entry, newest first.
fn summary(entries: &[Value]) -> Vec<(String, String, String)> {
    let field = |e: &Value, k: &str| e[k].as_str().unwrap().to_owned();
    entries.iter().map(|e| (field(e, "actor"), field(e, "action"), field(e, "target"))).collect()
}

fn row(actor: &str, action: &str, target: &str) -> (String, String, String) {
    (actor.into(), action.into(), target.into())
}

async fn every_event_kind_is_audited(server: &Server) {
    let started = now_ms();
    server.gateway.create_user(None, "root", "root-password".into(), "", "", true).await.unwrap();
    let (status, body) = login(server, "root", "root-password").await;
    assert_eq!(status, 200);
    let root = body["token"].as_str().unwrap().to_owned();
    let post = |path: &str, token: &str, body: Value| {
        let (path, token) = (path.to_owned(), token.to_owned());
        async move { http(server.addr, "POST", &path, Some(&token), Some(body)).await }
    };

    // Accounts: created by an admin, signing in (right and wrong), signing out.
    let alice = json!({"username": "alice", "password": "alice-password", "org": "HQ"});
    assert_eq!(post("/api/v1/users", &root, alice).await.0, 201);
    assert_eq!(login(server, "alice", "not-her-password").await.0, 401);
    assert_eq!(login(server, "ghost", "whatever-password").await.0, 401);
    let (_, body) = login(server, "alice", "alice-password").await;
    let alice = body["token"].as_str().unwrap().to_owned();
    let (_, body) = login(server, "alice", "alice-password").await;
    let spare = body["token"].as_str().unwrap().to_owned();
    assert_eq!(post("/api/v1/logout", &spare, json!({})).await.0, 204);

    // Messages are never audited.
    let open = post("/api/v1/conversations/direct", &alice, json!({"user": "root"})).await;
    assert_eq!(open.0, 200, "{}", open.1);
    let send = json!({"to": "root", "body": "hello", "client_msg_id": "m1"});
    assert_eq!(post("/api/v1/messages", &alice, send).await.0, 201);

    // Organisation tools: a bot, a webhook made and revoked, a broadcast, an import.
    let bot = json!({"username": "buildbot"});
    assert_eq!(post("/api/v1/admin/bots", &root, bot).await.0, 201);
    let root_user = server.gateway.store().user_by_name("root").await.unwrap();
    let alice_user = server.gateway.store().user_by_name("alice").await.unwrap();
    let (group, _) = server
        .gateway
        .store()
        .create_group(&root_user, "Ops", std::slice::from_ref(&alice_user))
        .await
        .unwrap();
    let hooks = format!("/api/v1/conversations/{}/webhooks", group.id);
    let (status, hook) = post(&hooks, &root, json!({"name": "Monitoring"})).await;
    assert_eq!(status, 201, "{hook}");
    let hook_id = hook["id"].as_i64().unwrap();
    let revoke = format!("/api/v1/webhooks/{hook_id}");
    assert_eq!(http(server.addr, "DELETE", &revoke, Some(&root), None).await.0, 204);
    let broadcast = json!({"to": "HQ", "body": "Fire drill at 14:00", "ack": true});
    assert_eq!(post("/api/v1/broadcasts", &root, broadcast).await.0, 201);
    let csv = json!({"csv": "username,org\ncarol,HQ/Building 2\n"});
    assert_eq!(post("/api/v1/admin/directory", &root, csv.clone()).await.0, 200);
    let dry = json!({"csv": "username,org\ndave,HQ\n", "dry_run": true});
    assert_eq!(post("/api/v1/admin/directory", &root, dry).await.0, 200);

    // Role changes and disabling: alice becomes an admin, then is disabled, which ends
    // her sign-ins and her tokens.
    let put = |name: &str, token: &str, body: Value| {
        let (path, token) = (format!("/api/v1/admin/users/{name}"), token.to_owned());
        async move { http(server.addr, "PUT", &path, Some(&token), Some(body)).await }
    };
    let (status, flags) = put("alice", &root, json!({"admin": true})).await;
    assert_eq!(
        (status, flags),
        (200, json!({"username": "alice", "admin": true, "disabled": false}))
    );
    let (status, _) = http(server.addr, "GET", "/api/v1/admin/audit", Some(&alice), None).await;
    assert_eq!(status, 200, "the new role works at once");
    let (status, flags) = put("alice", &root, json!({"admin": false, "disabled": true})).await;
    assert_eq!((status, flags["disabled"].clone()), (200, json!(true)));
    let (status, body) = http(server.addr, "GET", "/api/v1/me", Some(&alice), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
    let (status, body) = login(server, "alice", "alice-password").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    let (status, body) = put("root", &root, json!({"disabled": true})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")), "not yourself");

    // Retention policies and legal holds (compliance settings) are audited too.
    let (status, _) = http(
        server.addr,
        "PUT",
        "/api/v1/admin/retention",
        Some(&root),
        Some(json!({"keep_days": 365})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, hold) =
        post("/api/v1/admin/holds", &root, json!({"user": "alice", "reason": "matter 17"})).await;
    assert_eq!(status, 201, "{hold}");
    let hold_path = format!("/api/v1/admin/holds/{}", hold["id"]);
    let (status, _) = http(server.addr, "DELETE", &hold_path, Some(&root), None).await;
    assert_eq!(status, 204);

    // Only admins read the log.
    let (_, body) =
        post("/api/v1/users", &root, json!({"username": "bob", "password": "bob-password"})).await;
    assert_eq!(body["username"], "bob");
    let (_, body) = login(server, "bob", "bob-password").await;
    let bob = body["token"].as_str().unwrap().to_owned();
    let (status, body) = http(server.addr, "GET", "/api/v1/admin/audit", Some(&bob), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) = http(server.addr, "GET", "/api/v1/admin/audit", None, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));

    // Everything above, newest first (the admin's read waits for pending writes).
    let entries = audit(server, &root, "limit=1000").await;
    let expected = vec![
        row("bob", "auth.login", ""),
        row("root", "user.create", "bob"),
        row("root", "hold.remove", &format!("hold:{}", hold["id"])),
        row("root", "hold.add", "alice"),
        row("root", "retention.set", "default"),
        row("alice", "auth.login_failed", ""),
        row("root", "user.update", "alice"),
        row("root", "user.update", "alice"),
        row("root", "directory.import", ""),
        row("root", "broadcast.send", "HQ"),
        row("root", "webhook.revoke", &format!("webhook:{hook_id}")),
        row("root", "webhook.create", &format!("webhook:{hook_id}")),
        row("root", "bot.create", "buildbot"),
        row("alice", "auth.logout", ""),
        row("alice", "auth.login", ""),
        row("alice", "auth.login", ""),
        row("ghost", "auth.login_failed", ""),
        row("alice", "auth.login_failed", ""),
        row("root", "user.create", "alice"),
        row("root", "auth.login", ""),
    ];
    assert_eq!(summary(&entries), expected);
    let detail = |i: usize| entries[i]["detail"].as_str().unwrap().to_owned();
    assert_eq!(detail(3), "hold 1: matter 17");
    assert_eq!(detail(4), "keep 365 days");
    assert_eq!(detail(5), "account disabled");
    assert_eq!(detail(6), "admin=false disabled=true");
    assert_eq!(detail(7), "admin=true");
    assert!(detail(8).starts_with("created 1 (carol)"), "{}", detail(8));
    assert_eq!(detail(16), "unknown user");
    assert_eq!(detail(17), "wrong password");
    for entry in &entries {
        assert_eq!(entry["ip"], "127.0.0.1", "{entry}");
        let ts = entry["ts"].as_i64().unwrap();
        assert!(ts >= started && ts <= now_ms(), "{entry}");
    }

    // Filters: by actor, by action or action prefix, by time; and paging.
    let by_alice = audit(server, &root, "actor=alice").await;
    assert_eq!(by_alice.len(), 5);
    assert!(by_alice.iter().all(|e| e["actor"] == "alice"));
    let failed = audit(server, &root, "action=auth.login_failed").await;
    assert_eq!(
        summary(&failed).iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["alice", "ghost", "alice"]
    );
    let auth = audit(server, &root, "action=auth.").await;
    assert_eq!(auth.len(), 8);
    let hooks = audit(server, &root, "action=webhook.&actor=root").await;
    assert_eq!(hooks.len(), 2);
    let until = entries[16]["ts"].as_i64().unwrap() + 1;
    let before_everything = audit(server, &root, &format!("until={}", started - 1)).await;
    assert!(before_everything.is_empty());
    let first = audit(server, &root, &format!("since={started}&until={}", now_ms() + 1)).await;
    assert_eq!(first.len(), entries.len());
    let oldest = audit(server, &root, &format!("until={until}")).await;
    assert_eq!(summary(&oldest).last(), Some(&row("root", "auth.login", "")));
    let path = "/api/v1/admin/audit?limit=10";
    let (_, page) = http(server.addr, "GET", path, Some(&root), None).await;
    let next = page["next_before"].as_i64().unwrap();
    let rest = audit(server, &root, &format!("limit=10&before={next}")).await;
    let mut paged: Vec<Value> = page["entries"].as_array().unwrap().clone();
    paged.extend(rest);
    assert_eq!(summary(&paged), expected);
    let (status, body) =
        http(server.addr, "GET", "/api/v1/admin/audit?color=red", Some(&root), None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")), "{body}");
}
