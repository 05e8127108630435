//! Abuse controls: sign-in throttling and lockout, connection and group caps, the per-IP
//! message rate, slow consumers, and which web origins may use the gateway.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Client, Config, Server, error_code, http};
use switchboard_protocol::{ErrorCode, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// An HTTP/1.1 request with extra headers; returns the status, the response head
/// (lowercase) and the body as JSON (Null when empty).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, String, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(support::WAIT, stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), json)
}

async fn login(server: &Server, username: &str, password: &str) -> (u16, String, Value) {
    let body = json!({"username": username, "password": password});
    request(server.addr, "POST", "/api/v1/login", &[], Some(body)).await
}

/// The seconds of a `retry-after` header in a response head.
fn retry_after(head: &str) -> Option<u64> {
    head.lines().find_map(|l| l.strip_prefix("retry-after:")).map(|v| v.trim().parse().unwrap())
}

fn no_ip_limit(config: Config) -> Config {
    Config { login_ip_failures_per_minute: 0.0, ..config }
}

#[tokio::test]
async fn a_password_guessing_script_is_locked_out_and_the_lock_expires() {
    let server = Server::start_with(no_ip_limit(Config {
        login_backoff_after: 10,
        login_lockout_after: 10,
        login_lockout: Duration::from_secs(2),
        ..support::test_config()
    }))
    .await;
    server.user("alice").await;

    let mut refused_at = None;
    for attempt in 1..=20 {
        let (status, head, body) = login(&server, "alice", &format!("guess-{attempt}")).await;
        if status == 429 {
            assert_eq!(body["code"], "rate_limited");
            assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0));
            assert!(retry_after(&head).is_some_and(|s| s >= 1), "no Retry-After in {head}");
            refused_at = Some(attempt);
            break;
        }
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    }
    assert_eq!(refused_at, Some(11), "the 11th try is refused after 10 failures");

    // Locked: the right password is refused too.
    let (status, head, body) = login(&server, "alice", "alice-password").await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    // Once the lock has expired, the right password works, and resets the count.
    tokio::time::sleep(Duration::from_secs(retry_after(&head).unwrap())).await;
    let mut signed_in = false;
    for _ in 0..10 {
        let (status, _, body) = login(&server, "alice", "alice-password").await;
        if status == 200 {
            signed_in = true;
            break;
        }
        assert_eq!(body["code"], "rate_limited");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(signed_in, "the lock never expired");
    let (status, _, _) = login(&server, "alice", "wrong again").await;
    assert_eq!(status, 401, "a success cleared the failures");
}

#[tokio::test]
async fn failures_back_off_the_same_way_for_unknown_users() {
    let server = Server::start_with(no_ip_limit(Config {
        login_backoff_after: 3,
        login_backoff_base: Duration::from_secs(30),
        ..support::test_config()
    }))
    .await;
    server.user("alice").await;
    for name in ["alice", "nobody"] {
        let mut answers = Vec::new();
        for attempt in 0..4 {
            let (status, _, body) = login(&server, name, &format!("guess-{attempt}")).await;
            answers.push((status, body["code"].as_str().unwrap().to_owned()));
        }
        let wrong = (401, "invalid_credentials".to_owned());
        let throttled = (429, "rate_limited".to_owned());
        assert_eq!(answers, [wrong.clone(), wrong.clone(), wrong, throttled], "for {name}");
    }
    // The lock lives in storage: the account is still locked after a restart.
    let dir = server.stop().await.unwrap();
    let config = no_ip_limit(Config {
        login_backoff_base: Duration::from_secs(30),
        ..support::test_config()
    });
    let server = Server::start_in(dir.path(), config).await;
    let (status, _, body) = login(&server, "alice", "alice-password").await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    server.stop().await;
}

#[tokio::test]
async fn too_many_failures_from_one_address_refuse_its_sign_ins() {
    let server = Server::start_with(Config {
        login_ip_failures_burst: 3.0,
        login_ip_failures_per_minute: 0.01,
        ..support::test_config()
    })
    .await;
    let token = server.user("alice").await;
    // A bad token on the WebSocket counts like a wrong password.
    let mut ws = Client::raw(&server.ws_url()).await;
    ws.send(json!({"type": "auth", "token": "sbt_forged"})).await;
    assert_eq!(error_code(&ws.next().await), ErrorCode::Unauthenticated);
    for name in ["nobody", "somebody"] {
        let (status, _, body) = login(&server, name, "guess").await;
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    }
    // Spent: even the right password from here is refused, and a valid token on the
    // WebSocket too, with when to come back.
    let (status, head, body) = login(&server, "alice", "alice-password").await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    assert!(retry_after(&head).is_some());
    let mut ws = Client::raw(&server.ws_url()).await;
    ws.send(json!({"type": "auth", "token": token})).await;
    let (frames, close) = ws.until_closed().await;
    let ServerFrame::Error { code, retry_after_ms, .. } = &frames[0] else { panic!("{frames:?}") };
    assert_eq!((*code, close), (ErrorCode::RateLimited, Some(1013)));
    assert!(retry_after_ms.is_some_and(|ms| ms > 0));
}

#[tokio::test]
async fn one_connection_too_many_is_refused() {
    let server =
        Server::start_with(Config { max_connections_per_user: 2, ..support::test_config() }).await;
    let token = server.user("alice").await;
    let first = server.connect(&token).await;
    let _second = server.connect(&token).await;
    let mut third = Client::raw(&server.ws_url()).await;
    third.send(json!({"type": "auth", "token": token})).await;
    let (frames, close) = third.until_closed().await;
    assert_eq!(error_code(&frames[0]), ErrorCode::TooManyConnections);
    assert_eq!(close, Some(1008));
    // Other users are not affected; closing a session makes room.
    let bob = server.user("bob").await;
    server.connect(&bob).await;
    first.close().await;
    let mut accepted = false;
    for _ in 0..50 {
        let mut again = Client::raw(&server.ws_url()).await;
        again.send(json!({"type": "auth", "token": token})).await;
        if matches!(again.next().await, ServerFrame::Welcome { .. }) {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "a closed session never made room");
}

#[tokio::test]
async fn groups_cannot_grow_past_the_cap() {
    let server =
        Server::start_with(Config { max_group_members: 3, ..support::test_config() }).await;
    let token = server.user("alice").await;
    for name in ["bob", "carol", "dave"] {
        server.user(name).await;
    }
    let mut alice = server.connect(&token).await;
    let too_big = alice
        .request(
            json!({"type": "create_group", "name": "big", "members": ["bob", "carol", "dave"]}),
        )
        .await;
    assert_eq!(error_code(&too_big), ErrorCode::GroupTooLarge);
    let made = alice
        .request(json!({"type": "create_group", "name": "small", "members": ["bob", "carol"]}))
        .await;
    let ServerFrame::Conversation { conversation, .. } = made else { panic!("{made:?}") };
    let add = alice
        .request(
            json!({"type": "add_members", "conversation_id": conversation.id, "users": ["dave"]}),
        )
        .await;
    assert_eq!(error_code(&add), ErrorCode::GroupTooLarge);
    // Nothing changed: still three members.
    let (status, body) =
        http(server.addr, "GET", "/api/v1/conversations", Some(&token), None).await;
    assert_eq!(status, 200);
    let groups: Vec<&Value> =
        body["conversations"].as_array().unwrap().iter().filter(|c| c["name"] == "small").collect();
    assert_eq!(groups[0]["members"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn one_address_shares_a_message_budget() {
    let server = Server::start_with(Config {
        rate_per_ip: 0.5,
        rate_ip_burst: 2.0,
        ..support::test_config()
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut alice_ws = server.connect(&alice).await;
    for i in 0..2 {
        alice_ws.send_message(json!({"to": "bob"}), &format!("a{i}"), "hello").await;
    }
    // Bob has sent nothing, but he sends from the same address.
    let (status, head, body) = request(
        server.addr,
        "POST",
        "/api/v1/messages",
        &[("authorization", &format!("Bearer {bob}"))],
        Some(json!({"to": "alice", "body": "hi"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    assert!(retry_after(&head).is_some());
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_and_backfills_on_return() {
    let server =
        Server::start_with(Config { session_queue_bytes: 1024 * 1024, ..support::test_config() })
            .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let mut alice_ws = server.connect(&alice).await;
    let made = alice_ws
        .request(json!({"type": "create_group", "name": "big files", "members": ["bob", "carol"]}))
        .await;
    let ServerFrame::Conversation { conversation, .. } = made else { panic!("{made:?}") };
    let group = conversation.id;
    alice_ws.close().await;
    while server.gateway.session_count() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Carol connects and never reads; Bob reads everything.
    let mut carol_ws = server.connect(&carol).await;
    let mut bob_ws = server.connect(&bob).await;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            let message = bob_ws.message().await;
            if seen_tx.send(message.seq).is_err() {
                return;
            }
        }
    });
    let sessions = server.gateway.session_count();
    let body = "x".repeat(60_000);
    let mut sent = 0;
    while server.gateway.session_count() == sessions && sent < 2000 {
        let (status, _) = http(
            server.addr,
            "POST",
            "/api/v1/messages",
            Some(&alice),
            Some(json!({"conversation_id": group, "body": body})),
        )
        .await;
        assert_eq!(status, 201);
        sent += 1;
    }
    assert_eq!(server.gateway.session_count(), sessions - 1, "carol was never cut off");

    // Bob got every message, in order.
    let mut bob_seqs = Vec::new();
    while bob_seqs.len() < sent {
        bob_seqs.push(tokio::time::timeout(support::WAIT, seen_rx.recv()).await.unwrap().unwrap());
    }
    reader.abort();
    assert!(bob_seqs.windows(2).all(|w| w[1] == w[0] + 1));
    let last = *bob_seqs.last().unwrap();

    // Carol's connection ends (after what the socket buffers held, and if the farewell got
    // through, `slow_consumer`).
    let (frames, _) = carol_ws.until_closed().await;
    let mut carol_last = 1;
    for frame in &frames {
        match frame {
            ServerFrame::Message { message } => carol_last = message.seq,
            ServerFrame::Error { code, .. } => assert_eq!(*code, ErrorCode::SlowConsumer),
            _ => {}
        }
    }
    assert!(carol_last < last, "carol was cut off before she had everything");
    // Back, she resumes from where she was and gets the rest once.
    let mut carol_ws = server
        .connect_with(
            json!({"type": "auth", "token": carol, "since": {group.to_string(): carol_last}}),
        )
        .await;
    let rest = carol_ws.messages((last - carol_last) as usize).await;
    let seqs: Vec<i64> = rest.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, ((carol_last + 1)..=last).collect::<Vec<_>>());
    carol_ws.no_message(Duration::from_millis(200)).await;
}

async fn upgrade(server: &Server, origin: Option<&str>) -> Result<(), u16> {
    let mut request = server.ws_url().into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut ws, _)) => {
            let _ = ws.close(None).await;
            Ok(())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

#[tokio::test]
async fn websocket_upgrades_from_foreign_pages_are_refused() {
    let server = Server::start_with(Config {
        allowed_origins: vec!["https://app.example.com".into()],
        ..support::test_config()
    })
    .await;
    let own = format!("http://{}", server.addr);
    assert_eq!(upgrade(&server, Some("https://evil.example")).await, Err(403));
    assert_eq!(upgrade(&server, Some("http://127.0.0.1:1")).await, Err(403));
    assert_eq!(upgrade(&server, Some(&own)).await, Ok(()));
    assert_eq!(upgrade(&server, Some("https://app.example.com")).await, Ok(()));
    assert_eq!(upgrade(&server, None).await, Ok(()), "non-browser clients send no Origin");
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let server = Server::start_with(Config {
        allowed_origins: vec!["https://app.example.com".into()],
        ..support::test_config()
    })
    .await;
    let token = server.user("alice").await;
    let addr = server.addr;
    let preflight = |origin: &'static str| {
        let headers = [
            ("origin", origin),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ];
        async move { request(addr, "OPTIONS", "/api/v1/me", &headers, None).await }
    };
    let (status, head, _) = preflight("https://app.example.com").await;
    assert_eq!(status, 204);
    assert!(head.contains("access-control-allow-origin: https://app.example.com"), "{head}");
    assert!(head.contains("access-control-allow-headers: authorization"), "{head}");
    let (status, head, body) = preflight("https://evil.example").await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    let bearer = format!("Bearer {token}");
    for (origin, granted) in [("https://app.example.com", true), ("https://evil.example", false)] {
        let headers = [("origin", origin), ("authorization", bearer.as_str())];
        let (status, head, _) = request(server.addr, "GET", "/api/v1/me", &headers, None).await;
        assert_eq!(status, 200);
        assert_eq!(head.contains("access-control-allow-origin"), granted, "{origin}: {head}");
    }
}

/// Signing out ends the sessions signed in with that token, and only those; disabling an
/// account ends all of its sessions. Each gets `unauthenticated`, then a close (1008).
#[tokio::test]
async fn signing_out_or_being_disabled_ends_open_sessions() {
    let server = Server::start().await;
    server.gateway.create_user(None, "root", "root-password".into(), "", "", true).await.unwrap();
    let root = server.login("root", "root-password").await;
    let laptop = server.user("alice").await;
    let phone = server.login("alice", "alice-password").await;
    let mut on_laptop = server.connect(&laptop).await;
    let mut on_phone = server.connect(&phone).await;

    let (status, _) = http(server.addr, "POST", "/api/v1/logout", Some(&laptop), None).await;
    assert_eq!(status, 204);
    let (frames, close) = on_laptop.until_closed().await;
    assert_eq!(error_code(frames.last().unwrap()), ErrorCode::Unauthenticated, "{frames:?}");
    assert_eq!(close, Some(1008));
    // The phone's session, on another token, goes on.
    let pong = on_phone.request(json!({"type": "ping"})).await;
    assert!(matches!(pong, ServerFrame::Pong { .. }), "{pong:?}");

    let (status, _) = http(
        server.addr,
        "PUT",
        "/api/v1/admin/users/alice",
        Some(&root),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let (frames, close) = on_phone.until_closed().await;
    let last = frames.last().unwrap();
    assert_eq!(error_code(last), ErrorCode::Unauthenticated, "{frames:?}");
    assert!(format!("{last:?}").contains("disabled"), "the reason is given: {last:?}");
    assert_eq!(close, Some(1008));
    // And the token cannot start a new one.
    let mut again = Client::raw(&server.ws_url()).await;
    again.send(json!({"type": "auth", "token": phone})).await;
    let (frames, close) = again.until_closed().await;
    assert_eq!(error_code(&frames[0]), ErrorCode::Unauthenticated);
    assert_eq!(close, Some(1008));
}
