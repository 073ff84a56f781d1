//! StreamFeatures: a backfill job streams many requests and gets, in order, exactly what unary
//! GetFeatures returns for each; a bad request gets an error response and the stream goes on.

use augur::proto::GetFeaturesRequest;

use crate::common;

fn request(i: usize) -> GetFeaturesRequest {
    let r = common::ranking_request(
        &format!("u{}", i % 2000),
        &[&format!("i{}", i % 5000), &format!("i{}", (i * 7) % 5000)],
    );
    GetFeaturesRequest {
        scene: if i % 97 == 13 { "nope".into() } else { r.scene },
        user_id: r.user_id,
        context: r.context,
        candidates: r.candidates,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_features_match_unary_in_order() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    let n = 600;
    let started = std::time::Instant::now();
    let mut responses = client.stream_features(tokio_stream::iter((0..n).map(request))).await.unwrap().into_inner();
    let mut streamed = Vec::new();
    while let Some(r) = responses.message().await.unwrap() {
        streamed.push(r);
    }
    println!("streamed {n} requests in {:.3}s", started.elapsed().as_secs_f64());
    assert_eq!(streamed.len(), n);
    for (i, got) in streamed.into_iter().enumerate() {
        if i % 97 == 13 {
            assert!(got.error.contains("NotFound") && got.error.contains("nope"), "{i}: {:?}", got.error);
            assert!(got.inputs.is_empty());
            continue;
        }
        assert!(got.error.is_empty(), "{i}: {}", got.error);
        let unary = client.get_features(request(i)).await.unwrap().into_inner();
        assert_eq!(got, unary, "response {i} differs from unary GetFeatures");
    }
    server.stop().await;
}
