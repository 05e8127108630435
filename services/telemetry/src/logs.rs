//! Setting up `tracing` for a process: logs to stderr (text, or one JSON object per
//! line carrying the trace and span ids), plus the OpenTelemetry layer when an OTLP
//! endpoint is configured.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::trace::Exporter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`, `fields`,
    /// `spans`, and `trace_id`/`span_id` when the line was logged inside a traced span.
    Json,
}

/// What [`init`] sets up; parsed by the binary.
#[derive(Debug, Clone)]
pub struct Config {
    pub format: LogFormat,
    /// An `EnvFilter` directive string (`SWITCHBOARD_LOG`), or None for `default_level`.
    pub filter: Option<String>,
    pub default_level: &'static str,
    /// Export traces (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT` is set).
    pub traces: bool,
    /// The service name when `OTEL_SERVICE_NAME` is not set (`switchboard-gateway`, ...).
    pub service: &'static str,
    /// Whether `OTEL_SERVICE_NAME` is set (it then wins).
    pub service_name_set: bool,
}

/// Keeps the exporter alive; [`Telemetry::shutdown`] flushes buffered spans.
pub struct Telemetry {
    exporter: Option<Exporter>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(exporter) = self.exporter {
            exporter.shutdown();
        }
    }
}

/// Our crates' spans that traces are made of (DEBUG level), and events inside them
/// (they become span events). Not the `session` span: it lasts as long as a connection,
/// and a trace per connection would swallow every request made on it; calls made in a
/// session start traces of their own.
fn trace_filter<S>() -> impl tracing_subscriber::layer::Filter<S> {
    let targets = Targets::new().with_target("switchboard", Level::DEBUG).with_default(Level::WARN);
    targets.and(tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.is_span() && meta.name() == "session")
    }))
}

/// Installs the global subscriber. With `traces`, must be called inside a tokio runtime.
/// An exporter that cannot be built is reported on stderr and the process runs on
/// without traces (observability must not take the service down).
pub fn init(config: Config) -> Telemetry {
    let filter = config
        .filter
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(config.default_level));
    let logs = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonFormat)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let exporter = if config.traces {
        match Exporter::start(config.service, config.service_name_set) {
            Ok(exporter) => Some(exporter),
            Err(e) => {
                eprintln!("warning: traces are not exported: {e}");
                None
            }
        }
    } else {
        None
    };
    let traces = exporter.as_ref().map(|e| {
        tracing_opentelemetry::layer()
            .with_tracer(e.tracer())
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
            .with_filter(trace_filter())
    });
    let installed = Registry::default().with(logs).with(traces).try_init().is_ok();
    if installed && exporter.is_some() {
        Exporter::mark_enabled();
    }
    Telemetry { exporter }
}

/// One JSON object per event.
struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(message) = fields.message {
            line.insert("message".into(), message.into());
        }
        if !fields.fields.is_empty() {
            line.insert("fields".into(), Value::Object(fields.fields));
        }
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let mut entry = Map::new();
                    entry.insert("name".into(), span.name().into());
                    let extensions = span.extensions();
                    if let Some(f) = extensions.get::<FormattedFields<N>>()
                        && !f.is_empty()
                    {
                        entry.insert("fields".into(), f.fields.as_str().into());
                    }
                    Value::Object(entry)
                })
                .collect();
            if !spans.is_empty() {
                line.insert("spans".into(), Value::Array(spans));
            }
        }
        // The OpenTelemetry layer makes the innermost entered span's context current
        // (the dispatcher cannot be asked from inside an event).
        let ids = opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let sc = span.span_context();
            sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
        });
        if let Some((trace_id, span_id)) = ids {
            line.insert("trace_id".into(), trace_id.into());
            line.insert("span_id".into(), span_id.into());
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields as JSON values; `message` apart.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    fields: Map<String, Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.fields.insert(field.name().into(), text.into());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.fields.insert(field.name().into(), value.into());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn json_lines_carry_the_trace_and_span_ids_of_traced_work() {
        let buffer = Buffer::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = Registry::default()
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonFormat)
                    .with_ansi(false)
                    .with_writer(buffer.clone())
                    .with_filter(EnvFilter::new("info")),
            )
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(trace_filter()),
            );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(answer = 42, "outside any span");
            let span = tracing::info_span!("switchboard_test_span", user = 7);
            let _in = span.enter();
            tracing::warn!(conversation = 3, "inside \"quoted\"");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "outside any span");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["fields"]["answer"], 42);
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        let inside = &lines[1];
        assert_eq!(inside["message"], "inside \"quoted\"");
        assert_eq!(inside["fields"]["conversation"], 3);
        assert_eq!(inside["spans"][0]["name"], "switchboard_test_span");
        assert_eq!(inside["spans"][0]["fields"], "user=7");
        let trace_id = inside["trace_id"].as_str().unwrap();
        let span_id = inside["span_id"].as_str().unwrap();
        assert_eq!(trace_id.len(), 32, "{text}");
        assert_eq!(span_id.len(), 16, "{text}");
        assert!(trace_id.bytes().all(|b| b.is_ascii_hexdigit()) && trace_id != "0".repeat(32));
    }
}
