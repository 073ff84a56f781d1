//! Predict's scores equal a direct ONNX Runtime run on GetFeatures' tensors: nothing between the
//! feature assembly and the model changes what the model sees.

mod common;

use augur::proto::GetFeaturesRequest;
use ort::session::Session;
use ort::value::TensorRef;

#[tokio::test]
async fn predict_equals_direct_ort_on_get_features_output() {
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    // Mixed users, a missing item and a missing user, so fallbacks are part of the comparison.
    let items: Vec<String> = (0..150).map(|i| format!("i{}", i * 31 % 5000)).chain(["ghost".to_string()]).collect();
    let item_refs: Vec<&str> = items.iter().map(String::as_str).collect();
    let env = augur::model::runtime::environment(None).expect("ort runtime");
    let mut session =
        Session::builder(env).unwrap().commit_from_file(common::root().join("models/ranking/1/model.onnx")).unwrap();
    let mut compared = 0;
    for user in ["u1", "u500", "nobody"] {
        let request = common::ranking_request(user, &item_refs);
        let predicted = client.predict(request.clone()).await.unwrap().into_inner().scores;
        let features = client
            .get_features(GetFeaturesRequest {
                scene: request.scene,
                user_id: request.user_id,
                context: request.context,
                candidates: request.candidates,
            })
            .await
            .unwrap()
            .into_inner();
        let ids = &features.inputs[0];
        let dense = &features.inputs[1];
        let ids_shape = [ids.shape[0] as usize, ids.shape[1] as usize];
        let dense_shape = [dense.shape[0] as usize, dense.shape[1] as usize];
        let outputs = session
            .run(ort::inputs![
                "ids" => TensorRef::from_array_view((ids_shape, ids.int64_values.as_slice())).unwrap(),
                "dense" => TensorRef::from_array_view((dense_shape, dense.float_values.as_slice())).unwrap(),
            ])
            .unwrap();
        let (_, direct) = outputs["ctr"].try_extract_tensor::<f32>().unwrap();
        assert_eq!(direct.len(), predicted.len());
        let max_diff = direct.iter().zip(&predicted).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_diff <= 1e-6, "user {user}: max abs diff {max_diff}");
        compared += direct.len();
    }
    assert_eq!(compared, 3 * items.len());
    server.stop().await;
}
