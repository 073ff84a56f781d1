//! The joiner over the in-memory join store, writing into a vector: the join semantics without
//! disk or network (the Redis store runs the same cases in `tests/sample_join_redis.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prost::Message;

use super::join::JoinStore;
use super::join::memory::MemoryJoinStore;
use super::joiner::{Joiner, RecordWriter};
use super::snapshot::{Served, now_ms};
use crate::assemble::{Tensor, TensorData};
use crate::config::SamplesConfig;
use crate::proto::{self, EventStatus, LogRecord, log_record};
use crate::telemetry::Metrics;

#[derive(Debug, Default)]
struct Written(Mutex<Vec<LogRecord>>);

impl RecordWriter for Written {
    fn write(&self, records: Vec<Vec<u8>>) -> Result<(), String> {
        let mut out = self.0.lock().unwrap();
        out.extend(records.iter().map(|r| LogRecord::decode(r.as_slice()).unwrap()));
        Ok(())
    }
}

impl Written {
    fn samples(&self) -> Vec<proto::Sample> {
        let out = self.0.lock().unwrap();
        out.iter()
            .filter_map(|r| match &r.record {
                Some(log_record::Record::Sample(s)) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }
    fn orphans(&self) -> usize {
        self.0.lock().unwrap().iter().filter(|r| matches!(r.record, Some(log_record::Record::Orphan(_)))).count()
    }
}

/// Positive wait 0: a candidate is due as soon as its first event is in.
fn config() -> SamplesConfig {
    let mut c = SamplesConfig { enabled: true, ..SamplesConfig::default() };
    c.join.positive_wait_s = BTreeMap::from([("click".to_owned(), 0)]);
    c.join.event_types = vec!["add_to_cart".to_owned()];
    c
}

fn joiner(config: SamplesConfig, store: Arc<dyn JoinStore>) -> (Joiner, Arc<Written>) {
    joiner_with(config, store, Metrics::new())
}

fn joiner_with(config: SamplesConfig, store: Arc<dyn JoinStore>, metrics: Metrics) -> (Joiner, Arc<Written>) {
    let written = Arc::new(Written::default());
    let writer: Arc<dyn RecordWriter> = Arc::clone(&written) as _;
    (Joiner::new(Arc::new(config), store, writer, metrics.samples), written)
}

/// Three candidates; input `ids` holds 10·position+1, 10·position+2; `dense` one float.
fn served(request_id: &str) -> Served {
    Served {
        request_id: request_id.to_owned(),
        timestamp_ms: now_ms(),
        scene: "ranking".to_owned(),
        model_name: "ranking".to_owned(),
        model_version: "3".to_owned(),
        user_id: "u1".to_owned(),
        item_ids: vec!["a".into(), "b".into(), "c".into()],
        scores: vec![0.1, 0.2, 0.3],
        inputs: Arc::from(vec![
            Tensor { name: "ids".into(), width: 2, data: TensorData::I64(vec![1, 2, 11, 12, 21, 22]) },
            Tensor { name: "dense".into(), width: 1, data: TensorData::F32(vec![0.5, 1.5, 2.5]) },
        ]),
        fallbacks: vec![crate::assemble::Fallback {
            feature: "item_price".into(),
            reason: crate::assemble::FallbackReason::MissingRow,
            candidates: vec![1],
        }],
    }
}

fn event(request_id: &str, item_id: &str, kind: &str) -> proto::Event {
    proto::Event {
        request_id: request_id.into(),
        item_id: item_id.into(),
        r#type: kind.into(),
        timestamp_ms: 0,
        value: None,
    }
}

fn statuses(results: &[proto::EventResult]) -> Vec<EventStatus> {
    results.iter().map(|r| EventStatus::try_from(r.status).unwrap()).collect()
}

#[tokio::test]
async fn impressed_candidates_become_samples_with_their_rows_and_labels() {
    let (joiner, written) = joiner(config(), Arc::new(MemoryJoinStore::new(1 << 20)));
    joiner.hold(served("r1")).await;
    let results = joiner
        .report(vec![event("r1", "b", "impression"), event("r1", "b", "click"), event("r1", "a", "impression")], 256)
        .await
        .unwrap();
    assert_eq!(statuses(&results), vec![EventStatus::Accepted; 3]);
    assert_eq!(joiner.emit_due().await.unwrap(), 2, "a and b were impressed; c was not");
    let mut samples = written.samples();
    samples.sort_by_key(|s| s.position);
    let b = &samples[1];
    assert_eq!((b.sample_id.as_str(), b.item_id.as_str(), b.position, b.revision), ("r1:1", "b", 1, 0));
    assert_eq!(b.inputs[0].int64_values, vec![11, 12]);
    assert_eq!(b.inputs[0].shape, vec![1, 2]);
    assert_eq!(b.inputs[1].float_values, vec![1.5]);
    assert_eq!(b.score, 0.2);
    let mut kinds: Vec<&str> = b.labels.iter().map(|l| l.r#type.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["click", "impression"]);
    assert_eq!(b.fallbacks.len(), 1, "the fallback of candidate 1 travels with it");
    assert!(samples[0].fallbacks.is_empty(), "candidate 0 was served real values");
    assert_eq!(samples[0].labels.len(), 1);
    assert_eq!(joiner.emit_due().await.unwrap(), 0, "each candidate is emitted once");
}

#[tokio::test]
async fn duplicates_orphans_and_bad_events_each_get_their_own_status() {
    let (joiner, written) = joiner(config(), Arc::new(MemoryJoinStore::new(1 << 20)));
    joiner.hold(served("r1")).await;
    let mut future = event("r1", "a", "click");
    future.timestamp_ms = now_ms() + 3_600_000;
    let mut ancient = event("r1", "a", "click");
    ancient.timestamp_ms = 1;
    let mut nan = event("r1", "a", "conversion");
    nan.value = Some(f64::NAN);
    let results = joiner
        .report(
            vec![
                event("r1", "a", "click"),
                event("r1", "a", "click"),
                event("nope", "a", "click"),
                event("r1", "zzz", "click"),
                event("", "a", "click"),
                event("r1", "a", "like"),
                future,
                ancient,
                nan,
                event("r1", "a", "add_to_cart"),
                event("r1", &"x".repeat(300), "click"),
            ],
            256,
        )
        .await
        .unwrap();
    use EventStatus::*;
    assert_eq!(
        statuses(&results),
        vec![Accepted, Duplicate, Orphan, Orphan, Rejected, Rejected, Rejected, Rejected, Rejected, Accepted, Rejected]
    );
    let reasons: Vec<&str> = results.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[4].contains("events[4].request_id") && reasons[4].contains("empty"), "{}", reasons[4]);
    assert!(reasons[5].contains("events[5].type") && reasons[5].contains("add_to_cart"), "{}", reasons[5]);
    assert!(reasons[6].contains("max_future_skew_s"), "{}", reasons[6]);
    assert!(reasons[7].contains("window"), "{}", reasons[7]);
    assert!(reasons[8].contains("finite"), "{}", reasons[8]);
    assert!(reasons[10].contains("server.max_string_bytes (256)"), "{}", reasons[10]);
    assert_eq!(written.orphans(), 2, "orphans are logged, not errors");
}

#[tokio::test]
async fn a_label_after_emission_becomes_a_correction_with_every_label() {
    let (joiner, written) = joiner(config(), Arc::new(MemoryJoinStore::new(1 << 20)));
    joiner.hold(served("r1")).await;
    joiner.report(vec![event("r1", "c", "impression")], 256).await.unwrap();
    assert_eq!(joiner.emit_due().await.unwrap(), 1);
    let results = joiner.report(vec![event("r1", "c", "click")], 256).await.unwrap();
    assert_eq!(statuses(&results), vec![EventStatus::Accepted]);
    let samples = written.samples();
    assert_eq!(samples.len(), 2);
    assert_eq!((samples[0].revision, samples[0].labels.len()), (0, 1));
    assert_eq!((samples[1].sample_id.as_str(), samples[1].revision, samples[1].labels.len()), ("r1:2", 1, 2));
}

#[tokio::test]
async fn unimpressed_candidates_are_emitted_only_when_configured() {
    let mut c = config();
    c.join.emit_unimpressed = true;
    c.join.window_s = 1;
    let (joiner, written) = joiner(c, Arc::new(MemoryJoinStore::new(1 << 20)));
    let mut old = served("r1");
    old.timestamp_ms -= 10_000; // its window is long over
    joiner.hold(old).await;
    assert_eq!(joiner.emit_due().await.unwrap(), 3);
    assert!(written.samples().iter().all(|s| s.labels.is_empty()));
}

#[tokio::test]
async fn a_full_store_refuses_and_counts_and_a_saved_store_restores() {
    let probe = MemoryJoinStore::new(1 << 20);
    probe
        .put("r1", bytes::Bytes::from(served("r1").to_proto().encode_to_vec()), &served("r1").item_ids, i64::MAX, None)
        .await
        .unwrap();
    let one = probe.pending().unwrap().1;
    // Room for one prediction and its labels, not for two.
    let store = Arc::new(MemoryJoinStore::new(one + one / 2));
    let metrics = Metrics::with_samples(true);
    let (first, _) = joiner_with(config(), Arc::clone(&store) as _, metrics.clone());
    first.hold(served("r1")).await;
    first.hold(served("r2")).await;
    let (held, bytes) = store.pending().unwrap();
    assert_eq!(held, 1, "the second snapshot did not fit");
    assert_eq!(bytes, one);
    let dropped = metrics.render();
    assert!(dropped.contains("augur_samples_dropped_total{reason=\"join_store_full\"} 1"), "{dropped}");

    first.report(vec![event("r1", "a", "impression")], 256).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pending.bin");
    assert_eq!(store.save(&path).unwrap(), 1);
    let restored = Arc::new(MemoryJoinStore::new(1 << 20));
    assert_eq!(restored.load(&path, now_ms()).unwrap(), (1, 0));
    assert!(!path.exists(), "read once");
    let (joiner2, written) = joiner(config(), restored as _);
    assert_eq!(joiner2.emit_due().await.unwrap(), 1, "the scheduled candidate survived the restart");
    assert_eq!(written.samples()[0].labels.len(), 1);
    let dup = joiner2.report(vec![event("r1", "a", "impression")], 256).await.unwrap();
    assert_eq!(statuses(&dup), vec![EventStatus::Duplicate], "labels survived too");
}
