//! Organisations' own systems talking to people, against a real server: incoming
//! webhooks (Slack-shaped payloads), bot accounts, org broadcasts with acknowledgements,
//! and the directory import.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use switchboard_protocol::{Broadcast, ErrorCode, MessageKind, ServerFrame};

/// Creates an account in `org` and returns a token for it.
async fn person(server: &Server, name: &str, org: &str, admin: bool) -> String {
    let password = format!("{name}-password");
    server.gateway.create_user(None, name, password.clone(), "", org, admin).await.unwrap();
    server.login(name, &password).await
}

/// An admin, alice and bob, and a group "Ops" of the three owned by the admin.
async fn ops_group(server: &Server) -> (String, String, String, i64) {
    let admin = person(server, "admin", "HQ", true).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut c = server.connect(&admin).await;
    let answer = c
        .request(json!({"type": "create_group", "name": "Ops", "members": ["alice", "bob"]}))
        .await;
    let ServerFrame::Conversation { conversation, .. } = answer else { panic!("{answer:?}") };
    c.close().await;
    (admin, alice, bob, conversation.id)
}

async fn create_webhook(server: &Server, token: &str, conversation: i64) -> (u16, Value) {
    let path = format!("/api/v1/conversations/{conversation}/webhooks");
    http(server.addr, "POST", &path, Some(token), Some(json!({"name": "Monitoring"}))).await
}

async fn history(server: &Server, token: &str, conversation: i64) -> Vec<Value> {
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (status, body) = http(server.addr, "GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_webhook_post_reaches_members_and_history_as_a_marked_system_message() {
    let server = Server::start().await;
    let (admin, alice, _bob, group) = ops_group(&server).await;
    let mut a = server.connect(&alice).await;
    let (status, created) = create_webhook(&server, &admin, group).await;
    assert_eq!(status, 201, "{created}");
    let path = created["path"].as_str().unwrap().to_owned();
    assert!(path.starts_with("/hooks/whk_"), "{path}");

    // Slack's shape, with a username.
    let (status, body) = http(
        server.addr,
        "POST",
        &path,
        None,
        Some(
            json!({"text": "queue PAYMENTS has 1,240 items waiting", "username": "Queue monitor"}),
        ),
    )
    .await;
    assert_eq!((status, body["ok"].as_bool()), (200, Some(true)), "{body}");
    let m = a.message().await;
    assert_eq!(m.kind, MessageKind::System);
    assert_eq!(m.author.as_deref(), Some("Queue monitor"));
    assert_eq!(m.body, "queue PAYMENTS has 1,240 items waiting");

    // What Slack tools also send is ignored; without username the webhook's name shows.
    let slack = json!({"text": "build 4411 failed", "icon_emoji": ":red_circle:", "channel": "#ops",
                       "attachments": [{"color": "danger"}]});
    let (status, _) = http(server.addr, "POST", &path, None, Some(slack)).await;
    assert_eq!(status, 200);
    let m = a.message().await;
    assert_eq!((m.author.as_deref(), m.body.as_str()), (Some("Monitoring"), "build 4411 failed"));

    let stored = history(&server, &alice, group).await;
    let last = stored.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["author"].as_str()),
        (Some("system"), Some("Monitoring"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_or_wrong_webhook_gets_404_and_posts_nothing() {
    let server = Server::start().await;
    let (admin, alice, _bob, group) = ops_group(&server).await;
    let (_, created) = create_webhook(&server, &admin, group).await;
    let path = created["path"].as_str().unwrap().to_owned();
    let before = history(&server, &alice, group).await.len();

    // A wrong secret for a real id, and junk, look the same as a revoked one.
    let wrong = format!("{}0", &path[..path.len() - 1]);
    let wrong = if wrong == path { format!("{}1", &path[..path.len() - 1]) } else { wrong };
    for bad in [wrong.as_str(), "/hooks/whk_1_nope", "/hooks/nothing"] {
        let (status, body) = http(server.addr, "POST", bad, None, Some(json!({"text": "x"}))).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{bad}: {body}");
    }

    // Only admins, the owner or the creator may revoke.
    let id = created["id"].as_i64().unwrap();
    let revoke = format!("/api/v1/webhooks/{id}");
    let (status, body) = http(server.addr, "DELETE", &revoke, Some(&alice), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, _) = http(server.addr, "DELETE", &revoke, Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, body) =
        http(server.addr, "POST", &path, None, Some(json!({"text": "late"}))).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    assert_eq!(history(&server, &alice, group).await.len(), before);
    server.stop().await;
}

#[tokio::test]
async fn bad_webhook_payloads_get_4xx_json_errors() {
    let server = Server::start_with(Config { max_body_bytes: 1000, ..test_config() }).await;
    let (admin, alice, _bob, group) = ops_group(&server).await;
    let (_, created) = create_webhook(&server, &admin, group).await;
    let path = created["path"].as_str().unwrap().to_owned();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "malformed_frame"),
        (br#"{"username":"x"}"#.to_vec(), 400, "malformed_frame"),
        (br#"{"text":"   "}"#.to_vec(), 400, "invalid_request"),
        (json!({"text": "x".repeat(1001)}).to_string().into_bytes(), 413, "message_too_large"),
        (vec![b'x'; 200_000], 413, "message_too_large"),
        (
            json!({"text": "x", "username": "u".repeat(81)}).to_string().into_bytes(),
            400,
            "invalid_request",
        ),
    ];
    let before = history(&server, &alice, group).await.len();
    for (body, status, code) in cases {
        let (got, answer) = http_raw(server.addr, "POST", &path, None, Some(body)).await;
        assert_eq!((got, answer["code"].as_str()), (status, Some(code)), "{answer}");
        assert!(answer["message"].is_string());
    }
    assert_eq!(history(&server, &alice, group).await.len(), before);

    // Only admins and the group's owner make webhooks.
    let (status, body) = create_webhook(&server, &alice, group).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) = create_webhook(&server, &admin, 9999).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("conversation_not_found")));
    server.stop().await;
}

#[tokio::test]
async fn bots_post_marked_messages_and_read_only_their_conversations() {
    let server = Server::start().await;
    let (admin, alice, _bob, group) = ops_group(&server).await;
    let request = json!({"username": "buildbot", "display_name": "Build bot"});
    let (status, body) =
        http(server.addr, "POST", "/api/v1/admin/bots", Some(&alice), Some(request.clone())).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) =
        http(server.addr, "POST", "/api/v1/admin/bots", Some(&admin), Some(request)).await;
    assert_eq!(status, 201, "{body}");
    let bot = body["token"].as_str().unwrap().to_owned();
    assert_eq!(body["user"]["bot"].as_bool(), Some(true));
    // A bot has no password to sign in with.
    assert!(server.gateway.login("buildbot", "").await.is_err());

    // It posts to a user (its direct conversation) and listens like any client.
    let mut listener = server.connect(&bot).await;
    let mut a = server.connect(&alice).await;
    let send = json!({"to": "alice", "body": "build 4411 passed", "client_msg_id": "b-4411"});
    let (status, sent) =
        http(server.addr, "POST", "/api/v1/messages", Some(&bot), Some(send)).await;
    assert_eq!(status, 201, "{sent}");
    let m = a.message().await;
    assert_eq!((m.sender.as_str(), m.author.as_deref()), ("buildbot", Some("Build bot")));
    assert_eq!(m.kind, MessageKind::Text);
    let direct = m.conversation_id;
    a.send_message(json!({"conversation_id": direct}), "a-1", "thanks").await;
    // Its own post first (every session of every member gets each message), then alice's.
    let own = listener.message().await;
    assert_eq!((own.sender.as_str(), own.author.as_deref()), ("buildbot", Some("Build bot")));
    let heard = listener.message().await;
    assert_eq!((heard.sender.as_str(), heard.body.as_str()), ("alice", "thanks"));

    // The group it is not in: no history, no posting.
    let path = format!("/api/v1/conversations/{group}/messages");
    let (status, body) = http(server.addr, "GET", &path, Some(&bot), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_member")));
    let send = json!({"conversation_id": group, "body": "hi", "client_msg_id": "b-2"});
    let (status, body) =
        http(server.addr, "POST", "/api/v1/messages", Some(&bot), Some(send)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_member")));
    let answer = listener.request(json!({"type": "history", "conversation_id": group})).await;
    assert_eq!(error_code(&answer), ErrorCode::NotMember);
    server.stop().await;
}

async fn next_broadcast(client: &mut Client) -> Broadcast {
    match client.next_matching(|f| matches!(f, ServerFrame::Broadcast { .. })).await {
        ServerFrame::Broadcast { broadcast } => broadcast,
        _ => unreachable!(),
    }
}

/// The first broadcast frame to arrive within `quiet`, if any (a ping round trip first, so
/// anything the server had queued before it has arrived).
async fn broadcast_within(client: &mut Client, quiet: Duration) -> Option<ServerFrame> {
    client.request(json!({"type": "ping"})).await;
    let wait = client.next_matching(|f| matches!(f, ServerFrame::Broadcast { .. }));
    tokio::time::timeout(quiet, wait).await.ok()
}

/// Asserts that no broadcast frame arrives within `quiet`.
async fn no_broadcast(client: &mut Client, quiet: Duration) {
    if let Some(frame) = broadcast_within(client, quiet).await {
        panic!("unexpected {frame:?}");
    }
}

/// Signs the holder of `token` in until a sign-in brings no broadcast, and returns that session. A user's
/// broadcast cursor is saved in the background right after the sending, so a sign-in that
/// races the save gets the broadcast again (clients drop it by id); the save must land
/// within a few seconds even on a loaded machine.
async fn sign_in_after_cursor_saved(server: &Server, token: &str) -> Client {
    for _ in 0..50 {
        let mut client = server.connect(token).await;
        if broadcast_within(&mut client, Duration::from_millis(100)).await.is_none() {
            return client;
        }
        client.close().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("every sign-in for 10 s brought the broadcast again: its cursor was never saved");
}

#[tokio::test]
async fn a_broadcast_reaches_exactly_the_org_subtree_live_and_on_connect_with_acks() {
    let server = Server::start().await;
    let admin = person(&server, "admin", "HQ", true).await;
    let b2 = person(&server, "b2", "HQ/Building 2", false).await;
    let f3 = person(&server, "f3", "HQ/Building 2/Floor 3", false).await;
    let b20 = person(&server, "b20", "HQ/Building 20", false).await;
    let hq = person(&server, "hq", "HQ", false).await;
    let (mut on_b2, mut on_b20, mut on_hq) =
        (server.connect(&b2).await, server.connect(&b20).await, server.connect(&hq).await);

    let request = json!({"to": "HQ/Building 2", "body": "Fire drill at 14:00", "ack": true, "priority": true});
    let (status, sent) =
        http(server.addr, "POST", "/api/v1/broadcasts", Some(&admin), Some(request)).await;
    assert_eq!(status, 201, "{sent}");
    let id = sent["id"].as_i64().unwrap();

    // Online and under the path: live.
    let got = next_broadcast(&mut on_b2).await;
    assert_eq!(
        (got.id, got.body.as_str(), got.ack_required, got.priority),
        (id, "Fire drill at 14:00", true, true)
    );
    assert_eq!(got.author, "admin");
    // Not under it (a sibling whose name only starts the same, a parent): nothing.
    no_broadcast(&mut on_b20, Duration::from_millis(200)).await;
    no_broadcast(&mut on_hq, Duration::from_millis(1)).await;

    // Offline and under it: on the next sign-in, once.
    let mut on_f3 = server.connect(&f3).await;
    assert_eq!(next_broadcast(&mut on_f3).await.id, id);
    on_f3.close().await;
    sign_in_after_cursor_saved(&server, &f3).await;
    // Nor again for b2, who had it live (its cursor was saved after the send).
    on_b2.close().await;
    let mut on_b2 = sign_in_after_cursor_saved(&server, &b2).await;

    // b2 acknowledges over the socket; outsiders cannot.
    let answer = on_b2.request(json!({"type": "ack_broadcast", "broadcast_id": id})).await;
    assert!(matches!(answer, ServerFrame::Ok { .. }), "{answer:?}");
    let answer = on_b20.request(json!({"type": "ack_broadcast", "broadcast_id": id})).await;
    assert_eq!(error_code(&answer), ErrorCode::Forbidden);

    let status_path = format!("/api/v1/broadcasts/{id}");
    let (status, report) = http(server.addr, "GET", &status_path, Some(&admin), None).await;
    assert_eq!(status, 200, "{report}");
    let acked: Vec<&str> = report["acknowledged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["user"].as_str().unwrap())
        .collect();
    assert_eq!(acked, ["b2"]);
    assert_eq!(report["pending"], json!(["f3"]));
    // Only the sender and admins see it.
    let (status, _) = http(server.addr, "GET", &status_path, Some(&b2), None).await;
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test]
async fn broadcast_rights_cover_a_subtree_and_nothing_else() {
    let server = Server::start().await;
    let admin = person(&server, "admin", "HQ", true).await;
    let csv = "username,display_name,org,broadcast_scope\n\
               warden,Fire Warden,HQ/Building 2,HQ/Building 2\n\
               plain,Plain Person,HQ/Building 2,\n";
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/admin/directory",
        Some(&admin),
        Some(json!({"csv": csv, "password": "initial-password"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let warden = server.login("warden", "initial-password").await;
    let plain = server.login("plain", "initial-password").await;
    let send = |token: String, to: &'static str| {
        let addr = server.addr;
        async move {
            let body = json!({"to": to, "body": "Lift out of order"});
            http(addr, "POST", "/api/v1/broadcasts", Some(&token), Some(body)).await.0
        }
    };
    assert_eq!(send(warden.clone(), "HQ/Building 2/Floor 3").await, 201);
    assert_eq!(send(warden.clone(), "HQ/Building 2").await, 201);
    assert_eq!(send(warden.clone(), "HQ").await, 403);
    assert_eq!(send(warden.clone(), "").await, 403);
    assert_eq!(send(plain, "HQ/Building 2").await, 403);
    assert_eq!(send(admin, "").await, 201);
    // Malformed requests are JSON 4xx too.
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/broadcasts",
        Some(&warden),
        Some(json!({"to": "HQ//x", "body": "b"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")));
    let (status, body) =
        http(server.addr, "POST", "/api/v1/broadcasts", Some(&warden), Some(json!({"text": "b"})))
            .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("malformed_frame")));
    server.stop().await;
}

#[tokio::test]
async fn a_bad_directory_csv_changes_nothing_and_names_the_bad_lines() {
    let server = Server::start().await;
    let admin = person(&server, "admin", "HQ", true).await;
    let import = |csv: &str, dry_run: bool| {
        let body = json!({"csv": csv, "dry_run": dry_run});
        let (addr, admin) = (server.addr, admin.clone());
        async move { http(addr, "POST", "/api/v1/admin/directory", Some(&admin), Some(body)).await }
    };
    let good = "username,display_name,org,department,title\n\
                amartin,Alice Martin,HQ/Building 2/Floor 3,Facilities,Site manager\n\
                bnguyen,\"Nguyen, Bao\",HQ/Building 1,Finance,\n";
    let (status, report) = import(good, false).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"], json!(["amartin", "bnguyen"]));
    // Idempotent.
    let (_, report) = import(good, false).await;
    assert_eq!(
        (report["created"].as_array().unwrap().len(), report["unchanged"].as_u64()),
        (0, Some(2))
    );

    let bad = "username,display_name,org,department,title\n\
               amartin,Alice Martin,HQ/Building 3,Facilities,Director\n\
               bad name,X,HQ,,\n\
               carol,Carol,HQ,Ops,Lead\n\
               dave,Dave,HQ//Floor,,\n";
    let (status, body) = import(bad, false).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("line 3") && message.contains("line 5"), "{message}");
    assert!(!message.contains("line 2") && !message.contains("line 4"), "{message}");
    // Nothing changed: amartin keeps her title and building; carol does not exist.
    let (_, found) = http(server.addr, "GET", "/api/v1/users?q=amartin", Some(&admin), None).await;
    assert_eq!(found["users"][0]["title"].as_str(), Some("Site manager"));
    assert_eq!(found["users"][0]["org"].as_str(), Some("HQ/Building 2/Floor 3"));
    let (_, found) = http(server.addr, "GET", "/api/v1/users?q=carol", Some(&admin), None).await;
    assert_eq!(found["users"], json!([]));

    // Directory search over the socket, by department.
    let mut c = server.connect(&admin).await;
    let answer = c.request(json!({"type": "search_users", "q": "FINANCE"})).await;
    let ServerFrame::Users { users, .. } = answer else { panic!("{answer:?}") };
    let names: Vec<(&str, &str)> =
        users.iter().map(|u| (u.username.as_str(), u.department.as_str())).collect();
    assert_eq!(names, [("bnguyen", "Finance")]);
    // Non-admins may not import.
    let alice = server.user("alice").await;
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/v1/admin/directory",
        Some(&alice),
        Some(json!({"csv": good})),
    )
    .await;
    assert_eq!(status, 403);
    server.stop().await;
}
