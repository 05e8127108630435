//! Tower layers for our gRPC servers and clients: trace context across unary calls, the
//! server's request and error counts, and `/metrics` on the gRPC port.
//!
//! - [`ServerLayer`] (on `tonic::transport::Server::builder().layer(..)`, with
//!   `accept_http1(true)` so Prometheus can scrape over HTTP/1.1): answers
//!   `GET /metrics`; counts calls and failed calls; a call that carries a (sampled)
//!   `traceparent` header runs in a `grpc.server` span whose parent is the caller's span.
//!   Calls without one (health probes, batched appends whose messages carry their own
//!   context) get no span, so they start no trace.
//! - [`ClientLayer`] (around a `Channel`): a call made inside a sampled trace runs in a
//!   `grpc.client` span and sends it as `traceparent`; otherwise (tracing off, no trace,
//!   an unsampled one) it passes through untouched.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::metrics::{CONTENT_TYPE, Counter, Encoder};
use crate::trace;

const TRACEPARENT: &str = "traceparent";

/// gRPC calls served by this process.
pub static SERVER_CALLS: Counter = Counter::new();
/// gRPC calls this process answered with a status other than OK (trailers-only replies;
/// a streaming call that fails midway is not counted).
pub static SERVER_ERRORS: Counter = Counter::new();

/// Writes the server-side gRPC counters.
pub fn encode(e: &mut Encoder) {
    e.counter("switchboard_grpc_server_calls_total", "gRPC calls served.", &SERVER_CALLS);
    e.counter(
        "switchboard_grpc_server_errors_total",
        "gRPC calls answered with an error status.",
        &SERVER_ERRORS,
    );
}

/// See the module docs. `metrics` renders this role's `/metrics` page.
#[derive(Clone, Copy)]
pub struct ServerLayer {
    metrics: fn() -> String,
}

impl ServerLayer {
    pub fn new(metrics: fn() -> String) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = TracedServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TracedServer { inner, metrics: self.metrics }
    }
}

#[derive(Clone)]
pub struct TracedServer<S> {
    inner: S,
    metrics: fn() -> String,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for TracedServer<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == "/metrics" && request.method() == http::Method::GET {
            let page = (self.metrics)();
            let response = http::Response::builder()
                .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(Body::new(page))
                .unwrap_or_default();
            return Box::pin(std::future::ready(Ok(response)));
        }
        SERVER_CALLS.inc();
        let parent = request.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok());
        let span = trace::continue_remote(parent.unwrap_or_default(), || {
            let method = request.uri().path().trim_start_matches('/');
            tracing::debug_span!(
                parent: None,
                "grpc.server",
                otel.name = method,
                otel.kind = "server",
                rpc.system = "grpc",
            )
        });
        let call = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let response = call.await?;
            let failed = response
                .headers()
                .get("grpc-status")
                .is_some_and(|status| status.as_bytes() != b"0");
            if failed {
                SERVER_ERRORS.inc();
            }
            Ok(response)
        })
    }
}

/// See the module docs.
#[derive(Clone, Copy, Default)]
pub struct ClientLayer;

impl<S> Layer<S> for ClientLayer {
    type Service = TracedClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TracedClient { inner }
    }
}

#[derive(Clone)]
pub struct TracedClient<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for TracedClient<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let span = trace::child(|| {
            let method = request.uri().path().trim_start_matches('/');
            tracing::debug_span!(
                "grpc.client",
                otel.name = method,
                otel.kind = "client",
                rpc.system = "grpc",
            )
        });
        let parent = trace::traceparent(&span);
        if let Ok(value) = http::HeaderValue::try_from(parent)
            && !value.is_empty()
        {
            request.headers_mut().insert(TRACEPARENT, value);
        }
        self.inner.call(request).instrument(span)
    }
}
