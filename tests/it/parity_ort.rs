//! Predict's scores equal a direct ONNX Runtime run on GetFeatures' tensors: nothing between the
//! feature assembly and the model changes what the model sees.

use crate::common;

#[tokio::test]
async fn predict_equals_direct_ort_on_get_features_output() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    // Mixed users, a missing item and a missing user, so fallbacks are part of the comparison.
    let items: Vec<String> = (0..150).map(|i| format!("i{}", i * 31 % 5000)).chain(["ghost".to_string()]).collect();
    let item_refs: Vec<&str> = items.iter().map(String::as_str).collect();
    let mut session = common::ort_session(&common::root().join("models/ranking/1/model.onnx"));
    let mut compared = 0;
    for user in ["u1", "u500", "nobody"] {
        let request = common::ranking_request(user, &item_refs);
        let predicted = client.predict(request.clone()).await.unwrap().into_inner().scores;
        let features = client.get_features(common::features_request(&request)).await.unwrap().into_inner();
        let direct = common::direct_ort(&mut session, &features, "ctr");
        assert_eq!(direct.len(), predicted.len());
        let max_diff = direct.iter().zip(&predicted).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_diff <= 1e-6, "user {user}: max abs diff {max_diff}");
        compared += direct.len();
    }
    assert_eq!(compared, 3 * items.len());
    server.stop().await;
}
