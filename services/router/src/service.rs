//! The router service: accepts gateway links and forwards between them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{Stream, StreamExt};
use switchboard_presence::{PresenceError, RedisLocator};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

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
/// How long in-flight work may take to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

struct RouterService {
    locator: RedisLocator,
    /// gateway id -> its link's queue. std Mutex: never held across an await.
    links: Arc<Links>,
}

/// Serves the router on `listener` (with gRPC health) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    locator: RedisLocator,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RouterServer<RouterService>>().await;
    let service = RouterService { locator, links: Arc::default() };
    let (draining, drained) = tokio::sync::oneshot::channel::<()>();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(RouterServer::new(service))
        // Nagle off: a reply's frames go out at once, not after the peer's delayed ACK.
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            let _ = draining.send(());
        });
    // Links are endless streams: after the drain period, stop regardless.
    tokio::select! {
        result = server => result,
        _ = async {
            let _ = drained.await;
            tokio::time::sleep(DRAIN).await;
        } => Ok(()),
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

        // Routes from this gateway, forwarded to the others.
        let (locator, links, origin) =
            (self.locator.clone(), Arc::clone(&self.links), gateway.clone());
        tokio::spawn(async move {
            pump(inbound, &locator, &links, &origin).await;
            tracing::info!(gateway = %origin, "gateway unlinked");
            let mut links = links.lock().unwrap_or_else(|e| e.into_inner());
            // Only if it is still this link (the gateway may have linked again).
            if links.get(&origin).is_some_and(|q| q.same_channel(&queue)) {
                links.remove(&origin);
            }
        });

        // Deliveries for this gateway, batched: everything queued goes in one message.
        let outbound = async_stream(move |yield_tx| async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while queued.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let items = std::mem::take(&mut batch);
                if yield_tx.send(Ok(pb::Deliveries { items })).await.is_err() {
                    return;
                }
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
                        pending.push_back(locate(locator.clone(), addressed));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => open = false,
                }
            }
            Some((addressed, located)) = pending.next() => {
                // Log an outage once when it starts and once when it ends, not per route.
                match (&located, flooding) {
                    (Err(e), false) => {
                        tracing::warn!(error = %e, "cannot locate users; delivering to every gateway");
                    }
                    (Ok(_), true) => tracing::info!("locating users again"),
                    _ => {}
                }
                flooding = located.is_err();
                forward(links, origin, addressed, located);
            }
            else => return,
        }
    }
}

async fn locate(
    locator: RedisLocator,
    addressed: pb::Addressed,
) -> (pb::Addressed, Result<Vec<(String, Vec<i64>)>, PresenceError>) {
    if addressed.to_org {
        // Goes to every gateway (see `forward`): nothing to look up.
        return (addressed, Ok(Vec::new()));
    }
    let located = match tokio::time::timeout(LOCATE_TIMEOUT, locator.locate(&addressed.users)).await
    {
        Ok(located) => located,
        Err(_) => Err(PresenceError::Unavailable("no answer from Redis in time".into())),
    };
    (addressed, located)
}

type Links = Mutex<HashMap<String, mpsc::Sender<pb::Addressed>>>;

/// Sends `addressed` to every gateway (but `origin`) holding one of its users. When Redis
/// cannot say where the users are, it goes to every linked gateway: each delivers to
/// whichever of the users it holds, so an outage costs fan-out work, not messages.
fn forward(
    links: &Links,
    origin: &str,
    addressed: pb::Addressed,
    located: Result<Vec<(String, Vec<i64>)>, PresenceError>,
) {
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
            tracing::warn!(%gateway, "gateway link is full or gone; delivery dropped");
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
