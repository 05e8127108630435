//! Chat over real WebSockets against a real gateway and SQLite store: 1:1, groups,
//! several sessions, retries, reconnects, presence, restarts.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Server, ack_seq, error_code};
use switchboard_protocol::{ErrorCode, MessageKind, PresenceStatus, ServerFrame};

#[tokio::test]
async fn two_users_chat_one_to_one() {
    let server = Server::start().await;
    let (alice_token, bob_token) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&alice_token).await;
    let mut bob = server.connect(&bob_token).await;

    let ack = alice.send_message(json!({"to": "bob"}), "a1", "hi bob").await;
    let (conversation, seq, duplicate) = ack_seq(&ack);
    assert_eq!((seq, duplicate), (1, false));

    let got = bob.message().await;
    assert_eq!(
        (got.conversation_id, got.seq, got.sender.as_str(), got.body.as_str()),
        (conversation, 1, "alice", "hi bob")
    );
    // The sender's own session sees its message too, once.
    assert_eq!(alice.message().await.seq, 1);

    bob.send_message(json!({"conversation_id": conversation}), "b1", "hello alice").await;
    let reply = alice.message().await;
    assert_eq!((reply.seq, reply.sender.as_str()), (2, "bob"));
    assert_eq!(bob.message().await.seq, 2);

    let history = bob.request(json!({"type": "history", "conversation_id": conversation})).await;
    let ServerFrame::History { messages, has_more, .. } = history else { panic!("{history:?}") };
    assert!(!has_more);
    assert_eq!(
        messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["hi bob", "hello alice"]
    );
}

#[tokio::test]
async fn a_group_of_three_and_membership_changes() {
    let server = Server::start().await;
    let tokens = [server.user("alice").await, server.user("bob").await, server.user("carol").await];
    let dave_token = server.user("dave").await;
    let mut alice = server.connect(&tokens[0]).await;
    let mut bob = server.connect(&tokens[1]).await;
    let mut carol = server.connect(&tokens[2]).await;
    let mut dave = server.connect(&dave_token).await;

    let created = alice
        .request(json!({"type": "create_group", "name": "Ops", "members": ["bob", "carol"]}))
        .await;
    let ServerFrame::Conversation { conversation, .. } = created else { panic!("{created:?}") };
    assert_eq!(conversation.members, ["alice", "bob", "carol"]);
    let group = conversation.id;
    for client in [&mut alice, &mut bob, &mut carol] {
        let system = client.message().await;
        assert_eq!((system.seq, system.kind), (1, MessageKind::System));
    }

    bob.send_message(json!({"conversation_id": group}), "b1", "standup in 5").await;
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(client.message().await.body, "standup in 5");
    }
    dave.no_message(Duration::from_millis(200)).await;

    // Adding dave: he sees the system message and what follows, not what came before.
    let added = alice
        .request(json!({"type": "add_members", "conversation_id": group, "users": ["dave"]}))
        .await;
    assert!(matches!(added, ServerFrame::Conversation { .. }), "{added:?}");
    let joined = dave.message().await;
    assert_eq!((joined.seq, joined.body.as_str()), (3, "alice added dave"));
    carol.send_message(json!({"conversation_id": group}), "c1", "welcome dave").await;
    assert_eq!(dave.message().await.body, "welcome dave");

    // Only the owner (or an admin) removes others; anyone may leave.
    let refused = bob
        .request(json!({"type": "remove_member", "conversation_id": group, "user": "carol"}))
        .await;
    assert_eq!(error_code(&refused), ErrorCode::Forbidden);
    let removed = alice
        .request(json!({"type": "remove_member", "conversation_id": group, "user": "carol"}))
        .await;
    assert!(matches!(removed, ServerFrame::Conversation { .. }), "{removed:?}");
    // carol sees her removal recorded, then nothing more.
    let mut carol_seen = Vec::new();
    while carol_seen.last() != Some(&"alice removed carol".to_owned()) {
        carol_seen.push(carol.message().await.body);
    }
    alice.send_message(json!({"conversation_id": group}), "a2", "after carol").await;
    assert_eq!(bob.messages(4).await.last().unwrap().body, "after carol");
    carol.no_message(Duration::from_millis(200)).await;
    let denied = carol.request(json!({"type": "history", "conversation_id": group})).await;
    assert_eq!(error_code(&denied), ErrorCode::NotMember);
}

#[tokio::test]
async fn every_session_of_a_user_gets_every_message() {
    let server = Server::start().await;
    let (alice_token, bob_token) = (server.user("alice").await, server.user("bob").await);
    let mut laptop = server.connect(&alice_token).await;
    let mut phone = server.connect(&alice_token).await;
    let mut bob = server.connect(&bob_token).await;

    bob.send_message(json!({"to": "alice"}), "b1", "to both devices").await;
    assert_eq!(laptop.message().await.body, "to both devices");
    assert_eq!(phone.message().await.body, "to both devices");

    // What alice sends from her laptop shows up on her phone.
    laptop.send_message(json!({"to": "bob"}), "l1", "sent from laptop").await;
    let on_phone = phone.message().await;
    assert_eq!((on_phone.seq, on_phone.body.as_str()), (2, "sent from laptop"));
    assert_eq!(bob.messages(2).await[1].body, "sent from laptop");
}

#[tokio::test]
async fn a_session_without_echo_gets_its_sends_back_as_acks_in_seq_order() {
    let server = Server::start().await;
    let (alice_token, bob_token) = (server.user("alice").await, server.user("bob").await);
    let mut bot =
        server.connect_with(json!({"type": "auth", "token": alice_token, "echo": false})).await;
    let mut phone = server.connect(&alice_token).await;
    let mut bob = server.connect(&bob_token).await;

    let first = bob.send_message(json!({"to": "alice"}), "hello", "hello").await;
    let (conv, _, _) = ack_seq(&first);
    assert_eq!(bot.message().await.seq, 1);
    assert_eq!(phone.message().await.seq, 1);
    assert_eq!(bob.message().await.seq, 1, "bob's own echo");

    // The sending session gets the ack only; alice's other session and bob the message.
    let sent = bot.send_message(json!({"conversation_id": conv}), "a1", "from the bot").await;
    assert_eq!(ack_seq(&sent), (conv, 2, false));
    assert_eq!(phone.message().await.body, "from the bot");
    assert_eq!(bob.message().await.seq, 2);
    bot.no_message(Duration::from_millis(200)).await;
    // A retry is answered as a duplicate, as with the echo.
    let again = bot.send_message(json!({"conversation_id": conv}), "a1", "from the bot").await;
    assert_eq!(ack_seq(&again), (conv, 2, true));

    // Both send at once: the bot's stream of messages and acks is gapless and in order.
    const EACH: usize = 40;
    let sender = tokio::spawn(async move {
        for i in 0..EACH {
            let frame = json!({"type": "send", "conversation_id": conv, "client_msg_id": format!("b{i}"), "body": "x"});
            bob.send(frame).await;
        }
        bob
    });
    for i in 0..EACH {
        let frame = json!({"type": "send", "conversation_id": conv, "client_msg_id": format!("n{i}"), "body": "y"});
        bot.send(frame).await;
    }
    // Kept open until the end: a closed connection's unread frames are dropped.
    let _bob = sender.await.unwrap();
    let mut seqs = Vec::new();
    let mut acks = 0;
    while seqs.len() < 2 * EACH {
        match bot.next().await {
            ServerFrame::Message { message } => {
                assert_eq!(message.body, "x", "the bot's own message came back");
                seqs.push(message.seq);
            }
            ServerFrame::Ack { seq, duplicate: false, .. } => {
                acks += 1;
                seqs.push(seq);
            }
            _ => {}
        }
    }
    assert_eq!(acks, EACH);
    assert_eq!(seqs, (3..3 + 2 * EACH as i64).collect::<Vec<_>>());
    bot.no_message(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_retried_send_is_stored_once() {
    let server = Server::start().await;
    let (alice_token, bob_token) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&alice_token).await;
    let mut bob = server.connect(&bob_token).await;

    let first = ack_seq(&alice.send_message(json!({"to": "bob"}), "retry-1", "only once").await);
    let again = ack_seq(&alice.send_message(json!({"to": "bob"}), "retry-1", "only once").await);
    assert_eq!((again.0, again.1), (first.0, first.1));
    assert!(!first.2 && again.2, "the retry is flagged as a duplicate");

    assert_eq!(bob.message().await.body, "only once");
    bob.no_message(Duration::from_millis(300)).await;
    let history = bob.request(json!({"type": "history", "conversation_id": first.0})).await;
    let ServerFrame::History { messages, .. } = history else { panic!("{history:?}") };
    assert_eq!(messages.len(), 1);
}

#[tokio::test]
async fn reconnect_backfills_exactly_what_was_missed() {
    let server = Server::start().await;
    let (alice_token, bob_token) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&alice_token).await;
    let mut bob = server.connect(&bob_token).await;

    let (conversation, _, _) =
        ack_seq(&alice.send_message(json!({"to": "bob"}), "m1", "before").await);
    let seen = bob.message().await.seq;
    bob.close().await;

    for i in 0..5 {
        alice
            .send_message(
                json!({"conversation_id": conversation}),
                &format!("gap{i}"),
                &format!("missed {i}"),
            )
            .await;
    }

    let mut bob = server
        .connect_with(
            json!({"type": "auth", "token": bob_token, "since": {conversation.to_string(): seen}}),
        )
        .await;
    let missed = bob.messages(5).await;
    assert_eq!(missed.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3, 4, 5, 6]);
    assert_eq!(missed[0].body, "missed 0");
    let synced = bob.next_matching(|f| matches!(f, ServerFrame::Synced { .. })).await;
    let ServerFrame::Synced { conversations, .. } = synced else { unreachable!() };
    assert_eq!(conversations[0].last_seq, 6);

    alice.send_message(json!({"conversation_id": conversation}), "live", "live again").await;
    let live = bob.message().await;
    assert_eq!((live.seq, live.body.as_str()), (7, "live again"));
    bob.no_message(Duration::from_millis(300)).await;

    // A `sync` frame on an open session does the same for a client that connected with a
    // header token.
    let mut tablet = server.connect(&bob_token).await;
    let answer =
        tablet.request(json!({"type": "sync", "since": {conversation.to_string(): 4}})).await;
    assert!(matches!(answer, ServerFrame::Synced { .. }), "{answer:?}");
    // The backfill precedes `synced`, so it was set aside while waiting: read it back.
    assert_eq!(tablet.messages(3).await.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6, 7]);

    // Asking again sends nothing twice.
    let again =
        tablet.request(json!({"type": "sync", "since": {conversation.to_string(): 4}})).await;
    assert!(matches!(again, ServerFrame::Synced { .. }), "{again:?}");
    tablet.no_message(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let config = support::Config { session_queue: 16, ..support::test_config() };
    let server = Server::start_with(config).await;
    let (alice_token, bob_token) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&alice_token).await;
    // bob connects and then never reads again.
    let _bob = server.connect(&bob_token).await;
    assert_eq!(server.gateway.session_count(), 2);

    let body = "s".repeat(60 * 1024);
    let mut sent = 0;
    while server.gateway.session_count() > 1 {
        assert!(sent < 2000, "a client that never reads was never cut off");
        alice.send_message(json!({"to": "bob"}), &format!("flood{sent}"), &body).await;
        sent += 1;
    }
    // alice, who reads, is unaffected.
    assert_eq!(alice.messages(sent).await.len(), sent);
}

#[tokio::test]
async fn concurrent_senders_give_every_member_a_gapless_ordered_stream() {
    let server = Server::start().await;
    let names = ["ann", "ben", "cat", "dan"];
    let mut tokens = Vec::new();
    for name in names {
        tokens.push(server.user(name).await);
    }
    let mut clients = Vec::new();
    for token in &tokens {
        clients.push(server.connect(token).await);
    }
    let created = clients[0]
        .request(json!({"type": "create_group", "name": "busy", "members": ["ben", "cat", "dan"]}))
        .await;
    let ServerFrame::Conversation { conversation, .. } = created else { panic!("{created:?}") };
    let group = conversation.id;

    const EACH: usize = 50;
    let mut senders = Vec::new();
    for token in tokens.iter().take(3) {
        let mut client = server.connect(token).await;
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                let id = format!("{}", i);
                client.send(json!({"type": "send", "conversation_id": group, "client_msg_id": id, "body": "x"})).await;
            }
            for _ in 0..EACH {
                client.next_matching(|f| matches!(f, ServerFrame::Ack { .. })).await;
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let total = 1 + 3 * EACH as i64;
    for client in &mut clients {
        let seqs: Vec<i64> = client.messages(total as usize).await.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn presence_changes_reach_watchers() {
    let server = Server::start().await;
    let (alice_token, bob_token) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&alice_token).await;

    let answer = alice.request(json!({"type": "watch", "users": ["bob"]})).await;
    let ServerFrame::PresenceList { presences, .. } = answer else { panic!("{answer:?}") };
    assert_eq!(presences[0].status, PresenceStatus::Offline);

    let presence = |status: PresenceStatus| move |f: &ServerFrame| matches!(f, ServerFrame::Presence { presence } if presence.status == status);
    let mut bob = server.connect(&bob_token).await;
    alice.next_matching(presence(PresenceStatus::Available)).await;

    let ok = bob
        .request(json!({"type": "set_presence", "status": "busy", "text": "In a meeting"}))
        .await;
    assert!(matches!(ok, ServerFrame::Ok { .. }), "{ok:?}");
    let ServerFrame::Presence { presence: busy } =
        alice.next_matching(presence(PresenceStatus::Busy)).await
    else {
        unreachable!()
    };
    assert_eq!((busy.user.as_str(), busy.text.as_str()), ("bob", "In a meeting"));

    // A second device does not change what others see; the last one leaving does.
    let phone = server.connect(&bob_token).await;
    phone.close().await;
    bob.close().await;
    alice.next_matching(presence(PresenceStatus::Offline)).await;

    // The chosen status is remembered for the next sign-in.
    let _bob = server.connect(&bob_token).await;
    let ServerFrame::Presence { presence: back } =
        alice.next_matching(presence(PresenceStatus::Busy)).await
    else {
        unreachable!()
    };
    assert_eq!(back.text, "In a meeting");
}

#[tokio::test]
async fn typing_and_read_receipts_reach_the_other_members() {
    let server = Server::start().await;
    let (alice_token, bob_token) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&alice_token).await;
    let mut bob = server.connect(&bob_token).await;
    let (conversation, seq, _) =
        ack_seq(&alice.send_message(json!({"to": "bob"}), "t1", "are you there?").await);

    bob.send(json!({"type": "typing", "conversation_id": conversation})).await;
    let typing = alice.next_matching(|f| matches!(f, ServerFrame::Typing { .. })).await;
    assert_eq!(typing, ServerFrame::Typing { conversation_id: conversation, user: "bob".into() });

    bob.request(json!({"type": "read", "conversation_id": conversation, "seq": seq})).await;
    let read = alice.next_matching(|f| matches!(f, ServerFrame::Read { .. })).await;
    assert_eq!(read, ServerFrame::Read { conversation_id: conversation, user: "bob".into(), seq });
    let list = bob.request(json!({"type": "list_conversations"})).await;
    let ServerFrame::Conversations { conversations, .. } = list else { panic!("{list:?}") };
    assert_eq!(conversations[0].read_seq, Some(seq));
}

#[tokio::test]
async fn history_survives_a_restart_and_seq_continues() {
    let server = Server::start().await;
    let (alice_token, _) = (server.user("alice").await, server.user("bob").await);
    let mut alice = server.connect(&alice_token).await;
    for i in 0..3 {
        alice.send_message(json!({"to": "bob"}), &format!("r{i}"), &format!("kept {i}")).await;
    }
    let (config, dir) = (support::test_config(), server.dir.clone());
    // The server tells connected clients it is going away before it stops.
    let stopping = tokio::spawn(async move { alice.until_closed().await });
    let tmp = server.stop().await;
    let (frames, code) = stopping.await.unwrap();
    // ... and when to come back: a random delay within the reconnect spread.
    let spread = config.reconnect_spread.as_millis() as u64;
    assert!(
        frames.iter().any(|f| matches!(
            f,
            ServerFrame::Error { code: ErrorCode::ShuttingDown, retry_after_ms: Some(ms), .. }
                if *ms <= spread
        )),
        "{frames:?}"
    );
    assert_eq!(code, Some(1012));

    let server = Server::start_in(&dir, config).await;
    let mut alice = server.connect(&alice_token).await;
    let history = alice.request(json!({"type": "history", "conversation_id": 1})).await;
    let ServerFrame::History { messages, .. } = history else { panic!("{history:?}") };
    assert_eq!(
        messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["kept 0", "kept 1", "kept 2"]
    );
    let (_, seq, _) =
        ack_seq(&alice.send_message(json!({"to": "bob"}), "r3", "after restart").await);
    assert_eq!(seq, 4);
    drop(tmp);
}
