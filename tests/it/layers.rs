//! The layer stack over real HTTP/2: `grpc-timeout` values far past anything sane each get a gRPC
//! status and the server keeps serving; the global concurrency limit sheds the excess with
//! RESOURCE_EXHAUSTED at once while admitted calls succeed and health checks are not counted;
//! the optional bearer token is enforced everywhere but health.

use std::time::Duration;

use prost::Message;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common;
use crate::common::fake_model::{FakeLoader, start_fake};
use crate::common::h2;

const HANG: Duration = Duration::from_secs(60);

/// Sends one Predict over a raw HTTP/2 stream with `grpc-timeout: value`; returns grpc-status
/// and grpc-message.
async fn raw_predict(addr: std::net::SocketAddr, value: &str) -> (i32, String) {
    let mut client = h2::connect(addr).await;
    let (response, mut send) = h2::open(&mut client, addr, "/augur.v1.Prediction/Predict", value, false);
    let message = common::ranking_request("u1", &["i1", "i2"]).encode_to_vec();
    send.send_data(h2::framed(&message).into(), true).unwrap();
    h2::status(response).await
}

#[tokio::test]
async fn absurd_grpc_timeouts_get_a_status_and_the_server_keeps_serving() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "").await;
    // Valid per the spec but absurd: clamped to server.max_deadline_ms, so the call succeeds.
    assert_eq!(raw_predict(server.addr, "99999999H").await.0, Code::Ok as i32);
    // Not valid per the spec (more than 8 digits, no unit, unknown unit, not a number).
    for value in ["9223372036854775807S", "18446744073709551616n", "100", "5x", "S", "-1S"] {
        let (code, message) = raw_predict(server.addr, value).await;
        assert_eq!(code, Code::InvalidArgument as i32, "{value}: {message}");
        assert!(message.contains("grpc-timeout"), "{value}: {message}");
    }
    // Still serving: a plain call over tonic works.
    let mut client = server.client().await;
    let response = client.predict(common::ranking_request("u1", &["i1"])).await.unwrap().into_inner();
    assert_eq!(response.scores.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_excess_over_the_global_limit_is_shed_and_health_is_not_counted() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "[server]\nconcurrency_limit = 2\ndefault_deadline_ms = 60000\n").await;
    loader.controls.close();
    let admitted: Vec<_> = (0..2)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut client =
                    augur::proto::prediction_client::PredictionClient::connect(format!("http://{addr}")).await.unwrap();
                client.predict(common::ranking_request(&format!("u{i}"), &["i1", "i2"])).await
            })
        })
        .collect();
    tokio::time::timeout(HANG, async {
        while server.metrics.of::<augur::server::metrics::RpcMetrics>().in_flight.get() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the two calls never got in flight");

    // Both permits are held by calls stuck in the model: the next call is refused at once (it
    // returns while the admitted ones are still held, so it was not queued behind them).
    let mut client = server.client().await;
    let shed = client.predict(common::ranking_request("u9", &["i1"])).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(shed.message().contains("server.concurrency_limit"), "{shed:?}");
    assert!(admitted.iter().all(|call| !call.is_finished()), "the admitted calls are still held");
    // Health checks are not counted against the limit.
    let mut health = HealthClient::new(server.channel().await);
    let check = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(check.status(), ServingStatus::Serving);

    loader.controls.open();
    for call in admitted {
        assert_eq!(call.await.unwrap().unwrap().into_inner().scores.len(), 2);
    }
    assert_eq!(server.metrics.of::<augur::server::metrics::RpcMetrics>().shed.get(), 1);
    let text = server.metrics.render();
    assert!(text.contains("code=\"RESOURCE_EXHAUSTED\"} 1"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_configured_bearer_token_is_required_except_for_health() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "[server]\nauth_token = \"s3cret\"\n").await;
    let mut client = server.client().await;
    let status = client.predict(common::ranking_request("u1", &["i1"])).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let mut request = tonic::Request::new(common::ranking_request("u1", &["i1"]));
    request.metadata_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    assert_eq!(client.predict(request).await.unwrap().into_inner().scores.len(), 1);
    let mut health = HealthClient::new(server.channel().await);
    assert!(health.check(HealthCheckRequest { service: String::new() }).await.is_ok());
    server.stop().await;
}
