//! Distributed traces: the OpenTelemetry pipeline (OTLP over gRPC) and the W3C
//! `traceparent` that carries a trace from process to process.
//!
//! A message's trace crosses batched and streamed hops (an `AppendMany` call carries
//! many messages, a router link carries everyone's deliveries), so the context travels
//! per item, in a `traceparent` field of the item, as well as in the `traceparent`
//! header of unary gRPC calls ([`crate::grpc`]). Both use the same text
//! (`00-{trace id}-{span id}-{flags}`, W3C Trace Context level 1).
//!
//! When no exporter is configured nothing here does any work: [`enabled`] is false, the
//! spans of the message path (DEBUG level) are not made, and [`traceparent`] returns an
//! empty string without allocating. With an exporter, only sampled traces travel (see
//! [`traceparent`]): past the sending gateway, an unsampled message costs no spans.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Set once the OpenTelemetry layer is installed; read on every propagation.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported (an OTLP endpoint was configured).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Cleared when the configured sampler never samples a trace that starts here (see
/// [`root`]).
static ROOTS_SAMPLED: AtomicBool = AtomicBool::new(true);

/// A span that starts a trace (the sending gateway's `message.send`): `make` builds it,
/// unless traces are exported and the sampler never samples a new trace (`always_off`,
/// `parentbased_always_off`, or a trace-id ratio of 0: "sampling off"). Then no span is
/// made at all: the sampler would only drop it, and making it per message is the one cost
/// tracing has when it keeps nothing.
pub fn root(make: impl FnOnce() -> Span) -> Span {
    if enabled() && !ROOTS_SAMPLED.load(Ordering::Relaxed) { Span::none() } else { make() }
}

/// Whether a sampler configured as `OTEL_TRACES_SAMPLER` = `sampler` and
/// `OTEL_TRACES_SAMPLER_ARG` = `arg` ever samples a trace with no parent. Read as the SDK
/// reads them: the default is `parentbased_always_on`, and a missing or malformed ratio
/// means 1.
fn samples_roots(sampler: Option<&str>, arg: Option<&str>) -> bool {
    match sampler.map(str::trim) {
        Some("always_off" | "parentbased_always_off") => false,
        Some("traceidratio" | "parentbased_traceidratio") => {
            arg.and_then(|a| a.trim().parse::<f64>().ok()).is_none_or(|ratio| ratio > 0.0)
        }
        _ => true,
    }
}

/// Whether the work running now belongs to a sampled trace: the OpenTelemetry context
/// made current by entering a traced span is sampled. A thread-local read; false when
/// tracing is off or outside any traced span.
pub fn sampled_here() -> bool {
    enabled() && Context::map_current(|cx| cx.span().span_context().is_sampled())
}

/// The `traceparent` of `span`, to hand to the next process; empty when tracing is off,
/// the span is disabled, or its trace was not sampled.
///
/// Only sampled traces travel: every process samples parent-based, so a process that
/// got an unsampled parent would drop its spans anyway, and not sending the context
/// spares each hop creating spans only to drop them (the decision is made once, where a
/// trace starts). The price: lines logged downstream of an unsampled send carry no
/// trace id.
pub fn traceparent(span: &Span) -> String {
    if !enabled() || span.is_disabled() {
        return String::new();
    }
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    if !sc.is_valid() || !sc.is_sampled() {
        return String::new();
    }
    format(sc)
}

/// `sc` as a W3C `traceparent` (version 00), as [`parse`] reads it back.
pub fn format(sc: &SpanContext) -> String {
    format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())
}

/// [`traceparent`] of the current span, if the current trace is sampled.
pub fn current_traceparent() -> String {
    if !sampled_here() {
        return String::new();
    }
    traceparent(&Span::current())
}

/// A span continuing the sampled remote trace named by `traceparent`: `make` builds it
/// (with `parent: None`) and the remote span becomes its parent. `Span::none()` when
/// tracing is off or `traceparent` is empty, malformed or not sampled: nothing to
/// continue, and no span is made.
pub fn continue_remote(traceparent: &str, make: impl FnOnce() -> Span) -> Span {
    if traceparent.is_empty() || !enabled() {
        return Span::none();
    }
    match parse(traceparent) {
        Some(parent) if parent.is_sampled() => {
            let span = make();
            let _ = span.set_parent(Context::new().with_remote_span_context(parent));
            span
        }
        _ => Span::none(),
    }
}

/// A span for local work inside the current sampled trace: `make` builds it (the current
/// span is its parent); `Span::none()` when the current trace is not sampled.
pub fn child(make: impl FnOnce() -> Span) -> Span {
    if sampled_here() { make() } else { Span::none() }
}

/// Parses a W3C `traceparent` (version 00; later versions are read as 00, as the
/// specification asks).
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    if flags.len() != 2 || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !(hex(version) && hex(trace) && hex(span) && hex(flags)) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// The exporting pipeline; flushes what is buffered when shut down.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// An OTLP/gRPC exporter configured from the standard environment
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
    /// `OTEL_BSP_*`), with `service` as the service name unless `OTEL_SERVICE_NAME` says
    /// otherwise. Must be called inside a tokio runtime (the gRPC client runs on it).
    pub(crate) fn start(
        service: &'static str,
        service_name_set: bool,
    ) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if !service_name_set {
            resource = resource.with_service_name(service);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Self { provider })
    }

    pub(crate) fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer("switchboard")
    }

    pub(crate) fn mark_enabled() {
        let sampler = std::env::var("OTEL_TRACES_SAMPLER").ok();
        let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
        ROOTS_SAMPLED.store(samples_roots(sampler.as_deref(), arg.as_deref()), Ordering::Relaxed);
        ENABLED.store(true, Ordering::Relaxed);
    }

    /// Sends the spans still buffered (up to the exporter's timeout) and stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: traces not flushed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_w3c_traceparent() {
        let sc = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled());
        assert!(sc.is_remote());
        let unsampled = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn roots_are_sampled_unless_the_sampler_says_never() {
        assert!(samples_roots(None, None));
        assert!(samples_roots(Some("parentbased_always_on"), None));
        assert!(samples_roots(Some("parentbased_traceidratio"), Some("0.01")));
        assert!(samples_roots(Some("traceidratio"), None), "a missing ratio is 1");
        assert!(samples_roots(Some("traceidratio"), Some("none")), "a bad ratio is 1");
        assert!(!samples_roots(Some("always_off"), None));
        assert!(!samples_roots(Some("parentbased_always_off"), Some("1")));
        assert!(!samples_roots(Some("parentbased_traceidratio"), Some("0")));
        assert!(!samples_roots(Some("traceidratio"), Some(" 0.0 ")));
    }

    #[test]
    fn rejects_malformed_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} accepted");
        }
        // A later version may carry more fields.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }
}
