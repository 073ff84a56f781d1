//! Predict, GetFeatures, health and reflection over real gRPC against the bundled demo model.

use augur::proto::FallbackReason;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common;

#[tokio::test]
async fn predict_scores_every_candidate_and_reports_fallbacks() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    let items = ["i0", "i1", "i2", "i3", "no-such-item"];
    let response = client.predict(common::ranking_request("u1", &items)).await.unwrap().into_inner();

    assert_eq!(response.scores.len(), items.len());
    assert!(response.scores.iter().all(|s| (0.0..=1.0).contains(s) && s.is_finite()), "{:?}", response.scores);
    assert_eq!((response.model_name.as_str(), response.model_version.as_str()), ("ranking", "1"));
    assert!(!response.request_id.is_empty(), "request id is generated when empty");
    // The unknown item's store features fall back for candidate 4 only, with the reason.
    let missing: Vec<_> = response
        .fallbacks
        .iter()
        .filter(|f| f.reason() == FallbackReason::MissingRow)
        .map(|f| (f.feature.as_str(), f.candidates.clone()))
        .collect();
    assert!(missing.contains(&("item_category", vec![4])), "{missing:?}");
    assert!(missing.iter().all(|(_, c)| c == &vec![4]), "{missing:?}");

    // Scores are a function of the features: another user or context changes them, the same
    // request gives the same scores, and the caller's request id is echoed.
    let mut same = common::ranking_request("u1", &items);
    same.request_id = "req-42".into();
    let again = client.predict(same).await.unwrap().into_inner();
    assert_eq!(again.scores, response.scores);
    assert_eq!(again.request_id, "req-42");
    let other = client.predict(common::ranking_request("u7", &items)).await.unwrap().into_inner();
    assert_ne!(other.scores, response.scores);

    // A candidate's request-time features override the store.
    let mut overridden = common::ranking_request("u1", &["i0"]);
    overridden.candidates[0].features.insert(
        "price".into(),
        augur::proto::FeatureValue { kind: Some(augur::proto::feature_value::Kind::FloatValue(999.0)) },
    );
    let o = client.predict(overridden).await.unwrap().into_inner();
    assert_ne!(o.scores[0], response.scores[0]);
    server.stop().await;
}

#[tokio::test]
async fn get_features_returns_model_inputs_with_layout() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    let request = common::ranking_request("u1", &["i0", "i1"]);
    let response = client.get_features(common::features_request(&request)).await.unwrap().into_inner();
    let names: Vec<_> = response.inputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ids", "dense"]);
    let ids = &response.inputs[0];
    assert_eq!(ids.shape[0], 2);
    assert_eq!(ids.int64_values.len() as i64, ids.shape[0] * ids.shape[1]);
    assert_eq!(response.inputs[1].float_values.len() as i64, 2 * response.inputs[1].shape[1]);
    // Layout: user_id is column 0 of ids; shared user features are equal across rows, item ids differ.
    let width = ids.shape[1] as usize;
    let col = |name: &str| response.layout.iter().find(|l| l.feature == name).unwrap().offset as usize;
    assert_eq!(col("user_id"), 0);
    assert_eq!(ids.int64_values[col("user_id")], ids.int64_values[width + col("user_id")]);
    assert_ne!(ids.int64_values[col("item_id")], ids.int64_values[width + col("item_id")]);
    assert!(response.fallbacks.is_empty(), "{:?}", response.fallbacks);
    server.stop().await;
}

#[tokio::test]
async fn health_serves_and_reflection_lists_the_service() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", "augur.v1.Prediction"] {
        let status = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(status.status(), ServingStatus::Serving, "service {service:?}");
    }
    let unknown = health.check(HealthCheckRequest { service: "nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else { panic!("{reply:?}") };
    assert!(list.service.iter().any(|s| s.name == "augur.v1.Prediction"), "{:?}", list.service);
    server.stop().await;
}
