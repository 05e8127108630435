//! TLS with real processes and a throwaway private CA made here: the embedded server over
//! HTTPS / wss:// (certificate rotation on SIGHUP included), and a cluster whose storage,
//! router and gateways talk gRPC over TLS.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::{BIN, Cluster, Proc, TestData, add_users, login_token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A private CA that signs server certificates for 127.0.0.1 / localhost.
struct Ca {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Switchboard test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self { cert, issuer: Issuer::new(params, key) }
    }

    /// A new server certificate and key (PEM), and the certificate's DER.
    fn server(&self) -> (String, String, CertificateDer<'static>) {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "switchboard");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }

    /// A TLS client configuration trusting only this CA.
    fn client(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every connection a full handshake: a resumed session reports the certificate
        // of the session it resumes, not the one the server holds now.
        config.resumption = rustls::client::Resumption::disabled();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// Writes a certificate and key where the server reads them.
fn install(dir: &Path, (cert, key, _): &(String, String, CertificateDer<'static>)) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

/// A TLS connection to `addr`, and the certificate the server presented.
async fn connect(
    tls: &tokio_rustls::TlsConnector,
    addr: &str,
) -> (TlsStream<TcpStream>, CertificateDer<'static>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    (stream, presented)
}

/// One HTTP/1.1 request over HTTPS (`body` as JSON when given); the status and body.
async fn https(
    tls: &tokio_rustls::TlsConnector,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let (mut stream, _) = connect(tls, addr).await;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8(response).unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (status, body.to_owned())
}

/// Signs `user` in over HTTPS; the token.
async fn https_login(tls: &tokio_rustls::TlsConnector, addr: &str, user: &str) -> String {
    let body = json!({"username": user, "password": format!("{user}-password")});
    let (status, reply) = https(tls, addr, "POST", "/api/v1/login", Some(body)).await;
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    reply["token"].as_str().unwrap().to_owned()
}

/// A signed-in session over wss://.
struct Client {
    ws: tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>,
    /// The certificate the server presented to this connection.
    presented: CertificateDer<'static>,
}

impl Client {
    async fn connect(tls: &tokio_rustls::TlsConnector, addr: &str, token: &str) -> Self {
        let (stream, presented) = connect(tls, addr).await;
        let (ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", stream).await.unwrap();
        let mut client = Self { ws, presented };
        client.send(json!({"type": "auth", "token": token})).await;
        client.expect(|f| f["type"] == "welcome").await;
        client
    }

    async fn send(&mut self, frame: Value) {
        self.ws.send(WsMessage::text(frame.to_string())).await.unwrap();
    }

    /// The first frame matching `pred` (others are skipped), within 10 s.
    async fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .unwrap()
                .unwrap();
            if let WsMessage::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).unwrap();
                if pred(&value) {
                    return value;
                }
            }
        }
    }

    /// The body of the next chat message.
    async fn message(&mut self) -> String {
        let frame = self.expect(|f| f["type"] == "message").await;
        frame["message"]["body"].as_str().unwrap().to_owned()
    }
}

/// `switchboard serve` with its stdout lines after "listening on" forwarded to a channel.
fn serve(args: &[&str]) -> (Proc, String, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("exited before listening").unwrap();
        if let Some((_, rest)) = line.split_once("listening on https://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
        assert!(!line.contains("listening on http://"), "serving without TLS: {line}");
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Proc(child), addr, rx)
}

/// Sends SIGHUP and returns the server's answer line (reloaded or not).
fn hangup(server: &Proc, out: &std::sync::mpsc::Receiver<String>) -> String {
    let sent = Command::new("kill").args(["-HUP", &server.0.id().to_string()]).status().unwrap();
    assert!(sent.success());
    loop {
        let line = out.recv_timeout(Duration::from_secs(10)).expect("no answer to SIGHUP");
        if line.starts_with("TLS certificate") {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_speaks_tls_and_rotates_its_certificate_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for user in ["alice", "bob"] {
        let mut add = Command::new(BIN)
            .args(["user", "add", user, "--password-stdin", "--data-dir"])
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        add.stdin.take().unwrap().write_all(format!("{user}-password\n").as_bytes()).unwrap();
        assert!(add.wait().unwrap().success());
    }
    let ca = Ca::new();
    let first = ca.server();
    install(tmp.path(), &first);
    let cert = tmp.path().join("cert.pem");
    let key = tmp.path().join("key.pem");
    let (mut server, addr, out) = serve(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let tls = ca.client();

    // The web client over HTTPS; sign in over HTTPS, chat over wss://.
    let (status, page) = https(&tls, &addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    let alice_token = https_login(&tls, &addr, "alice").await;
    let bob_token = https_login(&tls, &addr, "bob").await;
    let mut alice = Client::connect(&tls, &addr, &alice_token).await;
    let mut bob = Client::connect(&tls, &addr, &bob_token).await;
    assert_eq!(alice.presented, first.2);
    alice
        .send(json!({"type": "send", "to": "bob", "client_msg_id": "1", "body": "over TLS"}))
        .await;
    assert_eq!(bob.message().await, "over TLS");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "plain HTTP was answered: {answer:?}");

    // Rotation: new connections get the new certificate, open ones go on.
    let second = ca.server();
    install(tmp.path(), &second);
    assert_eq!(hangup(&server, &out), "TLS certificate reloaded.");
    let mut bob_again = Client::connect(&tls, &addr, &bob_token).await;
    assert_eq!(bob_again.presented, second.2, "a new connection sees the new certificate");
    alice
        .send(json!({"type": "send", "to": "bob", "client_msg_id": "2", "body": "still here"}))
        .await;
    assert_eq!(bob.message().await, "still here", "an open connection keeps working");
    assert_eq!(bob_again.message().await, "still here");

    // A broken replacement keeps the certificate in use.
    std::fs::write(&cert, "not a certificate").unwrap();
    let answer = hangup(&server, &out);
    assert!(answer.starts_with("TLS certificate not reloaded"), "{answer}");
    let later = Client::connect(&tls, &addr, &alice_token).await;
    assert_eq!(later.presented, second.2);
    // A key that belongs to another certificate is refused too.
    std::fs::write(&cert, &first.0).unwrap();
    let answer = hangup(&server, &out);
    assert!(answer.starts_with("TLS certificate not reloaded"), "{answer}");
    let (_, presented) = connect(&tls, &addr).await;
    assert_eq!(presented, second.2);
    alice.send(json!({"type": "send", "to": "bob", "client_msg_id": "3", "body": "and now"})).await;
    assert_eq!(bob.message().await, "and now");

    // The drain works over TLS as over plain HTTP: clients are told, the server exits.
    let (status, _) = server.terminate();
    assert!(status.success(), "{status}");
    bob.expect(|f| f["code"] == "shutting_down").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_services_talk_grpc_over_tls_with_a_private_ca() {
    let data = TestData::new("tls").await;
    add_users(&data.database, &["alice", "bob"]);
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    install(tmp.path(), &ca.server());
    std::fs::write(tmp.path().join("ca.pem"), ca.cert.pem()).unwrap();
    let path = |file: &str| tmp.path().join(file).to_str().unwrap().to_owned();
    let (cert, key, ca_file) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];

    // Ready means storage answers and a router is linked: both over TLS.
    let cluster = Cluster::on(&data)
        .https()
        .storage_args(&tls)
        .router_args(&tls)
        .gateways(2)
        .gateway_args(&["--tls-ca", &ca_file])
        .start()
        .await;
    let gw = cluster.addrs();
    let storage_url = format!("https://{}", cluster.storage.1);
    let router_url = format!("https://{}", cluster.routers[0].1);

    let alice_token = login_token(&gw[0], "alice").await;
    let bob_token = login_token(&gw[1], "bob").await;
    let mut alice = support::WsClient::connect(&gw[0], &alice_token).await;
    let mut bob = support::WsClient::connect(&gw[1], &bob_token).await;
    alice
        .send(json!({"type": "send", "to": "bob", "client_msg_id": "x1", "body": "via TLS"}))
        .await;
    let got = bob.expect(|f| f["type"] == "message").await;
    assert_eq!(got["message"]["body"], "via TLS");

    // Without the CA the gateway refuses to start on https:// URLs.
    let refused = Command::new(BIN)
        .args(["gateway", "--listen", "127.0.0.1:0", "--storage", &storage_url])
        .args(["--router", &router_url])
        .args(data.redis_args())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--tls-ca"));

    drop(cluster);
    data.remove().await;
}
