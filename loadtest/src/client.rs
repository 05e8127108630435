//! One simulated user: connects (from its source address, at its place in the ramp),
//! signs in with the `auth` frame, sets presence, watches contacts, chats on a Poisson
//! schedule, verifies every message it receives, survives a reconnect storm by resuming
//! with `auth.since`, and at the end drains and counts what never arrived.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard_protocol::{ErrorCode, Message, MessageKind, ServerFrame};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::plan::UserPlan;
use crate::rng::Rng;
use crate::stats::Count;
use crate::target::{self, Ws};
use crate::verify::{self, Seen, Track};
use crate::worker::Ctx;

/// Longest wait for `welcome` (and the resume's `synced`) after connecting.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts before a user that never got in gives up, when the server turned it away
/// for good (e.g. `unauthenticated`) or a limit of this machine stopped it. Refusals that
/// say "later" (`unavailable`, `rate_limited`, a draining gateway, a timeout) are retried
/// with backoff until the run's traffic ends.
const FIRST_CONNECT_ATTEMPTS: u32 = 3;
/// A session shorter than this that breaks counts as a failed attempt: the backoff keeps
/// growing, so clients that get in and are closed at once do not hammer the server.
const SHORT_SESSION: Duration = Duration::from_secs(5);
/// First backoff step after a failed attempt (doubling, capped by the scenario's
/// `reconnect.backoff_max_ms`; the wait is uniform from 0 to the step).
const BACKOFF_BASE_MS: f64 = 250.0;
/// Longest wait a draining gateway's `retry_after_ms` may impose.
const MAX_RETRY_AFTER_MS: u64 = 60_000;

/// Microseconds since the Unix epoch: the send stamp travels between processes.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

enum End {
    /// The run is over; results are counted.
    Done,
    /// The reconnect storm: dropped on purpose.
    Storm,
    /// The connection failed or the server closed it.
    Broken(&'static str),
}

struct Pending {
    conversation: i64,
    body: String,
    sent: Instant,
}

pub struct User {
    ctx: Arc<Ctx>,
    plan: UserPlan,
    rng: Rng,
    tracks: HashMap<i64, Track>,
    /// (conversation, sender) -> highest per-sender number seen.
    senders: HashMap<(i64, String), u64>,
    /// Sends not yet acknowledged, by client_msg_id; resent after a reconnect.
    pending: BTreeMap<String, Pending>,
    next_n: u64,
    stormed: bool,
    /// Which of the gateways to connect to next (counted from the user's own index): it
    /// moves on after a failed connection or a draining gateway, as a client behind a
    /// load balancer ends up elsewhere.
    gateway_shift: usize,
    /// A draining gateway's `retry_after_ms` (from its `shutting_down` frame): how long to
    /// wait before reconnecting after it closes the connection.
    reconnect_after: Option<u64>,
}

impl User {
    pub fn new(ctx: Arc<Ctx>, plan: UserPlan) -> Self {
        let tracks = plan.conversations.iter().map(|(&c, &last)| (c, Track::new(last))).collect();
        let rng = Rng::new(ctx.run_id ^ (u64::from(plan.index) << 20));
        Self {
            ctx,
            plan,
            rng,
            tracks,
            senders: HashMap::new(),
            pending: BTreeMap::new(),
            next_n: 1,
            stormed: false,
            gateway_shift: 0,
            reconnect_after: None,
        }
    }

    pub async fn run(mut self) {
        let ctx = self.ctx.clone();
        let ramp = ctx.scenario.ramp_secs * f64::from(self.plan.index) / f64::from(ctx.total_users);
        sleep_until(ctx.start + Duration::from_secs_f64(ramp)).await;
        let mut attempts = 0u32;
        let mut first = true;
        let mut dropped_at: Option<Instant> = None;
        loop {
            if Instant::now() >= ctx.drain_end() {
                if first {
                    ctx.stats.add(Count::ConnectFailures, 1);
                }
                break;
            }
            let ws = match self.connect(first).await {
                Ok(ws) => ws,
                Err(kind) => {
                    attempts += 1;
                    ctx.stats.error(kind);
                    let later = self.reconnect_after.is_some() || retry_later(kind);
                    if first && !later && attempts >= FIRST_CONNECT_ATTEMPTS {
                        ctx.stats.add(Count::ConnectFailures, 1);
                        return;
                    }
                    if first && Instant::now() >= ctx.traffic_end() {
                        ctx.stats.add(Count::ConnectFailures, 1);
                        return;
                    }
                    self.gateway_shift += 1;
                    let wait = self.backoff(attempts);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    continue;
                }
            };
            if let Some(at) = dropped_at.take() {
                ctx.stats.reconnected(at.elapsed().as_secs_f64() * 1000.0);
            }
            first = false;
            let began = Instant::now();
            match self.session(ws).await {
                End::Done => break,
                End::Storm => {
                    attempts = 0;
                    dropped_at = Some(Instant::now());
                    let jitter = self.rng.uniform(0.0, ctx.scenario.reconnect.jitter_ms as f64);
                    tokio::time::sleep(Duration::from_millis(jitter as u64)).await;
                }
                End::Broken(why) => {
                    ctx.stats.error(why);
                    // A server that says when to come back (a draining gateway, a busy
                    // one) is obeyed, elsewhere; a session that broke at once backs off
                    // like a failed attempt; otherwise a short random wait.
                    let wait = if self.reconnect_after.is_some() || began.elapsed() < SHORT_SESSION
                    {
                        attempts += 1;
                        self.gateway_shift += 1;
                        self.backoff(attempts)
                    } else {
                        attempts = 0;
                        self.rng.uniform(0.0, 500.0) as u64
                    };
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
        self.finish();
    }

    /// Milliseconds to wait before attempt `attempts + 1`: what the server named
    /// (`retry_after_ms` of its refusal or farewell), else exponential backoff with full
    /// jitter.
    fn backoff(&mut self, attempts: u32) -> u64 {
        if let Some(ms) = self.reconnect_after.take() {
            return ms.min(MAX_RETRY_AFTER_MS);
        }
        let cap = self.ctx.scenario.reconnect.backoff_max_ms.max(100) as f64;
        let step = cap.min(BACKOFF_BASE_MS * 2f64.powi(attempts.min(30) as i32));
        self.rng.uniform(0.0, step) as u64
    }

    /// Connects and signs in; on a resume (and on the first connection of chat
    /// scenarios) sends `since` and reads the backfill up to `synced`.
    async fn connect(&mut self, first: bool) -> Result<Ws, &'static str> {
        let ctx = self.ctx.clone();
        let n = self.plan.index as usize;
        let gateway = &ctx.gateways[(n + self.gateway_shift) % ctx.gateways.len()];
        let source = (!ctx.sources.is_empty()).then(|| ctx.sources[n % ctx.sources.len()]);
        let began = Instant::now();
        let mut ws = target::connect(gateway, source).await.map_err(|e| {
            if e.is_limit() {
                ctx.limit_hit(e.kind, &e.detail);
            }
            e.kind
        })?;
        let resume = !first || ctx.scenario.chats();
        let mut auth = json!({"type": "auth", "token": self.plan.token});
        if !ctx.scenario.echo {
            auth["echo"] = json!(false);
        }
        if resume {
            let since: BTreeMap<String, i64> =
                self.tracks.iter().map(|(c, t)| (c.to_string(), t.last)).collect();
            auth["since"] = json!(since);
        }
        ws.send(WsMessage::text(auth.to_string())).await.map_err(|_| "auth_send_failed")?;
        let deadline = Instant::now() + SIGN_IN_TIMEOUT;
        let mut welcomed = false;
        loop {
            let frame = match timeout(deadline - Instant::now(), ws.next()).await {
                Err(_) => return Err("sign_in_timeout"),
                Ok(Some(Ok(WsMessage::Text(t)))) => t,
                Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) => return Err("closed_in_sign_in"),
                Ok(Some(Err(_))) => return Err("connection_error_in_sign_in"),
                Ok(Some(Ok(_))) => continue,
            };
            match serde_json::from_str::<ServerFrame>(&frame) {
                Ok(ServerFrame::Welcome { .. }) => {
                    welcomed = true;
                    if !resume {
                        break;
                    }
                }
                Ok(ServerFrame::Synced { .. }) if welcomed => break,
                Ok(ServerFrame::Error { code, retry_after_ms, .. }) => {
                    ctx.stats.kind(code.as_str());
                    self.reconnect_after = retry_after_ms;
                    let later = matches!(
                        code,
                        ErrorCode::Unavailable | ErrorCode::RateLimited | ErrorCode::ShuttingDown
                    );
                    return Err(if later { "sign_in_refused" } else { "sign_in_rejected" });
                }
                Ok(ServerFrame::Message { message }) => self.on_message(&message, true),
                Ok(_) => {}
                Err(_) => ctx.stats.error("bad_server_frame"),
            }
        }
        ctx.stats.connect_us(began.elapsed().as_micros() as u64);
        ctx.stats.add(Count::Connects, 1);
        ctx.stats.connected(1);
        Ok(ws)
    }

    async fn session(&mut self, mut ws: Ws) -> End {
        let ctx = self.ctx.clone();
        let s = &ctx.scenario;
        // Presence set on every connection; contacts watched in chat scenarios.
        let status = if self.stormed { "busy" } else { "available" };
        let mut hello = vec![json!({"type": "set_presence", "id": "p", "status": status})];
        if s.chats() && !self.plan.watch.is_empty() {
            hello.push(json!({"type": "watch", "id": "w", "users": self.plan.watch}));
        }
        // Unacknowledged sends go again with the same client_msg_id (idempotent).
        for (id, p) in &self.pending {
            hello.push(json!({"type": "send", "id": id, "conversation_id": p.conversation,
                              "client_msg_id": id, "body": p.body}));
        }
        for frame in hello {
            if ws.feed(WsMessage::text(frame.to_string())).await.is_err() {
                return self.broken("connection_error");
            }
        }
        if ws.flush().await.is_err() {
            return self.broken("connection_error");
        }

        let Pacing { interval, presence_mean, far, mut next_send, mut next_presence } =
            Pacing::start(&ctx, &self.plan, &mut self.rng);
        let storm_at = match ctx.storm_at() {
            Some(at) if !self.stormed => at,
            _ => far,
        };
        let traffic_end = ctx.traffic_end();
        // The timers live across the loop and are reset when they fire, not made anew
        // (registered and cancelled) for every frame received.
        let send_timer = sleep_until(next_send);
        let presence_timer = sleep_until(next_presence);
        let storm_timer = sleep_until(storm_at);
        // A second after the senders stop, in-flight sends have committed.
        let end_timer = sleep_until(traffic_end + Duration::from_secs(1));
        tokio::pin!(send_timer, presence_timer, storm_timer, end_timer);
        loop {
            tokio::select! {
                frame = ws.next() => {
                    if let Some(end) = self.on_frame(frame) {
                        return end;
                    }
                }
                _ = &mut send_timer, if next_send < traffic_end => {
                    if self.send_one(&mut ws).await.is_err() {
                        return self.broken("connection_error");
                    }
                    let now = Instant::now();
                    next_send = (next_send + self.rng.exp(interval)).max(now - Duration::from_secs(1));
                    send_timer.as_mut().reset(next_send);
                }
                _ = &mut presence_timer, if next_presence < traffic_end => {
                    let status = ["available", "busy", "away", "available"][self.rng.below(4)];
                    let frame = json!({"type": "set_presence", "id": "p", "status": status});
                    if ws.send(WsMessage::text(frame.to_string())).await.is_err() {
                        return self.broken("connection_error");
                    }
                    next_presence += self.rng.exp(presence_mean);
                    presence_timer.as_mut().reset(next_presence);
                }
                _ = &mut storm_timer => {
                    self.stormed = true;
                    ctx.stats.connected(-1);
                    drop(ws);
                    return End::Storm;
                }
                _ = &mut end_timer => break,
            }
        }
        self.drain(ws).await
    }

    fn broken(&self, why: &'static str) -> End {
        self.ctx.stats.connected(-1);
        End::Broken(why)
    }

    async fn send_one(&mut self, ws: &mut Ws) -> Result<(), ()> {
        let s = &self.ctx.scenario;
        let Some(conversation) = self.plan.next_conversation(&mut self.rng, s.office.group_share)
        else {
            return Ok(());
        };
        if s.chats() && self.rng.uniform(0.0, 1.0) < s.office.typing_share {
            let typing = json!({"type": "typing", "conversation_id": conversation});
            ws.feed(WsMessage::text(typing.to_string())).await.map_err(drop)?;
        }
        let n = self.next_n;
        self.next_n += 1;
        let now_us = unix_us();
        let body = verify::body(&self.plan.username, n, now_us, s.body_bytes);
        // Starting with the time, as the web client's keys do (docs/protocol.md).
        let id = format!("{:012x}-{}-{:x}-{n}", now_us / 1000, self.plan.username, self.ctx.run_id);
        let frame = json!({"type": "send", "id": id, "conversation_id": conversation,
                           "client_msg_id": id, "body": body});
        self.pending.insert(id, Pending { conversation, body, sent: Instant::now() });
        self.ctx.stats.add(Count::Sent, 1);
        self.ctx.outstanding.fetch_add(1, Ordering::Relaxed);
        ws.send(WsMessage::text(frame.to_string())).await.map_err(drop)
    }

    fn on_frame(
        &mut self,
        frame: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<End> {
        let text = match frame {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(close))) => {
                let code = close.map(|c| u16::from(c.code)).unwrap_or(0);
                return Some(self.broken(match code {
                    1012 => "closed_shutting_down",
                    1013 => "closed_try_later",
                    _ => "closed_by_server",
                }));
            }
            None => return Some(self.broken("closed_by_server")),
            Some(Err(_)) => return Some(self.broken("connection_error")),
            Some(Ok(_)) => return None,
        };
        match serde_json::from_str::<ServerFrame>(&text) {
            Ok(ServerFrame::Message { message }) => self.on_message(&message, false),
            Ok(ServerFrame::Ack { client_msg_id, conversation_id, seq, duplicate, .. }) => {
                if !self.ctx.scenario.echo && !duplicate {
                    self.on_own_ack(conversation_id, seq);
                }
                if let Some(p) = self.pending.remove(&client_msg_id) {
                    self.ctx.outstanding.fetch_sub(1, Ordering::Relaxed);
                    self.ctx.stats.ack_us(p.sent.elapsed().as_micros() as u64);
                    self.ctx.stats.add(Count::Acked, 1);
                }
            }
            Ok(ServerFrame::Error { code: ErrorCode::ShuttingDown, retry_after_ms, .. }) => {
                self.ctx.stats.kind(ErrorCode::ShuttingDown.as_str());
                self.reconnect_after = Some(retry_after_ms.unwrap_or(0));
            }
            // Storage failed as the session started: the close follows; come back then.
            Ok(ServerFrame::Error {
                id: None,
                code: ErrorCode::Unavailable,
                retry_after_ms: Some(ms),
                ..
            }) => {
                self.ctx.stats.error(ErrorCode::Unavailable.as_str());
                self.reconnect_after = Some(ms);
            }
            Ok(ServerFrame::Error { code, .. }) => self.ctx.stats.error(code.as_str()),
            Ok(_) => {}
            Err(_) => self.ctx.stats.error("bad_server_frame"),
        }
        None
    }

    /// Without the echo, a send's `ack` comes in its message's place in seq order. A
    /// backfill may have brought that seq already, so no duplicate is counted here.
    fn on_own_ack(&mut self, conversation: i64, seq: i64) {
        let track = self.tracks.entry(conversation).or_insert_with(|| Track::new(seq - 1));
        match track.see(seq) {
            Seen::AfterGap(_) => self.ctx.stats.kind("gap"),
            Seen::OutOfOrder => self.ctx.stats.add(Count::OutOfOrder, 1),
            Seen::InOrder | Seen::Duplicate => {}
        }
    }

    fn on_message(&mut self, m: &Message, backfill: bool) {
        let stats = &self.ctx.stats;
        let track = self.tracks.entry(m.conversation_id).or_insert_with(|| Track::new(m.seq - 1));
        match track.see(m.seq) {
            Seen::InOrder => {}
            Seen::AfterGap(_) => stats.kind("gap"),
            Seen::OutOfOrder => stats.add(Count::OutOfOrder, 1),
            Seen::Duplicate => {
                stats.add(Count::Duplicated, 1);
                return;
            }
        }
        if m.kind != MessageKind::Text {
            return;
        }
        let Some(stamp) = verify::parse(&m.body) else { return };
        if stamp.sender == self.plan.username {
            return;
        }
        stats.add(Count::Delivered, 1);
        if backfill {
            stats.add(Count::Backfilled, 1);
        }
        stats.latency_us(unix_us().saturating_sub(stamp.sent_us));
        let last = self.senders.entry((m.conversation_id, stamp.sender.to_owned())).or_default();
        if stamp.n <= *last {
            stats.add(Count::SenderReordered, 1);
        } else {
            *last = stamp.n;
        }
    }

    /// Asks the newest seq of each conversation, waits until everything up to it has
    /// arrived and every send is acknowledged (or the drain time is up), then closes.
    async fn drain(&mut self, mut ws: Ws) -> End {
        let ctx = self.ctx.clone();
        let deadline = ctx.drain_end();
        // First every send of this worker must be acknowledged (or the time be up), so
        // that the final seqs asked below include every message still queued.
        while ctx.outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            let wait = tokio::time::sleep(Duration::from_millis(50));
            tokio::select! {
                frame = ws.next() => {
                    if let Some(end) = self.on_frame(frame) {
                        if let End::Broken(why) = end {
                            ctx.stats.error(why);
                        }
                        return End::Done;
                    }
                }
                _ = wait => {}
            }
        }
        let mut finals: HashMap<i64, i64> = HashMap::new();
        let conversations: Vec<i64> = self.tracks.keys().copied().collect();
        for &c in &conversations {
            let frame =
                json!({"type": "history", "id": format!("h{c}"), "conversation_id": c, "limit": 1});
            if ws.feed(WsMessage::text(frame.to_string())).await.is_err() {
                return self.broken("connection_error");
            }
        }
        if ws.flush().await.is_err() {
            return self.broken("connection_error");
        }
        loop {
            let done = finals.len() == conversations.len()
                && self.pending.is_empty()
                && finals.iter().all(|(c, &f)| self.tracks.get(c).is_some_and(|t| t.last >= f));
            if done {
                break;
            }
            let frame = match timeout(deadline.saturating_duration_since(Instant::now()), ws.next())
                .await
            {
                Err(_) => break,
                Ok(frame) => frame,
            };
            if let Some(Ok(WsMessage::Text(t))) = &frame
                && let Ok(ServerFrame::History { conversation_id, messages, .. }) =
                    serde_json::from_str::<ServerFrame>(t)
            {
                finals.insert(conversation_id, messages.last().map_or(0, |m| m.seq));
                continue;
            }
            if let Some(end) = self.on_frame(frame) {
                // The connection ended during the drain: count what we have.
                if let End::Broken(why) = end {
                    ctx.stats.error(why);
                }
                self.count_lost(&finals);
                return End::Done;
            }
        }
        self.count_lost(&finals);
        let _ = ws.close(None).await;
        ctx.stats.connected(-1);
        End::Done
    }

    fn count_lost(&mut self, finals: &HashMap<i64, i64>) {
        let lost: u64 =
            self.tracks.iter().map(|(c, t)| t.lost(finals.get(c).copied().unwrap_or(t.last))).sum();
        self.ctx.stats.add(Count::Lost, lost);
        if finals.len() < self.tracks.len() {
            // Without the final seq, messages missing at the tail cannot be told.
            self.ctx.stats.kind("drain_incomplete");
        }
    }

    fn finish(&mut self) {
        let unacked = std::mem::take(&mut self.pending).len() as u64;
        self.ctx.stats.add(Count::Unacked, unacked);
    }
}

/// Whether a failed connection attempt is worth retrying until the traffic ends: the
/// server said "later", or the connection timed out, was refused or reset (a busy
/// server's full accept queue). Not: a rejected token, a limit of this machine.
fn retry_later(kind: &str) -> bool {
    matches!(
        kind,
        "sign_in_refused"
            | "sign_in_timeout"
            | "closed_in_sign_in"
            | "connection_error_in_sign_in"
            | "auth_send_failed"
            | "ECONNREFUSED"
            | "ECONNRESET"
            | "ETIMEDOUT"
            | "handshake"
    )
}

/// When a simulated user first sends and changes presence, and the mean gaps after that
/// (exponential, so the run's senders together offer the scenario's rate).
pub(crate) struct Pacing {
    /// Mean seconds between this user's sends.
    pub interval: f64,
    /// Mean seconds between presence changes.
    pub presence_mean: f64,
    /// A time past the end of the run: "never".
    pub far: Instant,
    pub next_send: Instant,
    pub next_presence: Instant,
}

impl Pacing {
    pub fn start(ctx: &Ctx, plan: &UserPlan, rng: &mut Rng) -> Self {
        let s = &ctx.scenario;
        let interval = f64::from(ctx.senders.max(1)) / s.rate.max(f64::MIN_POSITIVE);
        let far = ctx.drain_end() + Duration::from_secs(3600);
        let traffic_start = ctx.traffic_start();
        let next_send = if plan.sends && s.rate > 0.0 {
            Instant::now().max(traffic_start) + rng.exp(interval)
        } else {
            far
        };
        let presence_mean = s.office.presence_every_secs;
        let next_presence = if s.chats() && presence_mean > 0.0 {
            Instant::now().max(traffic_start) + rng.exp(presence_mean)
        } else {
            far
        };
        Self { interval, presence_mean, far, next_send, next_presence }
    }
}
