//! Threads against a real embedded server: a reply is delivered live to the members,
//! counted on its root in history, read with its root as one thread over WebSocket and
//! REST, found by search, and refused to a non-member.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Server, ack_seq, error_code, http};
use switchboard_protocol::{ErrorCode, ServerFrame};

#[tokio::test]
async fn replies_reach_members_live_and_read_as_one_thread() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let eve = server.user("eve").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let sent = a.send_message(json!({"to": "bob"}), "a1", "who reviews the budget?").await;
    let (conv, root, _) = ack_seq(&sent);
    assert_eq!(b.message().await.seq, root);
    a.send_message(json!({"conversation_id": conv}), "a2", "another topic").await;
    assert_eq!(b.message().await.seq, 2);
    // alice's session gets her own messages too.
    assert_eq!(a.messages(2).await.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);

    // bob replies in the thread: acked with the next seq, pushed live to alice (and his
    // own sessions) marked with its root.
    let reply = json!({"type": "send", "conversation_id": conv, "thread_seq": root,
                       "client_msg_id": "b1", "body": "I will, by friday"});
    assert_eq!(ack_seq(&b.request(reply.clone()).await), (conv, 3, false));
    let live = a.message().await;
    assert_eq!(
        (live.seq, live.thread_seq, live.body.as_str()),
        (3, Some(root), "I will, by friday")
    );
    assert_eq!(b.message().await.thread_seq, Some(root));
    // A retry is answered, not stored again.
    assert_eq!(ack_seq(&b.request(reply).await), (conv, 3, true));
    // A second reply over REST.
    let (status, answer) = http(
        server.addr,
        "POST",
        "/api/v1/messages",
        Some(&alice),
        Some(json!({"conversation_id": conv, "thread_seq": root, "body": "thanks!"})),
    )
    .await;
    assert_eq!((status, answer["seq"].as_i64()), (201, Some(4)));
    assert_eq!(b.message().await.thread_seq, Some(root));

    // Refused: a reply addressed by username, to a missing message, to a reply, or by a
    // non-member.
    let by_name = json!({"type": "send", "to": "alice", "thread_seq": root,
                         "client_msg_id": "x1", "body": "?"});
    assert_eq!(error_code(&b.request(by_name).await), ErrorCode::InvalidRequest);
    let missing = json!({"type": "send", "conversation_id": conv, "thread_seq": 99,
                         "client_msg_id": "x2", "body": "?"});
    assert_eq!(error_code(&b.request(missing).await), ErrorCode::NotFound);
    let nested = json!({"type": "send", "conversation_id": conv, "thread_seq": 3,
                        "client_msg_id": "x3", "body": "?"});
    assert_eq!(error_code(&b.request(nested).await), ErrorCode::InvalidRequest);
    let (status, _) = http(
        server.addr,
        "POST",
        "/api/v1/messages",
        Some(&eve),
        Some(json!({"conversation_id": conv, "thread_seq": root, "body": "let me in"})),
    )
    .await;
    assert_eq!(status, 403);

    // History shows the root's reply count and the replies in seq order.
    let path = format!("/api/v1/conversations/{conv}/messages");
    let (_, history) = http(server.addr, "GET", &path, Some(&bob), None).await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0]["reply_count"], 2);
    assert!(messages[1].get("reply_count").is_none());
    assert_eq!(messages[2]["thread_seq"], root);

    // The thread on its own, over WebSocket: the root, then its replies.
    let read = json!({"type": "thread", "conversation_id": conv, "seq": root});
    match a.request(read).await {
        ServerFrame::Thread { conversation_id, root: first, replies, has_more, .. } => {
            assert_eq!((conversation_id, first.seq, first.reply_count), (conv, root, 2));
            let seen: Vec<_> = replies.iter().map(|m| (m.seq, m.body.as_str())).collect();
            assert_eq!(seen, [(3, "I will, by friday"), (4, "thanks!")]);
            assert!(!has_more);
        }
        other => panic!("expected a thread, got {other:?}"),
    }
    // Paged over REST.
    let path = format!("/api/v1/conversations/{conv}/messages/{root}/thread?after_seq=3&limit=1");
    let (status, thread) = http(server.addr, "GET", &path, Some(&bob), None).await;
    assert_eq!(status, 200);
    assert_eq!(thread["root"]["seq"], root);
    assert_eq!(thread["replies"].as_array().unwrap().len(), 1);
    assert_eq!(thread["replies"][0]["seq"], 4);
    assert_eq!(thread["has_more"], false);
    // A non-member reads nothing.
    let (status, body) = http(server.addr, "GET", &path, Some(&eve), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_member")));
    let mut e = server.connect(&eve).await;
    let peek = json!({"type": "thread", "conversation_id": conv, "seq": root});
    assert_eq!(error_code(&e.request(peek).await), ErrorCode::NotMember);

    // Replies are searchable, and a hit names its thread.
    let (_, found) = http(server.addr, "GET", "/api/v1/search?q=friday", Some(&alice), None).await;
    assert_eq!(found["results"][0]["message"]["seq"], 3);
    assert_eq!(found["results"][0]["message"]["thread_seq"], root);
    let (_, found) = http(server.addr, "GET", "/api/v1/search?q=friday", Some(&eve), None).await;
    assert_eq!(found["results"].as_array().unwrap().len(), 0);
}
