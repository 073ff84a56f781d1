//! The joiner over the in-memory join store, writing into a vector: the join semantics without
//! disk or network (the Redis store runs the same cases in `tests/it/sample_join_redis.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prost::Message;

use super::join::JoinStore;
use super::join::memory::MemoryJoinStore;
use super::joiner::{Joiner, RecordWriter};
use super::snapshot::{Served, now_ms};
use crate::assemble::{Tensor, TensorData};
use crate::proto::{self, EventStatus, LogRecord, log_record};
use crate::sample_log::config::SamplesConfig;
use crate::telemetry::Metrics;

#[derive(Debug, Default)]
struct Written(Mutex<Vec<LogRecord>>);

impl RecordWriter for Written {
    fn write(&self, records: Vec<Vec<u8>>) -> Result<(), String> {
        let mut out = self.0.lock().unwrap();
        out.extend(records.iter().map(|r| LogRecord::decode(r.as_slice()).unwrap()));
        Ok(())
    }

    fn last_sequence(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
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
    (Joiner::new(Arc::new(config), store, writer, metrics.of::<crate::sample_log::metrics::SampleMetrics>()), written)
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

/// Bytes the in-memory store charges for holding `served` (and nothing else).
async fn held_bytes(served: &Served) -> usize {
    let probe = MemoryJoinStore::new(1 << 30);
    let snapshot = bytes::Bytes::from(served.to_proto().encode_to_vec());
    probe.put(&served.request_id, snapshot, &served.item_ids, i64::MAX, None).await.unwrap();
    probe.pending().unwrap().1
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
    assert_eq!(joiner.emit_due(now_ms()).await.unwrap(), 2, "a and b were impressed; c was not");
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
    assert_eq!(joiner.emit_due(now_ms()).await.unwrap(), 0, "each candidate is emitted once");
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
    assert_eq!(joiner.emit_due(now_ms()).await.unwrap(), 1);
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
    assert_eq!(joiner.emit_due(now_ms()).await.unwrap(), 3);
    assert!(written.samples().iter().all(|s| s.labels.is_empty()));
}

#[tokio::test]
async fn a_full_store_refuses_and_counts_and_a_saved_store_restores() {
    let one = held_bytes(&served("r1")).await;
    // Room for one prediction and its labels, not for two.
    let store = Arc::new(MemoryJoinStore::new(one + one / 2));
    let metrics = Metrics::new();
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
    assert_eq!(joiner2.emit_due(now_ms()).await.unwrap(), 1, "the scheduled candidate survived the restart");
    assert_eq!(written.samples()[0].labels.len(), 1);
    let dup = joiner2.report(vec![event("r1", "a", "impression")], 256).await.unwrap();
    assert_eq!(statuses(&dup), vec![EventStatus::Duplicate], "labels survived too");
}

/// Window 6 s, wait 3 s (the outside report of issue 21): events whose wait would end after the
/// window closes are emitted at the close with the labels known by then, never dropped; the
/// prediction stays held until they are.
#[tokio::test]
async fn an_event_whose_wait_outlives_the_window_is_emitted_at_the_close() {
    let mut c = config();
    c.join.window_s = 6;
    c.join.positive_wait_s = BTreeMap::from([("click".to_owned(), 3)]);
    let store = Arc::new(MemoryJoinStore::new(1 << 20));
    let metrics = Metrics::new();
    let (joiner, written) = joiner_with(c, Arc::clone(&store) as _, metrics.clone());
    let now = now_ms();
    let mut w1 = served("w1");
    w1.timestamp_ms = now - 4_500;
    let closes = w1.timestamp_ms + 6_000;
    joiner.hold(w1).await;
    let mut ahead = event("w1", "c", "impression");
    ahead.timestamp_ms = now + 30_000;
    let results =
        joiner.report(vec![event("w1", "b", "impression"), event("w1", "b", "click"), ahead], 256).await.unwrap();
    assert_eq!(statuses(&results), vec![EventStatus::Accepted; 3]);
    assert_eq!(joiner.emit_due(closes - 1).await.unwrap(), 0, "not due before the close");
    // A late expiry pass before the joiner emitted: the prediction stays (b and c are scheduled).
    assert_eq!(store.expire(closes + 500).requests, 0);
    assert_eq!(store.pending().unwrap().0, 1);
    assert_eq!(joiner.emit_due(closes + 500).await.unwrap(), 2, "b and c at the close");
    let expired = store.expire(closes + 500);
    assert_eq!((expired.requests, expired.unlabelled), (1, 1), "a had no event: counted, not emitted");
    let mut samples = written.samples();
    samples.sort_by_key(|s| s.position);
    assert_eq!(samples.iter().map(|s| s.item_id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!(samples[0].labels.len(), 2, "impression and click of b");
    // After the close the request is gone: a click is an orphan record, not silence.
    let results = joiner.report(vec![event("w1", "c", "click")], 256).await.unwrap();
    assert_eq!(statuses(&results), vec![EventStatus::Orphan]);
    assert_eq!(written.orphans(), 1);
}

/// A writer that refuses its first `fail` batches.
#[derive(Debug, Default)]
struct Refusing {
    fail: std::sync::atomic::AtomicUsize,
    inner: Written,
}

impl RecordWriter for Refusing {
    fn write(&self, records: Vec<Vec<u8>>) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err("log full".into());
        }
        self.inner.write(records)
    }

    fn last_sequence(&self) -> u64 {
        self.inner.last_sequence()
    }
}

#[tokio::test]
async fn a_batch_the_log_refuses_is_due_again_not_lost() {
    let writer = Arc::new(Refusing { fail: 1.into(), inner: Written::default() });
    let joiner = Joiner::new(
        Arc::new(config()),
        Arc::new(MemoryJoinStore::new(1 << 20)),
        Arc::clone(&writer) as _,
        Metrics::new().of::<crate::sample_log::metrics::SampleMetrics>(),
    );
    joiner.hold(served("r1")).await;
    joiner.report(vec![event("r1", "a", "impression"), event("r1", "b", "impression")], 256).await.unwrap();
    assert!(joiner.emit_due(now_ms()).await.is_err(), "the refusal is reported");
    assert!(writer.inner.samples().is_empty());
    assert_eq!(joiner.emit_due(now_ms()).await.unwrap(), 2, "released, then emitted on the next tick");
    assert_eq!(joiner.emit_due(now_ms()).await.unwrap(), 0, "once");
}

/// A crash after the claim batch was journaled: what reached the sample log stays claimed,
/// the rest is due again; a confirmed batch is never in doubt.
#[tokio::test]
async fn claims_in_doubt_after_a_crash_settle_against_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let log_config = crate::sample_log::config::SampleLogConfig { dir: dir.path().join("log"), ..Default::default() };
    let store = MemoryJoinStore::new(1 << 20);
    store
        .attach_journal(&journal, &log_config, Metrics::new().of::<crate::sample_log::metrics::SampleMetrics>())
        .unwrap();
    let snapshot = bytes::Bytes::from(served("r1").to_proto().encode_to_vec());
    let items = served("r1").item_ids;
    let now = now_ms();
    store.put("r1", snapshot.clone(), &items, now + 60_000, None).await.unwrap();
    store.put("r2", snapshot, &items, now + 60_000, None).await.unwrap();
    for (r, i) in [("r1", "a"), ("r1", "b"), ("r2", "a")] {
        let e = crate::sample_log::join::Event {
            request_id: r.into(),
            item_id: i.into(),
            kind: "impression".into(),
            timestamp_ms: now,
            value: None,
        };
        store.add_event(&e, now).await.unwrap();
    }
    let first = store.take_due(now, 1, 7).await.unwrap();
    assert_eq!(first.len(), 1);
    store.confirm().await.unwrap();
    let doubt = store.take_due(now, 10, 8).await.unwrap();
    assert_eq!(doubt.len(), 2);
    drop(store); // SIGKILL: no confirm for the second batch

    let again = MemoryJoinStore::new(1 << 20);
    let replayed = again.replay(&journal, now).unwrap();
    assert_eq!(replayed.in_doubt_after, 8, "only the unconfirmed batch is in doubt");
    let mut in_doubt = replayed.in_doubt.clone();
    in_doubt.sort();
    let mut want: Vec<(String, String)> = doubt.iter().map(|j| (j.request_id.clone(), j.item_id.clone())).collect();
    want.sort();
    assert_eq!(in_doubt, want);
    // The log holds the first of the two.
    let in_log = std::collections::HashSet::from([want[0].clone()]);
    assert_eq!(again.settle(&replayed.in_doubt, &in_log, now), 1);
    let due = again.take_due(now, 10, 9).await.unwrap();
    assert_eq!(
        due.iter().map(|j| (j.request_id.clone(), j.item_id.clone())).collect::<Vec<_>>(),
        vec![want[1].clone()]
    );
}

#[tokio::test]
async fn a_full_store_answers_per_event_and_keeps_what_it_acknowledged() {
    let one = held_bytes(&served("r1")).await;
    // Room for the prediction and two first events (a label and a due entry each), not three.
    let first = crate::sample_log::join::memory::first_event_bytes("impression");
    let store = Arc::new(MemoryJoinStore::new(one + 2 * first + first / 2));
    let metrics = Metrics::new();
    let (joiner, written) = joiner_with(config(), Arc::clone(&store) as _, metrics.clone());
    joiner.hold(served("r1")).await;
    let results = joiner
        .report(
            vec![
                event("r1", "a", "impression"),
                event("gone", "a", "impression"),
                event("r1", "b", "impression"),
                event("r1", "c", "impression"),
            ],
            256,
        )
        .await
        .expect("a full store never fails the call whole");
    use EventStatus::*;
    assert_eq!(statuses(&results), vec![Accepted, Orphan, Accepted, Rejected]);
    assert!(results[3].reason.contains("join_store_full") && results[3].reason.contains("max_bytes"), "{results:?}");
    assert_eq!(written.orphans(), 1, "the orphan counted is the orphan written");
    assert_eq!(joiner.emit_due(now_ms()).await.unwrap(), 2, "a and b, acknowledged, are emitted");
}

#[tokio::test]
async fn a_reused_request_id_with_other_candidates_is_refused_and_a_retry_is_not() {
    use crate::sample_log::join::Reuse;
    let store = Arc::new(MemoryJoinStore::new(1 << 20));
    let metrics = Metrics::new();
    let (joiner, _) = joiner_with(config(), Arc::clone(&store) as _, metrics.clone());
    joiner.hold(served("r1")).await;
    let ids = served("r1").item_ids;
    let same: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(store.reuse("r1", &same), Some(Reuse::Retry));
    assert_eq!(store.reuse("r1", &["a", "z"]), Some(Reuse::Conflict));
    assert_eq!(store.reuse("r2", &same), Some(Reuse::New));
    let mut other = served("r1");
    other.item_ids = vec!["x".into(), "y".into(), "z".into()];
    joiner.hold(other).await;
    let exposition = metrics.render();
    assert!(exposition.contains("augur_samples_dropped_total{reason=\"request_id_reused\"} 1"), "{exposition}");
    let results = joiner.report(vec![event("r1", "x", "impression")], 256).await.unwrap();
    assert_eq!(statuses(&results), vec![EventStatus::Orphan], "the first prediction keeps the id");
}

/// Shutdown step 6 with a sink that cannot deliver (its drain would take the drain timeout):
/// a second signal (here: a ready future) or a spent budget cuts it, says where, and loses
/// nothing — the next start replays the journal and holds every prediction again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_samples_flush_says_where_and_the_next_start_restores_everything() {
    use crate::sample_log::pipeline::SamplePipeline;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.join.positive_wait_s = BTreeMap::from([("click".to_owned(), 600)]);
    c.log.dir = dir.path().to_owned();
    // Nothing listens on port 1: every batch fails and the drain keeps retrying.
    c.sinks =
        vec![crate::sample_log::config::SinkConfig::RedisStream(crate::sample_log::config::RedisStreamSinkConfig {
            name: "down".into(),
            url: "redis://127.0.0.1:1".into(),
            stream: "s".into(),
            maxlen: 1000,
            timeout_ms: 100,
            tail: Default::default(),
        })];
    for (k, cut) in [(0, true), (1, false)] {
        let metrics = Metrics::new();
        let pipeline =
            SamplePipeline::start(&c, &metrics.of::<crate::sample_log::metrics::SampleMetrics>()).await.unwrap();
        let samples = pipeline.samples();
        for i in 0..5 {
            samples.queue.offer(served(&format!("run{k}-{i}"))).await;
        }
        let results = samples.joiner.report(vec![event(&format!("run{k}-0"), "a", "impression")], 256).await.unwrap();
        assert_eq!(statuses(&results), vec![EventStatus::Accepted]);
        // An orphan gives the sink a record to fail on.
        samples.joiner.report(vec![event("nobody", "a", "click")], 256).await.unwrap();
        drop(samples);
        let flushed = if cut {
            pipeline.shutdown(std::time::Duration::from_secs(3600), std::future::ready(())).await
        } else {
            pipeline.shutdown(std::time::Duration::ZERO, std::future::pending()).await
        };
        assert!(flushed.cut.is_some(), "run {k}: the flush was cut: {flushed:?}");
        let metrics = Metrics::new();
        let again =
            SamplePipeline::start(&c, &metrics.of::<crate::sample_log::metrics::SampleMetrics>()).await.unwrap();
        let pending = metric(&metrics.render(), "augur_samples_pending");
        assert_eq!(pending, 5.0 * (k + 1) as f64, "run {k}: every held prediction is back");
        let dup = again.samples().joiner.report(vec![event(&format!("run{k}-0"), "a", "impression")], 256).await;
        assert_eq!(statuses(&dup.unwrap()), vec![EventStatus::Duplicate], "its label too");
        let flushed = again.shutdown(std::time::Duration::ZERO, std::future::ready(())).await;
        assert!(flushed.cut.is_some());
    }
}

fn metric(exposition: &str, series: &str) -> f64 {
    exposition.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(f64::NAN)
}

/// A bench-shaped prediction: 100 candidates, `ids` [100, 16] of which 7 columns (user and
/// context) are the same in every row, `dense` [100, 4] of which 3 are.
fn bench_shaped() -> Served {
    let rows = 100;
    let mut ids = Vec::with_capacity(rows * 16);
    let mut dense = Vec::with_capacity(rows * 4);
    for r in 0..rows as i64 {
        ids.extend((0..16).map(|c| if c < 7 { 1_000_003 + c * 17 } else { (r * 7_919 + c * 104_729) % 2_000_000 }));
        dense.extend([0.25, 3.5, -1.0, r as f32 / 7.0]);
    }
    let mut s = served("bench");
    s.item_ids = (0..rows).map(|i| format!("i{}", 10_000 + i)).collect();
    s.scores = (0..rows).map(|i| i as f32 / 100.0).collect();
    s.inputs = Arc::from(vec![
        Tensor { name: "ids".into(), width: 16, data: TensorData::I64(ids) },
        Tensor { name: "dense".into(), width: 4, data: TensorData::F32(dense) },
    ]);
    s.fallbacks = Vec::new();
    s
}

/// Shared columns are stored once and every sample still gets its full row back, bit for bit.
#[test]
fn shared_columns_are_stored_once_and_rows_come_back_whole() {
    let served = bench_shaped();
    let stored = served.to_proto();
    assert_eq!(stored.shared.len(), 2, "both inputs have shared columns");
    assert_eq!(stored.shared[0].columns, (0..7).collect::<Vec<u32>>());
    assert_eq!(stored.inputs[0].shape, vec![100, 9]);
    assert_eq!(stored.shared[1].columns, vec![0, 1, 2]);
    for (position, item) in served.item_ids.iter().enumerate() {
        let records = crate::sample_log::snapshot::samples(&stored, item, &[], 0, 0);
        let Some(log_record::Record::Sample(sample)) = &records[0].record else { panic!("a sample") };
        for (t, got) in served.inputs.iter().zip(&sample.inputs) {
            let cols = position * t.width..(position + 1) * t.width;
            assert_eq!(got.shape, vec![1, t.width as i64]);
            match &t.data {
                TensorData::I64(v) => assert_eq!(got.int64_values, v[cols]),
                TensorData::F32(v) => {
                    let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got.float_values), bits(&v[cols]));
                }
            }
        }
    }
    // One candidate: nothing to share.
    let mut one = served.clone();
    one.item_ids.truncate(1);
    assert!(one.to_proto().shared.is_empty());
}

/// A stored snapshot is data read back from the join store: a damaged width selects no values
/// instead of overflowing the row's range (a panic with overflow checks on; seen while writing
/// the fuzz target `snapshot`), and the sample's shape stays a non-negative width.
#[test]
fn damaged_snapshot_width_selects_nothing() {
    let mut stored = served("r").to_proto();
    stored.shared =
        vec![proto::SharedColumns { input: 0, columns: vec![0], int64_values: vec![9], float_values: Vec::new() }];
    stored.inputs[0].shape = vec![3, i64::MAX];
    for item in ["a", "b", "c"] {
        let records = crate::sample_log::snapshot::samples(&stored, item, &[], 0, 0);
        let Some(log_record::Record::Sample(sample)) = &records[0].record else { panic!("a sample") };
        assert_eq!(sample.inputs[0].shape, vec![1, i64::MAX]);
        assert!(sample.inputs[0].int64_values.len() <= 1, "at most the shared column");
    }
}

/// Bytes a held candidate costs in the in-memory store (snapshot share + entry), with the shared
/// columns stored once vs. every row whole, against the 179.7 B of a candidate before both
/// (whole rows, a hash map entry and a 96 B charge per candidate). Printed for BENCHMARKS.md and
/// docs/samples.md: `cargo test --lib held_candidate_bytes -- --nocapture`; the heap bytes
/// behind the charge: `cargo run --example join_heap`.
#[tokio::test]
async fn held_candidate_bytes() {
    const BEFORE: f64 = 179.7;
    let served = bench_shaped();
    let compact = served.to_proto();
    let mut whole = compact.clone();
    whole.shared.clear();
    whole.inputs = served.inputs.iter().map(|t| proto::Tensor::from_rows(t, 0..100)).collect();
    let mut held = Vec::new();
    for snapshot in [whole, compact] {
        let store = MemoryJoinStore::new(1 << 30);
        store
            .put("bench", bytes::Bytes::from(snapshot.encode_to_vec()), &served.item_ids, i64::MAX, None)
            .await
            .unwrap();
        held.push((snapshot.encoded_len() as f64 / 100.0, store.pending().unwrap().1 as f64 / 100.0));
    }
    eprintln!(
        "per candidate: snapshot {:.1} -> {:.1} B; held (snapshot + entry) {BEFORE} B before -> {:.1} B \
         ({:.1} B with whole rows)",
        held[0].0, held[1].0, held[1].1, held[0].1
    );
    use crate::sample_log::join::memory::{CANDIDATE_BYTES, DUE_BYTES, LABEL_BYTES, OWN_BYTES, REQUEST_BYTES};
    eprintln!(
        "charged: {REQUEST_BYTES} B per prediction + its id + its snapshot; {CANDIDATE_BYTES} B per candidate + \
         its id; {LABEL_BYTES} B per label + its type; {} B per candidate scheduled on its own",
        DUE_BYTES + OWN_BYTES
    );
    assert!(held[1].0 < held[0].0 * 0.6, "the shared columns are most of the snapshot: {held:?}");
    assert!(held[1].1 <= BEFORE / 2.0, "a held candidate costs at most half of what it did: {held:?}");
}

/// A restart that comes after the window closed (a slow start, a long outage): the journal's
/// predictions with an event are held again and emitted, not dropped with the window; those
/// without one are gone. (The model-based crash test found this under load.)
#[tokio::test]
async fn a_replay_after_the_window_closed_keeps_what_is_scheduled() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let log_config = crate::sample_log::config::SampleLogConfig { dir: dir.path().join("log"), ..Default::default() };
    let store = MemoryJoinStore::new(1 << 20);
    store
        .attach_journal(&journal, &log_config, Metrics::new().of::<crate::sample_log::metrics::SampleMetrics>())
        .unwrap();
    let now = now_ms();
    let snapshot = bytes::Bytes::from(served("r1").to_proto().encode_to_vec());
    for request_id in ["r1", "r2"] {
        store.put(request_id, snapshot.clone(), &served("r1").item_ids, now + 3_000, None).await.unwrap();
    }
    let e = crate::sample_log::join::Event {
        request_id: "r1".into(),
        item_id: "b".into(),
        kind: "impression".into(),
        timestamp_ms: now,
        value: None,
    };
    store.add_event(&e, now + 2_000).await.unwrap();
    drop(store); // SIGKILL

    let again = Arc::new(MemoryJoinStore::new(1 << 20));
    let replayed = again.replay(&journal, now + 10_000).unwrap();
    assert_eq!(replayed.requests, 1, "r1 has a scheduled candidate; r2 had no event");
    let (joiner, written) = joiner(config(), again as _);
    assert_eq!(joiner.emit_due(now + 10_000).await.unwrap(), 1);
    assert_eq!(written.samples()[0].item_id, "b");
}

/// The candidates of a prediction without an event share one due entry in the in-memory store:
/// emitted across batches when the limit cuts in, left by a candidate whose first event
/// schedules it on its own, whole again after a restart, and nothing stays charged once the
/// predictions leave.
#[tokio::test]
async fn unimpressed_candidates_share_one_slot_across_batches_events_and_restarts() {
    use crate::sample_log::join::{Added, Event, Expired};
    let store = MemoryJoinStore::new(1 << 20);
    let items: Vec<String> = ["d", "a", "c", "b", "a"].map(String::from).to_vec();
    let snapshot = bytes::Bytes::from_static(b"snapshot");
    for request_id in ["r1", "r2"] {
        store.put(request_id, snapshot.clone(), &items, 10_000, Some(9_000)).await.unwrap();
    }
    let event = |item_id: &str| Event {
        request_id: "r1".into(),
        item_id: item_id.into(),
        kind: "impression".into(),
        timestamp_ms: 0,
        value: None,
    };
    assert_eq!(store.add_event(&event("b"), 5_000).await.unwrap(), Added::Accepted);
    assert_eq!(store.add_event(&event("e"), 5_000).await.unwrap(), Added::Orphan);
    let ids = |joined: &[crate::sample_log::join::Joined]| {
        joined.iter().map(|j| (j.request_id.clone(), j.item_id.clone(), j.labels.len())).collect::<Vec<_>>()
    };
    assert_eq!(ids(&store.take_due(8_999, 10, 0).await.unwrap()), [("r1".into(), "b".into(), 1)]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pending.bin");
    assert_eq!(store.save(&path).unwrap(), 2);
    let again = MemoryJoinStore::new(1 << 20);
    assert_eq!(again.load(&path, 0).unwrap(), (2, 0));
    let own = crate::sample_log::join::memory::OWN_BYTES;
    assert_eq!(
        again.pending().map(|(n, bytes)| (n, bytes + own)),
        store.pending(),
        "restored as held, slots included (without the room b's due time left)"
    );
    let mut due = again.take_due(9_000, 3, 0).await.unwrap();
    assert_eq!(due.len(), 3, "the limit holds inside a slot");
    due.extend(again.take_due(9_000, 10, 0).await.unwrap());
    let mut got = ids(&due);
    got.sort();
    let want: Vec<(String, String, usize)> = [("r1", "a"), ("r1", "c"), ("r1", "d"), ("r2", "a"), ("r2", "b")]
        .into_iter()
        .chain([("r2", "c"), ("r2", "d")])
        .map(|(r, i)| (r.into(), i.into(), 0))
        .collect();
    assert_eq!(got, want, "every candidate once, repeats held once");
    assert_eq!(again.expire(10_000), Expired { requests: 2, unlabelled: 0 });
    assert_eq!(again.pending(), Some((0, 0)), "nothing stays charged");
}

/// The joiner's hand-written snapshot encoding is byte for byte prost's, with and without shared
/// columns, fallbacks and empty fields.
#[test]
fn encode_is_to_proto_encoded() {
    let mut empty = served("");
    empty.timestamp_ms = 0;
    empty.scene.clear();
    empty.user_id.clear();
    empty.item_ids = vec![String::new(), "x".into(), "y".into()];
    empty.fallbacks.clear();
    empty.scores.clear();
    for s in [served("r1"), bench_shaped(), empty] {
        assert_eq!(s.encode(), s.to_proto().encode_to_vec(), "{}", s.request_id);
    }
}

/// The Redis join store's grace must outlast a claim's lease (a lapsed claim is taken again only
/// while the prediction's hash is there); the refusal names the key and the other key's value.
#[test]
fn close_grace_must_exceed_the_lease() {
    use crate::sample_log::config::JoinStoreConfig;
    let redis = |lease_ms, close_grace_ms| {
        let mut c = config();
        c.join.store = JoinStoreConfig::Redis {
            url: "redis://127.0.0.1:6379".into(),
            cluster: false,
            namespace: "augur".into(),
            timeout_ms: 200,
            shards: 16,
            lease_ms,
            close_grace_ms,
        };
        c.validate(&[]).map_err(|e| e.to_string())
    };
    assert!(redis(30_000, 600_000).is_ok());
    let err = redis(30_000, 30_000).unwrap_err();
    assert!(err.contains("samples.join.store.close_grace_ms") && err.contains("30000"), "{err}");
    let err = redis(30_000, 5_000).unwrap_err();
    assert!(err.contains("samples.join.store.close_grace_ms"), "{err}");
}
