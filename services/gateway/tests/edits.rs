//! Editing and deleting one's own messages, against a real embedded server: the change
//! is delivered live, kept in history as an entry with its own seq (so a client that
//! backfills converges), and search follows it.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Server, ack_seq, error_code, http};
use switchboard_protocol::{ErrorCode, MessageKind};

#[tokio::test]
async fn edits_and_deletions_reach_everyone_live_and_by_backfill() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let sent = a.send_message(json!({"to": "bob"}), "a1", "lunch at noon?").await;
    let (conv, seq, _) = ack_seq(&sent);
    assert_eq!(b.message().await.seq, 1);

    // alice edits: an entry with the next seq, pushed to both.
    let edit = json!({"type": "edit", "conversation_id": conv, "seq": seq,
                      "client_msg_id": "e1", "body": "lunch at one?"});
    let answer = a.request(edit.clone()).await;
    assert_eq!(ack_seq(&answer), (conv, 2, false));
    let live = b.message().await;
    assert_eq!((live.seq, live.kind, live.ref_seq), (2, MessageKind::Edit, Some(1)));
    assert_eq!(live.body, "lunch at one?");
    // A retry is answered, not stored again.
    assert_eq!(ack_seq(&a.request(edit).await), (conv, 2, true));

    // bob may not change alice's message.
    let theft = json!({"type": "delete", "conversation_id": conv, "seq": 1, "client_msg_id": "x"});
    assert_eq!(error_code(&b.request(theft).await), ErrorCode::Forbidden);
    let empty = json!({"type": "edit", "conversation_id": conv, "seq": 1, "client_msg_id": "e2", "body": " "});
    assert_eq!(error_code(&a.request(empty).await), ErrorCode::InvalidRequest);
    let huge = "x".repeat(70_000);
    let (status, _) = http(
        server.addr,
        "PATCH",
        &format!("/api/v1/conversations/{conv}/messages/1"),
        Some(&alice),
        Some(json!({"body": huge})),
    )
    .await;
    assert_eq!(status, 413);

    // Search follows the edit.
    let search = |q: &str| format!("/api/v1/search?q={q}");
    let (_, found) = http(server.addr, "GET", &search("noon"), Some(&bob), None).await;
    assert_eq!(found["results"].as_array().unwrap().len(), 0);
    let (_, found) = http(server.addr, "GET", &search("one"), Some(&bob), None).await;
    assert_eq!(found["results"][0]["message"]["seq"], 1);
    assert_eq!(found["results"][0]["message"]["body"], "lunch at one?");

    // bob goes away; alice deletes over REST.
    b.close().await;
    let (status, deleted) = http(
        server.addr,
        "DELETE",
        &format!("/api/v1/conversations/{conv}/messages/1"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!((status, deleted["seq"].as_i64()), (201, Some(3)));
    // alice's session got her message, the edit and the deletion.
    let seen = a.messages(3).await;
    assert_eq!((seen[2].seq, seen[2].kind, seen[2].ref_seq), (3, MessageKind::Delete, Some(1)));

    // bob comes back from seq 1: the backfill brings both entries, in order.
    let mut b = server
        .connect_with(json!({"type": "auth", "token": bob, "since": {conv.to_string(): 1}}))
        .await;
    let missed = b.messages(2).await;
    assert_eq!(
        missed.iter().map(|m| (m.seq, m.kind)).collect::<Vec<_>>(),
        [(2, MessageKind::Edit), (3, MessageKind::Delete)]
    );
    // History keeps the message's place as a tombstone; search no longer finds it.
    let (_, history) = http(
        server.addr,
        "GET",
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(&bob),
        None,
    )
    .await;
    let first = &history["messages"][0];
    assert_eq!(
        (first["seq"].as_i64(), first["deleted"].as_bool(), first["body"].as_str()),
        (Some(1), Some(true), Some(""))
    );
    let (_, found) = http(server.addr, "GET", &search("lunch"), Some(&bob), None).await;
    assert_eq!(found["results"].as_array().unwrap().len(), 0);
    // A deleted message cannot be changed again.
    let again = json!({"type": "edit", "conversation_id": conv, "seq": 1, "client_msg_id": "e3", "body": "back"});
    assert_eq!(error_code(&a.request(again).await), ErrorCode::NotFound);
}
