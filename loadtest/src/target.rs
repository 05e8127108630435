//! Where the load goes and how a client connects: gateway URLs, the loopback-only policy,
//! binding each client to a 127.0.0.x source address, and naming the OS limits that stop
//! connections (EMFILE, EADDRNOTAVAIL, ...).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A gateway to connect to: `ws://HOST:PORT[/PATH]` (Switchboard) or `xmpp://HOST:PORT`
/// (an XMPP server's c2s port, `--protocol xmpp`), resolved once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gateway {
    /// The URL as given (path defaults to `/ws`).
    pub url: String,
    /// `host:port`, for the Host header and REST calls.
    pub authority: String,
    pub addr: SocketAddr,
}

/// Parses a comma-separated list of gateway URLs. Hosts must be loopback unless
/// `allow_remote`: a load test pointed at the wrong machine is an outage.
pub async fn parse_gateways(list: &str, allow_remote: bool) -> anyhow::Result<Vec<Gateway>> {
    let mut gateways = Vec::new();
    for url in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("ws://") {
            ("ws", rest)
        } else if let Some(rest) = url.strip_prefix("xmpp://") {
            ("xmpp", rest.trim_end_matches('/'))
        } else {
            bail!("gateway {url:?}: give ws://HOST:PORT (Switchboard) or xmpp://HOST:PORT (XMPP)")
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None if scheme == "ws" => (rest, "/ws"),
            None => (rest, ""),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .with_context(|| format!("gateway {url:?}: give a port (ws://HOST:PORT)"))?;
        let port: u16 = port.parse().with_context(|| format!("gateway {url:?}: bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) if host == "localhost" => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .with_context(|| format!("gateway {url:?}: cannot resolve {host}"))?
                .next()
                .with_context(|| format!("gateway {url:?}: {host} has no address"))?,
        };
        if !addr.ip().is_loopback() && !allow_remote {
            bail!(
                "gateway {url:?} is not on this machine ({}); pass --allow-remote to load a \
                 remote server deliberately",
                addr.ip()
            );
        }
        gateways.push(Gateway {
            url: format!("{scheme}://{authority}{path}"),
            authority: authority.to_owned(),
            addr,
        });
    }
    if gateways.is_empty() {
        bail!("no gateway given (--gateway ws://127.0.0.1:8080)");
    }
    Ok(gateways)
}

/// Source addresses 127.0.0.1 .. 127.0.0.n, used round-robin when every gateway is on
/// IPv4 loopback; each gives the client side its own ~28,000 ephemeral ports.
pub fn source_addrs(gateways: &[Gateway], n: u8) -> Vec<IpAddr> {
    let all_v4_loopback =
        gateways.iter().all(|g| matches!(g.addr.ip(), IpAddr::V4(ip) if ip.is_loopback()));
    if !all_v4_loopback || n == 0 {
        return Vec::new();
    }
    (1..=n).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect()
}

pub type Ws = WebSocketStream<TcpStream>;

/// Why a connection attempt failed, named so reports can say which limit stopped a run.
#[derive(Debug)]
pub struct ConnectError {
    pub kind: &'static str,
    pub detail: String,
}

impl ConnectError {
    fn io(e: &std::io::Error) -> Self {
        let kind = match e.raw_os_error() {
            Some(24) => "EMFILE",
            Some(23) => "ENFILE",
            Some(99) => "EADDRNOTAVAIL",
            Some(98) => "EADDRINUSE",
            Some(111) => "ECONNREFUSED",
            Some(104) => "ECONNRESET",
            Some(110) => "ETIMEDOUT",
            _ => "io",
        };
        Self { kind, detail: e.to_string() }
    }

    /// A limit of this machine or process rather than a refusal by the server.
    pub fn is_limit(&self) -> bool {
        matches!(self.kind, "EMFILE" | "ENFILE" | "EADDRNOTAVAIL" | "EADDRINUSE")
    }
}

/// Explains a limit in one line for the progress and summary output.
pub fn limit_advice(kind: &str) -> &'static str {
    match kind {
        "EMFILE" => {
            "this process ran out of file descriptors (open-file limit); use more --workers"
        }
        "ENFILE" => "the system-wide file table is full",
        "EADDRNOTAVAIL" | "EADDRINUSE" => {
            "no free ephemeral port for this source address; use more --source-addrs"
        }
        _ => "",
    }
}

/// Opens a TCP connection from `source` (if any), with `TCP_NODELAY`.
pub async fn tcp(gateway: &Gateway, source: Option<IpAddr>) -> Result<TcpStream, ConnectError> {
    let socket = match gateway.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| ConnectError::io(&e))?;
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0)).map_err(|e| ConnectError::io(&e))?;
    }
    let stream = socket.connect(gateway.addr).await.map_err(|e| ConnectError::io(&e))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens a TCP connection from `source` (if any) and upgrades it to a WebSocket with small
/// buffers (the defaults would cost 128 KiB per idle client on the first read).
pub async fn connect(gateway: &Gateway, source: Option<IpAddr>) -> Result<Ws, ConnectError> {
    let stream = tcp(gateway, source).await?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(256 << 20));
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(gateway.url.as_str(), stream, Some(config))
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Io(io) => ConnectError::io(&io),
                other => ConnectError { kind: "handshake", detail: other.to_string() },
            })?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_without_allow_remote() {
        let ok = parse_gateways("ws://127.0.0.1:8080, ws://localhost:9000/ws,ws://[::1]:1", false)
            .await
            .unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[0].url, "ws://127.0.0.1:8080/ws");
        assert!(parse_gateways("ws://10.1.2.3:8080", false).await.is_err());
        assert!(parse_gateways("ws://10.1.2.3:8080", true).await.is_ok());
        assert!(parse_gateways("http://127.0.0.1:8080", false).await.is_err());
        let x = parse_gateways("xmpp://127.0.0.1:5222", false).await.unwrap();
        assert_eq!(x[0].url, "xmpp://127.0.0.1:5222");
        assert!(parse_gateways("xmpp://10.1.2.3:5222", false).await.is_err(), "loopback only");
        assert_eq!(source_addrs(&ok[..2], 3).len(), 3);
        assert!(source_addrs(&ok, 3).is_empty(), "no 127.0.0.x source for ::1");
    }
}
