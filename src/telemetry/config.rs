//! `[log]` and `[trace]`: the log format and filter, and the OpenTelemetry export, owned by the
//! module that sets up the subscriber.

use serde::Deserialize;

use crate::validate::{Invalid, in_range, invalid};

/// `[log]`: how `augur serve` writes its logs (other subcommands keep human logs on stderr).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` for a terminal, `json` (one object per line) for a log collector.
    #[serde(default)]
    pub format: LogFormat,
    /// `tracing` env-filter directives; `RUST_LOG`, when set, overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::default(), level: default_log_level() }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Aligned text, coloured on a terminal.
    #[default]
    Human,
    /// One JSON object per line: fields, span context, level, target and message.
    Json,
}

/// `ort=warn`: ONNX Runtime logs every session option at info.
pub const DEFAULT_LOG_LEVEL: &str = "info,ort=warn";

fn default_log_level() -> String {
    DEFAULT_LOG_LEVEL.to_owned()
}

/// `[trace]`: OpenTelemetry spans exported over OTLP/gRPC. Without `otlp_endpoint` no exporter
/// and no OpenTelemetry layer exist, so the request path pays nothing for its trace spans.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    /// The collector's OTLP/gRPC URL, e.g. `http://127.0.0.1:4317`; unset = tracing off.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource: how the backend groups this service's traces.
    #[serde(default = "default_trace_service_name")]
    pub service_name: String,
    /// Share of new traces recorded (0..=1). A caller's `traceparent` decides for its own trace,
    /// so one request is never half-recorded across services.
    #[serde(default = "default_trace_sample_ratio")]
    pub sample_ratio: f64,
    /// How long ended spans wait to be sent in one batch: larger batches, later traces.
    #[serde(default = "default_trace_export_delay_ms")]
    pub export_delay_ms: u64,
    /// Bound of one export call; a hung collector costs at most this per batch.
    #[serde(default = "default_trace_export_timeout_ms")]
    pub export_timeout_ms: u64,
    /// Ended spans waiting for export. When the collector falls behind, newer spans are dropped
    /// rather than requests slowed down or memory grown.
    #[serde(default = "default_trace_max_queue_spans")]
    pub max_queue_spans: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            otlp_endpoint: None,
            service_name: default_trace_service_name(),
            sample_ratio: default_trace_sample_ratio(),
            export_delay_ms: default_trace_export_delay_ms(),
            export_timeout_ms: default_trace_export_timeout_ms(),
            max_queue_spans: default_trace_max_queue_spans(),
        }
    }
}

fn default_trace_service_name() -> String {
    "augur".to_owned()
}

const fn default_trace_sample_ratio() -> f64 {
    1.0
}

const fn default_trace_export_delay_ms() -> u64 {
    1_000
}

const fn default_trace_export_timeout_ms() -> u64 {
    10_000
}

const fn default_trace_max_queue_spans() -> usize {
    8_192
}

impl TraceConfig {
    /// Checks the endpoint, ratio and bounds.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.otlp_endpoint.is_some() && !cfg!(feature = "otel") {
            return Err(invalid("trace.otlp_endpoint", "needs the `otel` feature, which this build of augur lacks"));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            let uri = endpoint.parse::<http::Uri>().ok();
            if !uri.is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()) {
                return Err(invalid(
                    "trace.otlp_endpoint",
                    &format!("`{endpoint}` is not an http:// or https:// URL (e.g. \"http://127.0.0.1:4317\")"),
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid("trace.service_name", "must not be empty"));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid("trace.sample_ratio", &format!("must be between 0 and 1 (got {})", self.sample_ratio)));
        }
        in_range("trace.export_delay_ms", self.export_delay_ms as usize, 1, 600_000)?;
        in_range("trace.export_timeout_ms", self.export_timeout_ms as usize, 1, 600_000)?;
        in_range("trace.max_queue_spans", self.max_queue_spans, 1, 1 << 24)?;
        Ok(())
    }
}

impl LogConfig {
    /// The filter must say something.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.level.trim().is_empty() {
            return Err(invalid("log.level", "must not be empty (e.g. \"info,ort=warn\")"));
        }
        Ok(())
    }
}
