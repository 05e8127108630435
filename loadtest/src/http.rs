//! A small HTTP/1.1 JSON client over hyper, enough for sign-in and provisioning (the same
//! pattern as the CLI's client). No TLS: the load generator talks to gateways directly.

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub struct Http {
    /// `host:port`, for connecting and the Host header.
    authority: String,
    token: Option<String>,
}

impl Http {
    pub fn new(authority: &str, token: Option<String>) -> Self {
        Self { authority: authority.to_owned(), token }
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let (status, body) = self.post_raw(path, body).await?;
        if !status.is_success() {
            return Err(anyhow!("POST {path}: HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).with_context(|| format!("unexpected answer from POST {path}"))
    }

    /// POSTs JSON and returns the status and body as they are.
    pub async fn post_raw<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
        let body = serde_json::to_vec(body)?;
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach http://{}", self.authority))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("POST {path} on {} failed", self.authority))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
