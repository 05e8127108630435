//! Test harness: a real gateway on an ephemeral port over a real SQLite store in its own
//! temporary directory, and a small WebSocket client that reads like the scenario.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
pub use switchboard_gateway::Config;
use switchboard_gateway::Gateway;
use switchboard_protocol::{Message, ServerFrame};
use switchboard_storage::SqliteStore;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn test_config() -> Config {
    // Tests send in bursts, from one address; the rate limits have their own tests.
    Config { rate_per_user: 0.0, rate_per_ip: 0.0, ..Config::default() }
}

pub struct Server {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _tmp: Option<Arc<tempfile::TempDir>>,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        let tmp = Arc::new(tempfile::tempdir().unwrap());
        let mut server = Self::start_in(tmp.path(), config).await;
        server._tmp = Some(tmp);
        server
    }

    pub async fn start_in(dir: &Path, config: Config) -> Self {
        let store = SqliteStore::open(dir).await.unwrap();
        let gateway = Gateway::new(Arc::new(store), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(switchboard_gateway::run(
            listener,
            gateway.clone(),
            shutdown,
            Duration::from_secs(5),
        ));
        let task = tokio::spawn(async move {
            task.await.unwrap().unwrap();
        });
        Self { addr, gateway, dir: dir.to_owned(), stop: Some(stop), task: Some(task), _tmp: None }
    }

    /// Drains and stops the server, returning its temporary directory for a restart.
    pub async fn stop(mut self) -> Option<Arc<tempfile::TempDir>> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        self._tmp.take()
    }

    /// Creates a user and returns a token for them.
    pub async fn user(&self, name: &str) -> String {
        let password = format!("{name}-password");
        self.gateway
            .create_user(None, name, password.clone(), "", "HQ/Building 2", false)
            .await
            .unwrap();
        self.login(name, &password).await
    }

    pub async fn login(&self, name: &str, password: &str) -> String {
        self.gateway.login(name, password).await.unwrap().0
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A signed-in WebSocket client (welcome frame consumed).
    pub async fn connect(&self, token: &str) -> Client {
        self.connect_with(json!({"type": "auth", "token": token})).await
    }

    /// Connects and sends `auth` as the first frame; waits for `welcome`.
    pub async fn connect_with(&self, auth: Value) -> Client {
        let mut client = Client::raw(&self.ws_url()).await;
        client.send(auth).await;
        let welcome = client.next().await;
        assert!(
            matches!(welcome, ServerFrame::Welcome { .. }),
            "expected welcome, got {welcome:?}"
        );
        client
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for something else, in arrival order.
    pending: VecDeque<ServerFrame>,
    next_id: u64,
}

impl Client {
    pub async fn raw(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { ws, pending: VecDeque::new(), next_id: 0 }
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(WsMessage::text(frame.to_string())).await.unwrap();
    }

    pub async fn send_ws(&mut self, message: WsMessage) {
        self.ws.send(message).await.unwrap();
    }

    /// The next frame from the socket (not from `pending`), or panics after [`WAIT`].
    async fn read(&mut self) -> ServerFrame {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection closed")
                .expect("connection failed");
            match frame {
                WsMessage::Text(text) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("bad server frame {text}: {e}"));
                }
                WsMessage::Close(close) => panic!("server closed the connection: {close:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame, pending ones first.
    pub async fn next(&mut self) -> ServerFrame {
        match self.pending.pop_front() {
            Some(frame) => frame,
            None => self.read().await,
        }
    }

    /// The first frame matching `pred`; others are kept for later.
    pub async fn next_matching(&mut self, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            let frame = self.read().await;
            if pred(&frame) {
                return frame;
            }
            self.pending.push_back(frame);
        }
    }

    /// Sends `frame` with a fresh `id` and returns the answer carrying that id.
    pub async fn request(&mut self, mut frame: Value) -> ServerFrame {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        frame["id"] = json!(id);
        self.send(frame).await;
        self.next_matching(|f| answer_id(f) == Some(id.as_str())).await
    }

    pub async fn message(&mut self) -> Message {
        match self.next_matching(|f| matches!(f, ServerFrame::Message { .. })).await {
            ServerFrame::Message { message } => message,
            _ => unreachable!(),
        }
    }

    pub async fn messages(&mut self, n: usize) -> Vec<Message> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.message().await);
        }
        out
    }

    /// Asserts that no message frame arrives within `quiet`.
    pub async fn no_message(&mut self, quiet: Duration) {
        if let Some(m) = self.pending.iter().find(|f| matches!(f, ServerFrame::Message { .. })) {
            panic!("unexpected message {m:?}");
        }
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            if let WsMessage::Text(text) = frame {
                let frame: ServerFrame = serde_json::from_str(&text).unwrap();
                assert!(!matches!(frame, ServerFrame::Message { .. }), "unexpected {frame:?}");
                self.pending.push_back(frame);
            }
        }
    }

    /// Sends a message and returns its ack (panics on an error frame).
    pub async fn send_message(
        &mut self,
        target: Value,
        client_msg_id: &str,
        body: &str,
    ) -> ServerFrame {
        let mut frame = json!({"type": "send", "client_msg_id": client_msg_id, "body": body});
        frame.as_object_mut().unwrap().extend(target.as_object().unwrap().clone());
        let answer = self.request(frame).await;
        assert!(matches!(answer, ServerFrame::Ack { .. }), "send failed: {answer:?}");
        answer
    }

    /// Reads until the server closes; returns the frames before it and the close code.
    pub async fn until_closed(&mut self) -> (Vec<ServerFrame>, Option<u16>) {
        let mut frames: Vec<ServerFrame> = self.pending.drain(..).collect();
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("server never closed") {
                Some(Ok(WsMessage::Text(text))) => {
                    frames.push(serde_json::from_str(&text).unwrap())
                }
                Some(Ok(WsMessage::Close(close))) => {
                    return (frames, close.map(|c| u16::from(c.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (frames, None),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

pub fn answer_id(frame: &ServerFrame) -> Option<&str> {
    match frame {
        ServerFrame::Ack { id, .. }
        | ServerFrame::Conversation { id, .. }
        | ServerFrame::Conversations { id, .. }
        | ServerFrame::History { id, .. }
        | ServerFrame::Thread { id, .. }
        | ServerFrame::Synced { id, .. }
        | ServerFrame::PresenceList { id, .. }
        | ServerFrame::Ok { id }
        | ServerFrame::Pong { id }
        | ServerFrame::Users { id, .. }
        | ServerFrame::SearchResults { id, .. }
        | ServerFrame::Error { id, .. } => id.as_deref(),
        _ => None,
    }
}

pub fn ack_seq(frame: &ServerFrame) -> (i64, i64, bool) {
    match frame {
        ServerFrame::Ack { conversation_id, seq, duplicate, .. } => {
            (*conversation_id, *seq, *duplicate)
        }
        other => panic!("not an ack: {other:?}"),
    }
}

pub fn error_code(frame: &ServerFrame) -> switchboard_protocol::ErrorCode {
    match frame {
        ServerFrame::Error { code, .. } => *code,
        other => panic!("not an error: {other:?}"),
    }
}

/// A minimal HTTP/1.1 request over a fresh connection (`Connection: close`); returns the
/// status and the body parsed as JSON (Null when empty).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    http_raw(addr, method, path, token, body.map(|b| b.to_string().into_bytes())).await
}

pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        head.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap();
    let body = if headers.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let json =
        if body.trim().is_empty() { Value::Null } else { serde_json::from_str(&body).unwrap() };
    (status, json)
}

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

impl Server {
    /// Serves an already built gateway (e.g. one with Redis presence) on an ephemeral port.
    pub async fn start_gateway(gateway: Gateway, dir: &Path) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let serving =
            switchboard_gateway::run(listener, gateway.clone(), shutdown, Duration::from_secs(5));
        let task = tokio::spawn(async move {
            serving.await.unwrap();
        });
        Self { addr, gateway, dir: dir.to_owned(), stop: Some(stop), task: Some(task), _tmp: None }
    }
}
