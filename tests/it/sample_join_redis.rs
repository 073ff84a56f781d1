//! The Redis join store against a real `redis-server`, with two joiners standing for two
//! replicas: a prediction held by one is joined with events reported to the other, every due
//! candidate is emitted exactly once however many replicas claim, duplicates and orphans are
//! recognised across replicas, a late label becomes a correction, and a stopped Redis fails
//! ReportEvents whole (UNAVAILABLE: nothing acknowledged) instead of hanging.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use augur::assemble::{Tensor, TensorData};
use augur::config::SamplesConfig;
use augur::proto::{self, EventStatus, LogRecord, log_record};
use augur::sample_log::join::JoinStore;
use augur::sample_log::join::redis::RedisJoinStore;
use augur::sample_log::joiner::{Joiner, RecordWriter};
use augur::sample_log::snapshot::{Served, now_ms};
use prost::Message;

use crate::common;
use crate::common::redis_server::RedisServer;

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

async fn replica(url: &str) -> (Joiner, Arc<Written>) {
    let mut config = SamplesConfig { enabled: true, ..SamplesConfig::default() };
    config.join.positive_wait_s = BTreeMap::from([("click".to_owned(), 0)]);
    let store: Arc<dyn JoinStore> = Arc::new(RedisJoinStore::connect(url, "t", 500).await.expect("connect"));
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
    let (a, a_out) = replica(&redis.url()).await;
    let (b, b_out) = replica(&redis.url()).await;

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
    let (a, _) = replica(&redis.url()).await;
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
