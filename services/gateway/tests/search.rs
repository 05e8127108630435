//! Message search over WebSocket and REST against a real embedded server: people find
//! what was said in their own conversations, and nothing else.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{Server, error_code, http};
use switchboard_protocol::{ErrorCode, ServerFrame};

/// `s` percent-encoded for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /api/v1/search?q=...` plus extra parameters; the status and body.
async fn search(server: &Server, token: &str, q: &str, extra: &str) -> (u16, Value) {
    let path = format!("/api/v1/search?q={}{extra}", encode(q));
    http(server.addr, "GET", &path, Some(token), None).await
}

fn bodies(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"]["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn people_find_their_own_conversations_words_and_nothing_else() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let eve = server.user("eve").await;
    let mut a = server.connect(&alice).await;
    let mut b = server.connect(&bob).await;
    let mut e = server.connect(&eve).await;
    a.send_message(json!({"to": "bob"}), "a1", "The budget-2027 draft is ready").await;
    b.send_message(json!({"to": "alice"}), "b1", "Budget meeting moved to 3pm").await;
    let group = b.request(json!({"type": "create_group", "name": "Finance", "members": ["eve"]}));
    let ServerFrame::Conversation { conversation, .. } = group.await else { panic!() };
    let finance = conversation.id;
    e.send_message(json!({"conversation_id": finance}), "e1", "secret budget 2027 figures").await;

    // Over the WebSocket: alice finds her two, never the group she is not in.
    let answer = a.request(json!({"type": "search", "q": "budget"})).await;
    let ServerFrame::SearchResults { results, has_more, .. } = answer else { panic!("{answer:?}") };
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(!has_more);
    assert!(results.iter().all(|r| !r.message.body.contains("secret")));
    let draft = results.iter().find(|r| r.message.body.contains("draft")).unwrap();
    assert_eq!(draft.highlight, ["The ", "budget", "-2027 draft is ready"]);

    // Over REST: a phrase (punctuation splits words), an author, a conversation by name.
    let (status, answer) = search(&server, &bob, "\"budget 2027\"", "").await;
    assert_eq!(status, 200, "{answer}");
    let mut found = bodies(&answer);
    found.sort();
    assert_eq!(found, ["The budget-2027 draft is ready", "secret budget 2027 figures"]);
    assert_eq!(answer["results"][0]["highlight"][1].as_str().unwrap().to_lowercase().len(), 11);
    let (_, answer) = search(&server, &bob, "budget from:eve", "").await;
    assert_eq!(bodies(&answer), ["secret budget 2027 figures"]);
    let (_, answer) = search(&server, &bob, "budget", "&from=alice").await;
    assert_eq!(bodies(&answer), ["The budget-2027 draft is ready"]);
    let (_, answer) = search(&server, &bob, "budget in:finance", "").await;
    assert_eq!(bodies(&answer), ["secret budget 2027 figures"]);
    let (_, answer) = search(&server, &bob, "budget", "&in=alice").await;
    assert_eq!(bodies(&answer).len(), 2);
    // Naming a conversation one is not in finds nothing in it.
    let (status, answer) = search(&server, &alice, "budget in:Finance", "").await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_request")));
    let (_, answer) = search(&server, &alice, "budget", &format!("&in={finance}")).await;
    assert_eq!(bodies(&answer), Vec::<String>::new());
    // Dates, in UTC days.
    let (_, answer) = search(&server, &bob, "budget before:2001-01-01", "").await;
    assert!(bodies(&answer).is_empty());
    let (_, answer) = search(&server, &bob, "budget after:2001-01-01", "&sort=recent").await;
    assert_eq!(bodies(&answer)[0], "secret budget 2027 figures");
    // Only alice's messages, newest first, without words.
    let (_, answer) = search(&server, &bob, "from:alice", "").await;
    assert_eq!(bodies(&answer), ["The budget-2027 draft is ready"]);

    // Bad searches get typed errors.
    let (status, answer) = search(&server, &bob, "", "").await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_request")));
    let (status, answer) = search(&server, &bob, "budget from:nobody", "").await;
    assert_eq!((status, answer["code"].as_str()), (404, Some("user_not_found")));
    let (status, answer) = search(&server, &bob, "budget before:tomorrow", "").await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_request")));
    let (status, _) = search(&server, &bob, "budget", "&colour=red").await;
    assert_eq!(status, 400);
    let (status, _) = http(server.addr, "GET", "/api/v1/search?q=budget", None, None).await;
    assert_eq!(status, 401);
    let answer = a.request(json!({"type": "search", "q": "x", "offset": 5000})).await;
    assert_eq!(error_code(&answer), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn results_come_in_pages() {
    let server = Server::start().await;
    let alice = server.user("alice").await;
    server.user("bob").await;
    let mut a = server.connect(&alice).await;
    for n in 0..25 {
        a.send_message(json!({"to": "bob"}), &format!("k{n}"), &format!("report {n}")).await;
    }
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let (status, answer) =
            search(&server, &alice, "report", &format!("&limit=10&offset={offset}")).await;
        assert_eq!(status, 200);
        seen.extend(bodies(&answer));
        offset += 10;
        if !answer["has_more"].as_bool().unwrap() {
            break;
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);
}
