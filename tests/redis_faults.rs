//! Redis faults never hang a request: a killed server, a restarted one (served again without
//! restarting augur) and a server stuck in `DEBUG SLEEP` — all against real `redis-server`s.
//!
//! A store error never fails a request: it is answered OK with the store's features served from
//! spec defaults and listed as fallbacks (reason TIMEOUT or STORE_ERROR). A hang or any error
//! status fails the test.

mod common;

use std::time::{Duration, Instant};

use augur::proto::FallbackReason;
use augur::proto::PredictResponse;
use common::redis_server::{RedisServer, load_demo, redis_demo_config};

/// Far above `timeout_ms`: only a hang trips it.
const HANG: Duration = Duration::from_secs(5);

/// One Predict bounded by [`HANG`]; panics on a hang or on any error status.
async fn predict_bounded(server: &common::TestServer) -> Result<PredictResponse, tonic::Status> {
    let mut client = server.client().await;
    let call = client.predict(common::ranking_request("u1", &["i0", "i1", "i2"]));
    match tokio::time::timeout(HANG, call).await {
        Err(_) => panic!("Predict hung for {HANG:?}"),
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => panic!("a store fault must degrade the answer, not fail it: {status:?}"),
    }
}

/// The store's features fell back because of the store (not because a row is missing).
fn degraded(outcome: &Result<PredictResponse, tonic::Status>) -> bool {
    let Ok(response) = outcome else { return false };
    let store_fault = |r| matches!(r, FallbackReason::Timeout | FallbackReason::StoreError);
    response.fallbacks.iter().any(|f| f.feature == "item_category" && store_fault(f.reason()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_never_hangs_requests_and_a_restarted_one_is_served_again() {
    let mut redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "timeout_ms = 100");
    load_demo(&config).await;
    let server = std::sync::Arc::new(common::start(config.clone()).await);
    let healthy = predict_bounded(&server).await.expect("healthy redis");
    assert!(healthy.fallbacks.is_empty(), "{:?}", healthy.fallbacks);

    // Callers keep going while the server dies under them.
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let server = std::sync::Arc::clone(&server);
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for _ in 0..25 {
                    outcomes.push(predict_bounded(&server).await);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.kill();
    let mut degraded_count = 0;
    for caller in callers {
        degraded_count += caller.await.unwrap().iter().filter(|o| degraded(o)).count();
    }
    assert!(degraded_count > 0, "nobody noticed the kill");
    // While it is down, every request still comes back, well within the hang bound.
    for _ in 0..5 {
        let started = Instant::now();
        assert!(degraded(&predict_bounded(&server).await));
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    // A new, empty server on the same port: missing rows until the tables are reloaded, then
    // exactly the scores of before — augur reconnected by itself.
    redis.restart();
    load_demo(&config).await;
    let started = Instant::now();
    loop {
        if let Ok(response) = predict_bounded(&server).await
            && response.fallbacks.is_empty()
        {
            assert_eq!(response.scores, healthy.scores);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not served again after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::sync::Arc::into_inner(server).expect("callers finished").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_redis_costs_a_request_about_the_timeout_not_the_stall() {
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "timeout_ms = 100");
    load_demo(&config).await;
    let server = common::start(config).await;
    let healthy = predict_bounded(&server).await.expect("healthy redis");

    // DEBUG SLEEP blocks the whole server for 2 s; send it from its own connection.
    let url = redis.url();
    let sleeper = tokio::task::spawn_blocking(move || {
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("DEBUG").arg("SLEEP").arg(2).query(&mut conn).unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let outcome = predict_bounded(&server).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "request took {took:?} during a 2 s stall");
    assert!(degraded(&outcome), "{outcome:?}");

    sleeper.await.unwrap();
    let started = Instant::now();
    loop {
        match predict_bounded(&server).await {
            Ok(response) if response.fallbacks.is_empty() => {
                assert_eq!(response.scores, healthy.scores);
                break;
            }
            _ => assert!(started.elapsed() < Duration::from_secs(5), "not recovered after the stall"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}
