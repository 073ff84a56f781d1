//! The Redis join store against a real `redis-server` and a real 3-master Redis Cluster, with two
//! joiners standing for two replicas: a prediction held by one is joined with events reported to
//! the other, every due candidate is emitted exactly once however many replicas claim, duplicates
//! and orphans are recognised across replicas, a late label becomes a correction, a replica that
//! dies between Predict and ReportEvents or between claiming and writing loses nothing, and a
//! stopped Redis fails ReportEvents whole (UNAVAILABLE: nothing acknowledged) instead of hanging.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use augur::assemble::{Tensor, TensorData};
use augur::config::SamplesConfig;
use augur::proto::{self, EventStatus, LogRecord, log_record};
use augur::sample_log::join::JoinStore;
use augur::sample_log::join::redis::{RedisJoinConfig, RedisJoinStore};
use augur::sample_log::joiner::{Joiner, RecordWriter};
use augur::sample_log::snapshot::{Served, now_ms};
use prost::Message;

use crate::common;
use crate::common::redis_server::{RedisCluster, RedisServer};

#[derive(Debug, Default)]
struct Written(Mutex<Vec<proto::Sample>>);

impl RecordWriter for Written {
    fn write(&self, records: Vec<Vec<u8>>) -> Result<(), String> {
        for r in records {
            if let Some(log_record::Record::Sample(s)) = LogRecord::decode(r.as_slice()).unwrap().record {
                self.0.lock().unwrap().push(s);
            }
        }
        Ok(())
    }

    fn last_sequence(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
}

/// The lease the tests claim with: they move the clock they pass past it instead of sleeping.
const LEASE_MS: i64 = 1_000;

async fn store(url: &str, cluster: bool) -> Arc<dyn JoinStore> {
    let config =
        RedisJoinConfig { url, cluster, namespace: "t", timeout_ms: 2_000, shards: 16, lease_ms: LEASE_MS as u64, close_grace_ms: 600_000 };
    let metrics = augur::telemetry::Metrics::new().of::<augur::sample_log::metrics::SampleMetrics>();
    Arc::new(RedisJoinStore::connect(&config, metrics).await.expect("connect"))
}

async fn replica(url: &str, cluster: bool) -> (Joiner, Arc<Written>) {
    replica_on(store(url, cluster).await)
}

fn replica_on(store: Arc<dyn JoinStore>) -> (Joiner, Arc<Written>) {
    let mut config = SamplesConfig { enabled: true, ..SamplesConfig::default() };
    config.join.positive_wait_s = BTreeMap::from([("click".to_owned(), 0)]);
    let written = Arc::new(Written::default());
    let writer: Arc<dyn RecordWriter> = Arc::clone(&written) as _;
    (
        Joiner::new(
            Arc::new(config),
            store,
            writer,
            augur::telemetry::Metrics::new().of::<augur::sample_log::metrics::SampleMetrics>(),
        ),
        written,
    )
}

fn served(request_id: &str, items: usize) -> Served {
    Served {
        request_id: request_id.to_owned(),
        timestamp_ms: now_ms(),
        scene: "ranking".into(),
        model_name: "ranking".into(),
        model_version: "1".into(),
        user_id: "u".into(),
        item_ids: (0..items).map(|i| format!("item:{i}")).collect(),
        scores: (0..items).map(|i| i as f32).collect(),
        inputs: Arc::from(vec![Tensor {
            name: "ids".into(),
            width: 1,
            data: TensorData::I64((0..items as i64).map(|i| 100 + i).collect()),
        }]),
        fallbacks: Vec::new(),
    }
}

fn event(request_id: &str, item_id: &str, kind: &str) -> proto::Event {
    proto::Event {
        request_id: request_id.into(),
        item_id: item_id.into(),
        r#type: kind.into(),
        timestamp_ms: 0,
        value: Some(2.5),
    }
}

fn statuses(results: &[proto::EventResult]) -> Vec<EventStatus> {
    results.iter().map(|r| EventStatus::try_from(r.status).unwrap()).collect()
}

#[tokio::test]
async fn two_replicas_share_the_join_and_emit_each_candidate_once() {
    common::require!(Redis);
    let redis = RedisServer::start();
    two_replicas_share_the_join(&redis.url(), false).await;
}

#[tokio::test]
async fn on_a_cluster_two_replicas_share_the_join_and_emit_each_candidate_once() {
    common::require!(Redis);
    let cluster = RedisCluster::start();
    two_replicas_share_the_join(&cluster.urls()[1], true).await;
    // The predictions spread over the masters: the point of a cluster.
    let holding = cluster.nodes.iter().filter(|n| n.query::<i64>(&mut redis::cmd("DBSIZE")).unwrap() > 0).count();
    assert_eq!(holding, 3, "16 shards land on every master");
}

async fn two_replicas_share_the_join(url: &str, cluster: bool) {
    let (a, a_out) = replica(url, cluster).await;
    let (b, b_out) = replica(url, cluster).await;

    // 20 predictions held by A; B hears an impression for every even item, a click on item:0.
    for r in 0..20 {
        a.hold(served(&format!("req:{r}"), 6)).await;
    }
    let mut events = Vec::new();
    for r in 0..20 {
        for i in (0..6).step_by(2) {
            events.push(event(&format!("req:{r}"), &format!("item:{i}"), "impression"));
        }
        events.push(event(&format!("req:{r}"), "item:0", "click"));
    }
    events.push(event("req:0", "item:0", "click")); // a duplicate, across replicas too
    events.push(event("req:99", "item:0", "click")); // never predicted
    events.push(event("req:1", "item:77", "click")); // not a candidate of req:1
    let results = b.report(events, 256).await.unwrap();
    let st = statuses(&results);
    assert_eq!(st.iter().filter(|s| **s == EventStatus::Accepted).count(), 80);
    assert_eq!(&st[80..], &[EventStatus::Duplicate, EventStatus::Orphan, EventStatus::Orphan]);

    // Both replicas claim at once: 60 impressed candidates, each emitted by exactly one.
    let (na, nb) = tokio::join!(
        a.emit_due(augur::sample_log::snapshot::now_ms()),
        b.emit_due(augur::sample_log::snapshot::now_ms())
    );
    assert_eq!(na.unwrap() + nb.unwrap(), 60);
    let mut all: Vec<proto::Sample> = a_out.0.lock().unwrap().clone();
    all.extend(b_out.0.lock().unwrap().iter().cloned());
    let mut ids: Vec<&str> = all.iter().map(|s| s.sample_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 60, "no candidate emitted twice");
    let s = all.iter().find(|s| s.sample_id == "req:3:0").expect("req:3 item:0 emitted");
    assert_eq!(s.inputs[0].int64_values, vec![100], "the features it was served with");
    let mut kinds: Vec<&str> = s.labels.iter().map(|l| l.r#type.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["click", "impression"]);
    assert_eq!(s.labels[0].value, Some(2.5));

    // A conversion after emission: a correction at revision 1 with all three labels.
    let late = a.report(vec![event("req:3", "item:0", "conversion")], 256).await.unwrap();
    assert_eq!(statuses(&late), vec![EventStatus::Accepted]);
    let corrected = a_out.0.lock().unwrap().iter().find(|s| s.sample_id == "req:3:0" && s.revision == 1).cloned();
    let corrected = corrected.expect("correction emitted");
    assert_eq!(corrected.labels.len(), 3);
}

#[tokio::test]
async fn a_stopped_redis_fails_the_call_whole_and_recovers() {
    common::require!(Redis);
    let mut redis = RedisServer::start();
    let (a, _) = replica(&redis.url(), false).await;
    a.hold(served("r", 2)).await;
    redis.kill();
    let err = a.report(vec![event("r", "item:0", "impression")], 256).await.unwrap_err();
    assert!(err.to_string().contains("unavailable"), "{err}");
    redis.restart();
    // The snapshot is gone with the unpersisted Redis; the store answers again.
    let mut answered = None;
    for _ in 0..100 {
        if let Ok(r) = a.report(vec![event("r", "item:0", "impression")], 256).await {
            answered = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(statuses(&answered.expect("reconnected")), vec![EventStatus::Orphan]);
}

#[tokio::test]
async fn a_replica_killed_between_claim_and_write_loses_nothing() {
    common::require!(Redis);
    let redis = RedisServer::start();
    claimed_by_a_dead_replica_are_emitted_by_another(&redis.url(), false).await;
}

#[tokio::test]
async fn on_a_cluster_a_replica_killed_between_claim_and_write_loses_nothing() {
    common::require!(Redis);
    let cluster = RedisCluster::start();
    claimed_by_a_dead_replica_are_emitted_by_another(&cluster.urls()[0], true).await;
}

/// A claims every due candidate and dies before its sample log write (no confirm); B, once the
/// lease lapsed, claims them again and emits each once, with its labels. A's confirmed claims are
/// never taken again.
async fn claimed_by_a_dead_replica_are_emitted_by_another(url: &str, cluster: bool) {
    let (b, b_out) = replica(url, cluster).await;
    let dying = store(url, cluster).await;
    let (a, a_out) = replica_on(Arc::clone(&dying));
    for r in 0..30 {
        a.hold(served(&format!("lease:{r}"), 3)).await;
    }
    let events: Vec<_> = (0..30).map(|r| event(&format!("lease:{r}"), "item:1", "click")).collect();
    assert!(statuses(&b.report(events, 256).await.unwrap()).iter().all(|s| *s == EventStatus::Accepted));

    let now = now_ms();
    let claimed = dying.take_due(now, 20, 0).await.unwrap();
    assert_eq!(claimed.len(), 20);
    drop((a, dying)); // SIGKILL: no write, no confirm

    // Within the lease B takes only what A did not claim.
    assert_eq!(b.emit_due(now).await.unwrap(), 10);
    // After it, A's 20 too.
    assert_eq!(b.emit_due(now + LEASE_MS + 1).await.unwrap(), 20);
    assert_eq!(b.emit_due(now + 10 * LEASE_MS).await.unwrap(), 0, "confirmed claims are final");
    let out = b_out.0.lock().unwrap();
    let mut ids: Vec<&str> = out.iter().map(|s| s.sample_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 30, "each clicked candidate once: {ids:?}");
    assert!(out.iter().all(|s| s.labels.iter().any(|l| l.r#type == "click")), "with its label");
    assert!(a_out.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn on_a_cluster_a_replica_dying_between_predict_and_report_loses_nothing() {
    common::require!(Redis);
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let (a, _) = replica(&urls[2], true).await;
    for r in 0..10 {
        a.hold(served(&format!("gone:{r}"), 4)).await;
    }
    drop(a); // the replica that served is gone; its predictions are not
    let (b, b_out) = replica(&urls[0], true).await;
    let events: Vec<_> =
        (0..10).flat_map(|r| (0..4).map(move |i| event(&format!("gone:{r}"), &format!("item:{i}"), "click"))).collect();
    assert!(statuses(&b.report(events, 256).await.unwrap()).iter().all(|s| *s == EventStatus::Accepted));
    assert_eq!(b.emit_due(now_ms()).await.unwrap(), 40);
    assert_eq!(b_out.0.lock().unwrap().len(), 40);
}

/// The real binary, twice, on a real 3-master cluster: replica A serves 20 predictions and is
/// SIGKILLed; every event B then answers ACCEPTED ends in a sample in B's log, with its label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_a_cluster_a_sigkilled_replica_loses_no_accepted_event() {
    use crate::common::process::AugurProcess;
    use crate::common::samples::{EMITTED, latest_samples, metric, read_log};

    common::require!(Redis, Ort);
    let cluster = RedisCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, url: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n\
                 [samples]\nenabled = true\n[samples.log]\ndir = \"{}\"\nfsync_interval_ms = 50\n\
                 [samples.join]\ntick_ms = 50\npositive_wait_s = {{ click = 1 }}\n\
                 [samples.join.store]\nkind = \"redis\"\ncluster = true\nurl = \"{url}\"\nnamespace = \"p\"\n\
                 timeout_ms = 5000\nlease_ms = 1000\n",
                dir.path().join(name).display()
            ),
        )
        .unwrap();
        path
    };
    let urls = cluster.urls();
    let a = AugurProcess::start(&config("a", &urls[0])).await;
    let b = AugurProcess::start(&config("b", &urls[1])).await;

    let items = ["i1", "i2", "i3", "i4"];
    let mut client = a.client().await;
    for k in 0..20 {
        let mut r = common::ranking_request(&format!("u{k}"), &items);
        r.request_id = format!("pk-{k}");
        client.predict(r).await.expect("predict on A");
    }
    // A's joiner writes the snapshots to the cluster off the Predict path: wait for all 20.
    let held = || {
        cluster
            .nodes
            .iter()
            .map(|n| n.query::<Vec<String>>(redis::cmd("KEYS").arg("p:join:*:r:*")).unwrap().len())
            .sum::<usize>()
    };
    common::wait_for("A's 20 predictions in the cluster", async || held() == 20).await;
    a.kill();

    let mut client = b.client().await;
    let events: Vec<_> = (0..20)
        .flat_map(|k| {
            items.iter().flat_map(move |i| ["impression", "click"].map(|kind| event(&format!("pk-{k}"), i, kind)))
        })
        .collect();
    let answered = client
        .report_events(augur::proto::ReportEventsRequest { events: events.clone() })
        .await
        .expect("report on B")
        .into_inner()
        .results;
    assert!(statuses(&answered).iter().all(|s| *s == EventStatus::Accepted), "{answered:?}");
    common::wait_for("B emitted 80 samples", async || metric(&b.metrics().await, EMITTED) >= 80.0).await;
    b.signal(libc::SIGTERM);
    b.wait();

    let samples = latest_samples(&read_log(&dir.path().join("b")));
    for e in &events {
        let position = items.iter().position(|i| *i == e.item_id).unwrap();
        let id = format!("{}:{position}", e.request_id);
        let sample = samples.get(&id).unwrap_or_else(|| panic!("accepted {e:?} has no sample {id}"));
        assert!(sample.labels.iter().any(|l| l.r#type == e.r#type), "{id} lacks its {}", e.r#type);
    }
}
