//! A small HTTP/1.1 JSON client over hyper, enough for the REST API (no TLS yet).

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_protocol::ErrorBody;

pub struct Http {
    /// `host:port`, for connecting and the Host header.
    authority: String,
    /// Base URL as given, for messages.
    server: String,
    token: Option<String>,
}

/// An error answer from the server, kept typed so callers can decide on retries.
#[derive(Debug)]
pub struct ServerError {
    pub body: ErrorBody,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.body.message, self.body.code)
    }
}

impl std::error::Error for ServerError {}

impl Http {
    pub fn new(server: &str, token: Option<String>) -> anyhow::Result<Self> {
        let server = server.trim_end_matches('/').to_owned();
        let rest = if let Some(rest) = server.strip_prefix("http://") {
            rest
        } else if server.starts_with("https://") {
            bail!(
                "https is not supported by this CLI yet; use http:// (for example behind a TLS proxy)"
            );
        } else {
            bail!("the server must be an http:// URL, not {server:?}");
        };
        if rest.is_empty() || rest.contains('/') {
            bail!("the server URL must be like http://HOST:PORT, not {server:?}");
        }
        let authority = if rest.contains(':') { rest.to_owned() } else { format!("{rest}:80") };
        Ok(Self { authority, server, token })
    }

    /// The server's URL as given (no trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.server
    }

    /// The WebSocket URL of the same server.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.authority)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = self.request(Method::GET, path, None).await?;
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer from GET {path}"))
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = self.request(Method::POST, path, Some(serde_json::to_vec(body)?)).await?;
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer from POST {path}"))
    }

    /// Any method, with an optional JSON body and a JSON answer.
    pub async fn exchange<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let answer = self.request(method.clone(), path, body).await?;
        serde_json::from_slice(&answer)
            .with_context(|| format!("unexpected answer from {method} {path}"))
    }

    /// A request whose answer has no body (204).
    pub async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<()> {
        let body = body.map(serde_json::to_vec).transpose()?;
        self.request(method, path, body).await.map(drop)
    }

    /// `POST` of raw bytes with their content type (an attachment upload).
    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<T> {
        let answer = self.send(Method::POST, path, content_type, bytes).await?;
        serde_json::from_slice(&answer)
            .with_context(|| format!("unexpected answer from POST {path}"))
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        self.send(method, path, "application/json", body.unwrap_or_default()).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Bytes> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", &self.authority)
            .header("content-type", content_type)
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("{method} {path} on {} failed", self.server))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(body) => Err(ServerError { body }.into()),
            Err(_) => {
                Err(anyhow!("{method} {path}: HTTP {status}: {}", String::from_utf8_lossy(&body)))
            }
        }
    }
}

/// `s` percent-encoded for a URL query value (everything but unreserved characters).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
