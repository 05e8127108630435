//! Observability of a real cluster (storage, router, gateways as processes):
//!
//! - traces: an OTLP/gRPC receiver in this test collects what every role exports; one
//!   message sent on one gateway is one trace across the sending gateway, storage, the
//!   router and the receiving gateway, each span's parent being the span that handed the
//!   message on. Sampling is parent-based: a trace the first gateway drops is dropped
//!   everywhere, one it keeps is kept everywhere.
//! - metrics: `/metrics` of every role parses as Prometheus text, and a known workload
//!   moves the counters by exactly what it did.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;
use support::{Cluster, TestData, WsClient, add_users, http_get, login_token};

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    instance: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
}

/// The test's OTLP collector: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut spans = self.0.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let attribute = |key: &str| {
                resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|a| a.key == key))
                    .and_then(|a| a.value.as_ref()?.value.clone())
                    .map(|v| match v {
                        AnyValue::StringValue(s) => s,
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default()
            };
            let (service, instance) = (attribute("service.name"), attribute("service.instance.id"));
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    spans.push(Span {
                        service: service.clone(),
                        instance: instance.clone(),
                        name: span.name.clone(),
                        kind: span.kind,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    /// Serves on an ephemeral port; returns its `http://` endpoint.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(
            tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming),
        );
        format!("http://{addr}")
    }

    fn spans(&self) -> Vec<Span> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_across_gateway_storage_router_and_gateway() {
    let data = TestData::new("traces").await;
    add_users(&data.database, &["alice", "bob"]);
    let collector = Collector::default();
    let endpoint = collector.start().await;

    // gw1 keeps every trace it starts, gw2 none; storage and the router follow the
    // sender's decision (their own default would keep everything).
    let cluster = Cluster::on(&data).gateways(2).env(move |who| {
        let mut vars = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
        ];
        if who.starts_with("gw") {
            vars.push(("OTEL_RESOURCE_ATTRIBUTES".into(), format!("service.instance.id={who}")));
        }
        if who == "gw2" {
            vars.push(("OTEL_TRACES_SAMPLER".into(), "parentbased_traceidratio".into()));
            vars.push(("OTEL_TRACES_SAMPLER_ARG".into(), "0".into()));
        }
        vars
    });
    let mut cluster = cluster.start().await;
    let (gw1, gw2) = (&cluster.gateways[0].1, &cluster.gateways[1].1);
    let alice_token = login_token(gw1, "alice").await;
    let bob_token = login_token(gw2, "bob").await;
    let mut alice = WsClient::connect(gw1, &alice_token).await;
    let mut bob = WsClient::connect(gw2, &bob_token).await;

    // alice (gw1) -> bob (gw2): sampled at gw1, so traced everywhere.
    let send = json!({"type": "send", "id": "1", "to": "bob", "client_msg_id": "m1", "body": "hi"});
    alice.send(send).await;
    alice.expect(|f| f["type"] == "ack").await;
    bob.expect(|f| f["type"] == "message" && f["message"]["body"] == "hi").await;
    // bob (gw2) -> alice (gw1): dropped at gw2, so traced nowhere.
    let reply =
        json!({"type": "send", "id": "2", "to": "alice", "client_msg_id": "m2", "body": "hello"});
    bob.send(reply).await;
    bob.expect(|f| f["type"] == "ack").await;
    alice.expect(|f| f["type"] == "message" && f["message"]["body"] == "hello").await;

    // Every role flushes its spans on the way out.
    let Cluster { storage, routers, gateways, .. } = &mut cluster;
    for (proc, _) in gateways.iter_mut().chain(routers.iter_mut()).chain([storage]) {
        proc.terminate();
    }
    let spans = collector.spans();
    let find = |name: &str, service: &str, pred: &dyn Fn(&Span) -> bool| -> Span {
        let found: Vec<&Span> =
            spans.iter().filter(|s| s.name == name && s.service == service && pred(s)).collect();
        assert_eq!(
            found.len(),
            1,
            "one {name} span from {service} expected; all spans: {spans:#?}"
        );
        found[0].clone()
    };
    let any = |_: &Span| true;

    let send = find("message.send", "switchboard-gateway", &|s| s.instance == "gw1");
    assert!(send.parent.is_empty(), "a send starts its trace: {send:?}");
    assert_eq!(send.kind, SpanKind::Server as i32);
    let trace = send.trace_id.clone();
    let append_client = find("storage.append", "switchboard-gateway", &any);
    let append_server = find("storage.append", "switchboard-storage", &any);
    let commit = find("db.append_batch", "switchboard-storage", &any);
    let route = find("router.route", "switchboard-router", &any);
    let lookup = find("redis.locate", "switchboard-router", &any);
    let deliver = find("gateway.deliver", "switchboard-gateway", &any);
    assert_eq!(append_client.instance, "gw1");
    assert_eq!(append_client.kind, SpanKind::Client as i32);
    assert_eq!(append_server.kind, SpanKind::Server as i32);
    assert_eq!(deliver.instance, "gw2", "the receiving gateway continues the trace");
    for span in [&append_client, &append_server, &commit, &route, &lookup, &deliver] {
        assert_eq!(span.trace_id, trace, "{span:?} is not in the send's trace");
    }
    assert_eq!(append_client.parent, send.span_id);
    assert_eq!(append_server.parent, append_client.span_id);
    assert_eq!(commit.parent, append_server.span_id);
    assert_eq!(route.parent, send.span_id);
    assert_eq!(lookup.parent, route.span_id);
    assert_eq!(deliver.parent, route.span_id);
    // Nothing of bob's unsampled send reached the collector, from any role. (Other
    // traces, of the calls sessions made on gw1, may.)
    let message_path =
        ["message.send", "storage.append", "db.append_batch", "router.route", "redis.locate"];
    let stray: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id != trace)
        .filter(|s| message_path.contains(&s.name.as_str()) || s.name == "gateway.deliver")
        .collect();
    assert!(stray.is_empty(), "spans of a dropped trace were exported: {stray:#?}");

    data.remove().await;
}

/// A `/metrics` page: every sample by its name with labels (as written). Panics on
/// anything that is not Prometheus text: a sample of an undeclared family, a bad name, a
/// value that is not a number.
fn parse_metrics(page: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in page.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample without # TYPE: {line}");
        if types[family] == "counter" {
            assert!(name.ends_with("_total"), "a counter's name ends in _total: {line}");
        }
        assert!(samples.insert(series.to_owned(), value).is_none(), "duplicate: {line}");
    }
    samples
}

async fn scrape(addr: &str) -> HashMap<String, f64> {
    let (status, page) = http_get(addr, "/metrics", None).await;
    assert_eq!(status, 200, "{page}");
    parse_metrics(&page)
}

/// How much each of `series` moved between two scrapes.
fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    let value = |m: &HashMap<String, f64>| {
        *m.get(series).unwrap_or_else(|| panic!("{series} missing from {m:#?}"))
    };
    value(after) - value(before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_every_role_count_a_known_workload() {
    let data = TestData::new("metrics").await;
    add_users(&data.database, &["alice", "bob"]);
    let cluster = Cluster::on(&data).gateways(2).start().await;
    let (gw1, gw2) = (&cluster.gateways[0].1, &cluster.gateways[1].1);
    let (storage, router) = (&cluster.storage.1, &cluster.routers[0].1);
    let alice_token = login_token(gw1, "alice").await;
    let bob_token = login_token(gw2, "bob").await;
    let mut alice = WsClient::connect(gw1, &alice_token).await;
    let mut bob = WsClient::connect(gw2, &bob_token).await;
    // The direct conversation exists before the measured workload.
    alice.send(json!({"type": "open_direct", "id": "o", "user": "bob"})).await;
    let conversation =
        alice.expect(|f| f["type"] == "conversation").await["conversation"]["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before =
        [scrape(gw1).await, scrape(gw2).await, scrape(router).await, scrape(storage).await];
    const N: usize = 5;
    for i in 0..N {
        let send = json!({"type": "send", "id": format!("s{i}"), "conversation_id": conversation,
                          "client_msg_id": format!("m{i}"), "body": format!("message {i}")});
        alice.send(send).await;
        alice.expect(|f| f["type"] == "ack").await;
        // (alice's own copy was queued before her ack, and written before it.)
        bob.expect(|f| f["type"] == "message" && f["message"]["body"] == format!("message {i}"))
            .await;
    }
    // A retry is acked as a duplicate and stores nothing.
    let retry = json!({"type": "send", "id": "r", "conversation_id": conversation,
                       "client_msg_id": "m0", "body": "message 0"});
    alice.send(retry).await;
    assert_eq!(alice.expect(|f| f["type"] == "ack").await["duplicate"], true);
    let after = [scrape(gw1).await, scrape(gw2).await, scrape(router).await, scrape(storage).await];
    let n = N as f64;
    let [gw1_before, gw2_before, router_before, storage_before] = &before;
    let [gw1_after, gw2_after, router_after, storage_after] = &after;

    // The sending gateway: N + 1 sends in, N + 1 acks out, N stored, 1 duplicate, N echoes
    // to alice's own session, N routes handed to the router.
    let gw1 = |series: &str| moved(gw1_before, gw1_after, series);
    assert_eq!(gw1("switchboard_gateway_frames_received_total{type=\"send\"}"), n + 1.0);
    assert_eq!(gw1("switchboard_gateway_frames_sent_total{type=\"ack\"}"), n + 1.0);
    assert_eq!(gw1("switchboard_gateway_messages_sent_total"), n);
    assert_eq!(gw1("switchboard_gateway_messages_duplicate_total"), 1.0);
    assert_eq!(gw1("switchboard_gateway_send_duration_seconds_count"), n + 1.0);
    assert_eq!(gw1("switchboard_gateway_storage_append_duration_seconds_count"), n + 1.0);
    assert_eq!(gw1("switchboard_gateway_frames_sent_total{type=\"message\"}"), n);
    assert_eq!(gw1("switchboard_gateway_messages_delivered_total"), n);
    assert_eq!(gw1("switchboard_gateway_routes_total"), n);
    assert_eq!(gw1("switchboard_gateway_routed_deliveries_total"), 0.0);
    assert_eq!(gw1_after["switchboard_gateway_sessions"], 1.0);
    assert_eq!(gw1_after["switchboard_gateway_router_links_up"], 1.0);

    // The router: N routes in, N copies forwarded (to gw2 only: gw1 is the origin).
    let router = |series: &str| moved(router_before, router_after, series);
    assert_eq!(router("switchboard_router_routes_total"), n);
    assert_eq!(router("switchboard_router_deliveries_forwarded_total"), n);
    assert_eq!(router("switchboard_router_deliveries_dropped_total"), 0.0);
    assert_eq!(router("switchboard_router_route_duration_seconds_count"), n);
    assert_eq!(router("switchboard_router_lookup_duration_seconds_count"), n);
    assert_eq!(router("switchboard_router_batch_size_sum"), n);
    assert_eq!(router_after["switchboard_router_links"], 2.0);
    assert_eq!(router_after["switchboard_router_queue_depth"], 0.0);

    // The receiving gateway: N deliveries from the router, N message frames to bob.
    let gw2 = |series: &str| moved(gw2_before, gw2_after, series);
    assert_eq!(gw2("switchboard_gateway_routed_deliveries_total"), n);
    assert_eq!(gw2("switchboard_gateway_frames_sent_total{type=\"message\"}"), n);
    assert_eq!(gw2("switchboard_gateway_messages_delivered_total"), n);
    assert_eq!(gw2("switchboard_gateway_delivery_duration_seconds_count"), n);
    assert_eq!(gw2("switchboard_gateway_messages_sent_total"), 0.0);

    // Storage: N + 1 appends answered (the duplicate too), in at least one batch each
    // call, with as many commit timings as batches.
    let storage = |series: &str| moved(storage_before, storage_after, series);
    assert_eq!(storage("switchboard_storage_messages_appended_total"), n + 1.0);
    assert_eq!(storage("switchboard_storage_append_batch_size_sum"), n + 1.0);
    assert_eq!(storage("switchboard_storage_append_duration_seconds_count"), n + 1.0);
    assert_eq!(
        storage("switchboard_storage_commit_duration_seconds_count"),
        storage("switchboard_storage_append_batch_size_count")
    );
    assert!(storage("switchboard_grpc_server_calls_total") >= n + 1.0);
    assert_eq!(storage("switchboard_grpc_server_errors_total"), 0.0);
    assert_eq!(storage_after["switchboard_storage_draining"], 0.0);
    assert!(storage_after["process_resident_memory_bytes"] > 0.0);

    // Every metric the Grafana dashboard queries is served by some role.
    let families: std::collections::HashSet<String> = after
        .iter()
        .flat_map(|m| m.keys())
        .map(|series| {
            let name = series.split('{').next().unwrap();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name)
                .to_owned()
        })
        .collect();
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/grafana/switchboard.json"),
    )
    .unwrap();
    let queried: Vec<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("switchboard_") || w.starts_with("process_"))
        .collect();
    assert!(queried.len() > 20, "the dashboard queries our metrics");
    for name in queried {
        let family =
            ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(families.contains(family), "the dashboard queries {name}, which no role serves");
    }

    drop(cluster);
    data.remove().await;
}
