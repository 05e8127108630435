//! The router service: accepts gateway links and forwards between them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use switchboard_presence::RedisLocator;
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
/// How long in-flight work may take to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

struct RouterService {
    locator: RedisLocator,
    /// gateway id -> its link's queue. std Mutex: never held across an await.
    links: Arc<Mutex<HashMap<String, mpsc::Sender<pb::Addressed>>>>,
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
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(RouterServer::new(service))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
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
            while let Ok(Some(message)) = inbound.message().await {
                if let Some(Kind::Route(addressed)) = message.kind {
                    forward(&locator, &links, &origin, addressed).await;
                }
            }
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

/// Sends `addressed` to every gateway (but `origin`) holding one of its users.
async fn forward(
    locator: &RedisLocator,
    links: &Mutex<HashMap<String, mpsc::Sender<pb::Addressed>>>,
    origin: &str,
    addressed: pb::Addressed,
) {
    let located = match locator.locate(&addressed.users).await {
        Ok(located) => located,
        Err(e) => {
            // Redis is down: the delivery is dropped; receivers repair it by seq.
            tracing::warn!(error = %e, "cannot locate users; delivery dropped");
            return;
        }
    };
    for (gateway, users) in located {
        if gateway == origin {
            continue;
        }
        let queue = links.lock().unwrap_or_else(|e| e.into_inner()).get(&gateway).cloned();
        let Some(queue) = queue else { continue };
        let item = pb::Addressed { users, ..addressed.clone() };
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
