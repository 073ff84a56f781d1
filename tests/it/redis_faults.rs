//! Redis faults never hang a request: a killed server, a restarted one (served again without
//! restarting augur) and a frozen one (SIGSTOP: connections open, nothing answered) — all against
//! real `redis-server`s.
//!
//! A store error never fails a request: it is answered OK with the store's features served from
//! spec defaults and listed as fallbacks (reason TIMEOUT or STORE_ERROR). A hang or any error
//! status fails the test. No assertion times a request: the machines are shared and noisy, so
//! the tests check outcomes and order, and the only clocks are bounds that a hang trips.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use augur::proto::FallbackReason;
use augur::proto::PredictResponse;

use crate::common;
use crate::common::redis_server::{RedisServer, load_demo, redis_demo_config};

/// Far above `timeout_ms` (100 ms) and any scheduling hiccup: only a hang trips it.
const HANG: Duration = Duration::from_secs(20);
/// How long a reconnect after the fault may take before the test gives up.
const RECOVER: Duration = Duration::from_secs(30);

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

/// Predicts until a response has no fallbacks (the store answers again), which must score
/// exactly `healthy`; gives up after [`RECOVER`].
async fn served_again(server: &common::TestServer, healthy: &PredictResponse, what: &str) {
    let recovered = async {
        loop {
            if let Ok(response) = predict_bounded(server).await
                && response.fallbacks.is_empty()
            {
                return response;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let response = tokio::time::timeout(RECOVER, recovered).await.unwrap_or_else(|_| panic!("not served again {what}"));
    assert_eq!(response.scores, healthy.scores);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_never_hangs_requests_and_a_restarted_one_is_served_again() {
    common::require!(Redis, Ort);
    let mut redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "timeout_ms = 100");
    load_demo(&config).await;
    let server = Arc::new(common::start(config.clone()).await);
    let healthy = predict_bounded(&server).await.expect("healthy redis");
    assert!(healthy.fallbacks.is_empty(), "{:?}", healthy.fallbacks);

    // Callers keep going while the server dies under them, each until it has made 5 calls that
    // started after the kill.
    let killed = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (server, killed, answered) = (Arc::clone(&server), Arc::clone(&killed), Arc::clone(&answered));
            tokio::spawn(async move {
                let mut after_kill = Vec::new();
                while after_kill.len() < 5 {
                    let dead = killed.load(Ordering::SeqCst);
                    let outcome = predict_bounded(&server).await;
                    answered.fetch_add(1, Ordering::SeqCst);
                    if dead {
                        after_kill.push(outcome);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                after_kill
            })
        })
        .collect();
    // Kill once the callers are under way (answers are coming back), not after a guessed time.
    tokio::time::timeout(HANG, async {
        while answered.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("callers under way");
    redis.kill();
    killed.store(true, Ordering::SeqCst);
    for caller in callers {
        // Every call that started after the kill came back (no hang, no error) degraded.
        for outcome in caller.await.unwrap() {
            assert!(degraded(&outcome), "{outcome:?}");
        }
    }
    // While it is down, every new request still comes back degraded.
    for _ in 0..5 {
        assert!(degraded(&predict_bounded(&server).await));
    }

    // A new, empty server on the same port: missing rows until the tables are reloaded, then
    // exactly the scores of before — augur reconnected by itself.
    redis.restart();
    load_demo(&config).await;
    served_again(&server, &healthy, "after the restart").await;
    Arc::into_inner(server).expect("callers finished").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_redis_costs_a_request_about_the_timeout_not_the_stall() {
    common::require!(Redis, Ort);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "timeout_ms = 100");
    load_demo(&config).await;
    let server = common::start(config).await;
    let healthy = predict_bounded(&server).await.expect("healthy redis");

    // Frozen until resumed: the stall outlasts any request by construction, so a request that
    // waited for the stall would trip the hang bound. Coming back degraded while the server is
    // still frozen is the proof that the store timeout, not the stall, bounded it.
    redis.freeze();
    let outcome = predict_bounded(&server).await;
    assert!(degraded(&outcome), "{outcome:?}");
    assert!(degraded(&predict_bounded(&server).await), "the next request is bounded too");
    redis.resume();
    served_again(&server, &healthy, "after the stall").await;
    server.stop().await;
}
