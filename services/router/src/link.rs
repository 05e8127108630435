//! The gateway's side: one long-lived link to every router replica, reconnecting by
//! itself. Routes go to a connected router (round robin, skipping ones that are down);
//! deliveries from any router are handed to the gateway's callback.
//!
//! Links end cleanly in both directions (see `router.proto`): a router that drains says
//! so, and the link stops taking routes, sends what it had queued and waits for the
//! router's last deliveries; a gateway that shuts down does the same through
//! [`RouterLinks::close`]. Routes still queued for a link that went down are handed to
//! the links that are up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
pub use tonic::transport::ClientTlsConfig;
use tonic::transport::Endpoint;

use crate::metrics::LINKS as METRICS;
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
    links: Arc<[Link]>,
    next: Arc<AtomicUsize>,
    /// Bumped whenever a link comes up after deliveries may have been missed (see
    /// [`RouterLinks::linked`]).
    linked: watch::Receiver<u64>,
    /// Set by [`RouterLinks::close`]: every link finishes and its task ends.
    closing: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How a link ended.
enum Ended {
    /// This gateway closed it ([`RouterLinks::close`]): the router forwarded everything.
    Closed,
    /// The router drained: it forwarded everything it received and sent everything it
    /// held for this gateway.
    Drained,
    /// The router closed the link without saying it drained: deliveries may be lost.
    Lost,
}

impl RouterLinks {
    /// Starts a link to each router in `urls` for gateway `gateway`. `https://` URLs
    /// are linked over TLS with `tls` (which trusts the cluster's CA).
    pub fn start(
        urls: &[String],
        gateway: &str,
        tls: Option<ClientTlsConfig>,
        on_delivery: OnDelivery,
    ) -> Self {
        let (linked_tx, linked) = watch::channel(0);
        let linked_tx = Arc::new(linked_tx);
        let (closing, _) = watch::channel(false);
        let mut receivers = Vec::new();
        let mut links = Vec::new();
        for url in urls {
            let (queue, routes) = mpsc::channel(QUEUE);
            let (up_tx, up) = watch::channel(false);
            receivers.push((routes, up_tx));
            links.push(Link { url: url.clone(), queue, up });
        }
        let links: Arc<[Link]> = links.into();
        let next = Arc::new(AtomicUsize::new(0));
        let tasks = receivers
            .into_iter()
            .enumerate()
            .map(|(index, (routes, up))| {
                tokio::spawn(maintain(Maintain {
                    index,
                    links: Arc::clone(&links),
                    next: Arc::clone(&next),
                    gateway: gateway.to_owned(),
                    tls: tls.clone(),
                    routes,
                    up,
                    linked: Arc::clone(&linked_tx),
                    closing: closing.subscribe(),
                    on_delivery: Arc::clone(&on_delivery),
                }))
            })
            .collect();
        Self { links, next, linked, closing, tasks: std::sync::Mutex::new(tasks) }
    }

    /// Hands a delivery to a connected router. When none is connected (every router is
    /// restarting) it is queued for the first link to come up, so a short outage delays
    /// deliveries instead of dropping them. False when it is dropped: this gateway is
    /// closing, or every queue is full (receivers repair messages by seq).
    pub fn route(&self, addressed: pb::Addressed) -> bool {
        if *self.closing.borrow() {
            METRICS.dropped.inc();
            return false;
        }
        let queued = match route_via(&self.links, &self.next, None, addressed) {
            Ok(()) => true,
            Err(addressed) => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..self.links.len()).any(|i| {
                    let link = &self.links[(start + i) % self.links.len()];
                    link.queue.try_send(addressed.clone()).is_ok()
                })
            }
        };
        if queued {
            METRICS.routes.inc();
            METRICS.queued.inc();
        } else {
            METRICS.dropped.inc();
        }
        queued
    }

    /// Whether at least one router link is up (for `/readyz`).
    pub fn any_up(&self) -> bool {
        self.links.iter().any(|l| *l.up.borrow())
    }

    /// Changes each time a link to a router comes up after this gateway may have missed
    /// deliveries: on the first link, and after a link was lost without the router
    /// saying it had drained (it drops what it cannot hand over), or while no other link
    /// was up. The gateway's sessions then check storage for anything they missed.
    pub fn linked(&self) -> watch::Receiver<u64> {
        self.linked.clone()
    }

    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.links.iter().map(|l| l.url.as_str())
    }

    /// Ends every link cleanly, for a gateway shutting down: routes are refused from now
    /// on; each link sends what is queued, ends its stream and waits until the router
    /// has forwarded it all (it ends its side then), up to `timeout`.
    pub async fn close(&self, timeout: Duration) {
        self.closing.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("router links did not close in time");
            aborts.iter().for_each(|a| a.abort());
        }
    }
}

impl Drop for RouterLinks {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            task.abort();
        }
    }
}

/// Queues `addressed` on the next link that is up (round robin), skipping `except`.
/// Gives it back when none took it.
#[allow(clippy::result_large_err)] // Giving the route back is the point; it is moved, not copied.
fn route_via(
    links: &[Link],
    next: &AtomicUsize,
    except: Option<usize>,
    addressed: pb::Addressed,
) -> Result<(), pb::Addressed> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    for i in 0..links.len() {
        let index = (start + i) % links.len();
        let link = &links[index];
        if Some(index) != except
            && *link.up.borrow()
            && link.queue.try_send(addressed.clone()).is_ok()
        {
            return Ok(());
        }
    }
    Err(addressed)
}

/// What one link's task owns.
struct Maintain {
    index: usize,
    links: Arc<[Link]>,
    next: Arc<AtomicUsize>,
    gateway: String,
    /// For `https://` router URLs.
    tls: Option<ClientTlsConfig>,
    routes: mpsc::Receiver<pb::Addressed>,
    up: watch::Sender<bool>,
    linked: Arc<watch::Sender<u64>>,
    closing: watch::Receiver<bool>,
    on_delivery: OnDelivery,
}

/// Keeps one link up: connect, say hello, pump routes out and deliveries in; on failure
/// wait (with backoff) and start again; after [`RouterLinks::close`], end.
async fn maintain(mut m: Maintain) {
    let mut backoff = Duration::from_millis(100);
    // Whether the last link ended with nothing lost (the router drained).
    let mut clean = false;
    loop {
        if *m.closing.borrow() {
            return;
        }
        let url = m.links[m.index].url.clone();
        let ended = run_link(&url, &mut m, clean).await;
        let was_up = set_up(&m.up, false);
        clean = false;
        match ended {
            Ok(Ended::Closed) => return,
            Ok(Ended::Drained) => {
                tracing::info!(router = %url, "router drained; linking again when it is back");
                clean = true;
            }
            Ok(Ended::Lost) => {
                METRICS.failures.inc();
                tracing::warn!(router = %url, "router closed the link");
            }
            Err(e) => {
                METRICS.failures.inc();
                tracing::warn!(router = %url, error = %e, "router link failed");
            }
        }
        reroute_queued(&mut m);
        // A link that had come up starts its retries afresh.
        if was_up {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = m.closing.wait_for(|c| *c) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Hands routes still queued for this (down) link to the links that are up, so they do
/// not wait for this router to come back; those no link takes stay queued.
fn reroute_queued(m: &mut Maintain) {
    let mut held = Vec::new();
    while let Ok(route) = m.routes.try_recv() {
        METRICS.queued.dec();
        held.push(route);
    }
    if held.is_empty() {
        return;
    }
    let total = held.len();
    let mut kept = 0;
    for route in held {
        match route_via(&m.links, &m.next, Some(m.index), route) {
            Ok(()) => METRICS.queued.inc(),
            Err(route) => {
                kept += 1;
                if m.links[m.index].queue.try_send(route).is_ok() {
                    METRICS.queued.inc();
                } else {
                    METRICS.dropped.inc();
                }
            }
        }
    }
    tracing::debug!(total, kept, "routes queued for a router that went down handed on");
}

async fn run_link(
    url: &str,
    m: &mut Maintain,
    clean: bool,
) -> Result<Ended, Box<dyn std::error::Error + Send + Sync>> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())?;
    if let Some(tls) = m.tls.as_ref().filter(|_| url.starts_with("https://")) {
        endpoint = endpoint.tls_config(tls.clone())?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect()
        .await?;
    let mut client = RouterClient::new(channel);
    let (outbound, outbound_rx) = mpsc::channel::<pb::GatewayToRouter>(1024);
    let hello = pb::Hello { gateway: m.gateway.clone() };
    outbound.send(pb::GatewayToRouter { kind: Some(Kind::Hello(hello)) }).await?;
    let stream = futures_util::stream::unfold(outbound_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut deliveries = client.link(stream).await?.into_inner();
    let others_up = m.links.iter().enumerate().any(|(i, l)| i != m.index && *l.up.borrow());
    set_up(&m.up, true);
    if !(clean && others_up) {
        m.linked.send_modify(|n| *n += 1);
    }
    tracing::info!(router = %url, "linked to router");
    // Some while routes go out on this link; None once this side has ended.
    let mut outbound = Some(outbound);
    let mut closed_here = false;
    let mut drained = false;
    loop {
        let event = tokio::select! {
            route = m.routes.recv(), if outbound.is_some() => Event::Route(route),
            _ = m.closing.wait_for(|c| *c), if outbound.is_some() => Event::Closing,
            batch = deliveries.message() => Event::Deliveries(batch?),
        };
        match event {
            Event::Route(None) => return Ok(Ended::Lost),
            Event::Route(Some(route)) => {
                METRICS.queued.dec();
                if let Some(out) = &outbound {
                    out.send(pb::GatewayToRouter { kind: Some(Kind::Route(route)) }).await?;
                }
            }
            Event::Closing => {
                closed_here = true;
                if let Some(out) = outbound.take() {
                    finish_sending(m, out).await?;
                }
            }
            Event::Deliveries(None) => {
                return Ok(match (closed_here, drained) {
                    (true, _) => Ended::Closed,
                    (false, true) => Ended::Drained,
                    (false, false) => Ended::Lost,
                });
            }
            Event::Deliveries(Some(batch)) => {
                if batch.draining
                    && let Some(out) = outbound.take()
                {
                    tracing::info!(router = %url, "router draining; routing through the others");
                    finish_sending(m, out).await?;
                }
                drained |= batch.drained;
                METRICS.deliveries.add(batch.items.len() as u64);
                for item in batch.items {
                    (m.on_delivery)(item);
                }
            }
        }
    }
}

enum Event {
    Route(Option<pb::Addressed>),
    Closing,
    Deliveries(Option<pb::Deliveries>),
}

/// Stops routing through this link, sends what is queued for it and ends this side of
/// the stream (dropping `out`).
async fn finish_sending(
    m: &mut Maintain,
    out: mpsc::Sender<pb::GatewayToRouter>,
) -> Result<(), mpsc::error::SendError<pb::GatewayToRouter>> {
    set_up(&m.up, false);
    while let Ok(route) = m.routes.try_recv() {
        METRICS.queued.dec();
        out.send(pb::GatewayToRouter { kind: Some(Kind::Route(route)) }).await?;
    }
    Ok(())
}

/// Marks a link up or down (and counts it in the `links_up` gauge); returns whether it
/// was up.
fn set_up(up: &watch::Sender<bool>, now: bool) -> bool {
    let was = up.send_replace(now);
    match (was, now) {
        (false, true) => METRICS.up.inc(),
        (true, false) => METRICS.up.dec(),
        _ => {}
    }
    was
}
