//! Overload and expired deadlines get their own status codes over gRPC, and the message names
//! the limit: RESOURCE_EXHAUSTED when the inference queue is full, DEADLINE_EXCEEDED when the
//! caller's grpc-timeout cannot be met.

use std::time::Duration;

use tonic::Code;

use crate::common;

#[tokio::test]
async fn full_inference_queue_is_resource_exhausted() {
    common::require!(Ort);
    // One chunk of one row may wait: a 200-candidate request needs 200 chunks at once.
    let server = common::start(common::demo_config(
        "[model]\nqueue_capacity = 1\nmax_batch_rows = 1\ninference_threads = 1\nwatch = false\npoll_interval_ms = 0\n",
    ))
    .await;
    let mut client = server.client().await;
    let items: Vec<String> = (0..200).map(|i| format!("i{i}")).collect();
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    let status = client.predict(common::ranking_request("u1", &items)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{}", status.message());
    assert!(status.message().contains("model.queue_capacity"), "{}", status.message());
    // Once the queued chunks drain, a request that fits is served again.
    let mut served = None;
    for _ in 0..500 {
        match client.predict(common::ranking_request("u1", &["i1"])).await {
            Ok(r) => {
                served = Some(r.into_inner());
                break;
            }
            Err(s) if s.code() == Code::ResourceExhausted => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(s) => panic!("{s:?}"),
        }
    }
    assert_eq!(served.expect("queue never drained").scores.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn unmeetable_deadline_is_deadline_exceeded() {
    common::require!(Ort);
    // A 20 s answering margin against a 10 s timeout: expired on arrival (the margin leaves no
    // time at all, whatever the clock says), rejected before any work. tonic's own timer, which
    // would answer CANCELLED, is 10 s away, so even a stalled machine does not race it.
    let server = common::start(common::demo_config("[server]\ndeadline_margin_us = 20000000\n")).await;
    let mut client = server.client().await;
    let mut request = tonic::Request::new(common::ranking_request("u1", &["i1", "i2"]));
    request.set_timeout(Duration::from_secs(10));
    let status = client.predict(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{}", status.message());
    assert!(status.message().contains("grpc-timeout"), "{}", status.message());
    // A generous deadline is met (60 s, the default maximum, less the margin: 40 s).
    let mut request = tonic::Request::new(common::ranking_request("u1", &["i1", "i2"]));
    request.set_timeout(Duration::from_secs(60));
    assert_eq!(client.predict(request).await.unwrap().into_inner().scores.len(), 2);
    server.stop().await;
}
