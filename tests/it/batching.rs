//! Dynamic batching on the real model over gRPC: many concurrent requests with random candidate
//! counts (1 … 3x max_batch_rows, so some are merged and some split) each get the scores an
//! unbatched ONNX Runtime run gives for exactly its rows, in order.

use augur::proto::model_admin_client::ModelAdminClient;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common;

const MAX_BATCH_ROWS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_and_split_requests_score_like_unbatched_runs() {
    common::require!(Ort);
    let server = common::start(common::demo_config(&format!(
        "[model]\nmax_batch_rows = {MAX_BATCH_ROWS}\nmax_queue_delay_us = 5000\ninference_threads = 2\nwatch = false\npoll_interval_ms = 0\n"
    )))
    .await;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let requests: Vec<augur::proto::PredictRequest> = (0..48)
        .map(|_| {
            let n = rng.random_range(1..=3 * MAX_BATCH_ROWS);
            let items: Vec<String> = (0..n).map(|_| format!("i{}", rng.random_range(0..5000))).collect();
            let user = format!("u{}", rng.random_range(0..2000));
            common::ranking_request(&user, &items.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .collect();

    // All at once, so the batcher merges small ones and splits large ones.
    let mut tasks = Vec::new();
    for request in requests.clone() {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move { client.predict(request).await.map(|r| r.into_inner().scores) }));
    }
    let mut batched = Vec::new();
    for task in tasks {
        batched.push(task.await.unwrap().expect("predict"));
    }

    let mut session = common::ort_session(&common::root().join("models/ranking/1/model.onnx"));
    let mut client = server.client().await;
    for (request, scores) in requests.into_iter().zip(batched) {
        let features = client.get_features(common::features_request(&request)).await.unwrap().into_inner();
        let direct = common::direct_ort(&mut session, &features, "ctr");
        assert_eq!(direct.len(), scores.len());
        let diff = direct.iter().zip(&scores).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff <= 1e-6, "{} rows: max diff {diff}", scores.len());
    }

    // The batcher really merged: fewer runs than requests+chunks would need unbatched.
    let status = ModelAdminClient::new(server.admin_channel().await)
        .list_models(augur::proto::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    let v = &status.models[0].versions[0];
    assert!(v.batches > 0 && v.rows > 0);
    assert!(v.rows / v.batches > 1, "average batch of {} rows", v.rows as f64 / v.batches as f64);
    server.stop().await;
}
