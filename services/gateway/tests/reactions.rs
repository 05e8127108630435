//! Emoji reactions against a real embedded server: a reaction reaches every member live
//! (as a `react`/`unreact` entry with its own seq, so a backfill brings it too), history
//! shows each message's counts with the reader's own, and outsiders and bad emoji are
//! refused with typed errors.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Server, error_code, http};
use switchboard_protocol::{ErrorCode, MessageKind, Reaction, ServerFrame};

#[tokio::test]
async fn reactions_reach_members_live_and_show_in_history() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let eve = server.user("eve").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    a.send_message(json!({"to": "bob"}), "a1", "ship it?").await;
    let conv = b.message().await.conversation_id;
    a.message().await;

    // bob reacts over the WebSocket: both sessions get the entry, with the new count.
    let react = json!({"type": "react", "conversation_id": conv, "seq": 1, "emoji": "👍"});
    assert!(matches!(b.request(react.clone()).await, ServerFrame::Ok { .. }));
    for session in [&mut a, &mut b] {
        let live = session.message().await;
        assert_eq!((live.seq, live.kind, live.ref_seq), (2, MessageKind::React, Some(1)));
        assert_eq!((live.sender.as_str(), live.body.as_str()), ("bob", "👍"));
        assert_eq!(live.reactions, [Reaction { emoji: "👍".into(), count: 1, me: false }]);
    }
    // Reacting again changes nothing and stores nothing.
    assert!(matches!(b.request(react).await, ServerFrame::Ok { .. }));

    // alice reacts over REST; bob sees the count go to 2.
    let path = |emoji: &str| format!("/api/v1/conversations/{conv}/messages/1/reactions/{emoji}");
    let (status, body) = http(server.addr, "PUT", &path("%F0%9F%91%8D"), Some(&alice), None).await;
    assert_eq!((status, body["seq"].as_i64()), (200, Some(3)));
    let live = b.message().await;
    assert_eq!((live.seq, live.reactions[0].count), (3, 2));
    let (_, body) = http(server.addr, "PUT", &path("%F0%9F%91%8D"), Some(&alice), None).await;
    assert_eq!(body.get("seq"), None, "nothing changed: {body}");

    // History: the message carries its counts, and whether the reader reacted.
    let history = format!("/api/v1/conversations/{conv}/messages");
    let (_, page) = http(server.addr, "GET", &history, Some(&bob), None).await;
    assert_eq!(page["messages"][0]["reactions"], json!([{"emoji": "👍", "count": 2, "me": true}]));
    b.close().await;

    // bob is away while alice takes hers back; his backfill converges on count 1.
    let (status, body) =
        http(server.addr, "DELETE", &path("%F0%9F%91%8D"), Some(&alice), None).await;
    assert_eq!((status, body["seq"].as_i64()), (200, Some(4)));
    let mut b = server
        .connect_with(json!({"type": "auth", "token": bob, "since": {conv.to_string(): 3}}))
        .await;
    let missed = b.message().await;
    assert_eq!((missed.seq, missed.kind, missed.ref_seq), (4, MessageKind::Unreact, Some(1)));
    assert_eq!(missed.reactions[0].count, 1);
    let (_, page) = http(server.addr, "GET", &history, Some(&alice), None).await;
    assert_eq!(page["messages"][0]["reactions"], json!([{"emoji": "👍", "count": 1, "me": false}]));

    // Outsiders, bad emoji, missing messages and entries are refused, typed.
    let (status, body) = http(server.addr, "PUT", &path("%F0%9F%91%8D"), Some(&eve), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_member")));
    let bad = json!({"type": "react", "conversation_id": conv, "seq": 1, "emoji": "a b"});
    assert_eq!(error_code(&b.request(bad).await), ErrorCode::InvalidRequest);
    let long = json!({"type": "react", "conversation_id": conv, "seq": 1, "emoji": "x".repeat(17)});
    assert_eq!(error_code(&b.request(long).await), ErrorCode::InvalidRequest);
    let control = json!({"type": "unreact", "conversation_id": conv, "seq": 1, "emoji": "\u{7}"});
    assert_eq!(error_code(&b.request(control).await), ErrorCode::InvalidRequest);
    let missing = json!({"type": "react", "conversation_id": conv, "seq": 99, "emoji": "👍"});
    assert_eq!(error_code(&b.request(missing).await), ErrorCode::NotFound);
    let entry = json!({"type": "react", "conversation_id": conv, "seq": 2, "emoji": "👍"});
    assert_eq!(error_code(&b.request(entry).await), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn only_admins_manage_retention_and_holds() {
    let server = Server::start().await;
    server.gateway.create_user(None, "root", "root-password".into(), "", "HQ", true).await.unwrap();
    let root = server.login("root", "root-password").await;
    let alice = server.user("alice").await;

    let policy = json!({"keep_days": 30});
    let (status, body) =
        http(server.addr, "PUT", "/api/v1/admin/retention", Some(&alice), Some(policy.clone()))
            .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, _) =
        http(server.addr, "PUT", "/api/v1/admin/retention", Some(&root), Some(policy)).await;
    assert_eq!(status, 200);
    let zero = json!({"keep_days": 0});
    let (status, _) =
        http(server.addr, "PUT", "/api/v1/admin/retention", Some(&root), Some(zero)).await;
    assert_eq!(status, 400);
    let (_, shown) = http(server.addr, "GET", "/api/v1/admin/retention", Some(&root), None).await;
    assert_eq!(shown, json!({"policies": [{"keep_days": 30}]}));

    let hold = json!({"user": "alice", "reason": "case 7"});
    let (status, _) =
        http(server.addr, "POST", "/api/v1/admin/holds", Some(&alice), Some(hold.clone())).await;
    assert_eq!(status, 403);
    let (status, held) =
        http(server.addr, "POST", "/api/v1/admin/holds", Some(&root), Some(hold)).await;
    assert_eq!(
        (status, held["user"].as_str(), held["created_by"].as_str()),
        (201, Some("alice"), Some("root"))
    );
    let both = json!({"user": "alice", "conversation_id": 1});
    let (status, _) =
        http(server.addr, "POST", "/api/v1/admin/holds", Some(&root), Some(both)).await;
    assert_eq!(status, 400);
    let (_, list) = http(server.addr, "GET", "/api/v1/admin/holds", Some(&root), None).await;
    assert_eq!(list["holds"].as_array().unwrap().len(), 1);
    let lift = format!("/api/v1/admin/holds/{}", held["id"]);
    assert_eq!(http(server.addr, "DELETE", &lift, Some(&root), None).await.0, 204);
    assert_eq!(http(server.addr, "DELETE", &lift, Some(&root), None).await.0, 404);
}
