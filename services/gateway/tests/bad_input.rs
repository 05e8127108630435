//! Bad input over WebSocket and REST gets a typed error, stores nothing, and leaves the
//! connection usable where that is safe.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Client, Server, ack_seq, error_code, http, http_raw};
use switchboard_gateway::Config;
use switchboard_protocol::{ErrorCode, ServerFrame};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

/// Asserts the connection still works by a ping round trip.
async fn still_usable(client: &mut Client) {
    let pong = client.request(json!({"type": "ping"})).await;
    assert!(matches!(pong, ServerFrame::Pong { .. }), "{pong:?}");
}

#[tokio::test]
async fn malformed_and_unknown_frames_get_typed_errors_and_the_session_goes_on() {
    let server = Server::start().await;
    let token = server.user("alice").await;
    let mut alice = server.connect(&token).await;

    alice.send_ws(WsMessage::text("{not json")).await;
    assert_eq!(error_code(&alice.next().await), ErrorCode::MalformedFrame);
    alice.send(json!({"type": "teleport", "id": "t"})).await;
    let unknown = alice.next().await;
    assert_eq!(error_code(&unknown), ErrorCode::UnknownFrameType);
    assert_eq!(support::answer_id(&unknown), Some("t"));
    alice.send(json!({"type": "send", "id": "s", "body": "no target, no id"})).await;
    assert_eq!(error_code(&alice.next().await), ErrorCode::MalformedFrame);
    alice.send(json!([1, 2, 3])).await;
    assert_eq!(error_code(&alice.next().await), ErrorCode::MalformedFrame);
    alice.send_ws(WsMessage::binary(vec![0x08, 0x01])).await;
    assert_eq!(error_code(&alice.next().await), ErrorCode::UnsupportedFrame);
    let both = alice.request(json!({"type": "send", "to": "alice", "conversation_id": 1, "client_msg_id": "x", "body": "?"})).await;
    assert_eq!(error_code(&both), ErrorCode::InvalidRequest);
    let empty = alice
        .request(json!({"type": "send", "to": "alice", "client_msg_id": "x", "body": "  "}))
        .await;
    assert_eq!(error_code(&empty), ErrorCode::InvalidRequest);
    let nobody = alice
        .request(json!({"type": "send", "to": "nobody", "client_msg_id": "x", "body": "hi"}))
        .await;
    assert_eq!(error_code(&nobody), ErrorCode::UserNotFound);
    let again = alice.request(json!({"type": "auth", "token": token})).await;
    assert_eq!(error_code(&again), ErrorCode::InvalidRequest);
    still_usable(&mut alice).await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_and_nothing_is_stored() {
    let server = Server::start().await;
    let (token, _) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&token).await;
    let (conversation, _, _) =
        ack_seq(&alice.send_message(json!({"to": "bob"}), "ok", "fits").await);

    let too_big = "x".repeat(64 * 1024 + 1);
    let refused = alice
        .request(json!({"type": "send", "conversation_id": conversation, "client_msg_id": "big", "body": too_big}))
        .await;
    assert_eq!(error_code(&refused), ErrorCode::MessageTooLarge);
    still_usable(&mut alice).await;
    let exactly = "y".repeat(64 * 1024);
    let (_, seq, _) = ack_seq(
        &alice.send_message(json!({"conversation_id": conversation}), "max", &exactly).await,
    );
    assert_eq!(seq, 2, "the refused message took no seq");
}

#[tokio::test]
async fn a_frame_over_the_limit_gets_an_error_and_a_1009_close() {
    let server =
        Server::start_with(Config { max_frame_bytes: 128 * 1024, ..support::test_config() }).await;
    let (token, _) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&token).await;
    let (conversation, _, _) =
        ack_seq(&alice.send_message(json!({"to": "bob"}), "ok", "fits").await);

    let huge = "z".repeat(200 * 1024);
    alice
        .send(json!({"type": "send", "conversation_id": conversation, "client_msg_id": "huge", "body": huge}))
        .await;
    let (frames, code) = alice.until_closed().await;
    assert!(
        frames
            .iter()
            .any(|f| matches!(f, ServerFrame::Error { code: ErrorCode::FrameTooLarge, .. })),
        "{frames:?}"
    );
    // The close frame may be lost to a TCP reset: the server closes with part of the
    // client's oversized frame still unread.
    assert!(matches!(code, Some(1009) | None), "{code:?}");

    let mut alice = server.connect(&token).await;
    let history = alice.request(json!({"type": "history", "conversation_id": conversation})).await;
    let ServerFrame::History { messages, .. } = history else { panic!("{history:?}") };
    assert_eq!(messages.len(), 1, "nothing of the oversized frame was stored");
}

#[tokio::test]
async fn invalid_utf8_gets_an_error_and_a_1007_close() {
    let server = Server::start().await;
    let token = server.user("alice").await;
    let mut alice = server.connect(&token).await;
    let header = FrameHeader { opcode: OpCode::Data(Data::Text), ..FrameHeader::default() };
    alice
        .send_ws(WsMessage::Frame(Frame::from_payload(header, vec![b'{', 0xff, 0xfe, b'}'].into())))
        .await;
    let (frames, code) = alice.until_closed().await;
    assert!(
        frames.iter().any(|f| matches!(f, ServerFrame::Error { code: ErrorCode::InvalidUtf8, .. })),
        "{frames:?}"
    );
    assert_eq!(code, Some(1007));
}

#[tokio::test]
async fn signing_in_needs_a_valid_token() {
    let server = Server::start().await;
    let token = server.user("alice").await;

    let mut forged = Client::raw(&server.ws_url()).await;
    forged.send(json!({"type": "auth", "token": "sbt_0000"})).await;
    let (frames, code) = forged.until_closed().await;
    assert_eq!(error_code(&frames[0]), ErrorCode::Unauthenticated);
    assert_eq!(code, Some(1008));

    let mut eager = Client::raw(&server.ws_url()).await;
    eager.send(json!({"type": "send", "to": "alice", "client_msg_id": "x", "body": "hi"})).await;
    let (frames, _) = eager.until_closed().await;
    assert_eq!(error_code(&frames[0]), ErrorCode::Unauthenticated);

    // The token may also come in the query string (browsers cannot set headers).
    let mut by_query = Client::raw(&format!("{}?token={token}", server.ws_url())).await;
    assert!(matches!(by_query.next().await, ServerFrame::Welcome { .. }));

    // A revoked token stops working everywhere.
    let (status, _) = http(server.addr, "POST", "/api/v1/logout", Some(&token), None).await;
    assert_eq!(status, 204);
    let (status, body) = http(server.addr, "GET", "/api/v1/me", Some(&token), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
    let mut revoked = Client::raw(&server.ws_url()).await;
    revoked.send(json!({"type": "auth", "token": token})).await;
    let (frames, _) = revoked.until_closed().await;
    assert_eq!(error_code(&frames[0]), ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn only_members_read_a_conversation() {
    let server = Server::start().await;
    let (alice_token, _, eve_token) =
        (server.user("alice").await, server.user("bob").await, server.user("eve").await);
    let mut alice = server.connect(&alice_token).await;
    let (conversation, _, _) =
        ack_seq(&alice.send_message(json!({"to": "bob"}), "p1", "private").await);

    let mut eve = server.connect(&eve_token).await;
    for frame in [
        json!({"type": "history", "conversation_id": conversation}),
        json!({"type": "send", "conversation_id": conversation, "client_msg_id": "e1", "body": "let me in"}),
        json!({"type": "typing", "conversation_id": conversation}),
        json!({"type": "read", "conversation_id": conversation, "seq": 1}),
        json!({"type": "add_members", "conversation_id": conversation, "users": ["eve"]}),
    ] {
        let answer = eve.request(frame.clone()).await;
        assert_eq!(error_code(&answer), ErrorCode::NotMember, "{frame}");
    }
    let missing = eve.request(json!({"type": "history", "conversation_id": 999})).await;
    assert_eq!(error_code(&missing), ErrorCode::ConversationNotFound);
    // A sync naming someone else's conversation sends nothing of it.
    let synced = eve.request(json!({"type": "sync", "since": {conversation.to_string(): 0}})).await;
    let ServerFrame::Synced { conversations, .. } = synced else { panic!("{synced:?}") };
    assert!(conversations.is_empty());
    eve.no_message(std::time::Duration::from_millis(200)).await;

    let path = format!("/api/v1/conversations/{conversation}/messages");
    let (status, body) = http(server.addr, "GET", &path, Some(&eve_token), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_member")));
    let (status, body) = http(server.addr, "GET", &path, Some(&alice_token), None).await;
    assert_eq!((status, body["messages"][0]["body"].as_str()), (200, Some("private")));
    let (status, body) = http(server.addr, "GET", &path, None, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
}

#[tokio::test]
async fn sending_too_fast_is_rate_limited() {
    let server = Server::start_with(Config {
        rate_per_user: 1.0,
        rate_burst: 3.0,
        ..support::test_config()
    })
    .await;
    let (token, _) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&token).await;
    for i in 0..3 {
        alice.send_message(json!({"to": "bob"}), &format!("b{i}"), "burst").await;
    }
    let limited = alice
        .request(
            json!({"type": "send", "to": "bob", "client_msg_id": "b3", "body": "one too many"}),
        )
        .await;
    let ServerFrame::Error { code, retry_after_ms, .. } = limited else { panic!("{limited:?}") };
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(retry_after_ms.is_some_and(|ms| ms > 0 && ms <= 1000));
    // REST shares the budget and says when to come back.
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/messages",
        Some(&token),
        Some(json!({"to": "bob", "body": "x"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
}

#[tokio::test]
async fn rest_login_send_and_history() {
    let server = Server::start().await;
    server.user("alice").await;
    let bob_token = server.user("bob").await;
    let mut bob = server.connect(&bob_token).await;

    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/login",
        None,
        Some(json!({"username": "alice", "password": "wrong-password"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/login",
        None,
        Some(json!({"username": "nobody", "password": "wrong-password"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/login",
        None,
        Some(json!({"username": "alice", "password": "alice-password"})),
    )
    .await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("sbt_"));

    let send = json!({"to": "bob", "body": "from a script", "client_msg_id": "cron-1"});
    let (status, sent) =
        http(server.addr, "POST", "/api/v1/messages", Some(&token), Some(send.clone())).await;
    assert_eq!((status, sent["seq"].as_i64()), (201, Some(1)));
    let (status, again) =
        http(server.addr, "POST", "/api/v1/messages", Some(&token), Some(send)).await;
    assert_eq!(
        (status, again["seq"].as_i64(), again["duplicate"].as_bool()),
        (200, Some(1), Some(true))
    );
    assert_eq!(bob.message().await.body, "from a script");

    let conversation = sent["conversation_id"].as_i64().unwrap();
    let send = json!({"conversation_id": conversation, "body": "second"});
    http(server.addr, "POST", "/api/v1/messages", Some(&token), Some(send)).await;
    let path = format!("/api/v1/conversations/{conversation}/messages?after_seq=1&limit=10");
    let (status, page) = http(server.addr, "GET", &path, Some(&token), None).await;
    assert_eq!((status, page["messages"].as_array().unwrap().len()), (200, 1));
    assert_eq!(page["messages"][0]["body"], "second");

    let (status, body) =
        http_raw(server.addr, "POST", "/api/v1/messages", Some(&token), Some(b"{\"to\":".to_vec()))
            .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("malformed_frame")));
    let big = json!({"to": "bob", "body": "x".repeat(64 * 1024 + 1)});
    let (status, body) =
        http(server.addr, "POST", "/api/v1/messages", Some(&token), Some(big)).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("message_too_large")));
    let (status, body) = http(server.addr, "GET", "/api/v1/nothing-here", None, None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) =
        http(server.addr, "GET", "/api/v1/conversations/abc/messages", Some(&token), None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")));
    let (status, body) = http(server.addr, "DELETE", "/api/v1/messages", Some(&token), None).await;
    assert_eq!((status, body["code"].as_str()), (405, Some("invalid_request")));
    let (status, body) = http(server.addr, "GET", "/ws", None, None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")));
    let (status, body) = http(server.addr, "GET", "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = http(
        server.addr,
        "POST",
        "/api/v1/users",
        Some(&token),
        Some(json!({"username": "mallory", "password": "12345678"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
}
