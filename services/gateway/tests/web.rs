//! What the web client needs from the gateway: its files with security headers, the
//! directory, contacts and conversation previews over REST.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::*;
use switchboard_protocol::MessageKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` and returns the status line, the lowercased header block and the body.
async fn get_raw(server: &Server, path: &str) -> (String, String, String) {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n", server.addr);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    (status.to_owned(), headers.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn the_client_is_served_with_security_headers() {
    let server = Server::start().await;
    let (status, headers, body) = get_raw(&server, "/").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(headers.contains("content-type: text/html; charset=utf-8"), "{headers}");
    assert!(headers.contains("x-content-type-options: nosniff"), "{headers}");
    let csp = headers.lines().find(|l| l.starts_with("content-security-policy:")).unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
    assert!(body.contains(r#"<script type="module" src="/js/main.js"></script>"#));

    let (status, headers, body) = get_raw(&server, "/js/main.js").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(headers.contains("content-type: text/javascript"), "{headers}");
    assert!(body.contains("import"));

    // Everything else is still the API's JSON 404.
    let (status, _, body) = get_raw(&server, "/js/missing.js").await;
    assert!(status.contains(" 404 "), "{status}");
    assert!(body.contains("not_found"));
    server.stop().await;
}

#[tokio::test]
async fn the_directory_finds_people_by_name_and_org() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    for (name, display, org) in
        [("bob", "Bob Nguyen", "HQ/Building 1/Floor 1"), ("carol", "Carol Diaz", "Remote/Lisbon")]
    {
        server
            .gateway
            .create_user(None, name, format!("{name}-password"), display, org, false)
            .await
            .unwrap();
    }
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) =
        http(server.addr, "GET", "/api/v1/users?q=lisbon", Some(&alice), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body), ["carol"]);
    assert_eq!(body["users"][0]["display_name"], "Carol Diaz");
    assert_eq!(body["users"][0]["org"], "Remote/Lisbon");

    let (_, body) = http(server.addr, "GET", "/api/v1/users?q=NGUYEN", Some(&alice), None).await;
    assert_eq!(names(&body), ["bob"]);
    let (_, body) =
        http(server.addr, "GET", "/api/v1/users?q=%20o%20&limit=2", Some(&alice), None).await;
    assert_eq!(body["users"].as_array().unwrap().len(), 2);
    let (_, body) = http(server.addr, "GET", "/api/v1/users", Some(&alice), None).await;
    assert_eq!(names(&body), ["alice", "bob", "carol"]);

    let (status, body) = http(server.addr, "GET", "/api/v1/users?q=bob", None, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
    server.stop().await;
}

#[tokio::test]
async fn contacts_and_conversation_previews() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let _carol = server.user("carol").await;
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/messages",
        Some(&alice),
        Some(json!({"to": "bob", "body": "first", "client_msg_id": "p1"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let direct = body["conversation_id"].as_i64().unwrap();
    http(
        server.addr,
        "POST",
        "/api/v1/messages",
        Some(&bob),
        Some(json!({"to": "alice", "body": "second", "client_msg_id": "p2"})),
    )
    .await;
    let mut client = server.connect(&alice).await;
    let group = client
        .request(json!({"type": "create_group", "name": "Floor 3", "members": ["bob"]}))
        .await;
    let switchboard_protocol::ServerFrame::Conversation { conversation, .. } = group else {
        panic!("expected a conversation, got {group:?}")
    };

    let (status, body) =
        http(server.addr, "GET", "/api/v1/conversations", Some(&alice), None).await;
    assert_eq!(status, 200, "{body}");
    let previews = body["last_messages"].as_array().unwrap();
    assert_eq!(previews.len(), 2);
    assert_eq!(previews[0]["conversation_id"], direct);
    assert_eq!(
        (previews[0]["seq"].as_i64(), previews[0]["body"].as_str()),
        (Some(2), Some("second"))
    );
    assert_eq!(previews[1]["conversation_id"], conversation.id);
    assert_eq!(previews[1]["kind"], "system");
    let listed = body["conversations"].as_array().unwrap();
    assert_eq!((listed[0].get("owner"), &listed[1]["owner"]), (None, &json!("alice")));

    // Contacts: the people Alice shares a conversation with, not Carol.
    let (status, body) = http(server.addr, "GET", "/api/v1/contacts", Some(&alice), None).await;
    assert_eq!(status, 200, "{body}");
    let users: Vec<_> =
        body["users"].as_array().unwrap().iter().map(|u| u["username"].clone()).collect();
    assert_eq!(users, [json!("bob")]);
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn read_cursors_of_every_member() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let (_, body) = http(
        server.addr,
        "POST",
        "/api/v1/messages",
        Some(&alice),
        Some(json!({"to": "bob", "body": "hello", "client_msg_id": "r1"})),
    )
    .await;
    let id = body["conversation_id"].as_i64().unwrap();
    let mut bobs = server.connect(&bob).await;
    bobs.request(json!({"type": "read", "conversation_id": id, "seq": 1})).await;

    let path = format!("/api/v1/conversations/{id}/reads");
    let (status, body) = http(server.addr, "GET", &path, Some(&alice), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"conversation_id": id, "reads": [{"user": "alice", "seq": 0}, {"user": "bob", "seq": 1}]})
    );
    let (status, body) = http(server.addr, "GET", &path, Some(&carol), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_member")));
    bobs.close().await;
    server.stop().await;
}

#[tokio::test]
async fn admins_post_broadcasts_people_do_not() {
    let server = Server::start().await;
    server
        .gateway
        .create_user(None, "monitor", "monitor-password".into(), "Queue monitor", "IT", true)
        .await
        .unwrap();
    let monitor = server.login("monitor", "monitor-password").await;
    let alice = server.user("alice").await;
    let mut alices = server.connect(&alice).await;

    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/messages",
        Some(&monitor),
        Some(json!({"to": "alice", "body": "queue PAYMENTS has 1,240 items waiting", "kind": "broadcast"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let message = alices.message().await;
    assert_eq!((message.kind, message.sender.as_str()), (MessageKind::Broadcast, "monitor"));

    for (kind, code) in [("broadcast", "forbidden"), ("system", "invalid_request")] {
        let (status, body) = http(
            server.addr,
            "POST",
            "/api/v1/messages",
            Some(&alice),
            Some(json!({"to": "monitor", "body": "looks official", "kind": kind})),
        )
        .await;
        assert_eq!(body["code"], code, "{kind}: {status} {body}");
    }
    alices.close().await;
    server.stop().await;
}
