//! One WebSocket connection: sign-in, then a reader task (this one) that runs the
//! client's requests and a writer task that owns the socket's sending half.
//!
//! Ordering lives in the writer. It remembers, per conversation, the last seq this
//! session was sent. A message at or below it is a duplicate and is dropped; one above
//! the next expected seq means live delivery skipped something or was overtaken: the
//! writer holds it briefly for the missing seqs to arrive live (`reorder.rs`), then reads
//! what is still missing from storage before sending it. So every session sees every
//! message of its conversations once, in seq order, whatever the live path does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use switchboard_protocol::{ClientFrame, ErrorCode, MessageKind, ServerFrame};
use switchboard_storage::{StoreError, User};
use tokio::task::JoinHandle;

use crate::admission::Admitted;
use crate::auth::TokenHash;
use crate::hub::Outbound;
use crate::metrics::{METRICS, delivered_live, frame_type};
use crate::ops::{Own, Target};
use crate::queue::{Queue, Receiver};
use crate::reorder::{Held, Reorder};
use crate::{ApiError, Gateway, auth};

/// Messages read from storage per query while filling a gap or syncing.
const BACKFILL_PAGE: u32 = 500;
/// Most stored broadcasts sent on sign-in (the newest ones).
const PENDING_BROADCASTS: u32 = 100;
/// How long the writer may take to flush its last frames when the session ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

// WebSocket close codes (RFC 6455 section 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_RESTART: u16 = 1012;
const CLOSE_TRY_LATER: u16 = 1013;

type Sink = SplitSink<WebSocket, WsMessage>;

fn text(frame: &ServerFrame) -> WsMessage {
    WsMessage::Text(frame.to_json().into())
}

fn close(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
}

/// Serves one upgraded connection from client address `ip` until it closes or the
/// gateway drains.
pub async fn serve(socket: WebSocket, gateway: Gateway, token: Option<String>, ip: Option<IpAddr>) {
    METRICS.connections.inc();
    let (sink, mut stream) = socket.split();
    // Boxed (here and below): an idle session's task holds the state of the await it is
    // parked on, sized for the largest await in the function; the rare, large ones
    // (sign-in, a request, a backfill) live on the heap only while they run.
    let signed_in = match Box::pin(sign_in(&gateway, &mut stream, token, ip)).await {
        Ok(signed_in) => signed_in,
        Err(e) => {
            METRICS.sign_in_failures.inc();
            let e = retry_later(&gateway, e);
            Box::pin(refuse(sink, e, "not signed in")).await;
            return;
        }
    };
    run(gateway, signed_in, sink, stream, ip).await;
}

/// `e`, naming a `retry_after_ms` when it is `unavailable` (storage failed, or too many
/// sign-ins): the gateway's estimate of when a new sign-in would get through.
fn retry_later(gateway: &Gateway, e: ApiError) -> ApiError {
    if e.code() == ErrorCode::Unavailable {
        let after = gateway.inner.sign_ins.retry_after_ms();
        return e.with_retry_after(after);
    }
    e
}

/// Sends the error that ends a session before it started, and closes.
async fn refuse(mut sink: Sink, e: ApiError, reason: &'static str) {
    let code = match e.code() {
        ErrorCode::Unavailable | ErrorCode::RateLimited => CLOSE_TRY_LATER,
        ErrorCode::FrameTooLarge => CLOSE_TOO_BIG,
        ErrorCode::InvalidUtf8 => CLOSE_INVALID_DATA,
        _ => CLOSE_POLICY,
    };
    let _ = sink.send(text(&e.frame(None))).await;
    let _ = sink.send(close(code, reason)).await;
}

type Since = BTreeMap<i64, i64>;

/// Who a session is: the user, the hash of the token they signed in with, and the `since`
/// of their `auth` frame (a resume); and its turn to use storage for signing in, held
/// until the session has started.
struct SignedIn {
    user: Arc<User>,
    token: TokenHash,
    since: Option<Since>,
    /// False: the session's own sends come back as their `ack` only (`auth.echo`).
    echo: bool,
    admitted: Admitted,
}

/// Reads the `auth` frame (unless the upgrade carried the token), waits for a turn (see
/// `admission.rs`) and checks the token. A bad token counts as a failed sign-in of `ip`;
/// an address with too many is refused (`rate_limited`) before any check.
async fn sign_in(
    gateway: &Gateway,
    stream: &mut SplitStream<WebSocket>,
    token: Option<String>,
    ip: Option<IpAddr>,
) -> Result<SignedIn, ApiError> {
    let guard = &gateway.inner.login;
    guard.check_ip(ip)?;
    let (token, since, echo) = match token {
        Some(token) => (token, None, true),
        None => read_auth(gateway, stream).await?,
    };
    let admitted = gateway.inner.sign_ins.admit().await?;
    match auth::authenticate(gateway.store().as_ref(), &token).await {
        Ok(user) => {
            let token = auth::token_hash(&token);
            Ok(SignedIn { user: Arc::new(user), token, since, echo, admitted })
        }
        Err(e) => {
            if e.code() == ErrorCode::Unauthenticated {
                guard.ip_failed(ip);
            }
            Err(e)
        }
    }
}

/// Waits for the `auth` frame; returns its token, `since` and `echo`.
async fn read_auth(
    gateway: &Gateway,
    stream: &mut SplitStream<WebSocket>,
) -> Result<(String, Option<Since>, bool), ApiError> {
    let unauthenticated = |why: &str| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            format!("{why}; send {{\"type\":\"auth\",\"token\":...}} first"),
        )
    };
    let deadline = tokio::time::Instant::now() + gateway.config().auth_timeout;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| unauthenticated("no auth frame in time"))?;
        return match next {
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            Some(Ok(WsMessage::Text(t))) => match ClientFrame::decode(&t) {
                Ok(ClientFrame::Auth { token, since, echo, .. }) => {
                    Ok((token, since, echo.unwrap_or(true)))
                }
                Ok(_) => Err(unauthenticated("not signed in")),
                Err((code, message, _)) => Err(ApiError::new(code, message)),
            },
            Some(Err(e)) => match classify(e) {
                Some((code, message, _)) => Err(ApiError::new(code, message)),
                None => Err(unauthenticated("connection failed")),
            },
            _ => Err(unauthenticated("not signed in")),
        };
    }
}

#[tracing::instrument(name = "session", skip_all, fields(user = %signed_in.user.username))]
async fn run(
    gateway: Gateway,
    signed_in: SignedIn,
    sink: Sink,
    mut stream: SplitStream<WebSocket>,
    ip: Option<IpAddr>,
) {
    // This function's state is what every idle session keeps: the loop below. Starting
    // and ending are boxed, so their larger state lives on the heap only while they run.
    let user = signed_in.user.clone();
    let echo = signed_in.echo;
    let (tx, session, mut writer) = match Box::pin(start(&gateway, signed_in, sink)).await {
        Ok(started) => started,
        Err((sink, e)) => {
            Box::pin(refuse(sink, e, "too many connections")).await;
            return;
        }
    };
    let mut draining = gateway.inner.draining.subscribe();
    let end = loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = draining.wait_for(|d| *d) => break Some(shutting_down(&gateway)),
            _ = &mut writer => break None,
        };
        match next {
            Some(Ok(WsMessage::Text(t))) => {
                METRICS.frames_in.inc(frame_type(&t));
                let reply = match ClientFrame::decode(&t) {
                    Ok(frame) => {
                        Box::pin(handle(&gateway, &user, session, echo, frame, &tx, ip)).await
                    }
                    Err((code, message, id)) => Some(ServerFrame::error(id, code, message)),
                };
                if let Some(reply) = reply
                    && Box::pin(tx.send(Outbound::frame(&reply))).await.is_err()
                {
                    break None;
                }
            }
            Some(Ok(WsMessage::Binary(_))) => {
                let frame = ServerFrame::error(
                    None,
                    ErrorCode::UnsupportedFrame,
                    "binary frames are not supported; send JSON text frames",
                );
                if Box::pin(tx.send(Outbound::frame(&frame))).await.is_err() {
                    break None;
                }
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            Some(Ok(WsMessage::Close(_))) | None => {
                break Some(Outbound::Close { frame: None, code: CLOSE_NORMAL });
            }
            Some(Err(e)) => break read_error(e),
        }
    };
    Box::pin(finish(&gateway, &user, tx, session, writer, end)).await;
}

/// Queues the session's first frames, registers it with the hub, and starts its writer.
/// Returns the queue, the session id and the writer; or, when the user already holds
/// [`crate::Config::max_connections_per_user`] sessions here, the sink and the error.
async fn start(
    gateway: &Gateway,
    signed_in: SignedIn,
    sink: Sink,
) -> Result<(Queue, u64, JoinHandle<()>), (Sink, ApiError)> {
    let SignedIn { user, token, since, admitted, .. } = signed_in;
    let user = &user;
    let tx = gateway.inner.hub.new_queue();
    let rx = tx.receiver();
    let hub = &gateway.inner.hub;
    let session_id = hub.next_session_id();
    // Queue the welcome (and the resume's backfill) before registering, so they come
    // before any live push.
    let welcome = ServerFrame::Welcome { user: user.info(), session_id };
    let _ = tx.send(Outbound::frame(&welcome)).await;
    if let Some(since) = since {
        let _ = tx.send(Outbound::Sync { id: None, since }).await;
    }
    // Broadcasts stored while the user was away, before any live one.
    let _ = tx.send(Outbound::PendingBroadcasts).await;
    let max = gateway.config().max_connections_per_user;
    if !hub.register(session_id, user.clone(), token, tx.clone(), max) {
        let e = ApiError::new(
            ErrorCode::TooManyConnections,
            format!("at most {max} connections per user; close another session first"),
        );
        return Err((sink, e));
    }
    gateway.connected(user).await;
    tracing::debug!(session = session_id, "signed in");

    // Read the starting seqs after registering: anything committed later is pushed to us.
    let covered: HashMap<i64, i64> = match gateway.store().conversation_seqs(user.id).await {
        Ok(seqs) => seqs.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot load conversations");
            let e = retry_later(gateway, ApiError::from(e));
            let frame = Some(e.frame(None).to_json().into());
            let _ = tx.send(Outbound::Close { frame, code: CLOSE_TRY_LATER }).await;
            HashMap::new()
        }
    };
    // Started: the next sign-in may use storage.
    drop(admitted);
    let last = covered.clone();
    let writer = Writer {
        gateway: gateway.clone(),
        user: user.clone(),
        sink,
        covered,
        last,
        reorder: Reorder::default(),
        broadcasts_sent: HashSet::new(),
        unflushed_broadcast: None,
    };
    let running = hub.writer_started();
    let writer = tokio::spawn(async move {
        let _running = running;
        writer.run(rx).await;
    });
    Ok((tx, session_id, writer))
}

/// Ends the session: queues `end` (a close) for the writer, leaves the hub, and waits a
/// moment for the writer to flush.
async fn finish(
    gateway: &Gateway,
    user: &User,
    tx: Queue,
    session: u64,
    mut writer: JoinHandle<()>,
    end: Option<Outbound>,
) {
    if let Some(end) = end {
        let _ = tx.send(end).await;
    }
    // Leave the hub, then close the queue: the writer sends what is queued and stops.
    gateway.inner.hub.unregister(session);
    tx.close();
    gateway.disconnected(user).await;
    if !writer.is_finished() && tokio::time::timeout(CLOSE_TIMEOUT, &mut writer).await.is_err() {
        writer.abort();
    }
    tracing::debug!(session, "closed");
}

/// The farewell of a draining gateway: reconnect (to another gateway) after a random
/// delay up to [`crate::Config::reconnect_spread`], then sync.
fn shutting_down(gateway: &Gateway) -> Outbound {
    METRICS.drained_sessions.inc();
    let spread = gateway.config().reconnect_spread.as_millis() as u64;
    let frame = ServerFrame::Error {
        id: None,
        code: ErrorCode::ShuttingDown,
        message: "this gateway is restarting; reconnect after retry_after_ms and sync".into(),
        retry_after_ms: Some(auth::random_below(spread + 1)),
    };
    Outbound::Close { frame: Some(frame.to_json().into()), code: CLOSE_RESTART }
}

/// The end of a session whose token was revoked or whose account was disabled: `frame`
/// (an `unauthenticated` error), then a close (1008). Sign in again (a disabled account
/// cannot).
pub(crate) fn signed_out(frame: Utf8Bytes) -> Outbound {
    Outbound::Close { frame: Some(frame), code: CLOSE_POLICY }
}

fn closing(code: ErrorCode, message: &str, close_code: u16) -> Outbound {
    let frame = ServerFrame::error(None, code, message).to_json().into();
    Outbound::Close { frame: Some(frame), code: close_code }
}

/// A read failure: the frame was over the limit or not UTF-8 (tell the client, then
/// close: the stream cannot be resynchronised), or the connection broke.
fn read_error(e: axum::Error) -> Option<Outbound> {
    classify(e).map(|(code, message, close_code)| closing(code, &message, close_code))
}

/// The protocol error and close code for a read failure the client should hear about;
/// None when the connection itself broke.
fn classify(e: axum::Error) -> Option<(ErrorCode, String, u16)> {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(detail)) => Some((
            ErrorCode::FrameTooLarge,
            format!("frame too large ({detail}); closing"),
            CLOSE_TOO_BIG,
        )),
        Some(tungstenite::Error::Utf8(_)) => Some((
            ErrorCode::InvalidUtf8,
            "a text frame was not valid UTF-8; closing".into(),
            CLOSE_INVALID_DATA,
        )),
        _ => {
            tracing::debug!(error = %inner, "connection error");
            None
        }
    }
}

/// The `ack` answering a send, edit or delete.
pub(crate) fn ack(id: Option<String>, a: &switchboard_storage::Appended) -> ServerFrame {
    ServerFrame::Ack {
        id,
        client_msg_id: a.message.client_msg_id.clone().unwrap_or_default(),
        conversation_id: a.message.conversation_id,
        seq: a.message.seq,
        ts: a.message.ts,
        duplicate: a.duplicate,
    }
}

/// Runs one request; returns the frame answering it, if any.
async fn handle(
    gateway: &Gateway,
    user: &User,
    session: u64,
    echo: bool,
    frame: ClientFrame,
    tx: &Queue,
    ip: Option<IpAddr>,
) -> Option<ServerFrame> {
    let id = frame.id().map(str::to_owned);
    let result: Result<Option<ServerFrame>, ApiError> = async {
        Ok(match frame {
            ClientFrame::Auth { .. } => return Err(ApiError::invalid("already signed in")),
            ClientFrame::Sync { id, since } => {
                let _ = tx.send(Outbound::Sync { id, since }).await;
                None
            }
            ClientFrame::Send { id, conversation_id, to, client_msg_id, body, thread_seq } => {
                gateway.check_ip_rate(ip)?;
                let target = Target::from_fields(conversation_id, to)?;
                let text = MessageKind::Text;
                // Without the echo, the ack takes the message's place in the fan-out.
                let own = (!echo).then(|| Own { session, id: id.clone() });
                let (a, acked) = gateway
                    .send_own(user, target, client_msg_id, body, text, thread_seq, own.as_ref())
                    .await?;
                (!acked).then(|| ack(id, &a))
            }
            ClientFrame::OpenDirect { id, user: other } => {
                let conversation = gateway.open_direct(user, &other).await?;
                Some(ServerFrame::Conversation { id, conversation })
            }
            ClientFrame::CreateGroup { id, name, members } => {
                let conversation = gateway.create_group(user, &name, &members).await?;
                Some(ServerFrame::Conversation { id, conversation })
            }
            ClientFrame::AddMembers { id, conversation_id, users } => {
                let conversation = gateway.add_members(user, conversation_id, &users).await?;
                Some(ServerFrame::Conversation { id, conversation })
            }
            ClientFrame::RemoveMember { id, conversation_id, user: other } => {
                let conversation = gateway.remove_member(user, conversation_id, &other).await?;
                Some(ServerFrame::Conversation { id, conversation })
            }
            ClientFrame::ListConversations { id } => {
                let conversations = gateway.store().conversations_of(user.id).await?;
                Some(ServerFrame::Conversations { id, conversations })
            }
            ClientFrame::History { id, conversation_id, after_seq, before_seq, limit } => {
                let page =
                    gateway.history(user, conversation_id, after_seq, before_seq, limit).await?;
                Some(ServerFrame::History {
                    id,
                    conversation_id,
                    messages: page.messages,
                    has_more: page.has_more,
                })
            }
            ClientFrame::Thread { id, conversation_id, seq, after_seq, limit } => {
                let (root, page) =
                    gateway.thread(user, conversation_id, seq, after_seq, limit).await?;
                Some(ServerFrame::Thread {
                    id,
                    conversation_id,
                    root,
                    replies: page.messages,
                    has_more: page.has_more,
                })
            }
            ClientFrame::Typing { id, conversation_id } => {
                gateway.typing(user, conversation_id).await?;
                id.map(|id| ServerFrame::Ok { id: Some(id) })
            }
            ClientFrame::Read { id, conversation_id, seq } => {
                gateway.mark_read(user, conversation_id, seq).await?;
                id.map(|id| ServerFrame::Ok { id: Some(id) })
            }
            ClientFrame::SetPresence { id, status, text } => {
                gateway.set_presence(user, status, &text).await?;
                id.map(|id| ServerFrame::Ok { id: Some(id) })
            }
            ClientFrame::Watch { id, users } => {
                let mut watched = Vec::with_capacity(users.len());
                for name in &users {
                    watched.push(gateway.store().user_by_name(name).await?);
                }
                if !gateway.inner.hub.watch(session, &watched, gateway.config().max_watch) {
                    return Err(ApiError::invalid(format!(
                        "a session may watch at most {} users",
                        gateway.config().max_watch
                    )));
                }
                let presences = gateway.presence_of(&watched).await?;
                Some(ServerFrame::PresenceList { id, presences })
            }
            ClientFrame::Unwatch { id, users } => {
                gateway.inner.hub.unwatch(session, &users);
                id.map(|id| ServerFrame::Ok { id: Some(id) })
            }
            ClientFrame::Ping { id } => Some(ServerFrame::Pong { id }),
            ClientFrame::SearchUsers { id, q, limit } => {
                let users = gateway.search_users(&q, limit).await?;
                Some(ServerFrame::Users { id, users })
            }
            ClientFrame::Edit { id, conversation_id, seq, client_msg_id, body } => {
                let a = gateway
                    .change_message(user, conversation_id, seq, Some(body), client_msg_id)
                    .await?;
                Some(ack(id, &a))
            }
            ClientFrame::Delete { id, conversation_id, seq, client_msg_id } => {
                let a =
                    gateway.change_message(user, conversation_id, seq, None, client_msg_id).await?;
                Some(ack(id, &a))
            }
            ClientFrame::React { id, conversation_id, seq, emoji } => {
                gateway.react(user, conversation_id, seq, &emoji, true).await?;
                id.map(|id| ServerFrame::Ok { id: Some(id) })
            }
            ClientFrame::Unreact { id, conversation_id, seq, emoji } => {
                gateway.react(user, conversation_id, seq, &emoji, false).await?;
                id.map(|id| ServerFrame::Ok { id: Some(id) })
            }
            ClientFrame::Search {
                id,
                q,
                from,
                in_conversation,
                before,
                after,
                sort,
                offset,
                limit,
            } => {
                let params = switchboard_protocol::rest::SearchParams {
                    q,
                    from,
                    in_conversation,
                    before,
                    after,
                    sort,
                    offset,
                    limit,
                };
                let found = gateway.search(user, params).await?;
                Some(ServerFrame::SearchResults {
                    id,
                    results: found.results,
                    has_more: found.has_more,
                })
            }
            ClientFrame::AckBroadcast { id, broadcast_id } => {
                gateway.ack_broadcast(user, broadcast_id).await?;
                id.map(|id| ServerFrame::Ok { id: Some(id) })
            }
        })
    }
    .await;
    result.unwrap_or_else(|e| Some(e.frame(id)))
}

/// The sending half of a session. See the module docs for the ordering rule.
struct Writer {
    gateway: Gateway,
    user: Arc<User>,
    sink: Sink,
    /// conversation id -> the seq above which this session has sent (or, from `last` on,
    /// will send) everything. Starts at the conversation's last seq when the session
    /// registered; a sync backfills from the client's seq up to it, then lowers it, so a
    /// repeated sync sends nothing twice.
    covered: HashMap<i64, i64>,
    /// conversation id -> last seq sent to this session
    last: HashMap<i64, i64>,
    /// Live messages that arrived ahead of a gap, waiting for it to fill.
    reorder: Reorder,
    /// Ids of the org broadcasts sent to this session (each is sent once: the sign-in's
    /// pending ones and live ones may overlap). One entry per broadcast the session saw.
    broadcasts_sent: HashSet<i64>,
    /// Highest broadcast id written since the last flush; once flushed, the gateway
    /// records it as the user's cursor (`Gateway::broadcast_sent`).
    unflushed_broadcast: Option<i64>,
}

enum Stop {
    /// The socket failed; nothing more can be written.
    Broken,
    /// The session's queue overflowed (see [`crate::Config::session_queue`]).
    Slow,
    /// Storage failed while filling a gap: close so the client syncs later.
    Storage(ApiError),
}

impl From<axum::Error> for Stop {
    fn from(_: axum::Error) -> Self {
        Stop::Broken
    }
}

impl Writer {
    async fn run(mut self, rx: Receiver) {
        loop {
            // Waiting for work and doing it (which may block on a client that does not
            // read) both give way to a kick, so a stalled client is cut off either way.
            let result = tokio::select! {
                biased;
                _ = rx.kicked() => Err(Stop::Slow),
                result = self.next(&rx) => result,
            };
            let (error, code, reason) = match result {
                Ok(true) => continue,
                Ok(false) | Err(Stop::Broken) => return,
                Err(Stop::Slow) => {
                    METRICS.slow_consumers.inc();
                    tracing::info!("closing slow consumer");
                    let frame = ServerFrame::error(
                        None,
                        ErrorCode::SlowConsumer,
                        "too many undelivered frames or bytes; reconnect and sync",
                    );
                    (frame, CLOSE_TRY_LATER, "slow_consumer")
                }
                Err(Stop::Storage(e)) => (e.frame(None), CLOSE_TRY_LATER, "storage unavailable"),
            };
            let farewell = async {
                self.sink.send(text(&error)).await?;
                self.sink.send(close(code, reason)).await
            };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, farewell).await;
            return;
        }
    }

    /// Takes the next queued item and writes it; flushes when the queue runs dry. False
    /// when the session is over.
    async fn next(&mut self, rx: &Receiver) -> Result<bool, Stop> {
        let item = match self.reorder.deadline() {
            None => rx.recv().await,
            Some(deadline) => tokio::select! {
                item = rx.recv() => item,
                () = tokio::time::sleep_until(deadline) => {
                    // Held messages waited long enough: what is still missing was
                    // dropped on the way, so storage fills it.
                    for conversation in self.reorder.conversations() {
                        Box::pin(self.fill_gaps(conversation)).await?;
                    }
                    if rx.is_empty() {
                        self.flush().await?;
                    }
                    return Ok(true);
                }
            },
        };
        let Some(item) = item else { return Ok(false) };
        match item {
            Outbound::Close { frame, code } => {
                if let Some(frame) = frame {
                    METRICS.frames_out.inc(frame_type(&frame));
                    self.sink.feed(WsMessage::Text(frame)).await?;
                }
                self.sink.send(close(code, "")).await?;
                return Ok(false);
            }
            Outbound::Frame(frame) => {
                METRICS.frames_out.inc(frame_type(&frame));
                self.sink.feed(WsMessage::Text(frame)).await?
            }
            Outbound::Message { conversation_id, seq, frame, published_us } => {
                self.message(conversation_id, seq, Held { frame, published_us, ack: false }).await?
            }
            Outbound::Ack { conversation_id, seq, frame } => {
                self.message(conversation_id, seq, Held { frame, published_us: 0, ack: true })
                    .await?
            }
            Outbound::Sync { id, since } => Box::pin(self.sync(id, since)).await?,
            Outbound::CatchUp => Box::pin(self.catch_up()).await?,
            Outbound::Broadcast { id, frame } => {
                if self.broadcasts_sent.insert(id) {
                    METRICS.frames_out.inc("broadcast");
                    self.sink.feed(WsMessage::Text(frame)).await?;
                    self.unflushed_broadcast = self.unflushed_broadcast.max(Some(id));
                }
            }
            Outbound::PendingBroadcasts => Box::pin(self.pending_broadcasts()).await?,
        }
        if rx.is_empty() {
            self.flush().await?;
        }
        Ok(true)
    }

    /// Flushes the socket; then the broadcasts written are the user's, and the gateway
    /// records the cursor (so the next sign-in does not send them again).
    async fn flush(&mut self) -> Result<(), Stop> {
        self.sink.flush().await?;
        if let Some(id) = self.unflushed_broadcast.take() {
            self.gateway.broadcast_sent(self.user.id, id);
        }
        Ok(())
    }

    /// A live message (or the `ack` in the place of the session's own), in seq order.
    async fn message(&mut self, conversation: i64, seq: i64, held: Held) -> Result<(), Stop> {
        match self.last.get(&conversation).copied() {
            // Sent already (by a backfill); an ack still has to go.
            Some(last) if seq <= last => {
                if held.ack {
                    self.send_live(conversation, seq, held).await?;
                }
                return Ok(());
            }
            Some(last) if seq > last + 1 => {
                // Overtaken (or the seqs before it were lost): wait for them.
                if !self.reorder.hold(conversation, seq, held) {
                    Box::pin(self.fill_gaps(conversation)).await?;
                }
                return Ok(());
            }
            // Not seen before: a conversation we were just added to starts here.
            None => {
                self.covered.insert(conversation, seq - 1);
            }
            Some(_) => {}
        }
        self.send_live(conversation, seq, held).await?;
        // Messages that overtook this one follow it now.
        for (seq, held) in self.reorder.ready(conversation, seq) {
            self.send_live(conversation, seq, held).await?;
        }
        Ok(())
    }

    async fn send_live(&mut self, conversation: i64, seq: i64, held: Held) -> Result<(), Stop> {
        self.sink.feed(WsMessage::Text(held.frame)).await?;
        if held.ack {
            METRICS.frames_out.inc("ack");
        } else {
            METRICS.frames_out.inc("message");
            delivered_live(held.published_us);
        }
        let last = self.last.entry(conversation).or_insert(seq);
        *last = (*last).max(seq);
        Ok(())
    }

    /// Sends every message `conversation` holds, reading each gap before one from
    /// storage first.
    async fn fill_gaps(&mut self, conversation: i64) -> Result<(), Stop> {
        for (seq, held) in self.reorder.take(conversation) {
            let last = self.last.get(&conversation).copied().unwrap_or(seq - 1);
            if seq > last + 1 {
                METRICS.gaps_filled.inc();
                let last = self.backfill(conversation, last, seq).await?;
                self.last.insert(conversation, last);
            }
            // Sent already by a backfill: only an ack still goes.
            if seq > self.last.get(&conversation).copied().unwrap_or(seq - 1) || held.ack {
                self.send_live(conversation, seq, held).await?;
            }
        }
        Ok(())
    }

    /// Sends the messages with `after < seq < before` from storage, in order; returns the
    /// last seq sent (`after` if none).
    async fn backfill(
        &mut self,
        conversation: i64,
        mut after: i64,
        before: i64,
    ) -> Result<i64, Stop> {
        let store = self.gateway.store().clone();
        loop {
            let page = match store
                .history(conversation, &self.user, Some(after), Some(before), BACKFILL_PAGE)
                .await
            {
                Ok(page) => page,
                // Removed meanwhile: nothing more of it is ours to see.
                Err(StoreError::NotMember { .. } | StoreError::ConversationNotFound(_)) => {
                    return Ok(after);
                }
                Err(e) => return Err(Stop::Storage(e.into())),
            };
            for message in page.messages {
                after = message.seq;
                self.sink.feed(text(&ServerFrame::Message { message })).await?;
                METRICS.frames_out.inc("message");
                METRICS.delivered.inc();
            }
            if !page.has_more {
                return Ok(after);
            }
        }
    }

    /// Sends the broadcasts for this user stored since their sessions were last sent one.
    /// Best effort: if storage fails, the session goes on and the next sign-in sends them.
    async fn pending_broadcasts(&mut self) -> Result<(), Stop> {
        let store = self.gateway.store().clone();
        let pending = match store.pending_broadcasts(&self.user, PENDING_BROADCASTS).await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(error = %e, "pending broadcasts not sent");
                return Ok(());
            }
        };
        for broadcast in pending {
            if self.broadcasts_sent.insert(broadcast.id) {
                self.unflushed_broadcast = self.unflushed_broadcast.max(Some(broadcast.id));
                METRICS.frames_out.inc("broadcast");
                self.sink.feed(text(&ServerFrame::Broadcast { broadcast })).await?;
            }
        }
        self.flush().await
    }

    /// Sends, in every conversation, what storage holds past the last seq sent: the
    /// repair after live delivery may have dropped messages (router or Redis outage). A
    /// conversation this session has not heard of yet (joined meanwhile) starts with its
    /// last page.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        let seqs = self
            .gateway
            .store()
            .conversation_seqs(self.user.id)
            .await
            .map_err(|e| Stop::Storage(e.into()))?;
        for (conversation, latest) in seqs {
            let sent = match self.last.get(&conversation) {
                Some(&sent) => sent,
                None => {
                    let start = (latest - i64::from(BACKFILL_PAGE)).max(0);
                    self.covered.insert(conversation, start);
                    start
                }
            };
            if latest > sent {
                let upto = self.backfill(conversation, sent, latest + 1).await?;
                self.last.insert(conversation, upto);
            }
        }
        Ok(())
    }

    /// Sends what the client missed before this session began: for each conversation in
    /// `since`, the messages after the client's seq up to where live delivery took over.
    async fn sync(&mut self, id: Option<String>, since: Since) -> Result<(), Stop> {
        let conversations = self
            .gateway
            .store()
            .conversations_of(self.user.id)
            .await
            .map_err(|e| Stop::Storage(e.into()))?;
        for conversation in &conversations {
            let Some(&seen) = since.get(&conversation.id) else {
                continue;
            };
            let id = conversation.id;
            let seen = seen.clamp(0, conversation.last_seq);
            let covered = self.covered.get(&id).copied().unwrap_or(conversation.last_seq);
            if seen < covered {
                self.backfill(id, seen, covered + 1).await?;
                self.covered.insert(id, seen);
            }
            // The client may already hold seqs this session has not sent (from another
            // session); never send those twice.
            let last = self.last.get(&id).copied().unwrap_or(covered);
            self.last.insert(id, last.max(seen));
        }
        self.sink.feed(text(&ServerFrame::Synced { id, conversations })).await?;
        METRICS.frames_out.inc("synced");
        Ok(())
    }
}
