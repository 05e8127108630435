//! What routing measures: the router service ([`ROUTER`]) and the gateway's links to
//! the routers ([`LINKS`]). Written by [`render_service`] (`/metrics` of `switchboard
//! router`) and [`encode_links`] (part of a cluster gateway's `/metrics`).

use switchboard_telemetry::metrics::{BATCH_SIZES, Counter, Encoder, Gauge, Histogram, LATENCY_US};

/// The router service.
pub struct Router {
    /// Routes received from gateways.
    pub routes: Counter,
    /// Copies of routes queued for a gateway (one per gateway holding some of the users).
    pub forwarded: Counter,
    /// Copies dropped: the gateway's link queue was full or gone.
    pub dropped: Counter,
    /// Routes whose presence lookup failed or timed out (sent to every gateway instead).
    pub lookup_failures: Counter,
    /// From a route's arrival to its copies being queued (lookup included).
    pub route: Histogram<14>,
    /// One presence lookup in Redis.
    pub lookup: Histogram<14>,
    /// Deliveries per batch sent to a gateway.
    pub batch_size: Histogram<11>,
    /// Deliveries queued for gateways, not yet sent (all links).
    pub queued: Gauge,
    /// Gateways linked.
    pub links: Gauge,
    /// 1 while the router drains.
    pub draining: Gauge,
}

pub static ROUTER: Router = Router {
    routes: Counter::new(),
    forwarded: Counter::new(),
    dropped: Counter::new(),
    lookup_failures: Counter::new(),
    route: Histogram::seconds(LATENCY_US),
    lookup: Histogram::seconds(LATENCY_US),
    batch_size: Histogram::sizes(BATCH_SIZES),
    queued: Gauge::new(),
    links: Gauge::new(),
    draining: Gauge::new(),
};

/// `/metrics` of `switchboard router`.
pub fn render_service() -> String {
    let m = &ROUTER;
    let mut e = Encoder::new();
    e.counter("switchboard_router_routes_total", "Routes received from gateways.", &m.routes);
    e.counter(
        "switchboard_router_deliveries_forwarded_total",
        "Route copies queued for a gateway.",
        &m.forwarded,
    );
    e.counter(
        "switchboard_router_deliveries_dropped_total",
        "Route copies dropped because the gateway's link was full or gone.",
        &m.dropped,
    );
    e.counter(
        "switchboard_router_lookup_failures_total",
        "Presence lookups in Redis that failed or timed out (the route went to every gateway).",
        &m.lookup_failures,
    );
    e.histogram(
        "switchboard_router_route_duration_seconds",
        "From a route's arrival to its copies being queued, presence lookup included.",
        &m.route,
    );
    e.histogram(
        "switchboard_router_lookup_duration_seconds",
        "One presence lookup in Redis.",
        &m.lookup,
    );
    e.histogram(
        "switchboard_router_batch_size",
        "Deliveries per batch sent to a gateway.",
        &m.batch_size,
    );
    e.gauge(
        "switchboard_router_queue_depth",
        "Deliveries queued for gateways, not yet sent.",
        &m.queued,
    );
    e.gauge("switchboard_router_links", "Gateways linked.", &m.links);
    e.gauge("switchboard_router_draining", "1 while the router drains.", &m.draining);
    switchboard_presence::metrics::encode(&mut e);
    switchboard_telemetry::grpc::encode(&mut e);
    e.process();
    e.finish()
}

/// A gateway's links to the routers.
pub struct Links {
    /// Routes queued for a router.
    pub routes: Counter,
    /// Routes dropped: this gateway was closing, or every link's queue was full.
    pub dropped: Counter,
    /// Deliveries received from routers.
    pub deliveries: Counter,
    /// Links that failed or were closed by the router without draining.
    pub failures: Counter,
    /// Links up.
    pub up: Gauge,
    /// Routes queued for the routers, not yet sent.
    pub queued: Gauge,
}

pub static LINKS: Links = Links {
    routes: Counter::new(),
    dropped: Counter::new(),
    deliveries: Counter::new(),
    failures: Counter::new(),
    up: Gauge::new(),
    queued: Gauge::new(),
};

pub fn encode_links(e: &mut Encoder) {
    let m = &LINKS;
    e.counter("switchboard_gateway_routes_total", "Routes handed to a router link.", &m.routes);
    e.counter(
        "switchboard_gateway_routes_dropped_total",
        "Routes dropped (closing, or every router link full).",
        &m.dropped,
    );
    e.counter(
        "switchboard_gateway_routed_deliveries_total",
        "Deliveries received from routers.",
        &m.deliveries,
    );
    e.counter(
        "switchboard_gateway_router_link_failures_total",
        "Router links that failed or ended without the router draining.",
        &m.failures,
    );
    e.gauge("switchboard_gateway_router_links_up", "Router links up.", &m.up);
    e.gauge(
        "switchboard_gateway_router_queue_depth",
        "Routes queued for the routers, not yet sent.",
        &m.queued,
    );
}
