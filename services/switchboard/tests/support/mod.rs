//! Helpers for tests that run the cluster's roles as real processes: spawning
//! `switchboard` roles, a PostgreSQL database and a Redis key prefix per test and a cluster
//! over them (`cluster.rs`), readiness, small HTTP and WebSocket clients.

#![allow(dead_code, clippy::unwrap_used)]

mod cluster;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

// Each test binary uses some of these (dead_code above, for the same reason).
#[allow(unused_imports)]
pub use cluster::{Cluster, TestData};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Proc {
    /// Sends SIGTERM (what Kubernetes sends a pod) and waits for the process to exit;
    /// returns how it exited and how long it took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let started = std::time::Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill(1) is installed");
        assert!(sent.success(), "kill -TERM failed");
        let status = self.0.wait().unwrap();
        (status, started.elapsed())
    }

    /// Kills the process (a crash) and waits for it to end.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `switchboard ARGS` and returns it with the address (`host:port`) from its
/// "listening on" line (http:// or https://).
pub fn spawn(args: &[&str]) -> (Proc, String) {
    spawn_with_env(args, &[])
}

/// [`spawn`] with extra environment variables.
pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("SWITCHBOARD_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("exited before listening").unwrap();
        let after =
            line.split_once("listening on http://").or(line.split_once("listening on https://"));
        if let Some((_, rest)) = after {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (Proc(child), addr)
}

/// Creates `users` (password `{user}-password`) with the CLI, straight in the database.
pub fn add_users(database: &str, users: &[&str]) {
    for user in users {
        add(database, user, &[], false);
    }
}

/// Adds the admin `user` (password `{user}-password`) to the cluster database, as an
/// operator does with `switchboard user add --admin`.
pub fn add_admin(database: &str, user: &str) {
    add(database, user, &[], true);
}

/// Adds `user` (password `{user}-password`; an admin if `admin`) in org unit `org`.
pub fn add_user_in(database: &str, user: &str, org: &str, admin: bool) {
    add(database, user, &["--org", org], admin);
}

fn add(database: &str, user: &str, more: &[&str], admin: bool) {
    let mut args = vec!["user", "add", user, "--password-stdin", "--database", database];
    args.extend(more);
    if admin {
        args.push("--admin");
    }
    let mut add =
        Command::new(BIN).args(args).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    add.stdin.take().unwrap().write_all(format!("{user}-password\n").as_bytes()).unwrap();
    assert!(add.wait().unwrap().success());
}

/// Deletes every Redis key under `prefix`.
pub async fn forget_prefix(redis_url: &str, prefix: &str) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
    }
}

/// Waits until every gateway in `gateways` answers `/readyz` with 200, then a moment more
/// for each one's other router links.
pub async fn all_ready(gateways: &[String]) {
    for addr in gateways {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !ready(addr).await {
            assert!(std::time::Instant::now() < deadline, "{addr} never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// `GET /readyz` answers 200.
pub async fn ready(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else { return false };
    let request = format!("GET /readyz HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response.starts_with("HTTP/1.1 200")
}

/// POSTs `body` to `path` on `addr` over HTTP/1.1 (no token); the status and JSON body.
pub async fn post_json(
    addr: &str,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// `GET path` on `addr` over HTTP/1.1, with a bearer token if given; the status and body.
pub async fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, if chunked { dechunk(body) } else { body.to_owned() })
}

/// The payload of an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// Signs `user` (password `{user}-password`) in over REST; returns the token.
pub async fn login_token(gateway: &str, user: &str) -> String {
    let body = serde_json::json!({"username": user, "password": format!("{user}-password")});
    let (status, reply) = post_json(gateway, "/api/v1/login", &body).await;
    assert_eq!(status, 200, "login {user}: {reply}");
    reply["token"].as_str().unwrap().to_owned()
}

/// A signed-in WebSocket session.
pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    pub async fn connect(gateway: &str, token: &str) -> Self {
        Self::connect_with(gateway, serde_json::json!({"type": "auth", "token": token})).await
    }

    /// Connects and signs in with `auth` (which may carry `since`).
    pub async fn connect_with(gateway: &str, auth: serde_json::Value) -> Self {
        use futures_util::SinkExt;
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{gateway}/ws")).await.unwrap();
        let auth = tokio_tungstenite::tungstenite::Message::text(auth.to_string());
        ws.send(auth).await.unwrap();
        let mut client = Self { ws };
        client.expect(|f| f["type"] == "welcome").await;
        client
    }

    pub async fn send(&mut self, frame: serde_json::Value) {
        use futures_util::SinkExt;
        let text = tokio_tungstenite::tungstenite::Message::text(frame.to_string());
        self.ws.send(text).await.unwrap();
    }

    /// The first frame matching `pred` (others are skipped), within 10 s.
    pub async fn expect(&mut self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .unwrap()
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                if pred(&value) {
                    return value;
                }
            }
        }
    }

    /// The next message pushed (its `message` object), within 10 s.
    pub async fn message(&mut self) -> serde_json::Value {
        self.expect(|f| f["type"] == "message").await["message"].clone()
    }

    /// Reads until the server closes, within 10 s; the text frames before it and the
    /// close code.
    pub async fn until_closed(&mut self) -> (Vec<serde_json::Value>, Option<u16>) {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next());
            match next.await.expect("the server never closed") {
                Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(close))) => {
                    return (frames, close.map(|c| u16::from(c.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (frames, None),
            }
        }
    }
}
