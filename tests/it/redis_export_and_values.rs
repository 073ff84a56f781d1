//! Against a real Redis: `features export` reads the store the config names and writes exactly
//! what it writes from the in-memory store (no training/serving skew whichever store holds the
//! rows), and a stored value that does not parse as its declared type is a PARSE_ERROR fallback
//! for that candidate, never an error or a panic.

use augur::assemble::Spec;
use augur::proto::FallbackReason;

use crate::common;
use crate::common::redis_server::{RedisServer, load_demo, redis_demo_config};

#[tokio::test]
async fn export_from_redis_equals_export_from_memory() {
    common::require!(Redis);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "");
    load_demo(&config).await;
    let dir = tempfile::tempdir().unwrap();
    // The demo generator's default seed writes the committed catalogue plus an impression log.
    let spec = augur::cli::demo::DemoSpec { impressions: 3000, ..Default::default() };
    augur::cli::demo::generate(&spec, dir.path()).unwrap();
    let ranking = Spec::load(&common::root().join("features/ranking.yaml")).unwrap();
    let impressions = dir.path().join("impressions.csv");

    let memory = augur::app::store(&common::demo_config(""), &augur::telemetry::Metrics::new()).await.unwrap();
    let from_memory =
        augur::cli::export::export(&ranking, memory.as_ref(), &impressions, &dir.path().join("m")).await.unwrap();
    let redis_store = augur::app::store(&config, &augur::telemetry::Metrics::new()).await.unwrap();
    let from_redis =
        augur::cli::export::export(&ranking, redis_store.as_ref(), &impressions, &dir.path().join("r")).await.unwrap();

    assert_eq!(from_memory.rows, 3000);
    assert_eq!((from_redis.rows, from_redis.positives), (from_memory.rows, from_memory.positives));
    for file in ["features.npz", "meta.json"] {
        let (m, r) = (
            std::fs::read(dir.path().join("m").join(file)).unwrap(),
            std::fs::read(dir.path().join("r").join(file)).unwrap(),
        );
        assert!(m == r, "{file} differs between the memory and the Redis export");
    }
}

#[tokio::test]
async fn unparsable_stored_values_fall_back_with_parse_error() {
    common::require!(Redis, Ort);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "");
    load_demo(&config).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () =
        redis::cmd("HSET").arg("augur:items:i1").arg("price").arg("cheap").query_async(&mut conn).await.unwrap();
    let _: () =
        redis::cmd("HSET").arg("augur:users:u1").arg("age").arg("\u{1F600}").query_async(&mut conn).await.unwrap();

    let server = common::start(config).await;
    let response =
        server.client().await.predict(common::ranking_request("u1", &["i0", "i1"])).await.unwrap().into_inner();
    assert_eq!(response.scores.len(), 2);
    let parse: Vec<(&str, Vec<u32>)> = response
        .fallbacks
        .iter()
        .filter(|f| f.reason() == FallbackReason::ParseError)
        .map(|f| (f.feature.as_str(), f.candidates.clone()))
        .collect();
    assert!(parse.contains(&("item_price", vec![1])), "{parse:?}");
    assert!(parse.contains(&("item_price_bucket", vec![1])), "{parse:?}");
    assert!(parse.contains(&("user_age", vec![])), "{parse:?}");
    server.stop().await;
}
