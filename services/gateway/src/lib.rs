//! Switchboard's front door: WebSocket sessions, the REST API, sign-in and fan-out, for
//! the embedded server and for cluster gateways alike.
//!
//! [`Gateway`] is the shared state; [`run`] serves it on a listener the caller bound until
//! the shutdown future resolves, then drains sessions. Module map:
//!
//! - [`config`]: limits and timeouts, parsed once by the binary.
//! - `auth`: argon2id passwords and random bearer tokens; `lockout`: sign-in throttling
//!   (per account in storage, per client IP in memory); `ldap`: directory sign-in.
//! - `origin`: the WebSocket Origin allow-list and CORS for `/api/v1`.
//! - `ops`: the operations (send, open a conversation, history, ...) that the WebSocket and
//!   REST paths share, so both enforce the same rules.
//! - `hub`: who is connected here, fan-out to their sessions, presence watchers.
//! - `session`: one WebSocket connection (reader task + writer task); `admission`: how
//!   many sign-ins reach storage at once, and how many may wait.
//! - `rest`: the HTTP endpoints; `provision`: bulk accounts for load tests.
//! - `attachments`: file uploads into conversations and members-only downloads.
//! - `org`: bots, incoming webhooks and org broadcasts (operations and their endpoints);
//!   `directory`: the CSV directory import.
//! - [`tls`]: HTTPS/`wss://` on the gateway's port, with a certificate reloadable at run
//!   time.
//! - `audit`: the audit log (recorded in the background, read at `/api/v1/admin/audit`);
//!   `admin`: account flags (admin, disabled).
//! - `web`: the web client's files (`services/gateway/web/`), compiled in, served at `/`.
//!
//! The seams: `Store` (SQLite, PostgreSQL, gRPC), `PresenceTracker` (in-process, Redis)
//! and, in a cluster, `RouterLinks` for deliveries to other gateways.

mod admin;
mod admission;
mod attachments;
mod audit;
pub mod auth;
pub mod config;
mod csv;
mod directory;
mod error;
mod export;
mod hub;
pub mod ldap;
mod lockout;
mod metrics;
mod ops;
mod org;
mod origin;
mod provision;
mod queue;
mod rate;
mod reactions;
mod reorder;
mod rest;
mod retention;
mod search;
mod session;
pub mod tls;
mod web;

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use switchboard_presence::{LocalPresence, PresenceTracker, UserRef};
use switchboard_protocol::Presence;
use switchboard_router::RouterLinks;
use switchboard_router::link::OnDelivery;
use switchboard_storage::Store;
use switchboard_telemetry::trace;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

pub use config::Config;
pub use csv::parse_csv;
pub use directory::{ImportRequest, import_summary, parse_directory};

/// Where a cluster gateway finds the routers, and its name among the gateways.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// gRPC URLs of every router replica (`http://host:port`).
    pub routers: Vec<String>,
    /// This gateway's id, unique in the cluster (the same as in its presence records).
    pub gateway_id: String,
    /// How `https://` router URLs are reached (the CA that signed the routers'
    /// certificates); `http://` ones ignore it.
    pub tls: Option<switchboard_router::link::ClientTlsConfig>,
}
pub use audit::{Event as AuditEvent, LOCAL_ACTOR};
pub use error::ApiError;

/// State shared by every connection and request. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    /// Who is online: in-process for the embedded server, Redis in a cluster.
    presence: Arc<dyn PresenceTracker>,
    /// Links to the routers, in a cluster: deliveries for users on other gateways go
    /// through them. None in the embedded server, where every session is here.
    router: Option<RouterLinks>,
    config: Config,
    hub: hub::Hub,
    rate: rate::RateLimiter,
    /// Messages per client IP, on top of `rate` (per user).
    rate_ip: rate::RateLimiter<std::net::IpAddr>,
    /// Failed sign-ins: per account (through storage) and per client IP.
    login: lockout::LoginGuard,
    /// How many WebSocket sign-ins reach storage at once, and how many may wait.
    sign_ins: admission::SignInGate,
    /// Flips to true when draining starts; sessions watch it and close.
    draining: watch::Sender<bool>,
    /// `(user, broadcast id)` each session has written, for the task that saves the
    /// users' broadcast cursors in batches (`save_broadcast_cursors`). Full: dropped (the
    /// next sign-in sends that broadcast again; clients drop it by id).
    broadcasts_sent: mpsc::Sender<(i64, i64)>,
    /// The audit log's writer (see `audit.rs`).
    audit: audit::AuditLog,
}

impl Gateway {
    /// A gateway with in-process presence (the embedded server).
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        Self::with_presence(store, Arc::new(LocalPresence::default()), config)
    }

    /// A gateway whose presence lives in `presence`, alone (no routers). Must be called
    /// inside a tokio runtime: it starts the task that pushes presence changes to watchers.
    pub fn with_presence(
        store: Arc<dyn Store>,
        presence: Arc<dyn PresenceTracker>,
        config: Config,
    ) -> Self {
        Self::build(store, presence, None, config)
    }

    /// A cluster gateway: presence in `presence` (Redis), deliveries to other gateways'
    /// users through the routers of `cluster`.
    pub fn clustered(
        store: Arc<dyn Store>,
        presence: Arc<dyn PresenceTracker>,
        cluster: Cluster,
        config: Config,
    ) -> Self {
        Self::build(store, presence, Some(cluster), config)
    }

    fn build(
        store: Arc<dyn Store>,
        presence: Arc<dyn PresenceTracker>,
        cluster: Option<Cluster>,
        config: Config,
    ) -> Self {
        let (draining, _) = watch::channel(false);
        let (broadcasts_sent, sent) = mpsc::channel(BROADCAST_CURSOR_QUEUE);
        tokio::spawn(save_broadcast_cursors(store.clone(), sent));
        let rate = rate::RateLimiter::new(config.rate_per_user, config.rate_burst);
        let rate_ip = rate::RateLimiter::new(config.rate_per_ip, config.rate_ip_burst);
        let login = lockout::LoginGuard::new(&config);
        let sign_ins = admission::SignInGate::new(config.sign_ins_in_flight, config.sign_in_queue);
        let audit = audit::AuditLog::spawn(store.clone());
        let inner = Arc::new_cyclic(|me: &Weak<Inner>| {
            let router = cluster.map(|c| {
                let me = me.clone();
                let on_delivery: OnDelivery = Arc::new(move |mut addressed| {
                    // A message's trace goes on here (nothing when traces are off).
                    let span = trace::continue_remote(&addressed.traceparent, || {
                        tracing::debug_span!(
                            parent: None,
                            "gateway.deliver",
                            otel.kind = "consumer",
                            users = addressed.users.len(),
                        )
                    });
                    let _in_span = span.enter();
                    if let Some(inner) = me.upgrade() {
                        if addressed.close {
                            let end = session::signed_out(addressed.frame.into());
                            let token = <auth::TokenHash>::try_from(addressed.token_hash).ok();
                            for user in addressed.users {
                                inner.hub.end_sessions(user, token.as_ref(), &end);
                            }
                            return;
                        }
                        if addressed.to_org {
                            let org = std::mem::take(&mut addressed.org);
                            inner.hub.deliver_org(&org, hub::Outbound::from_routed(addressed));
                            return;
                        }
                        let (users, skip) =
                            (std::mem::take(&mut addressed.users), addressed.skip_user);
                        inner.hub.deliver(&users, skip, hub::Outbound::from_routed(addressed));
                    }
                });
                RouterLinks::start(&c.routers, &c.gateway_id, c.tls, on_delivery)
            });
            Inner {
                store,
                presence,
                router,
                hub: hub::Hub::new(config.session_queue, config.session_queue_bytes),
                config,
                rate,
                rate_ip,
                login,
                sign_ins,
                draining,
                broadcasts_sent,
                audit,
            }
        });
        tokio::spawn(forward_presence(inner.presence.subscribe(), Arc::downgrade(&inner)));
        let linked = inner.router.as_ref().map(RouterLinks::linked);
        tokio::spawn(repair(inner.presence.recovered(), linked, Arc::downgrade(&inner)));
        Self { inner }
    }

    /// Whether this gateway can serve: not draining, storage answering, and (in a
    /// cluster) at least one router linked.
    pub async fn ready(&self) -> Result<(), &'static str> {
        if *self.inner.draining.borrow() {
            return Err("draining");
        }
        if self.inner.router.as_ref().is_some_and(|r| !r.any_up()) {
            return Err("no router reachable");
        }
        if self.store().user_count().await.is_err() {
            return Err("storage unreachable");
        }
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The axum application: REST, `/ws`, health and `/metrics` (Prometheus).
    pub fn app(&self) -> axum::Router {
        let gateway = self.clone();
        let metrics = move || {
            let page = metrics::render(&gateway);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        switchboard_telemetry::metrics::CONTENT_TYPE,
                    )],
                    page,
                )
            }
        };
        rest::routes(self.clone()).route("/metrics", axum::routing::get(metrics))
    }

    /// Connected WebSocket sessions on this gateway.
    pub fn session_count(&self) -> usize {
        self.inner.hub.session_count()
    }

    /// Records a security-relevant event in the audit log (and the `audit` log target).
    /// Never waits for storage; see `audit.rs`.
    pub fn audit(&self, event: AuditEvent<'_>) {
        self.inner.audit.record(event);
    }

    /// Waits until every audit event recorded so far is stored (or given up): local admin
    /// commands call it before they exit.
    pub async fn flush_audit(&self) {
        self.inner.audit.flush().await;
    }

    /// A session wrote (and flushed) broadcasts up to `id` to `user`: saved in the
    /// background, batched with everyone else's.
    pub(crate) fn broadcast_sent(&self, user: i64, id: i64) {
        let _ = self.inner.broadcasts_sent.try_send((user, id));
    }
}

/// Cursors waiting to be saved, at most (a broadcast to everyone queues one per session).
const BROADCAST_CURSOR_QUEUE: usize = 65_536;
/// Most cursors saved in one storage call.
const BROADCAST_CURSOR_BATCH: usize = 8192;

/// Saves users' broadcast cursors as sessions report them: whatever is queued goes to
/// storage in one call (one transaction, a statement per 500 users of one broadcast), so
/// a broadcast to 10,000 people costs a handful of writes, not 10,000. Ends with the
/// gateway.
async fn save_broadcast_cursors(store: Arc<dyn Store>, mut sent: mpsc::Receiver<(i64, i64)>) {
    let mut batch = Vec::with_capacity(BROADCAST_CURSOR_BATCH);
    while sent.recv_many(&mut batch, BROADCAST_CURSOR_BATCH).await > 0 {
        // One entry per user: the highest id.
        let mut highest: std::collections::HashMap<i64, i64> =
            std::collections::HashMap::with_capacity(batch.len());
        for (user, id) in batch.drain(..) {
            let entry = highest.entry(user).or_insert(id);
            *entry = (*entry).max(id);
        }
        let seen: Vec<(i64, i64)> = highest.into_iter().collect();
        if let Err(e) = store.broadcasts_seen(&seen).await {
            tracing::warn!(error = %e, users = seen.len(), "broadcast cursors not saved; the next sign-in resends");
        }
    }
}

/// Pushes every presence change to the local sessions watching that user, until the
/// gateway is gone.
async fn forward_presence(mut changes: broadcast::Receiver<Presence>, gateway: Weak<Inner>) {
    loop {
        match changes.recv().await {
            Ok(presence) => match gateway.upgrade() {
                Some(inner) => inner.hub.presence_changed(presence),
                None => return,
            },
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "presence changes dropped; watchers may be stale");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Repairs what an outage may have cost, until the gateway is gone: when a router link
/// comes (back) up or presence recovers from a Redis outage, every session checks
/// storage for messages it missed; after a presence recovery, watchers also get fresh
/// presence (changes announced meanwhile were lost).
async fn repair(
    mut recovered: watch::Receiver<u64>,
    linked: Option<watch::Receiver<u64>>,
    gateway: Weak<Inner>,
) {
    // Without routers, or with in-process presence, that arm's channel is closed and
    // its branch stays disabled.
    let mut linked = linked.unwrap_or_else(|| watch::channel(0).1);
    loop {
        let presence_recovered = tokio::select! {
            Ok(()) = recovered.changed() => true,
            Ok(()) = linked.changed() => false,
            else => return,
        };
        let Some(inner) = gateway.upgrade() else { return };
        tracing::info!(sessions = inner.hub.session_count(), "sessions catching up from storage");
        inner.hub.catch_up_all();
        if presence_recovered {
            refresh_watchers(&inner).await;
        }
    }
}

/// Looks up every watched user's presence and pushes it to their watchers.
async fn refresh_watchers(inner: &Inner) {
    let watched = inner.hub.watched();
    for chunk in watched.chunks(500) {
        let refs: Vec<UserRef<'_>> =
            chunk.iter().map(|(id, name)| UserRef { id: *id, username: name }).collect();
        match inner.presence.lookup(&refs).await {
            Ok(presences) => presences.into_iter().for_each(|p| inner.hub.presence_changed(p)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh presence for watchers");
                return;
            }
        }
    }
}

/// How long the router links may take, once the sessions are gone, to hand what they
/// queued to the routers.
const LINKS_CLOSE: Duration = Duration::from_secs(3);
/// How long taking this gateway's presence out of Redis may take on the way out.
const PRESENCE_LEAVE: Duration = Duration::from_secs(2);

/// Serves `gateway` on `listener` until `shutdown` resolves, then drains, in this order:
///
/// 1. stop accepting connections; `/readyz` fails;
/// 2. every session finishes the request it is running (an in-flight send is committed
///    and acked), is sent `shutting_down` with a random `retry_after_ms` (up to
///    [`Config::reconnect_spread`], so its clients do not all reconnect to the other
///    gateways at once) and closed, and leaves presence; in-flight REST requests finish;
/// 3. the router links send what they queued (deliveries of those last sends) and end;
/// 4. whatever presence this gateway still holds is removed.
///
/// Steps 1-2 take at most `drain_timeout`; then 3 and 4 a few seconds at most.
pub async fn run(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    serve(NoDelay(listener), gateway, shutdown, drain_timeout).await
}

/// [`run`] over TLS: every connection on `listener` is HTTPS / `wss://` with the
/// certificate of `tls` (replaceable meanwhile with [`tls::Tls::reload`]).
pub async fn run_tls(
    listener: TcpListener,
    tls: &tls::Tls,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    serve(tls.listener(listener)?, gateway, shutdown, drain_timeout).await
}

/// The TCP peer of a connection, as handlers see it (`ConnectInfo<Peer>`): the client's
/// address for the per-IP limits, over plain TCP and TLS alike.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub std::net::SocketAddr);

impl Connected<IncomingStream<'_, NoDelay>> for Peer {
    fn connect_info(stream: IncomingStream<'_, NoDelay>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Plain TCP with `TCP_NODELAY` on every connection (a listener of our own rather than
/// axum's `tap_io`, so that [`Peer`] can name it).
struct NoDelay(TcpListener);

impl axum::serve::Listener for NoDelay {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.0).await;
        // Frames are small and latency matters: do not let Nagle hold them back.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        (tcp, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

async fn serve<L>(
    listener: L,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
    // The peer address goes to the handlers (`ConnectInfo`), for the per-IP limits.
    Peer: for<'a> Connected<IncomingStream<'a, L>>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(
        axum::serve(listener, gateway.app().into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    tokio::select! {
        result = &mut server => return result.unwrap_or(Ok(())),
        _ = shutdown => {}
    }
    let deadline = tokio::time::Instant::now() + drain_timeout;
    tracing::info!(
        sessions = gateway.session_count(),
        "draining: closing sessions and refusing new connections"
    );
    gateway.inner.draining.send_replace(true);
    metrics::METRICS.draining.set(1);
    let _ = stop.send(());
    // A session leaves the hub before its writer has flushed the close frame: an empty hub
    // and no writer left mean every client has been told (exiting sooner would cut the
    // farewells off under load, and clients would not know to come back and sync).
    let drained = async {
        if let Ok(result) = (&mut server).await {
            result?;
        }
        while gateway.session_count() > 0 || gateway.inner.hub.writers() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout_at(deadline, drained).await {
        Ok(result) => result?,
        Err(_) => {
            tracing::warn!(left = gateway.session_count(), "drain timed out");
            server.abort();
        }
    }
    if let Some(router) = &gateway.inner.router {
        router.close(LINKS_CLOSE).await;
    }
    match tokio::time::timeout(PRESENCE_LEAVE, gateway.inner.presence.leave()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot take this gateway out of presence"),
        Err(_) => tracing::warn!("taking this gateway out of presence timed out"),
    }
    tracing::info!("drained");
    Ok(())
}
