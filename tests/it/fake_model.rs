//! The service path without ONNX Runtime: a fake `ModelLoader` handed to the app goes through
//! the same repository, batcher, layer stack and status mapping. Predict's scores equal the fake
//! model applied to GetFeatures' tensors, and a panicking model run is answered INTERNAL while
//! the inference thread reopens its model, so the version keeps serving.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use augur::app::Parts;
use augur::assemble::{Tensor, TensorData};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::common;
use crate::common::fake_model::{FakeLoader, fake_config, fake_repository, row_score};

fn parts(loader: &FakeLoader) -> Parts {
    Parts { loader: Some(Arc::new(loader.clone())), ..Default::default() }
}

/// GetFeatures' tensors in domain form.
fn tensors(features: &augur::proto::GetFeaturesResponse) -> Vec<Tensor> {
    features
        .inputs
        .iter()
        .map(|t| Tensor {
            name: t.name.clone(),
            width: t.shape[1] as usize,
            data: if t.float_values.is_empty() && !t.int64_values.is_empty() {
                TensorData::I64(t.int64_values.clone())
            } else {
                TensorData::F32(t.float_values.clone())
            },
        })
        .collect()
}

#[tokio::test]
async fn predict_through_the_repository_with_a_fake_model() {
    let dir = tempfile::tempdir().unwrap();
    let loader = FakeLoader::default();
    let server = common::start_with(fake_config(&fake_repository(dir.path()), ""), parts(&loader)).await;
    let mut client = server.client().await;
    let request = common::ranking_request("u7", &["i1", "i2", "i3", "i4", "i5"]);
    let response = client.predict(request.clone()).await.unwrap().into_inner();
    assert_eq!((response.model_name.as_str(), response.model_version.as_str()), ("fake_ranking", "1"));
    let features = client.get_features(common::features_request(&request)).await.unwrap().into_inner();
    let t = tensors(&features);
    let expected: Vec<f32> = (0..5).map(|r| row_score(&t, r)).collect();
    assert_eq!(response.scores, expected, "Predict must score exactly GetFeatures' rows, in order");
    assert!(expected.windows(2).any(|w| w[0] != w[1]), "the fake model must tell rows apart");
    assert_eq!(loader.controls.opened.load(Ordering::SeqCst), 1, "one inference thread, one instance");
    server.stop().await;
}

#[tokio::test]
async fn a_panic_in_inference_is_internal_and_the_thread_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let loader = FakeLoader::default();
    let server = common::start_with(fake_config(&fake_repository(dir.path()), ""), parts(&loader)).await;
    let mut client = server.client().await;
    let request = common::ranking_request("u7", &["i1", "i2"]);
    let healthy = client.predict(request.clone()).await.unwrap().into_inner();

    loader.controls.panic_next.store(true, Ordering::SeqCst);
    let status = client.predict(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("panicked"), "{status:?}");

    // The version still serves: the thread reopened its model and scores as before.
    let after = client.predict(request).await.unwrap().into_inner();
    assert_eq!(after.scores, healthy.scores);
    assert_eq!(loader.controls.opened.load(Ordering::SeqCst), 2, "the panicked instance was replaced once");
    {
        // Scoped: a held `Arc<Version>` would (rightly) keep its threads alive past shutdown.
        let version = server.predictor.scene("ranking").unwrap().repo.route("u7", "").unwrap();
        assert_eq!((version.batcher.threads_alive(), version.stats().panics), (1, 1));
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let check = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(check.into_inner().status(), ServingStatus::Serving);
    let text = server.metrics.render();
    assert!(text.contains("augur_inference_panics_total{model=\"fake_ranking\",version=\"1\"} 1"), "{text}");
    server.stop().await;
}
