//! A storm of WebSocket sign-ins against a cluster gateway (real processes: storage over a
//! PostgreSQL database of this test's own, a router, a gateway on the local Redis under a
//! prefix of this test's own) that lets only 2 sign-ins reach storage at once and 10
//! wait: 300 clients send their `auth` frames together. Those beyond the queue are
//! refused with `unavailable`, a `retry_after_ms` and close 1013 (try again later); each
//! client that waits as told gets in, and every one of them is signed in within a minute.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Cluster, TestData, add_admin};
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 300;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What one sign-in attempt came to.
enum Attempt {
    Welcome,
    /// The error frame and the close code.
    Refused(Value, Option<u16>),
}

/// Sends `auth` on `ws` and reads until `welcome` or the close.
async fn sign_in(mut ws: Ws, token: &str) -> Attempt {
    let auth = json!({"type": "auth", "token": token}).to_string();
    ws.send(Message::text(auth)).await.unwrap();
    let mut error = Value::Null;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
        match next.expect("no answer to auth within 30 s") {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                match frame["type"].as_str() {
                    Some("welcome") => return Attempt::Welcome,
                    Some("error") => error = frame,
                    _ => {}
                }
            }
            Some(Ok(Message::Close(close))) => {
                return Attempt::Refused(error, close.map(|c| u16::from(c.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Attempt::Refused(error, None),
        }
    }
}

async fn open(gateway: &str) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{gateway}/ws")).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_sign_ins_beyond_the_queue_is_told_when_to_retry_and_all_get_in() {
    let data = TestData::new("sign-in-storm").await;
    add_admin(&data.database, "root");
    let gate = ["--sign-ins-in-flight", "2", "--sign-in-queue", "10"];
    let cluster = Cluster::on(&data).gateway_args(&gate).start().await;
    let gw = cluster.addrs().remove(0);

    let root = support::login_token(&gw, "root").await;
    let body = json!({"prefix": "storm", "count": CLIENTS, "password": "storm-password"});
    let (status, reply) = post(&gw, "/api/v1/admin/provision", &root, &body).await;
    assert_eq!(status, 200, "{reply}");
    let tokens: Vec<String> = reply["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["token"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), CLIENTS);

    // Every client connects first; then all send their auth frames at once.
    let mut sockets = Vec::new();
    for _ in 0..CLIENTS {
        sockets.push(open(&gw).await);
    }
    let started = std::time::Instant::now();
    let clients = sockets.into_iter().zip(tokens).map(|(ws, token)| {
        let gw = gw.clone();
        tokio::spawn(async move {
            let mut refusals = Vec::new();
            let mut attempt = sign_in(ws, &token).await;
            loop {
                match attempt {
                    Attempt::Welcome => return refusals,
                    Attempt::Refused(error, close) => {
                        let after = error["retry_after_ms"].as_u64();
                        refusals.push((error, close));
                        assert!(refusals.len() <= 20, "refused 20 times: {refusals:?}");
                        let wait = after.unwrap_or(1000).min(30_000);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        attempt = sign_in(open(&gw).await, &token).await;
                    }
                }
            }
        })
    });
    let results =
        tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(clients))
            .await
            .expect("not every client signed in within 60 s");
    let refusals: Vec<(Value, Option<u16>)> =
        results.into_iter().flat_map(|r| r.unwrap()).collect();
    eprintln!(
        "{CLIENTS} signed in after {:?}; {} refusals on the way",
        started.elapsed(),
        refusals.len()
    );
    assert!(!refusals.is_empty(), "300 sign-ins at once never filled a queue of 10");
    for (error, close) in &refusals {
        assert_eq!(error["code"], "unavailable", "{error}");
        let after = error["retry_after_ms"].as_u64().unwrap_or(0);
        assert!((1000..=120_000).contains(&after), "retry_after_ms {after}: {error}");
        assert_eq!(*close, Some(1013), "{error}");
    }

    // The gateway counted them, and nobody is left waiting.
    let (status, metrics) = support::http_get(&gw, "/metrics", None).await;
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("switchboard_gateway_sign_ins_refused_total") >= refusals.len() as f64);
    assert_eq!(value("switchboard_gateway_sign_ins_waiting"), 0.0);

    drop(cluster);
    data.remove().await;
}

/// POSTs `body` with a bearer token; the status and the JSON answer.
async fn post(addr: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
