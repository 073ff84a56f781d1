//! End to end through gRPC: predictions are snapshotted, ReportEvents joins impressions and
//! clicks for a known subset, and exactly the expected training samples land in the sample log
//! with the right labels and the features GetFeatures gives for the same request, byte for byte.
//! Then the same with the Redis join store and two augur instances (events reported to the one
//! that did not serve the prediction), and a restart that keeps pending joins.

use std::collections::{BTreeMap, BTreeSet};

use augur::proto::{EventStatus, ReportEventsRequest};

use crate::common;
use crate::common::redis_server::RedisServer;
use crate::common::samples::{
    EMITTED, check_samples, event, events, features_request, latest_samples, metric, read_log, request, samples_config,
    wait_for,
};

#[tokio::test]
async fn predictions_and_events_become_exactly_the_expected_samples() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(samples_config(dir.path(), "")).await;
    let mut client = server.client().await;
    let n = 10;
    let mut features = BTreeMap::new();
    for k in 0..n {
        let r = request(k);
        let response = client.predict(r.clone()).await.expect("predict").into_inner();
        assert_eq!(response.request_id, r.request_id);
        let f = client.get_features(features_request(&r)).await.expect("features").into_inner();
        features.insert(r.request_id.clone(), f);
    }
    wait_for(&server.metrics, "augur_samples_snapshots_total{scene=\"ranking\"}", n as f64).await;
    // The snapshot queue is drained by the joiner: wait until it holds all n.
    wait_for(&server.metrics, "augur_samples_pending", n as f64).await;
    let (mut events, expected) = events(n);
    // A bad event and an orphan in the same batch: per-event results, the batch goes through.
    events.push(event("req-0", "", "click"));
    events.push(event("never-served", "i1", "click"));
    let results = client.report_events(ReportEventsRequest { events }).await.expect("report").into_inner().results;
    let statuses: Vec<i32> = results.iter().map(|r| r.status).collect();
    let accepted = statuses.iter().filter(|s| **s == EventStatus::Accepted as i32).count();
    assert_eq!(accepted, results.len() - 2);
    assert_eq!(statuses[statuses.len() - 2], EventStatus::Rejected as i32);
    assert!(results[results.len() - 2].reason.contains("item_id"), "{:?}", results[results.len() - 2]);
    assert_eq!(statuses[statuses.len() - 1], EventStatus::Orphan as i32);

    wait_for(&server.metrics, EMITTED, expected.len() as f64).await;
    let exposition = server.metrics.render();
    assert_eq!(metric(&exposition, "augur_samples_emitted_total{kind=\"orphan\"}"), 1.0);
    server.stop().await;

    let records = read_log(dir.path());
    check_samples(&latest_samples(&records), &expected, &features);
}

#[tokio::test]
async fn a_restart_keeps_pending_joins() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(samples_config(dir.path(), "")).await;
    let mut client = server.client().await;
    let n = 6;
    let mut features = BTreeMap::new();
    for k in 0..n {
        let r = request(k);
        client.predict(r.clone()).await.expect("predict");
        features.insert(r.request_id.clone(), client.get_features(features_request(&r)).await.unwrap().into_inner());
    }
    wait_for(&server.metrics, "augur_samples_snapshots_total{scene=\"ranking\"}", n as f64).await;
    // The signal lands under load: four callers keep predicting through the drain (their later
    // calls fail once the listener closes). Snapshots accepted up to the last answered call may
    // still be queued: the shutdown must hold them all.
    let mut load = Vec::new();
    for worker in 0..4 {
        let mut client = server.client().await;
        load.push(tokio::spawn(async move {
            for k in 0.. {
                let mut r = request(100 + worker * 10_000 + k);
                r.request_id = format!("load-{worker}-{k}");
                if client.predict(r).await.is_err() {
                    return k;
                }
            }
            unreachable!()
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let metrics = server.metrics.clone();
    server.stop().await;
    let mut answered = 0;
    for worker in load {
        answered += worker.await.unwrap();
    }
    let accepted = metric(&metrics.render(), "augur_samples_snapshots_total{scene=\"ranking\"}");
    assert_eq!(accepted, (n + answered) as f64, "one snapshot per answered Predict");
    assert!(dir.path().join("pending.bin").exists(), "pending joins written at shutdown");

    let server = common::start(samples_config(dir.path(), "")).await;
    assert_eq!(
        wait_for(&server.metrics, "augur_samples_pending", accepted).await,
        accepted,
        "every snapshot accepted before the signal is held again"
    );
    let (events, expected) = events(n);
    let mut client = server.client().await;
    client.report_events(ReportEventsRequest { events }).await.expect("report");
    wait_for(&server.metrics, EMITTED, expected.len() as f64).await;
    server.stop().await;
    check_samples(&latest_samples(&read_log(dir.path())), &expected, &features);
}

#[tokio::test]
async fn two_instances_share_the_redis_join_store() {
    common::require!(Redis, Ort);
    let redis = RedisServer::start();
    let store = format!("[samples.join.store]\nkind = \"redis\"\nurl = \"{}\"\nnamespace = \"e2e\"\n", redis.url());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = common::start(samples_config(dir_a.path(), &store)).await;
    let b = common::start(samples_config(dir_b.path(), &store)).await;
    let n = 8;
    let mut features = BTreeMap::new();
    let mut client_a = a.client().await;
    for k in 0..n {
        let r = request(k);
        client_a.predict(r.clone()).await.expect("predict on A");
        features.insert(r.request_id.clone(), client_a.get_features(features_request(&r)).await.unwrap().into_inner());
    }
    wait_for(&a.metrics, "augur_samples_snapshots_total{scene=\"ranking\"}", n as f64).await;
    // The joiner puts them in Redis right after: wait until B sees the last one.
    let (events, expected) = events(n);
    let mut client_b = b.client().await;
    let last = request(n - 2);
    let probe = vec![event(&last.request_id, &last.candidates[0].item_id, "impression")];
    let mut ready = false;
    for _ in 0..300 {
        let r = client_b.report_events(ReportEventsRequest { events: probe.clone() }).await.unwrap().into_inner();
        if r.results[0].status != EventStatus::Orphan as i32 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "A's snapshots reached the shared store");
    let results = client_b.report_events(ReportEventsRequest { events }).await.expect("report on B").into_inner();
    let orphans = results.results.iter().filter(|r| r.status == EventStatus::Orphan as i32).count();
    assert_eq!(orphans, 0, "B joins what A served");
    // Either instance may claim a due candidate; together they emit each once.
    let total = || metric(&a.metrics.render(), EMITTED) + metric(&b.metrics.render(), EMITTED);
    for _ in 0..600 {
        if total() >= expected.len() as f64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    a.stop().await;
    b.stop().await;
    let mut records = read_log(dir_a.path());
    records.extend(read_log(dir_b.path()));
    check_samples(&latest_samples(&records), &expected, &features);
    let mut seen = BTreeSet::new();
    for r in &records {
        if let Some(augur::proto::log_record::Record::Sample(s)) = &r.record {
            assert!(
                seen.insert((s.sample_id.clone(), s.revision)),
                "{} emitted twice at revision {}",
                s.sample_id,
                s.revision
            );
        }
    }
}
