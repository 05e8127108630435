//! The router service: accepts gateway links and forwards between them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::FuturesOrdered;
use futures_util::{Stream, StreamExt};
use switchboard_presence::{PresenceError, RedisLocator};
use switchboard_telemetry::grpc::ServerLayer;
use switchboard_telemetry::trace;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use tonic::transport::ServerTlsConfig;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument as _, Span};

use crate::metrics::ROUTER as METRICS;

use crate::pb::router_server::{Router, RouterServer};
use crate::pb::{self, gateway_to_router::Kind};

/// Deliveries queued per gateway link; when full, deliveries to that gateway are dropped
/// (its sessions repair gaps by seq) rather than slowing every other gateway.
const LINK_QUEUE: usize = 65_536;
/// Most deliveries sent to a gateway in one batch.
const MAX_BATCH: usize = 1024;
/// Presence lookups in flight per gateway link.
const LOCATE_AHEAD: usize = 64;
/// How long a presence lookup may take before the route goes to every gateway instead
/// (Redis is down or reconnecting).
const LOCATE_TIMEOUT: Duration = Duration::from_millis(250);
/// How long gateways have, once shutdown starts, to move their routes to other routers.
const DRAIN: Duration = Duration::from_secs(5);
/// How long after that the links have to send what is queued for their gateways.
const FLUSH: Duration = Duration::from_secs(2);

struct RouterService {
    locator: RedisLocator,
    /// gateway id -> its link's queue. std Mutex: never held across an await.
    links: Arc<Links>,
    drain: Drain,
}

/// What the links need to know about shutdown. See `router.proto` for the drain.
#[derive(Clone)]
struct Drain {
    /// Flips to true when shutdown starts: links tell their gateway, new links are refused.
    started: watch::Receiver<bool>,
    /// Links whose gateway is still sending routes (each pump holds a [`Pumping`]).
    pumping: Arc<watch::Sender<usize>>,
    /// Set before the links end: whether every gateway's routes were forwarded in time,
    /// so the links can tell gateways that nothing was lost (`drained`).
    complete: Arc<AtomicBool>,
}

/// Counts one pump in [`Drain::pumping`] while it lives.
struct Pumping(Arc<watch::Sender<usize>>);

impl Pumping {
    fn new(count: &Arc<watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        Self(Arc::clone(count))
    }
}

impl Drop for Pumping {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Serves the router on `listener` (with gRPC health) until `shutdown` resolves, then
/// drains: health turns NOT_SERVING, every linked gateway is told to route elsewhere and
/// to end its stream once it has sent what it queued here; when all have (or [`DRAIN`]
/// is up) each link gets what is still queued for it and ends. So a router restarted
/// while gateways are linked to another router loses no delivery.
pub async fn serve(
    listener: TcpListener,
    locator: RedisLocator,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_tls(listener, locator, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (gateways then link with `https://` URLs).
pub async fn serve_tls(
    listener: TcpListener,
    locator: RedisLocator,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RouterServer<RouterService>>().await;
    let (start_drain, started) = watch::channel(false);
    let drain = Drain {
        started,
        pumping: Arc::new(watch::channel(0).0),
        complete: Arc::new(AtomicBool::new(false)),
    };
    let links: Arc<Links> = Arc::default();
    let service = RouterService { locator, links: Arc::clone(&links), drain: drain.clone() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server = tokio::spawn(
        builder
            // HTTP/1.1 too, for Prometheus scraping `/metrics` on this port.
            .accept_http1(true)
            .layer(ServerLayer::new(crate::metrics::render_service))
            .add_service(health_service)
            .add_service(RouterServer::new(service))
            // Nagle off: a reply's frames go out at once, not after the peer's delayed ACK.
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped.await;
            }),
    );
    tokio::select! {
        result = &mut server => return result.unwrap_or(Ok(())),
        _ = shutdown => {}
    }
    let deadline = tokio::time::Instant::now() + DRAIN;
    health.set_not_serving::<RouterServer<RouterService>>().await;
    METRICS.draining.set(1);
    tracing::info!(
        links = links.lock().unwrap_or_else(|e| e.into_inner()).len(),
        "draining: gateways route through the other routers"
    );
    start_drain.send_replace(true);
    let mut pumping = drain.pumping.subscribe();
    let complete = tokio::time::timeout_at(deadline, pumping.wait_for(|n| *n == 0)).await.is_ok();
    if !complete {
        tracing::warn!(
            gateways = *pumping.borrow(),
            "drain timed out: gateways still sending; their later routes are dropped"
        );
    }
    drain.complete.store(complete, Ordering::SeqCst);
    // Dropping the queues' senders lets each link send what is queued and end.
    links.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let _ = stop.send(());
    match tokio::time::timeout_at(deadline + FLUSH, &mut server).await {
        Ok(result) => result.unwrap_or(Ok(())),
        Err(_) => {
            tracing::warn!("drain timed out; closing remaining links");
            server.abort();
            Ok(())
        }
    }
}

type DeliveryStream = Pin<Box<dyn Stream<Item = Result<pb::Deliveries, Status>> + Send>>;

#[tonic::async_trait]
impl Router for RouterService {
    type LinkStream = DeliveryStream;

    async fn link(
        &self,
        request: Request<Streaming<pb::GatewayToRouter>>,
    ) -> Result<Response<Self::LinkStream>, Status> {
        if *self.drain.started.borrow() {
            return Err(Status::unavailable("this router is draining; link to another"));
        }
        let mut inbound = request.into_inner();
        let gateway = match inbound.message().await? {
            Some(pb::GatewayToRouter { kind: Some(Kind::Hello(hello)) })
                if !hello.gateway.is_empty() =>
            {
                hello.gateway
            }
            _ => return Err(Status::invalid_argument("a link starts with hello")),
        };
        tracing::info!(%gateway, "gateway linked");
        let (queue, mut queued) = mpsc::channel::<pb::Addressed>(LINK_QUEUE);
        self.links.lock().unwrap_or_else(|e| e.into_inner()).insert(gateway.clone(), queue.clone());
        METRICS.links.inc();

        // Routes from this gateway, forwarded to the others.
        let (locator, links, origin) =
            (self.locator.clone(), Arc::clone(&self.links), gateway.clone());
        let pumping = Pumping::new(&self.drain.pumping);
        let draining = self.drain.started.clone();
        tokio::spawn(async move {
            pump(inbound, &locator, &links, &origin).await;
            drop(pumping);
            METRICS.links.dec();
            tracing::info!(gateway = %origin, "gateway unlinked");
            // While draining the link stays until every gateway is done: routes from the
            // others may still be on their way to this one.
            if *draining.borrow() {
                return;
            }
            let mut links = links.lock().unwrap_or_else(|e| e.into_inner());
            // Only if it is still this link (the gateway may have linked again).
            if links.get(&origin).is_some_and(|q| q.same_channel(&queue)) {
                links.remove(&origin);
            }
        });

        // Deliveries for this gateway, batched: everything queued goes in one message.
        let mut drain = self.drain.clone();
        let outbound = async_stream(move |yield_tx| async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut told = false;
            loop {
                let message = tokio::select! {
                    n = queued.recv_many(&mut batch, MAX_BATCH) => {
                        if n == 0 {
                            break;
                        }
                        METRICS.queued.add(-(n as i64));
                        METRICS.batch_size.observe(n as u64);
                        pb::Deliveries { items: std::mem::take(&mut batch), ..Default::default() }
                    }
                    _ = drain.started.wait_for(|d| *d), if !told => {
                        told = true;
                        pb::Deliveries { draining: true, ..Default::default() }
                    }
                };
                if yield_tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            if told && drain.complete.load(Ordering::SeqCst) {
                let _ =
                    yield_tx.send(Ok(pb::Deliveries { drained: true, ..Default::default() })).await;
            }
        });
        Ok(Response::new(Box::pin(outbound)))
    }
}

/// Forwards the routes arriving on one gateway's link until it closes. Presence lookups
/// overlap (up to LOCATE_AHEAD in flight, pipelined on one Redis connection), but routes
/// are forwarded in the order the gateway sent them.
async fn pump(
    mut inbound: Streaming<pb::GatewayToRouter>,
    locator: &RedisLocator,
    links: &Links,
    origin: &str,
) {
    let mut pending = FuturesOrdered::new();
    let mut open = true;
    let mut flooding = false;
    loop {
        tokio::select! {
            message = inbound.message(), if open && pending.len() < LOCATE_AHEAD => {
                match message {
                    Ok(Some(pb::GatewayToRouter { kind: Some(Kind::Route(addressed)) })) => {
                        METRICS.routes.inc();
                        pending.push_back(locate(locator.clone(), addressed, Instant::now()));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => open = false,
                }
            }
            Some((addressed, located, span, started)) = pending.next() => {
                // Log an outage once when it starts and once when it ends, not per route.
                match (&located, flooding) {
                    (Err(e), false) => {
                        tracing::warn!(error = %e, "cannot locate users; delivering to every gateway");
                    }
                    (Ok(_), true) => tracing::info!("locating users again"),
                    _ => {}
                }
                flooding = located.is_err();
                let _in_span = span.enter();
                forward(links, origin, addressed, located);
                METRICS.route.since(started);
            }
            else => return,
        }
    }
}

/// Looks up where `addressed`'s users are, in the route's span (continuing the origin
/// gateway's trace; disabled when traces are off), which is returned for forwarding.
async fn locate(
    locator: RedisLocator,
    mut addressed: pb::Addressed,
    started: Instant,
) -> (pb::Addressed, Result<Vec<(String, Vec<i64>)>, PresenceError>, Span, Instant) {
    // Only a route that carries a trace is traced (a message's); others start none.
    let traceparent = std::mem::take(&mut addressed.traceparent);
    let span = trace::continue_remote(&traceparent, || {
        tracing::debug_span!(
            parent: None,
            "router.route",
            otel.kind = "server",
            users = addressed.users.len(),
        )
    });
    if addressed.to_org {
        // Goes to every gateway (see `forward`): nothing to look up.
        return (addressed, Ok(Vec::new()), span, started);
    }
    let lookup = if span.is_disabled() {
        Span::none()
    } else {
        tracing::debug_span!(parent: &span, "redis.locate", otel.kind = "client")
    };
    let looked_up = Instant::now();
    let located = tokio::time::timeout(LOCATE_TIMEOUT, locator.locate(&addressed.users))
        .instrument(lookup)
        .await;
    METRICS.lookup.since(looked_up);
    let located = match located {
        Ok(located) => located,
        Err(_) => Err(PresenceError::Unavailable("no answer from Redis in time".into())),
    };
    if located.is_err() {
        METRICS.lookup_failures.inc();
    }
    (addressed, located, span, started)
}

type Links = Mutex<HashMap<String, mpsc::Sender<pb::Addressed>>>;

/// Sends `addressed` to every gateway (but `origin`) holding one of its users. When Redis
/// cannot say where the users are, it goes to every linked gateway: each delivers to
/// whichever of the users it holds, so an outage costs fan-out work, not messages.
fn forward(
    links: &Links,
    origin: &str,
    mut addressed: pb::Addressed,
    located: Result<Vec<(String, Vec<i64>)>, PresenceError>,
) {
    // The receiving gateways continue the trace from this route's span (current here).
    addressed.traceparent = trace::current_traceparent();
    let targets: Vec<(mpsc::Sender<pb::Addressed>, String, Option<Vec<i64>>)> = {
        let links = links.lock().unwrap_or_else(|e| e.into_inner());
        match located {
            // An org broadcast goes to every gateway, which finds its own sessions under
            // the path.
            Ok(_) if addressed.to_org => links
                .iter()
                .filter(|(gateway, _)| gateway.as_str() != origin)
                .map(|(gateway, q)| (q.clone(), gateway.clone(), None))
                .collect(),
            Ok(located) => located
                .into_iter()
                .filter(|(gateway, _)| gateway != origin)
                .filter_map(|(gateway, users)| {
                    links.get(&gateway).map(|q| (q.clone(), gateway, Some(users)))
                })
                .collect(),
            Err(_) => links
                .iter()
                .filter(|(gateway, _)| gateway.as_str() != origin)
                .map(|(gateway, q)| (q.clone(), gateway.clone(), None))
                .collect(),
        }
    };
    for (queue, gateway, users) in targets {
        let item = match users {
            Some(users) => pb::Addressed { users, ..addressed.clone() },
            None => addressed.clone(),
        };
        if queue.try_send(item).is_err() {
            METRICS.dropped.inc();
            tracing::warn!(%gateway, "gateway link is full or gone; delivery dropped");
        } else {
            METRICS.forwarded.inc();
            METRICS.queued.inc();
        }
    }
}

/// A stream fed by a task: the task gets a sender and the stream yields what it sends.
fn async_stream<T, F, Fut>(task: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(task(tx));
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
        .boxed()
}
