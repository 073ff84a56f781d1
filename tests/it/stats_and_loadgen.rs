//! ModelAdmin.GetStats reports per-stage latency and fallback counts, and the load generator
//! drives a server in both modes and folds the server's stage numbers into its report.

use std::time::Duration;

use augur::cli::loadgen::{LoadConfig, Mode};
use augur::proto::GetStatsRequest;
use augur::proto::model_admin_client::ModelAdminClient;

use crate::common;

#[tokio::test]
async fn stats_count_stages_and_fallbacks_and_reset() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    for _ in 0..5 {
        client.predict(common::ranking_request("u1", &["i1", "ghost"])).await.unwrap();
    }
    let mut admin = ModelAdminClient::new(server.admin_channel().await);
    let stats = admin.get_stats(GetStatsRequest { reset: true }).await.unwrap().into_inner();
    let ranking = stats.scenes.iter().find(|s| s.scene == "ranking").unwrap();
    let stages: Vec<(&str, u64)> = ranking.stages.iter().map(|s| (s.stage.as_str(), s.count)).collect();
    // Queue waits are recorded by the inference threads per queued chunk, warm-up runs included.
    let queue = stages.iter().find(|(s, _)| *s == "queue").map_or(0, |(_, n)| *n);
    assert!(queue >= 5, "{stages:?}");
    let per_request: Vec<(&str, u64)> = stages.iter().copied().filter(|(s, _)| *s != "queue").collect();
    assert_eq!(per_request, vec![("fetch", 5), ("assemble", 5), ("infer", 5), ("total", 5)]);
    assert!(ranking.stages.iter().all(|s| s.p50_ms > 0.0 && s.p99_ms >= s.p50_ms), "{:?}", ranking.stages);
    let category = ranking.fallbacks.iter().find(|f| f.feature == "item_category").unwrap();
    assert_eq!((category.reason.as_str(), category.count), ("MissingRow", 5), "one ghost row per request");
    let after = admin.get_stats(GetStatsRequest { reset: false }).await.unwrap().into_inner();
    assert!(after.scenes.iter().all(|s| s.stages.iter().all(|st| st.count == 0)), "reset empties the window");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_reports_closed_and_open_loop_runs() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let base = LoadConfig {
        addr: format!("http://{}", server.addr),
        admin_addr: format!("http://{}", server.admin_addr),
        discover: None,
        scene: "ranking".into(),
        mode: Mode::Closed { concurrency: 4 },
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        candidates: 20,
        users: 2000,
        items: 5000,
        zipf: 1.1,
        seed: 1,
        distinct: augur::cli::loadgen::DISTINCT,
        connections: 2,
        timeout: Some(Duration::from_secs(10)),
    };
    let closed = augur::cli::loadgen::run(&base).await.unwrap();
    assert!(closed.ok > 0 && closed.errors.is_empty(), "{closed}");
    assert_eq!(closed.items_per_s, closed.requests_per_s * 20.0);
    assert!(closed.latency_ms.p50 > 0.0 && closed.latency_ms.p99 >= closed.latency_ms.p50);
    let fetch = closed.server_stages.iter().find(|s| s.stage == "fetch").expect("server stages in the report");
    assert!(fetch.count > 0);

    let open = augur::cli::loadgen::run(&LoadConfig { mode: Mode::Open { rate: 100.0, max_in_flight: 64 }, ..base })
        .await
        .unwrap();
    assert!(open.ok > 0 && open.errors.is_empty(), "{open}");
    assert!(open.ok <= 60, "open loop at 100/s for 0.5 s sent {} requests", open.ok);
    server.stop().await;
}

#[tokio::test]
async fn framed_request_is_one_grpc_message_the_server_scores() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let config = LoadConfig {
        addr: String::new(),
        admin_addr: String::new(),
        discover: None,
        scene: "ranking".into(),
        mode: Mode::Closed { concurrency: 1 },
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        candidates: 10,
        users: 2000,
        items: 5000,
        zipf: 1.1,
        seed: 7,
        distinct: 1,
        connections: 1,
        timeout: None,
    };
    let framed = augur::cli::loadgen::framed_request(&config);
    assert_eq!(framed[0], 0, "uncompressed");
    let len = u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize;
    assert_eq!(len, framed.len() - 5, "big-endian length of the rest");
    let request = <augur::proto::PredictRequest as prost::Message>::decode(&framed[5..]).unwrap();
    assert_eq!((request.scene.as_str(), request.candidates.len()), ("ranking", 10));
    let mut context: Vec<&str> = request.context.keys().map(String::as_str).collect();
    context.sort_unstable();
    assert_eq!(context, ["device", "hour"], "the context survives the key-ordered encoding");
    // Each encoding builds its own context map, whose iteration order varies: eight tries would
    // see two orders with near certainty if the bytes followed it.
    for _ in 0..8 {
        assert_eq!(framed, augur::cli::loadgen::framed_request(&config), "same config, same bytes");
    }
    let response = server.client().await.predict(request).await.unwrap().into_inner();
    assert_eq!(response.scores.len(), 10);
    server.stop().await;
}
