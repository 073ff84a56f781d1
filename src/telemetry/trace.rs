//! Traces: the process's `tracing` subscriber (logs, and OpenTelemetry spans over OTLP when
//! `trace.otlp_endpoint` is set) and the server span every RPC runs in.
//!
//! A request's trace is the server span ([`server_span`], opened by the outermost layer in
//! `server/layers.rs`, child of the caller's W3C `traceparent` when one came along) with four
//! kinds of children: `fetch` and `assemble` (in `predict.rs`), then per batcher chunk `queue`
//! (enqueue → picked up by an inference thread) and `inference` (the model run the chunk was
//! part of). The last two are created across the thread boundary with an explicit parent carried
//! in the batcher's message, so they are children of the server span like the first two, with no
//! `predict` span in between.
//!
//! Zero cost when off: all of these are DEBUG spans, the log filter's default (`info`) does not
//! want them, and without an endpoint no OpenTelemetry layer exists. Each layer has its own
//! filter, so `tracing`'s callsite cache answers "nobody wants this span" with one atomic load
//! and no span is built; [`server_span`] also skips the `traceparent` parsing then.
//!
//! Export runs on the SDK's batch processor thread with a bounded queue
//! (`trace.max_queue_spans`): a slow collector makes it drop spans, never slows a request. The
//! OTLP client is tonic's, built inside the tokio runtime (its channel's connection runs there);
//! [`OtlpTraces::shutdown`] is the last step of the app's ordered shutdown, after the inference
//! threads ended their spans.

#[cfg(feature = "otel")]
use std::time::Duration;

#[cfg(feature = "otel")]
use opentelemetry::propagation::{Extractor, TextMapPropagator};
#[cfg(feature = "otel")]
use opentelemetry::trace::TracerProvider as _;
#[cfg(feature = "otel")]
use opentelemetry_otlp::WithExportConfig;
#[cfg(feature = "otel")]
use opentelemetry_sdk::Resource;
#[cfg(feature = "otel")]
use opentelemetry_sdk::propagation::TraceContextPropagator;
#[cfg(feature = "otel")]
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider};
use tonic::Code;
use tracing::Subscriber;
#[cfg(feature = "otel")]
use tracing::level_filters::LevelFilter;
#[cfg(feature = "otel")]
use tracing_opentelemetry::OpenTelemetrySpanExt;
#[cfg(feature = "otel")]
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::telemetry::config::{DEFAULT_LOG_LEVEL, LogConfig, LogFormat, TraceConfig};

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The OTLP exporter could not be built (a bad endpoint, no tokio runtime).
    #[cfg(feature = "otel")]
    #[error("trace.otlp_endpoint: cannot build the OTLP exporter for `{endpoint}`: {source}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// The OTLP pipeline: present only when `trace.otlp_endpoint` is set.
#[cfg(feature = "otel")]
#[derive(Debug, Clone)]
pub struct OtlpTraces {
    provider: SdkTracerProvider,
}

/// Built without the `otel` feature there is no OTLP pipeline: config validation refuses
/// `trace.otlp_endpoint`, so this is never built and the subscriber has the log layer only.
#[cfg(not(feature = "otel"))]
#[derive(Debug, Clone)]
pub struct OtlpTraces(std::convert::Infallible);

#[cfg(not(feature = "otel"))]
impl OtlpTraces {
    /// Always `None`: validation already refused an endpoint.
    pub fn from_config(_config: &TraceConfig) -> Result<Option<Self>, TraceError> {
        Ok(None)
    }

    /// Never called: no value of this type exists.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        match self.0 {}
        #[allow(unreachable_code)]
        tracing_subscriber::layer::Identity::new()
    }

    /// Never called: no value of this type exists.
    pub async fn shutdown(self) {
        match self.0 {}
    }
}

#[cfg(feature = "otel")]
impl OtlpTraces {
    /// Builds the exporter and the tracer provider when an endpoint is configured, else `None`.
    /// Must run inside a tokio runtime: the exporter's channel spawns its connection there.
    pub fn from_config(config: &TraceConfig) -> Result<Option<Self>, TraceError> {
        let Some(endpoint) = &config.otlp_endpoint else { return Ok(None) };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_millis(config.export_timeout_ms))
            .build()
            .map_err(|source| TraceError::Exporter { endpoint: endpoint.clone(), source })?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(config.export_delay_ms))
            .with_max_queue_size(config.max_queue_spans)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch).build())
            // A caller's sampled flag decides for its trace; the ratio only for new traces.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
            .with_resource(Resource::builder().with_service_name(config.service_name.clone()).build())
            .build();
        Ok(Some(OtlpTraces { provider }))
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans, with its own filter:
    /// augur's spans and events from DEBUG, other crates' from INFO, ONNX Runtime's from WARN
    /// (it logs every session option at INFO).
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let filter = Targets::new()
            .with_target("augur", LevelFilter::DEBUG)
            .with_target("ort", LevelFilter::WARN)
            .with_default(LevelFilter::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("augur"))
            // Busy/idle times, thread and source location are attributes on every span: more
            // work per span and more bytes per export, for little a trace view does not show.
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(filter)
    }

    /// Exports what is still queued and stops the exporter (blocking work, off the async
    /// workers). Spans ended later are dropped.
    pub async fn shutdown(self) {
        let done = tokio::task::spawn_blocking(move || self.provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "trace export did not flush"),
            Err(e) => tracing::warn!(error = %e, "trace export shutdown panicked"),
        }
    }
}

/// The process's subscriber: log lines (`[log]`, `RUST_LOG` overriding `log.level`) through
/// `writer`, plus the OpenTelemetry layer when `otlp` is set. Each has its own filter, so a span
/// only the exporter wants is not formatted into log lines, and one nobody wants is not built.
pub fn subscriber<W>(log: &LogConfig, otlp: Option<&OtlpTraces>, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_LEVEL));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    // The protocol crates' lines are rate-limited after the level filter (log_limit.rs).
    let filter = tracing_subscriber::filter::FilterExt::and(filter, super::log_limit::ProtocolLogLimit::default());
    let logs = match log.format {
        LogFormat::Human => fmt.with_ansi(ansi).with_filter(filter).boxed(),
        // Span fields ride along with each event, so a request's fields reach every line.
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(false).with_filter(filter).boxed(),
    };
    tracing_subscriber::registry().with(logs).with(otlp.map(OtlpTraces::layer))
}

// === server span ===

/// The span of one RPC, `path` being `/package.Service/Method`, with the RPC semantic
/// conventions' attributes. Both generations, as backends are mid-migration: the stable names
/// (`rpc.system.name`, `rpc.method` = `package.Service/Method`, `rpc.response.status_code` =
/// the code's name) and the older `rpc.system`, `rpc.service`, `rpc.grpc.status_code` (number).
/// The older `rpc.method` (the bare method name) cannot sit beside the stable one under the same
/// key; the stable value wins. A W3C `traceparent` in `headers` becomes the span's parent.
pub fn server_span(path: &str, headers: &http::HeaderMap) -> tracing::Span {
    let full = path.strip_prefix('/').unwrap_or(path);
    let service = full.split_once('/').map_or(full, |(service, _)| service);
    let span = tracing::debug_span!(
        "rpc",
        otel.name = full,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.system.name = "grpc",
        rpc.service = service,
        rpc.method = full,
        rpc.grpc.status_code = tracing::field::Empty,
        rpc.response.status_code = tracing::field::Empty,
    );
    #[cfg(not(feature = "otel"))]
    let _ = headers;
    // Nobody records spans (tracing off): skip parsing the header.
    #[cfg(feature = "otel")]
    if !span.is_disabled() {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        // Only fails when no OpenTelemetry layer is installed (spans for logs only).
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the call's status on its server span. Server errors (the conventions' list for gRPC
/// servers) mark the span as failed; caller errors like INVALID_ARGUMENT do not. An unknown
/// method is renamed `_OTHER`, so caller-chosen paths do not become span names.
pub fn record_status(span: &tracing::Span, code: Code) {
    span.record("rpc.grpc.status_code", code as i64);
    span.record("rpc.response.status_code", super::code_name(code));
    if code == Code::Unimplemented {
        span.record("otel.name", "_OTHER");
        span.record("rpc.method", "_OTHER");
    }
    if matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    ) {
        span.record("otel.status_code", "error");
    }
}

/// gRPC metadata as the propagator's carrier.
#[cfg(feature = "otel")]
struct HeaderExtractor<'a>(&'a http::HeaderMap);

#[cfg(feature = "otel")]
impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_logs() -> LogConfig {
        LogConfig { format: LogFormat::Human, level: "info".into() }
    }

    #[test]
    fn without_an_endpoint_nothing_is_built_and_request_spans_are_not_even_created() {
        assert!(OtlpTraces::from_config(&TraceConfig::default()).unwrap().is_none());
        // RUST_LOG would override `log.level`; this test is about the default filter.
        if std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        let subscriber = subscriber(&info_logs(), None, std::io::sink);
        tracing::subscriber::with_default(subscriber, || {
            let span = server_span("/augur.v1.Prediction/Predict", &http::HeaderMap::new());
            assert!(span.is_disabled(), "no layer wants the server span");
            assert!(tracing::debug_span!("fetch").is_disabled());
            #[cfg(feature = "otel")]
            assert!(span.set_parent(opentelemetry::Context::new()).is_err(), "no OpenTelemetry layer");
        });
    }

    #[cfg(feature = "otel")]
    #[tokio::test]
    async fn with_an_endpoint_the_exporter_layer_takes_request_spans_and_the_caller_parent() {
        // Nothing listens there: the channel connects lazily and these spans are never sent.
        let config = TraceConfig { otlp_endpoint: Some("http://127.0.0.1:9".into()), ..TraceConfig::default() };
        let otlp = OtlpTraces::from_config(&config).unwrap().expect("an endpoint builds the pipeline");
        let subscriber = subscriber(&info_logs(), Some(&otlp), std::io::sink);
        let mut headers = http::HeaderMap::new();
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        headers.insert("traceparent", traceparent.parse().unwrap());
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            use opentelemetry::trace::TraceContextExt as _;
            let span = server_span("/augur.v1.Prediction/Predict", &headers);
            assert!(!span.is_disabled());
            span.context().span().span_context().trace_id()
        });
        assert_eq!(trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        otlp.shutdown().await;
    }
}
