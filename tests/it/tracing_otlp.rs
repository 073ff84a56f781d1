//! One Predict's trace, as an OTLP collector receives it: the server span (child of the caller's
//! `traceparent`, with the RPC semantic-convention attributes) and its fetch, assemble, queue and
//! inference children, against the bundled demo model. The receiver is the collector's own
//! `TraceService` on port 0; the app's shutdown flushes the exporter, and the test still polls
//! (with a generous bound) rather than relying on when a batch happens to be sent.

use std::time::Duration;

use augur::app::Parts;
use augur::telemetry::trace::{OtlpTraces, subscriber};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

use crate::common;
use crate::common::otlp_sink::{self, int_attribute, string_attribute};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
/// A second caller's trace, for a call that fails.
const FAILED_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn predict_with_traceparent<T>(message: T, trace_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let traceparent = format!("00-{trace_id}-{CALLER_SPAN_ID}-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    request
}

/// The spans of `trace_id` once they include every name in `names`; panics after a minute.
async fn spans_of(received: &otlp_sink::Received, trace_id: &str, names: &[&str]) -> Vec<Span> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let spans: Vec<Span> =
            received.spans().into_iter().map(|(_, s)| s).filter(|s| hex(&s.trace_id) == trace_id).collect();
        if names.iter().all(|n| spans.iter().any(|s| s.name == *n)) {
            return spans;
        }
        assert!(tokio::time::Instant::now() < deadline, "spans of {trace_id} never arrived: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn only<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let named: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(named.len(), 1, "one `{name}` span expected: {spans:#?}");
    named[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predict_call_exports_its_server_span_and_stage_children_under_the_callers_trace() {
    common::require!(Ort);
    // The subscriber below is process-wide: in a process shared with other tests it would export
    // their spans too, and outlive this test.
    if !common::own_process() {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (sink_addr, received) = otlp_sink::spawn(listener, true);
    let config = common::demo_config(&format!(
        "[trace]\notlp_endpoint = \"http://{sink_addr}\"\nservice_name = \"augur-test\"\nexport_delay_ms = 50\n"
    ));
    let traces = OtlpTraces::from_config(&config.trace).unwrap().expect("an endpoint turns tracing on");
    // The process-wide subscriber, as `augur serve` installs it: the inference threads are not
    // tokio tasks, so a scoped (thread-local) subscriber would not see their spans.
    tracing::subscriber::set_global_default(subscriber(&config.log, Some(&traces), std::io::stderr)).unwrap();
    let server = common::start_with(config, Parts { traces: Some(traces), ..Parts::default() }).await;
    let mut client = server.client().await;

    let items = ["i0", "i1", "i2"];
    let request = predict_with_traceparent(common::ranking_request("u1", &items), TRACE_ID);
    let scores = client.predict(request).await.unwrap().into_inner().scores;
    assert_eq!(scores.len(), items.len());
    let mut unknown_scene = common::ranking_request("u1", &items);
    unknown_scene.scene = "nope".into();
    let bad = predict_with_traceparent(unknown_scene, FAILED_TRACE_ID);
    assert_eq!(client.predict(bad).await.unwrap_err().code(), tonic::Code::NotFound);
    // Shutdown flushes the exporter after the inference threads ended their spans.
    server.stop().await;

    let rpc_name = "augur.v1.Prediction/Predict";
    let stages = ["fetch", "assemble", "queue", "inference"];
    let spans = spans_of(&received, TRACE_ID, &[rpc_name, "fetch", "assemble", "queue", "inference"]).await;

    // The server span continues the caller's trace and carries both generations of RPC names.
    let server_span = only(&spans, rpc_name);
    assert_eq!(hex(&server_span.parent_span_id), CALLER_SPAN_ID, "the caller's span is the parent");
    assert_eq!(server_span.kind, SpanKind::Server as i32);
    let attrs = &server_span.attributes;
    assert_eq!(string_attribute(attrs, "rpc.system"), Some("grpc"));
    assert_eq!(string_attribute(attrs, "rpc.system.name"), Some("grpc"));
    assert_eq!(string_attribute(attrs, "rpc.service"), Some("augur.v1.Prediction"));
    assert_eq!(string_attribute(attrs, "rpc.method"), Some(rpc_name));
    assert_eq!(int_attribute(attrs, "rpc.grpc.status_code"), Some(0));
    assert_eq!(string_attribute(attrs, "rpc.response.status_code"), Some("OK"));

    // Each stage once, directly under the server span (no predict span in between), in order.
    for stage in stages {
        let span = only(&spans, stage);
        assert_eq!(span.parent_span_id, server_span.span_id, "`{stage}` is a child of the server span");
        assert!(span.start_time_unix_nano >= server_span.start_time_unix_nano, "`{stage}` starts inside the call");
    }
    assert_eq!(int_attribute(&only(&spans, "queue").attributes, "rows"), Some(items.len() as i64));
    assert_eq!(int_attribute(&only(&spans, "inference").attributes, "rows"), Some(items.len() as i64));
    assert!(
        only(&spans, "queue").end_time_unix_nano <= only(&spans, "inference").start_time_unix_nano,
        "the chunk left the queue before its run started"
    );
    assert_eq!(spans.len(), 1 + stages.len(), "nothing else in the trace: {spans:#?}");

    // Every exported span belongs to one of the two callers' traces (health checks and
    // start-up make none), and the resource names the configured service.
    let all = received.spans();
    assert!(all.iter().all(|(service, _)| service == "augur-test"), "{all:#?}");
    assert!(all.iter().all(|(_, s)| [TRACE_ID, FAILED_TRACE_ID].contains(&hex(&s.trace_id).as_str())), "{all:#?}");

    // The failed call: its code on the server span; a caller error does not mark the span failed.
    let failed = spans_of(&received, FAILED_TRACE_ID, &[rpc_name]).await;
    let failed = only(&failed, rpc_name);
    assert_eq!(int_attribute(&failed.attributes, "rpc.grpc.status_code"), Some(tonic::Code::NotFound as i64));
    assert_eq!(string_attribute(&failed.attributes, "rpc.response.status_code"), Some("NOT_FOUND"));
    assert_ne!(failed.status.as_ref().map(|s| s.code), Some(2), "NOT_FOUND is the caller's error, not the server's");
}
