//! The `--protocol xmpp` driver: the same scenarios against an XMPP server (ejabberd, for
//! the side-by-side comparison). One simulated user is one c2s stream over plain TCP:
//! stream, SASL PLAIN, resource bind, session, initial presence, MUC joins; then 1:1
//! `chat` messages to its partner and `groupchat` messages to its rooms, presence changes
//! and chat states, as the scenario says.
//!
//! XMPP has no per-conversation `seq`, so verification uses the sender's own numbers: each
//! sender numbers its messages per conversation (1, 2, 3, ...) in the body
//! (`sblt|SENDER|N|SENT_UNIX_MICROS|filler`, as for Switchboard), and each receiver tracks
//! every (conversation, sender) stream with the same gap/duplicate/reorder logic. When
//! traffic stops every sender posts a final marker `sbfin|SENDER|LAST_N|RUN` to each of its
//! conversations; a receiver waits (up to `drain_secs`) for the marker of every sender it
//! expects and counts whatever is missing below it as lost. A marker that never arrives
//! counts as one lost message (`fin_missing` in `kinds`). Messages are not acknowledged
//! (no XEP-0198), so `acked`/`unacked` stay 0. Messages of an earlier run (offline storage
//! delivers them at sign-in) are recognised by their send time or run id and only counted
//! in `kinds.earlier_run`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, sleep_until, timeout};

use crate::client::Pacing;
use crate::client::unix_us;
use crate::plan::UserPlan;
use crate::rng::Rng;
use crate::scenario::{Kind, Scenario};
use crate::stats::Count;
use crate::target::{self, Gateway};
use crate::verify::{self, Seen, Track};
use crate::worker::Ctx;
use crate::xmpp::{self, Element, Frame, Framer};

const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(60);
const FIRST_CONNECT_ATTEMPTS: u32 = 3;
/// Joins refused (e.g. a room still locked by its creator) are retried this often.
const JOIN_ATTEMPTS: u32 = 20;
const RESOURCE: &str = "lt";
const FIN: &str = "sbfin";

/// Where the XMPP users live.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XmppTarget {
    /// The virtual host (`user@DOMAIN`).
    pub domain: String,
    /// The MUC service (`room@MUC`).
    pub muc: String,
}

/// The XMPP side of a user's plan (the rest is in [`UserPlan`]; `token` is the password).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct XmppPlan {
    /// The 1:1 partner's username (the conversation `direct`).
    pub partner: Option<String>,
    /// Conversation id -> room name (the `groups`).
    pub rooms: BTreeMap<i64, String>,
    /// Conversation id -> the other members who send there (whose final markers to wait for).
    pub senders: BTreeMap<i64, Vec<String>>,
}

/// Ids: 1:1 pair k is conversation k+1; group g is conversation GROUP_BASE+g.
const GROUP_BASE: i64 = 1_000_000;

/// Plans the users of an XMPP run: accounts `{prefix}-0..`, 1:1 pairs (0,1), (2,3)... and
/// groups of the scenario's sizes over consecutive users (chat kinds), or one room of
/// everyone (broadcast, user 0 posts).
pub fn plan(s: &Scenario) -> Vec<UserPlan> {
    let p = &s.provision;
    let n = s.users as usize;
    let sends = |i: usize| match s.kind {
        Kind::Broadcast => i == 0,
        Kind::ConnectStorm => false,
        _ => s.rate > 0.0,
    };
    let mut plans: Vec<UserPlan> = (0..n)
        .map(|i| UserPlan {
            index: i as u32,
            username: format!("{}-{i}", p.prefix),
            token: p.password.clone(),
            conversations: BTreeMap::new(),
            direct: None,
            groups: Vec::new(),
            watch: Vec::new(),
            sends: sends(i),
            xmpp: Some(XmppPlan::default()),
        })
        .collect();
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    if s.kind == Kind::Broadcast {
        groups.push((format!("{}-all-{}", p.prefix, n), (0..n).collect()));
    } else if s.chats() {
        for k in 0..n / 2 {
            let (a, b) = (2 * k, 2 * k + 1);
            let id = k as i64 + 1;
            for (me, other) in [(a, b), (b, a)] {
                let name = plans[other].username.clone();
                let other_sends = plans[other].sends;
                let plan = &mut plans[me];
                plan.conversations.insert(id, 0);
                plan.direct = Some(id);
                let x = plan.xmpp.get_or_insert_with(XmppPlan::default);
                x.partner = Some(name.clone());
                x.senders.insert(id, if other_sends { vec![name] } else { Vec::new() });
            }
        }
        let mut covered = 0usize;
        while covered < n && !p.group_sizes.is_empty() {
            let size = p.group_sizes[groups.len() % p.group_sizes.len()] as usize;
            let members: Vec<usize> = (covered..(covered + size).min(n)).collect();
            covered += size;
            if members.len() >= 2 {
                groups.push((format!("{}-g{}-of{}", p.prefix, groups.len(), n), members));
            }
        }
    }
    for (g, (room, members)) in groups.into_iter().enumerate() {
        let id = GROUP_BASE + g as i64;
        let senders: Vec<usize> = members.iter().copied().filter(|&m| plans[m].sends).collect();
        for &m in &members {
            let others: Vec<String> =
                senders.iter().filter(|&&o| o != m).map(|&o| plans[o].username.clone()).collect();
            let plan = &mut plans[m];
            plan.conversations.insert(id, 0);
            plan.groups.push(id);
            let x = plan.xmpp.get_or_insert_with(XmppPlan::default);
            x.rooms.insert(id, room.clone());
            x.senders.insert(id, others);
        }
    }
    plans
}

/// Registers the plan's accounts through ejabberd's mod_http_api (`POST /api/register`),
/// 32 at a time; accounts that exist already are fine (the passwords must match).
pub async fn register(api: &str, domain: &str, plans: &[UserPlan]) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let http = crate::http::Http::new(api, None);
    let results: Vec<anyhow::Result<bool>> = futures_util::stream::iter(plans.iter())
        .map(|p| {
            let body = serde_json::json!({"user": p.username, "host": domain, "password": p.token});
            let http = &http;
            async move {
                let (status, answer) = http.post_raw("/api/register", &body).await?;
                if status.is_success() {
                    return Ok(true);
                }
                let text = String::from_utf8_lossy(&answer);
                if text.contains("already registered") || text.contains("10090") {
                    return Ok(false);
                }
                anyhow::bail!("registering {}: HTTP {status}: {text}", p.username)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut created = 0;
    for r in results {
        if r.context("XMPP provisioning through mod_http_api failed")? {
            created += 1;
        }
    }
    eprintln!(
        "registered {} XMPP users ({created} new) through http://{api}/api in {:.1} s",
        plans.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

enum End {
    Done,
    Broken(&'static str),
}

struct Conn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    framer: Framer,
}

impl Conn {
    async fn open(gateway: &Gateway, source: Option<IpAddr>) -> Result<Self, target::ConnectError> {
        let stream = target::tcp(gateway, source).await?;
        let (read, write) = stream.into_split();
        Ok(Self { read, write, framer: Framer::default() })
    }

    async fn send(&mut self, data: &str) -> Result<(), &'static str> {
        self.write.write_all(data.as_bytes()).await.map_err(|_| "connection_error")
    }

    /// The next frame; cancel-safe (a read cut short keeps its bytes in the framer).
    async fn next(&mut self) -> Result<Frame, &'static str> {
        loop {
            match self.framer.next_frame() {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(_) => return Err("bad_xml"),
            }
            match self.read.read_buf(self.framer.buffer()).await {
                Ok(0) => return Err("closed_by_server"),
                Ok(_) => {}
                Err(_) => return Err("connection_error"),
            }
        }
    }

    /// The next stanza before `deadline` (stream headers skipped).
    async fn stanza(&mut self, deadline: Instant) -> Result<Element, &'static str> {
        loop {
            match timeout(deadline.saturating_duration_since(Instant::now()), self.next()).await {
                Err(_) => return Err("sign_in_timeout"),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Frame::Stanza(e))) => return Ok(e),
                Ok(Ok(Frame::StreamStart(_))) => {}
                Ok(Ok(Frame::StreamEnd)) => return Err("closed_by_server"),
            }
        }
    }
}

pub struct XmppUser {
    ctx: Arc<Ctx>,
    plan: UserPlan,
    x: XmppPlan,
    target: XmppTarget,
    rng: Rng,
    /// (conversation, sender) -> the sender's numbers seen.
    tracks: HashMap<(i64, String), Track>,
    /// (conversation, sender) -> the sender's final number, from its marker.
    fins: HashMap<(i64, String), u64>,
    /// Conversation -> this user's last number sent there.
    sent: HashMap<i64, u64>,
    /// Room name -> conversation id.
    room_ids: HashMap<String, i64>,
}

impl XmppUser {
    pub fn new(ctx: Arc<Ctx>, mut plan: UserPlan, target: XmppTarget) -> Self {
        let x = plan.xmpp.take().unwrap_or_default();
        let rng = Rng::new(ctx.run_id ^ (u64::from(plan.index) << 20));
        let room_ids = x.rooms.iter().map(|(&id, r)| (r.clone(), id)).collect();
        Self {
            ctx,
            plan,
            x,
            target,
            rng,
            tracks: HashMap::new(),
            fins: HashMap::new(),
            sent: HashMap::new(),
            room_ids,
        }
    }

    fn room_jid(&self, id: i64) -> Option<String> {
        self.x.rooms.get(&id).map(|r| format!("{r}@{}", self.target.muc))
    }

    pub async fn run(mut self) {
        let ctx = self.ctx.clone();
        let ramp = ctx.scenario.ramp_secs * f64::from(self.plan.index) / f64::from(ctx.total_users);
        sleep_until(ctx.start + Duration::from_secs_f64(ramp)).await;
        let mut attempts = 0u32;
        let mut first = true;
        loop {
            if Instant::now() >= ctx.drain_end() {
                if first {
                    ctx.stats.add(Count::ConnectFailures, 1);
                }
                break;
            }
            let conn = match self.connect().await {
                Ok(c) => c,
                Err(kind) => {
                    attempts += 1;
                    ctx.stats.error(kind);
                    if first && attempts >= FIRST_CONNECT_ATTEMPTS {
                        ctx.stats.add(Count::ConnectFailures, 1);
                        return;
                    }
                    let wait = self.rng.uniform(0.0, 250.0 * 2f64.powi(attempts.min(5) as i32));
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                    continue;
                }
            };
            first = false;
            attempts = 0;
            match self.session(conn).await {
                End::Done => break,
                End::Broken(why) => {
                    ctx.stats.error(why);
                    let wait = self.rng.uniform(0.0, 500.0);
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
            }
        }
    }

    /// Stream, SASL PLAIN, restart, bind + session, initial presence, MUC joins.
    async fn connect(&mut self) -> Result<Conn, &'static str> {
        let ctx = self.ctx.clone();
        let n = self.plan.index as usize;
        let gateway = &ctx.gateways[n % ctx.gateways.len()];
        let source = (!ctx.sources.is_empty()).then(|| ctx.sources[n % ctx.sources.len()]);
        let began = Instant::now();
        let deadline = began + SIGN_IN_TIMEOUT;
        let mut c = Conn::open(gateway, source).await.map_err(|e| {
            if e.is_limit() {
                ctx.limit_hit(e.kind, &e.detail);
            }
            e.kind
        })?;
        let domain = &self.target.domain;
        // The first stream and the SASL request in one write (the server offers PLAIN
        // before TLS when TLS is not required; a refusal comes back as <failure/>).
        let mut hello = xmpp::stream_header(domain);
        hello.push_str(&xmpp::sasl_plain(&self.plan.username, &self.plan.token));
        c.send(&hello).await?;
        loop {
            let e = c.stanza(deadline).await?;
            match e.name.as_str() {
                "stream:features" => {}
                "success" => break,
                "failure" => return Err("sasl_refused"),
                "stream:error" => return Err("stream_error_in_sign_in"),
                _ => {}
            }
        }
        let mut restart = xmpp::stream_header(domain);
        restart.push_str(&xmpp::bind_and_session(RESOURCE));
        restart.push_str(&xmpp::presence(None));
        c.send(&restart).await?;
        let (mut bound, mut session) = (false, false);
        while !(bound && session) {
            let e = c.stanza(deadline).await?;
            match (e.name.as_str(), e.attr("id"), e.attr("type")) {
                ("iq", Some("bind"), Some("result")) => bound = true,
                ("iq", Some("sess"), Some("result")) => session = true,
                ("iq", _, Some("error")) => return Err("bind_refused"),
                ("stream:error", ..) => return Err("stream_error_in_sign_in"),
                ("message", ..) => self.on_message(&e),
                _ => {}
            }
        }
        ctx.stats.connect_us(began.elapsed().as_micros() as u64);
        self.join_rooms(&mut c, deadline).await?;
        ctx.stats.add(Count::Connects, 1);
        ctx.stats.connected(1);
        Ok(c)
    }

    /// Joins every room (all requests in one write), accepting the default configuration
    /// of rooms this user creates, and retrying refused joins.
    async fn join_rooms(&mut self, c: &mut Conn, deadline: Instant) -> Result<(), &'static str> {
        let nick = self.plan.username.clone();
        let mut waiting: HashMap<String, u32> = HashMap::new();
        let mut out = String::new();
        for room in self.x.rooms.values() {
            let jid = format!("{room}@{}", self.target.muc);
            out.push_str(&xmpp::muc_join(&jid, &nick));
            waiting.insert(jid, 0);
        }
        if out.is_empty() {
            return Ok(());
        }
        c.send(&out).await?;
        while !waiting.is_empty() {
            let e = c.stanza(deadline).await?;
            match e.name.as_str() {
                "presence" => {
                    let from = e.attr("from").unwrap_or_default();
                    let (room, occupant) = xmpp::split_jid(from);
                    if occupant != nick || !waiting.contains_key(room) {
                        continue;
                    }
                    let room = room.to_owned();
                    if e.attr("type") == Some("error") {
                        let tries = waiting.get_mut(&room).map_or(JOIN_ATTEMPTS, |t| {
                            *t += 1;
                            *t
                        });
                        if tries >= JOIN_ATTEMPTS {
                            return Err("muc_join_refused");
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        c.send(&xmpp::muc_join(&room, &nick)).await?;
                        continue;
                    }
                    let codes = status_codes(&e);
                    if codes.contains(&"201") {
                        c.send(&xmpp::muc_instant(&room)).await?;
                    }
                    waiting.remove(&room);
                }
                "message" => self.on_message(&e),
                "stream:error" => return Err("stream_error_in_sign_in"),
                _ => {}
            }
        }
        Ok(())
    }

    async fn session(&mut self, mut c: Conn) -> End {
        let ctx = self.ctx.clone();
        let Pacing { interval, presence_mean, mut next_send, mut next_presence, .. } =
            Pacing::start(&ctx, &self.plan, &mut self.rng);
        let traffic_end = ctx.traffic_end();
        loop {
            tokio::select! {
                frame = c.next() => {
                    if let Some(end) = self.on_frame(frame) {
                        return end;
                    }
                }
                _ = sleep_until(next_send), if next_send < traffic_end => {
                    if let Err(why) = self.send_one(&mut c).await {
                        return self.broken(why);
                    }
                    let now = Instant::now();
                    next_send = (next_send + self.rng.exp(interval)).max(now - Duration::from_secs(1));
                }
                _ = sleep_until(next_presence), if next_presence < traffic_end => {
                    let show = [None, Some("dnd"), Some("away"), None][self.rng.below(4)];
                    if let Err(why) = c.send(&xmpp::presence(show)).await {
                        return self.broken(why);
                    }
                    next_presence += self.rng.exp(presence_mean);
                }
                // A second after the senders stop, as the Switchboard driver does.
                _ = sleep_until(traffic_end + Duration::from_secs(1)) => break,
            }
        }
        self.drain(c).await
    }

    fn broken(&self, why: &'static str) -> End {
        self.ctx.stats.connected(-1);
        End::Broken(why)
    }

    /// Where a conversation's messages go, and their type.
    fn address(&self, conversation: i64) -> Option<(String, &'static str)> {
        if Some(conversation) == self.plan.direct {
            let partner = self.x.partner.as_ref()?;
            return Some((format!("{partner}@{}", self.target.domain), "chat"));
        }
        Some((self.room_jid(conversation)?, "groupchat"))
    }

    async fn send_one(&mut self, c: &mut Conn) -> Result<(), &'static str> {
        let s = &self.ctx.scenario;
        let Some(conversation) = self.plan.next_conversation(&mut self.rng, s.office.group_share)
        else {
            return Ok(());
        };
        let Some((to, kind)) = self.address(conversation) else { return Ok(()) };
        let mut out = String::new();
        if s.chats() && self.rng.uniform(0.0, 1.0) < s.office.typing_share {
            xmpp::composing(&mut out, &to, kind);
        }
        let n = self.sent.entry(conversation).or_default();
        *n += 1;
        let n = *n;
        let body = verify::body(&self.plan.username, n, unix_us(), s.body_bytes);
        let id = format!("{}-{:x}-{conversation}-{n}", self.plan.username, self.ctx.run_id);
        xmpp::message(&mut out, &to, kind, &id, &body);
        self.ctx.stats.add(Count::Sent, 1);
        c.send(&out).await
    }

    fn on_frame(&mut self, frame: Result<Frame, &'static str>) -> Option<End> {
        match frame {
            Err(why) => Some(self.broken(why)),
            Ok(Frame::StreamEnd) => Some(self.broken("closed_by_server")),
            Ok(Frame::StreamStart(_)) => None,
            Ok(Frame::Stanza(e)) => {
                match e.name.as_str() {
                    "message" => self.on_message(&e),
                    "stream:error" => {
                        let why = e.children.first().map_or("stream_error", |c| c.name.as_str());
                        self.ctx.stats.kind(&format!("stream_error:{why}"));
                        return Some(self.broken("stream_error"));
                    }
                    _ => {}
                }
                None
            }
        }
    }

    fn on_message(&mut self, e: &Element) {
        let stats = &self.ctx.stats;
        if e.attr("type") == Some("error") {
            let condition = e.child("error").and_then(|x| x.children.first());
            let kind = condition.map_or("message_error", |c| c.name.as_str());
            stats.error(&format!("xmpp_error:{kind}"));
            return;
        }
        let Some(body) = e.child("body").map(|b| b.text.as_str()) else { return };
        let from = e.attr("from").unwrap_or_default();
        let (bare, _) = xmpp::split_jid(from);
        let conversation = match bare.split_once('@') {
            Some((room, host)) if host == self.target.muc => match self.room_ids.get(room) {
                Some(&id) => id,
                None => return,
            },
            _ => match self.plan.direct {
                Some(d) => d,
                None => return,
            },
        };
        if let Some(rest) = body.strip_prefix(FIN).and_then(|r| r.strip_prefix('|')) {
            let mut parts = rest.split('|');
            if let (Some(sender), Some(n), Some(run)) = (parts.next(), parts.next(), parts.next())
                && sender != self.plan.username
                && let Ok(n) = n.parse::<u64>()
            {
                if run == self.ctx.run_id.to_string() {
                    self.fins.insert((conversation, sender.to_owned()), n);
                } else {
                    stats.kind("earlier_run");
                }
            }
            return;
        }
        let Some(stamp) = verify::parse(body) else { return };
        if stamp.sender == self.plan.username {
            return; // a room reflects our own messages
        }
        // Offline storage hands over, at sign-in, what an earlier run left undelivered.
        if stamp.sent_us < self.ctx.run_id * 1000 {
            stats.kind("earlier_run");
            return;
        }
        let track = self
            .tracks
            .entry((conversation, stamp.sender.to_owned()))
            .or_insert_with(|| Track::new(0));
        match track.see(stamp.n as i64) {
            Seen::InOrder => {}
            Seen::AfterGap(_) => stats.kind("gap"),
            Seen::OutOfOrder => {
                stats.add(Count::OutOfOrder, 1);
                stats.add(Count::SenderReordered, 1);
            }
            Seen::Duplicate => {
                stats.add(Count::Duplicated, 1);
                return;
            }
        }
        stats.add(Count::Delivered, 1);
        stats.latency_us(unix_us().saturating_sub(stamp.sent_us));
    }

    /// Posts this user's final markers, waits for everyone else's (or the drain's end),
    /// counts what never arrived, and closes the stream.
    async fn drain(&mut self, mut c: Conn) -> End {
        let ctx = self.ctx.clone();
        let deadline = ctx.drain_end();
        if self.plan.sends {
            let mut out = String::new();
            let conversations: Vec<i64> = self.plan.conversations.keys().copied().collect();
            for conversation in conversations {
                if let Some((to, kind)) = self.address(conversation) {
                    let n = self.sent.get(&conversation).copied().unwrap_or(0);
                    let body = format!("{FIN}|{}|{n}|{}", self.plan.username, ctx.run_id);
                    xmpp::message(&mut out, &to, kind, &format!("fin-{conversation}"), &body);
                }
            }
            if !out.is_empty() && c.send(&out).await.is_err() {
                ctx.stats.error("connection_error");
                self.count_lost();
                ctx.stats.connected(-1);
                return End::Done;
            }
        }
        let expected: usize = self.x.senders.values().map(Vec::len).sum();
        while self.fins.len() < expected {
            match timeout(deadline.saturating_duration_since(Instant::now()), c.next()).await {
                Err(_) => break,
                Ok(frame) => {
                    if let Some(End::Broken(why)) = self.on_frame(frame) {
                        ctx.stats.error(why);
                        self.count_lost();
                        return End::Done;
                    }
                }
            }
        }
        self.count_lost();
        let _ = c.send(xmpp::STREAM_END).await;
        let _ = c.write.shutdown().await;
        ctx.stats.connected(-1);
        End::Done
    }

    fn count_lost(&mut self) {
        let mut lost = 0u64;
        let mut missing_fins = 0u64;
        for (&conversation, senders) in &self.x.senders {
            for sender in senders {
                let key = (conversation, sender.clone());
                let track = self.tracks.get(&key).cloned().unwrap_or_default();
                match self.fins.get(&key) {
                    Some(&fin) => lost += track.lost(fin as i64),
                    None => {
                        // The tail after the last message seen cannot be told: count the
                        // gaps seen and the marker itself.
                        lost += track.lost(track.last) + 1;
                        missing_fins += 1;
                    }
                }
            }
        }
        self.ctx.stats.add(Count::Lost, lost);
        if missing_fins > 0 {
            self.ctx.stats.kind("fin_missing");
        }
    }
}

fn status_codes(e: &Element) -> Vec<&str> {
    e.children
        .iter()
        .filter(|x| x.name == "x")
        .flat_map(|x| x.children.iter())
        .filter(|c| c.name == "status")
        .filter_map(|c| c.attr("code"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scenario(text: &str) -> Scenario {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn office_pairs_and_groups_and_who_waits_for_whom() {
        let s = scenario(
            "kind = \"office\"\nusers = 7\nduration_secs = 1\nrate = 5\n\
             [provision]\nprefix = \"x\"\npassword = \"pw\"\ngroup_sizes = [3, 10]\n",
        );
        let plans = plan(&s);
        assert_eq!(plans.len(), 7);
        let p0 = &plans[0];
        assert_eq!((p0.username.as_str(), p0.token.as_str()), ("x-0", "pw"));
        let x0 = p0.xmpp.as_ref().unwrap();
        assert_eq!(x0.partner.as_deref(), Some("x-1"));
        assert_eq!(p0.direct, Some(1));
        assert_eq!(x0.rooms.values().collect::<Vec<_>>(), ["x-g0-of7"]);
        assert_eq!(x0.senders[&GROUP_BASE], ["x-1", "x-2"]);
        // The odd one out has no partner; the second group is users 3..7.
        let x6 = plans[6].xmpp.as_ref().unwrap();
        assert_eq!(x6.partner, None);
        assert_eq!(x6.rooms.values().collect::<Vec<_>>(), ["x-g1-of7"]);
        assert_eq!(x6.senders[&(GROUP_BASE + 1)], ["x-3", "x-4", "x-5"]);
    }

    #[test]
    fn broadcast_is_one_room_with_one_sender() {
        let s = scenario("kind = \"broadcast\"\nusers = 4\nduration_secs = 1\nrate = 1\n");
        let plans = plan(&s);
        assert_eq!(plans.iter().filter(|p| p.sends).count(), 1);
        assert!(plans.iter().all(|p| p.groups == [GROUP_BASE] && p.direct.is_none()));
        assert!(plans[0].xmpp.as_ref().unwrap().senders[&GROUP_BASE].is_empty());
        assert_eq!(plans[3].xmpp.as_ref().unwrap().senders[&GROUP_BASE], ["lt-0"]);
    }

    #[test]
    fn room_status_codes_are_read() {
        let mut f = Framer::default();
        f.push(
            b"<stream:stream><presence from='r@c/lt-0'><x xmlns='http://jabber.org/protocol/muc#user'>\
              <item role='moderator'/><status code='201'/><status code='110'/></x></presence>",
        );
        f.next_frame().unwrap();
        let Some(Frame::Stanza(p)) = f.next_frame().unwrap() else { panic!() };
        assert_eq!(status_codes(&p), ["201", "110"]);
    }
}
