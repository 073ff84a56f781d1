//! The ordered drain: on the first shutdown request health turns NOT_SERVING (a Watch sees it and
//! then ends), long-lived streams end, every call in flight is still answered, and the server is
//! down within `server.grace_ms`. When the grace runs out (or a second request comes), the drain
//! is cut and says what it cut. A fake model with a gate holds calls in flight on demand.

use std::sync::atomic::Ordering;
use std::time::Duration;

use augur::server::ServeError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common;
use crate::common::fake_model::{FakeLoader, start_fake};

/// Guards a wait that should end on its own, so a bug fails the test instead of hanging it.
const HANG: Duration = Duration::from_secs(60);

/// Starts `n` Predict calls that the closed gate holds inside augur; returns once all are in flight.
async fn hold_in_flight(
    server: &common::TestServer,
    loader: &FakeLoader,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<augur::proto::PredictResponse, tonic::Status>>> {
    loader.controls.close();
    let mut calls = Vec::new();
    for i in 0..n {
        let mut client = server.client().await;
        calls.push(tokio::spawn(async move {
            let request = common::ranking_request(&format!("u{i}"), &["i1", "i2", "i3"]);
            client.predict(request).await.map(tonic::Response::into_inner)
        }));
    }
    tokio::time::timeout(HANG, async {
        while server.metrics.of::<augur::server::metrics::RpcMetrics>().in_flight.get() < n as i64
            || loader.controls.waiting.load(Ordering::SeqCst) == 0
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("calls never got in flight");
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_calls_finish_streams_end_and_the_server_stops_within_grace() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "[server]\ngrace_ms = 30000\ndefault_deadline_ms = 60000\n").await;

    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::Serving);

    let mut client = server.client().await;
    let (feature_tx, feature_rx) = mpsc::channel(4);
    let mut features = client.stream_features(ReceiverStream::new(feature_rx)).await.unwrap().into_inner();
    let request = common::ranking_request("u1", &["i1", "i2"]);
    feature_tx.send(common::features_request(&request)).await.unwrap();
    let first = features.message().await.unwrap().expect("one feature response");
    assert!(first.error.is_empty() && !first.inputs.is_empty(), "{first:?}");

    // 32 calls in flight: one held inside the model, the rest queued behind it in the batcher.
    let calls = hold_in_flight(&server, &loader, 32).await;
    server.request_shutdown().await;

    // Health turns NOT_SERVING, and the Watch stream ends instead of holding the connection.
    let next = tokio::time::timeout(HANG, watch.message()).await.expect("watch hung").unwrap();
    assert_eq!(next.map(|m| m.status()), Some(ServingStatus::NotServing));
    let end = tokio::time::timeout(HANG, watch.message()).await.expect("watch never ended");
    assert!(matches!(end, Ok(None)), "the Watch stream must end on shutdown: {end:?}");
    // The listener is closed by now (the streams end in the same step): new connections are
    // refused while the calls in flight are still being answered.
    let refused = tokio::time::timeout(HANG, async {
        loop {
            match tokio::net::TcpStream::connect(server.addr).await {
                Err(e) => break e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .expect("the listener never closed");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused, "{refused}");
    // The feature stream ends too, although the client never closed its side.
    let end = tokio::time::timeout(HANG, features.message()).await.expect("feature stream never ended");
    assert!(matches!(end, Ok(None)), "StreamFeatures must end on shutdown: {end:?}");

    // Every call that was in flight is answered: 32 of 32.
    loader.controls.open();
    let mut answered = 0;
    for call in calls {
        let response = call.await.unwrap().expect("an in-flight call was cut");
        assert_eq!(response.scores.len(), 3);
        answered += 1;
    }
    assert_eq!(answered, 32);
    // ... and the server is down within the grace, by its own bound: no cut.
    let result = tokio::time::timeout(HANG, server.join()).await.expect("server never stopped");
    assert!(result.is_ok(), "{result:?}");
    drop(feature_tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_bounds_the_drain_and_names_what_was_cut() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "[server]\ngrace_ms = 300\ndefault_deadline_ms = 60000\n").await;
    let calls = hold_in_flight(&server, &loader, 2).await;
    server.request_shutdown().await;
    let result = tokio::time::timeout(HANG, server.join()).await.expect("the grace did not bound the drain");
    match result {
        Err(ServeError::Cut(what)) => assert!(what.contains("in-flight calls"), "{what}"),
        other => panic!("expected a cut drain, got {other:?}"),
    }
    loader.controls.open();
    for call in calls {
        // Cut calls fail (the connection went away); none may hang.
        let _ = tokio::time::timeout(HANG, call).await.expect("a cut call hung");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_request_cuts_the_drain_short() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "[server]\ngrace_ms = 600000\ndrain_delay_ms = 600000\n").await;
    server.request_shutdown().await;
    server.request_shutdown().await;
    let result = tokio::time::timeout(HANG, server.join()).await.expect("a second request must end the drain");
    match result {
        Err(ServeError::Cut(what)) => assert!(what.contains("drain delay"), "{what}"),
        other => panic!("expected a cut drain, got {other:?}"),
    }
}
