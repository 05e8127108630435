//! `switchboard-loadtest broadcast-latency`: how long an org broadcast takes to reach every
//! online user. Provisions N users (their org unit is `loadtest`), connects them all
//! (spread over the gateways), then, per round, posts one broadcast
//! (`POST /api/v1/broadcasts`) and times from just before the post until each user's
//! socket has the `broadcast` frame. Prints per round: the post's answer time, the median
//! and the last receipt; then the median of the rounds' last receipts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::http::Http;
use crate::target::{self, Gateway};

/// How many connections are being opened at once.
const CONNECTING: usize = 256;
/// How long a round waits for the last receipt.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a round waits for the first receipt (none: the broadcast reached nobody).
const FIRST_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Options {
    pub gateways: Vec<Gateway>,
    pub users: u32,
    pub rounds: u32,
    /// Org-unit path to broadcast to; provisioned users are under `loadtest`.
    pub to: String,
    pub prefix: String,
    pub admin_token: String,
    pub sources: Vec<IpAddr>,
}

/// One round's figures, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    pub post_ms: f64,
    pub median_ms: f64,
    pub last_ms: f64,
    pub received: usize,
}

#[derive(Deserialize)]
struct Provisioned {
    users: Vec<ProvisionedUser>,
}

#[derive(Deserialize)]
struct ProvisionedUser {
    token: Option<String>,
}

#[derive(Deserialize)]
struct Sent {
    id: i64,
}

/// Connects one user, signs in and reports every broadcast frame's id and arrival time.
async fn listen(
    gateway: Gateway,
    source: Option<IpAddr>,
    token: String,
    ready: mpsc::Sender<()>,
    receipts: mpsc::UnboundedSender<(i64, Instant)>,
    permits: Arc<Semaphore>,
) -> anyhow::Result<()> {
    let permit = permits.acquire_owned().await?;
    let mut ws = target::connect(&gateway, source)
        .await
        .map_err(|e| anyhow::anyhow!("connect: {} {}", e.kind, e.detail))?;
    ws.send(WsMessage::text(json!({"type": "auth", "token": token}).to_string())).await?;
    while let Some(frame) = ws.next().await {
        if let WsMessage::Text(text) = frame?
            && text.contains("\"type\":\"welcome\"")
        {
            break;
        }
    }
    drop(permit);
    let _ = ready.send(()).await;
    while let Some(frame) = ws.next().await {
        let WsMessage::Text(text) = frame? else { continue };
        let at = Instant::now();
        if !text.starts_with("{\"type\":\"broadcast\"") {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&text)?;
        if let Some(id) = value["broadcast"]["id"].as_i64() {
            let _ = receipts.send((id, at));
        }
    }
    Ok(())
}

pub async fn run(options: Options) -> anyhow::Result<Vec<Round>> {
    let Some(first) = options.gateways.first() else { bail!("no gateway") };
    let admin = Http::new(&first.authority, Some(options.admin_token.clone()));
    let started = Instant::now();
    let request = json!({
        "prefix": options.prefix,
        "count": options.users,
        "password": "loadtest-password",
        "issue_tokens": true,
    });
    let answer: Provisioned = admin
        .post("/api/v1/admin/provision", &request)
        .await
        .context("provisioning failed (is the token an admin's?)")?;
    eprintln!(
        "provisioned {} users in {:.1} s",
        answer.users.len(),
        started.elapsed().as_secs_f64()
    );

    let (ready_tx, mut ready) = mpsc::channel(1024);
    let (receipt_tx, mut receipts) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(CONNECTING));
    let started = Instant::now();
    for (i, user) in answer.users.into_iter().enumerate() {
        let token = user.token.context("the server issued no token")?;
        let gateway = options.gateways[i % options.gateways.len()].clone();
        let source =
            (!options.sources.is_empty()).then(|| options.sources[i % options.sources.len()]);
        let (ready, receipts, permits) = (ready_tx.clone(), receipt_tx.clone(), permits.clone());
        tokio::spawn(async move {
            if let Err(e) = listen(gateway, source, token, ready, receipts, permits).await {
                eprintln!("user {i}: {e:#}");
            }
        });
    }
    drop(ready_tx);
    let mut connected = 0;
    while connected < options.users {
        if ready.recv().await.is_none() {
            bail!("only {connected} of {} users signed in", options.users);
        }
        connected += 1;
    }
    eprintln!("{connected} users online in {:.1} s", started.elapsed().as_secs_f64());
    // Let sign-in work (pending broadcasts, presence) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while receipts.try_recv().is_ok() {}

    let mut rounds = Vec::new();
    for round in 0..options.rounds {
        let body = json!({"to": options.to, "body": format!("broadcast-latency round {round}")});
        let t0 = Instant::now();
        let sent: Sent = admin.post("/api/v1/broadcasts", &body).await?;
        let post_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut times: Vec<f64> = Vec::with_capacity(options.users as usize);
        let mut other: HashMap<i64, usize> = HashMap::new();
        let started = tokio::time::Instant::now();
        while times.len() < options.users as usize {
            let wait = if times.is_empty() { FIRST_TIMEOUT } else { ROUND_TIMEOUT };
            match tokio::time::timeout_at(started + wait, receipts.recv()).await {
                Ok(Some((id, at))) if id == sent.id => {
                    times.push(at.duration_since(t0).as_secs_f64() * 1e3);
                }
                Ok(Some((id, _))) => *other.entry(id).or_default() += 1,
                Ok(None) | Err(_) => break,
            }
        }
        times.sort_by(f64::total_cmp);
        let r = Round {
            post_ms,
            median_ms: times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
            last_ms: times.last().copied().unwrap_or(f64::NAN),
            received: times.len(),
        };
        println!(
            "round {round}: broadcast {} received by {}/{} users; post answered in {:.1} ms, \
             median receipt {:.1} ms, last {:.1} ms",
            sent.id, r.received, options.users, r.post_ms, r.median_ms, r.last_ms
        );
        if r.received < options.users as usize {
            bail!("broadcast {} reached only {} of {} users", sent.id, r.received, options.users);
        }
        rounds.push(r);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut lasts: Vec<f64> = rounds.iter().map(|r| r.last_ms).collect();
    lasts.sort_by(f64::total_cmp);
    if let Some(median) = lasts.get(lasts.len() / 2) {
        println!(
            "median over {} rounds: last of {} users had it after {median:.1} ms",
            rounds.len(),
            options.users
        );
    }
    Ok(rounds)
}
