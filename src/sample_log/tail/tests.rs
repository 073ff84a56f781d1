//! The tail driver against a sink that fails on demand (the `SampleSink` seam, no protocol):
//! outages cost disk not samples, the cursor moves only on acknowledgement, segments go only
//! when every sink is past them, the disk bound refuses and counts, shutdown drains.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;
use crate::config::SampleLogConfig;
use crate::fetch::BoxFuture;
use crate::proto::{LogRecord, Sample, log_record};
use crate::sample_log::record::encode;
use crate::sample_log::sink::{Delivered, SinkError};
use crate::telemetry::ReasonLabels;

/// A sink that is up or down at the test's word, or never answers, and records what it
/// acknowledged.
#[derive(Debug)]
struct TestSink {
    name: String,
    up: AtomicBool,
    hang: AtomicBool,
    attempts: AtomicUsize,
    got: Mutex<Vec<u64>>,
}

impl TestSink {
    fn new(name: &str, up: bool) -> Arc<TestSink> {
        Arc::new(TestSink {
            name: name.to_owned(),
            up: AtomicBool::new(up),
            hang: AtomicBool::new(false),
            attempts: AtomicUsize::new(0),
            got: Mutex::new(Vec::new()),
        })
    }

    fn got(&self) -> Vec<u64> {
        self.got.lock().unwrap().clone()
    }
}

impl SampleSink for TestSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(async move {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if !self.up.load(Ordering::SeqCst) {
                return Err(SinkError::Unavailable { sink: self.name.clone(), reason: "down".into() });
            }
            self.got.lock().unwrap().extend(records.iter().map(|r| r.sequence));
            Ok(Delivered::all())
        })
    }
}

fn log_config(dir: &Path, max_disk_bytes: u64) -> SampleLogConfig {
    SampleLogConfig {
        dir: dir.to_owned(),
        segment_max_bytes: 4096,
        segment_max_age_s: 3600,
        fsync_interval_ms: 10,
        max_disk_bytes,
    }
}

fn open(dir: &Path, max_disk_bytes: u64, sinks: &[&str]) -> (Arc<SegmentLog>, SampleMetrics) {
    let metrics = SampleMetrics::default();
    let sinks: Vec<String> = sinks.iter().map(|s| (*s).to_owned()).collect();
    let (log, _) = SegmentLog::open(&log_config(dir, max_disk_bytes), &sinks, metrics.clone()).unwrap();
    (Arc::new(log), metrics)
}

fn payloads(range: std::ops::RangeInclusive<u64>) -> Vec<Vec<u8>> {
    range
        .map(|i| {
            encode(&LogRecord {
                record: Some(log_record::Record::Sample(Sample {
                    sample_id: format!("r{i}:0"),
                    request_id: format!("r{i}"),
                    ..Default::default()
                })),
            })
        })
        .collect()
}

fn fast() -> TailConfig {
    TailConfig { batch_max: 16, backoff_min_ms: 1, backoff_max_ms: 20, drain_timeout_ms: 30_000 }
}

/// Polls `done` until it holds; the generous bound only catches a hang on a loaded machine.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn join(handle: JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(60), handle).await.expect("tail returns").expect("tail panicked");
}

/// A driver started after shutdown began: it drains and returns.
async fn shut_down_at_once(log: &Arc<SegmentLog>, sink: &Arc<TestSink>, metrics: SampleMetrics) {
    let cancel = CancellationToken::new();
    cancel.cancel();
    join(spawn_tail(log.clone(), sink.clone(), fast(), metrics, cancel)).await;
}

fn labels(sink: &str) -> SinkLabels {
    SinkLabels { sink: sink.to_owned() }
}

#[tokio::test]
async fn an_outage_costs_disk_not_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (log, metrics) = open(dir.path(), 1 << 20, &["k"]);
    log.append(&payloads(1..=200)).unwrap();
    let segments = log.segment_count();
    let sink = TestSink::new("k", false);
    let cancel = CancellationToken::new();
    let tail = spawn_tail(log.clone(), sink.clone(), fast(), metrics.clone(), cancel.clone());

    eventually("three failed attempts", || metrics.sink_errors.get_or_create(&labels("k")).get() >= 3).await;
    assert_eq!(log.cursor("k"), 0, "nothing acknowledged, nothing advanced");
    assert_eq!(log.segment_count(), segments);
    assert_eq!(log.read_after(0, usize::MAX).unwrap().len(), 200);
    assert_eq!(metrics.sink_lag.get_or_create(&labels("k")).get(), 200);

    sink.up.store(true, Ordering::SeqCst);
    eventually("delivery after recovery", || log.cursor("k") == 200).await;
    assert_eq!(sink.got(), (1..=200).collect::<Vec<_>>(), "each record once, in order");
    assert_eq!(metrics.sink_delivered.get_or_create(&labels("k")).get(), 200);
    eventually("lag 0", || metrics.sink_lag.get_or_create(&labels("k")).get() == 0).await;
    assert!(log.segment_count() < segments, "segments the only sink is past are gone");

    // Caught up, it waits for the log and wakes on the next append.
    log.append(&payloads(201..=205)).unwrap();
    eventually("the new records", || log.cursor("k") == 205).await;
    assert_eq!(sink.got().len(), 205);
    cancel.cancel();
    join(tail).await;
}

#[tokio::test]
async fn segments_go_only_when_every_sink_is_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let (log, metrics) = open(dir.path(), 1 << 20, &["a", "b"]);
    log.append(&payloads(1..=400)).unwrap();
    let (segments, bytes) = (log.segment_count(), log.disk_bytes());
    let (a, b) = (TestSink::new("a", true), TestSink::new("b", false));
    let cancel = CancellationToken::new();
    let tails = [
        spawn_tail(log.clone(), a.clone(), fast(), metrics.clone(), cancel.clone()),
        spawn_tail(log.clone(), b.clone(), fast(), metrics.clone(), cancel.clone()),
    ];
    eventually("a caught up", || log.cursor("a") == 400).await;
    eventually("b failing", || metrics.sink_errors.get_or_create(&labels("b")).get() >= 2).await;
    assert_eq!((log.segment_count(), log.disk_bytes()), (segments, bytes), "b still needs every segment");
    assert_eq!(log.cursor("b"), 0);

    b.up.store(true, Ordering::SeqCst);
    eventually("b caught up", || log.cursor("b") == 400).await;
    assert_eq!(b.got(), (1..=400).collect::<Vec<_>>());
    assert_eq!(log.segment_count(), 1, "only the active segment is left");
    assert!(log.disk_bytes() < bytes);
    cancel.cancel();
    for tail in tails {
        join(tail).await;
    }
}

#[tokio::test]
async fn a_full_log_refuses_and_counts_until_the_sink_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (log, metrics) = open(dir.path(), 8192, &["k"]);
    let sink = TestSink::new("k", false);
    let cancel = CancellationToken::new();
    let tail = spawn_tail(log.clone(), sink.clone(), fast(), metrics.clone(), cancel.clone());
    let mut last = 0;
    while let Ok(l) = log.append(&payloads(last + 1..=last + 10)) {
        last = l;
    }
    assert!(matches!(log.append(&payloads(last + 1..=last + 10)), Err(LogError::Full { .. })));
    let full = || metrics.dropped.get_or_create(&ReasonLabels { reason: "log_full".into() }).get();
    assert_eq!(full(), 20, "both refused batches are counted, every record");
    assert!(log.disk_bytes() <= 8192);

    sink.up.store(true, Ordering::SeqCst);
    eventually("the sink caught up", || log.cursor("k") == last).await;
    assert_eq!(sink.got(), (1..=last).collect::<Vec<_>>(), "nothing accepted was lost to the bound");
    assert_eq!(log.append(&payloads(last + 1..=last + 10)).unwrap(), last + 10, "room again");
    assert_eq!(full(), 20);
    cancel.cancel();
    join(tail).await;
}

#[tokio::test]
async fn cancel_drains_what_is_in_the_log_then_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (log, metrics) = open(dir.path(), 1 << 20, &["k"]);
    log.append(&payloads(1..=100)).unwrap();
    let sink = TestSink::new("k", true);
    shut_down_at_once(&log, &sink, metrics).await;
    assert_eq!(log.cursor("k"), 100);
    assert_eq!(sink.got(), (1..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_sink_that_never_answers_is_given_up_at_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (log, metrics) = open(dir.path(), 1 << 20, &["k"]);
    log.append(&payloads(1..=5)).unwrap();
    let sink = TestSink::new("k", true);
    sink.hang.store(true, Ordering::SeqCst);
    let cancel = CancellationToken::new();
    let config = TailConfig { drain_timeout_ms: 50, ..fast() };
    let tail = spawn_tail(log.clone(), sink.clone(), config, metrics.clone(), cancel.clone());
    eventually("a delivery in flight", || sink.attempts.load(Ordering::SeqCst) >= 1).await;
    cancel.cancel();
    join(tail).await;
    assert_eq!(log.cursor("k"), 0, "nothing was acknowledged");
    // The driver has returned: its last word on the lag is final.
    assert_eq!(metrics.sink_lag.get_or_create(&labels("k")).get(), 5);
    assert_eq!(log.read_after(0, usize::MAX).unwrap().len(), 5, "the records wait in the log");
}

#[tokio::test]
async fn a_restart_resumes_from_the_persisted_cursor() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, metrics) = open(dir.path(), 1 << 20, &["k"]);
        log.append(&payloads(1..=5)).unwrap();
        let cancel = CancellationToken::new();
        let tail = spawn_tail(log.clone(), TestSink::new("k", true), fast(), metrics, cancel.clone());
        eventually("the first records", || log.cursor("k") == 5).await;
        cancel.cancel();
        join(tail).await;
        log.append(&payloads(6..=10)).unwrap();
        log.sync().unwrap();
    }
    let (log, metrics) = open(dir.path(), 1 << 20, &["k"]);
    assert_eq!(log.cursor("k"), 5);
    let sink = TestSink::new("k", true);
    shut_down_at_once(&log, &sink, metrics).await;
    assert_eq!(sink.got(), (6..=10).collect::<Vec<_>>(), "only what was not acknowledged");
    assert_eq!(log.cursor("k"), 10);
}
