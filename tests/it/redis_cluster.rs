//! Redis Cluster as the feature store: a real 3-master cluster (`redis-cli --cluster create`),
//! the demo tables loaded across all slots, scores identical to the in-memory store.

use augur::fetch::{FeatureStore, RedisFeatureStore};

use crate::common;
use crate::common::redis_server::{RedisCluster, load_demo, redis_config, redis_demo_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tables_in_a_three_master_cluster_score_exactly_like_memory() {
    common::require!(Redis, Ort);
    let cluster = RedisCluster::start();
    let config = redis_demo_config(&cluster.urls()[..1], true, "");
    load_demo(&config).await;
    // The rows are spread over every master (no hash tag in the default key template).
    for node in &cluster.nodes {
        let keys: u64 = node.query(&mut redis::cmd("DBSIZE")).unwrap();
        assert!(keys > 1000, "node {} holds only {keys} keys", node.port);
    }

    let items: Vec<String> = (0..200).map(|i| format!("i{}", i * 13)).collect();
    let mut items: Vec<&str> = items.iter().map(String::as_str).collect();
    items.push("no-such-item");
    let request = || common::ranking_request("u7", &items);

    let memory = common::start(common::demo_config("")).await;
    let expected = memory.client().await.predict(request()).await.unwrap().into_inner();
    memory.stop().await;
    let served = common::start(config.clone()).await;
    let got = served.client().await.predict(request()).await.unwrap().into_inner();
    served.stop().await;
    assert_eq!(got.scores, expected.scores);
    assert_eq!(got.fallbacks, expected.fallbacks);

    // The store itself: every row comes back, from whichever node holds it.
    let store = RedisFeatureStore::connect(redis_config(&config)).await.unwrap();
    let rows = store.get_rows("items", &items, &["price".to_owned()]).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.is_some()).count(), 200);
    assert!(rows[200].is_none());
}

/// Why the cluster path sends one command per key instead of one pipeline: redis-rs 1.x routes
/// an async cluster pipeline by its first key and refuses keys of other slots. If this starts
/// passing a cross-slot pipeline, `src/fetch/redis.rs` can go back to one pipeline per call.
#[tokio::test]
async fn redis_rs_async_cluster_does_not_split_cross_slot_pipelines() {
    common::require!(Redis);
    let cluster = RedisCluster::start();
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    // "a" and "b" hash to slots 15495 and 3300: different masters of a 3-master cluster.
    let mut pipe = redis::pipe();
    pipe.cmd("HMGET").arg("a").arg("f").cmd("HMGET").arg("b").arg("f");
    let result: redis::RedisResult<Vec<redis::Value>> = pipe.query_async(&mut conn).await;
    let err = result.expect_err("cross-slot pipeline");
    assert!(err.to_string().to_lowercase().contains("slot"), "{err}");
}
