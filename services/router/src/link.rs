//! The gateway's side: one long-lived link to every router replica, reconnecting by
//! itself. Routes go to a connected router (round robin, skipping ones that are down);
//! deliveries from any router are handed to the gateway's callback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

use crate::pb::router_client::RouterClient;
use crate::pb::{self, gateway_to_router::Kind};

/// Routes queued per router link before new ones are dropped.
const QUEUE: usize = 65_536;

/// What the gateway does with a delivery that arrived from a router.
pub type OnDelivery = Arc<dyn Fn(pb::Addressed) + Send + Sync>;

struct Link {
    url: String,
    queue: mpsc::Sender<pb::Addressed>,
    up: watch::Receiver<bool>,
}

pub struct RouterLinks {
    links: Vec<Link>,
    next: AtomicUsize,
    /// Bumped whenever a link comes up (see [`RouterLinks::linked`]).
    linked: watch::Receiver<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RouterLinks {
    /// Starts a link to each router in `urls` for gateway `gateway`.
    pub fn start(urls: &[String], gateway: &str, on_delivery: OnDelivery) -> Self {
        let mut links = Vec::new();
        let mut tasks = Vec::new();
        let (linked_tx, linked) = watch::channel(0);
        let linked_tx = Arc::new(linked_tx);
        for url in urls {
            let (queue, routes) = mpsc::channel(QUEUE);
            let (up_tx, up) = watch::channel(false);
            tasks.push(tokio::spawn(maintain(
                url.clone(),
                gateway.to_owned(),
                routes,
                up_tx,
                Arc::clone(&linked_tx),
                Arc::clone(&on_delivery),
            )));
            links.push(Link { url: url.clone(), queue, up });
        }
        Self { links, next: AtomicUsize::new(0), linked, tasks }
    }

    /// Hands a delivery to a connected router. False when none is connected (the
    /// delivery is dropped; receivers repair messages by seq).
    pub fn route(&self, addressed: pb::Addressed) -> bool {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.links.len() {
            let link = &self.links[(start + i) % self.links.len()];
            if *link.up.borrow() && link.queue.try_send(addressed.clone()).is_ok() {
                return true;
            }
        }
        false
    }

    /// Whether at least one router link is up (for `/readyz`).
    pub fn any_up(&self) -> bool {
        self.links.iter().any(|l| *l.up.borrow())
    }

    /// Changes each time a link to a router comes up. While that link was down the router
    /// could not deliver to this gateway (it drops what it cannot hand over), so the
    /// gateway's sessions then check storage for anything they missed.
    pub fn linked(&self) -> watch::Receiver<u64> {
        self.linked.clone()
    }

    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.links.iter().map(|l| l.url.as_str())
    }
}

impl Drop for RouterLinks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Keeps one link up: connect, say hello, pump routes out and deliveries in; on failure
/// wait (with backoff) and start again.
async fn maintain(
    url: String,
    gateway: String,
    mut routes: mpsc::Receiver<pb::Addressed>,
    up: watch::Sender<bool>,
    linked: Arc<watch::Sender<u64>>,
    on_delivery: OnDelivery,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match run_link(&url, &gateway, &mut routes, &up, &linked, &on_delivery).await {
            Ok(()) => tracing::warn!(router = %url, "router closed the link"),
            Err(e) => tracing::warn!(router = %url, error = %e, "router link failed"),
        }
        // A link that had come up starts its retries afresh.
        if up.send_replace(false) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn run_link(
    url: &str,
    gateway: &str,
    routes: &mut mpsc::Receiver<pb::Addressed>,
    up: &watch::Sender<bool>,
    linked: &watch::Sender<u64>,
    on_delivery: &OnDelivery,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let channel = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect()
        .await?;
    let mut client = RouterClient::new(channel);
    let (outbound, outbound_rx) = mpsc::channel::<pb::GatewayToRouter>(1024);
    let hello = pb::Hello { gateway: gateway.to_owned() };
    outbound.send(pb::GatewayToRouter { kind: Some(Kind::Hello(hello)) }).await?;
    let stream = futures_util::stream::unfold(outbound_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut deliveries = client.link(stream).await?.into_inner();
    up.send_replace(true);
    linked.send_modify(|n| *n += 1);
    tracing::info!(router = %url, "linked to router");
    loop {
        tokio::select! {
            route = routes.recv() => {
                let Some(route) = route else { return Ok(()) };
                outbound.send(pb::GatewayToRouter { kind: Some(Kind::Route(route)) }).await?;
            }
            batch = deliveries.message() => {
                let Some(batch) = batch? else { return Ok(()) };
                for item in batch.items {
                    on_delivery(item);
                }
            }
        }
    }
}
