//! Redis as the feature store: the demo tables loaded with `augur::cli::load` serve exactly the
//! scores of the in-memory store, over real gRPC, against a real `redis-server`.

use std::sync::Arc;

use augur::fetch::Value;
use augur::fetch::{FeatureStore, RedisFeatureStore, Row};

use crate::common;
use crate::common::redis_server::{ITEM_CACHE, RedisServer, load_demo, redis_config, redis_demo_config};

/// Requests covering known and unknown users and items, duplicates and a long candidate list.
fn requests() -> Vec<augur::proto::PredictRequest> {
    let many: Vec<String> = (0..300).map(|i| format!("i{}", i * 7)).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    vec![
        common::ranking_request("u1", &["i0", "i1", "i2", "i3", "no-such-item"]),
        common::ranking_request("u1999", &["i4999", "i17", "i17"]),
        common::ranking_request("no-such-user", &["i5", "i6"]),
        common::ranking_request("u42", &many),
    ]
}

/// Scores and fallbacks of `requests()` from a running server.
async fn answers(server: &common::TestServer) -> Vec<(Vec<f32>, Vec<augur::proto::Fallback>)> {
    let mut client = server.client().await;
    let mut out = Vec::new();
    for request in requests() {
        let response = client.predict(request).await.expect("predict").into_inner();
        out.push((response.scores, response.fallbacks));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tables_loaded_into_redis_score_exactly_like_memory() {
    common::require!(Redis, Ort);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "");
    load_demo(&config).await;

    let memory = common::start(common::demo_config("")).await;
    let expected = answers(&memory).await;
    memory.stop().await;

    let served = common::start(config).await;
    let got = answers(&served).await;
    served.stop().await;
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        // Exact: the same strings reach the assembler whichever store served them.
        assert_eq!(got.0, expected.0, "request {i}: scores");
        assert_eq!(got.1, expected.1, "request {i}: fallbacks");
    }
    assert!(!got[0].1.is_empty(), "the unknown item falls back");
}

#[tokio::test]
async fn rows_hold_the_requested_fields_and_missing_or_foreign_keys_are_none() {
    common::require!(Redis);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "");
    let store = RedisFeatureStore::connect(redis_config(&config)).await.unwrap();
    let _: () =
        redis.query(redis::cmd("HSET").arg("augur:items:a").arg("price").arg("0.1").arg("brand").arg("b1")).unwrap();
    let _: () = redis.query(redis::cmd("HSET").arg("augur:items:c").arg("brand").arg("b2")).unwrap();
    let _: () = redis.query(redis::cmd("SET").arg("augur:items:s").arg("a string, not a hash")).unwrap();
    let fields = vec!["price".to_owned(), "category".to_owned()];
    let rows = store.get_rows("items", &["a", "b", "c", "s", "a"], &fields).await.unwrap();

    let row: &Arc<Row> = rows[0].as_ref().expect("row a");
    assert_eq!(row.len(), 1, "only requested, present fields: {row:?}");
    assert_eq!(row["price"], Value::Str("0.1".into()));
    assert!(rows[1].is_none(), "no such key");
    assert!(rows[2].is_none(), "none of the requested fields: a missing row");
    assert!(rows[3].is_none(), "WRONGTYPE is served as missing, not as an error");
    assert_eq!(rows[4], rows[0]);
    assert!(store.get_rows("items", &["a"], &[]).await.unwrap()[0].is_none());

    // Another namespace is another key space.
    let other = redis_demo_config(&[redis.url()], false, "namespace = \"staging\"");
    let staging = RedisFeatureStore::connect(redis_config(&other)).await.unwrap();
    assert!(staging.get_rows("items", &["a"], &fields).await.unwrap()[0].is_none());
}

#[tokio::test]
async fn unreachable_redis_fails_start_up_naming_the_url() {
    common::require!(Redis);
    let port = common::free_ports(1)[0];
    let config = redis_demo_config(&[format!("redis://127.0.0.1:{port}")], false, "connect_timeout_ms = 100");
    let err = augur::app::store(&config, &augur::telemetry::Metrics::new()).await.unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_items_score_the_same_and_new_ids_appear_after_the_negative_ttl() {
    common::require!(Redis, Ort);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, ITEM_CACHE);
    load_demo(&config).await;
    let memory = common::start(common::demo_config("")).await;
    let expected = answers(&memory).await;
    memory.stop().await;

    let store = augur::app::store(&config, &augur::telemetry::Metrics::new()).await.unwrap();
    assert_eq!(store.cache_stats().map(|s| s.store_reads), Some(0), "app::store wraps redis in the cache");
    let served = common::start(config).await;
    for round in 0..2 {
        // Round 1 is served from the cache (the scores cannot tell, which is the point).
        let got = answers(&served).await;
        for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(got, expected, "round {round}, request {i}");
        }
    }

    // An id unknown at first is cached as missing, then served once its negative entry expires.
    let mut client = served.client().await;
    let request = || common::ranking_request("u1", &["i-new"]);
    let missing = |r: &augur::proto::PredictResponse| !r.fallbacks.is_empty();
    // Before the request that caches `i-new` as missing: its 2 s negative entry is created after
    // this instant, so it cannot expire earlier than 2 s from here, however slow the machine.
    let cached_from = std::time::Instant::now();
    assert!(missing(&client.predict(request()).await.unwrap().into_inner()));
    let _: () = redis
        .query(
            redis::cmd("HSET")
                .arg("augur:items:i-new")
                .arg(&["category", "c1", "brand", "b1", "price", "9.5", "tags", "t1"]),
        )
        .unwrap();
    assert!(missing(&client.predict(request()).await.unwrap().into_inner()), "negatively cached");
    let appeared = async {
        while missing(&client.predict(request()).await.unwrap().into_inner()) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), appeared).await.expect("new item never served");
    // A lower bound only (load cannot make it fail): the missing id was held for its TTL, not
    // dropped early. Half the TTL, so the check does not rest on moka's clock rounding.
    assert!(cached_from.elapsed() > std::time::Duration::from_secs(1), "{:?}", cached_from.elapsed());
    served.stop().await;
}

#[tokio::test]
async fn successive_reads_take_the_configured_connections_in_turn() {
    common::require!(Redis);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "connections = 3");
    let store = RedisFeatureStore::connect(redis_config(&config)).await.unwrap();
    let _: () = redis.query(redis::cmd("HSET").arg("augur:items:a").arg("price").arg("0.1")).unwrap();
    let fields = vec!["price".to_owned()];
    for _ in 0..6 {
        let rows = store.get_rows("items", &["a", "b"], &fields).await.unwrap();
        assert_eq!(rows[0].as_ref().expect("row a")["price"], Value::Str("0.1".into()));
    }
    // Every one of the three connections has served reads (its last command was HMGET).
    let clients: String = redis.query(redis::cmd("CLIENT").arg("LIST")).unwrap();
    let reading = clients.lines().filter(|l| l.contains("cmd=hmget")).count();
    assert_eq!(reading, 3, "{clients}");
}
