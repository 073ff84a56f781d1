//! A minimal OTLP/gRPC trace receiver (the collector's `TraceService`, from `opentelemetry-proto`):
//! keeps every span it is sent. The receiver of the `tracing_otlp` tests, and included by
//! `#[path]` in `examples/otlp_sink.rs`, the receiver of the export-on benchmark.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// What the sink received: every span with its resource's `service.name`, or only a count.
#[derive(Debug, Clone, Default)]
pub struct Received {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `None`: count only (the benchmark sink keeps no spans).
    spans: Option<Vec<(String, Span)>>,
    count: u64,
}

impl Received {
    /// Every span so far, with its service name.
    pub fn spans(&self) -> Vec<(String, Span)> {
        self.inner.lock().unwrap().spans.clone().unwrap_or_default()
    }

    /// Spans received so far.
    pub fn count(&self) -> u64 {
        self.inner.lock().unwrap().count
    }
}

struct Sink(Received);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut inner = self.0.inner.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| string_attribute(&r.attributes, "service.name"))
                .unwrap_or_default()
                .to_owned();
            for scope_spans in resource_spans.scope_spans {
                inner.count += scope_spans.spans.len() as u64;
                if let Some(kept) = inner.spans.as_mut() {
                    kept.extend(scope_spans.spans.into_iter().map(|s| (service.clone(), s)));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// Serves on `listener` until the runtime ends; `keep` = keep the spans, else only count them.
pub fn spawn(listener: TcpListener, keep: bool) -> (SocketAddr, Received) {
    let addr = listener.local_addr().expect("sink address");
    let received = Received::default();
    received.inner.lock().unwrap().spans = keep.then(Vec::new);
    let service = TraceServiceServer::new(Sink(received.clone()));
    tokio::spawn(
        tonic::transport::Server::builder().add_service(service).serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, received)
}

/// The value of attribute `key`, if present.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

/// The string value of attribute `key`, if it is one.
pub fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key) {
        Some(Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// The integer value of attribute `key`, if it is one.
pub fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key) {
        Some(Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}
