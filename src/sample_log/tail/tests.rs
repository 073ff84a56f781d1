//! The tail driver against a sink that fails on demand (the `SampleSink` seam, no protocol):
//! outages cost disk not samples, the cursor moves only on acknowledgement, segments go only
//! when every sink is past them, the disk bound refuses and counts, shutdown drains, a record
//! refused for good is dead-lettered and passed, and the health check never holds delivery up.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;
use crate::fetch::BoxFuture;
use crate::proto::{LogRecord, Sample, log_record};
use crate::sample_log::config::SampleLogConfig;
use crate::sample_log::file::LogReader;
use crate::sample_log::metrics::ReasonLabels;
use crate::sample_log::record::encode;
use crate::sample_log::sink::{Delivered, Refused, SinkError};

/// A sink that is up or down at the test's word, or never answers, and records what it
/// acknowledged.
#[derive(Debug)]
struct TestSink {
    name: String,
    up: AtomicBool,
    hang: AtomicBool,
    attempts: AtomicUsize,
    got: Mutex<Vec<u64>>,
    /// Sequences refused for good.
    refuse: Mutex<Vec<u64>>,
    /// While held (`Some`), the health check waits for it; its value is the answer.
    health: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<bool>>>,
}

impl TestSink {
    fn new(name: &str, up: bool) -> Arc<TestSink> {
        Arc::new(TestSink {
            name: name.to_owned(),
            up: AtomicBool::new(up),
            hang: AtomicBool::new(false),
            attempts: AtomicUsize::new(0),
            got: Mutex::new(Vec::new()),
            refuse: Mutex::new(Vec::new()),
            health: tokio::sync::Mutex::new(None),
        })
    }

    fn refusing(name: &str, sequences: &[u64]) -> Arc<TestSink> {
        let sink = TestSink::new(name, true);
        sink.refuse.lock().unwrap().extend_from_slice(sequences);
        sink
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
            let refuse = self.refuse.lock().unwrap().clone();
            let mut refused = Vec::new();
            for (index, r) in records.iter().enumerate() {
                if refuse.contains(&r.sequence) {
                    refused.push(Refused { index, reason: "too_large", detail: "test".into() });
                } else {
                    self.got.lock().unwrap().push(r.sequence);
                }
            }
            Ok(Delivered { refused })
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let gate = self.health.lock().await.take();
            let healthy = match gate {
                Some(answer) => answer.await.unwrap_or(false),
                None => true,
            };
            if healthy {
                Ok(())
            } else {
                Err(SinkError::Unavailable { sink: self.name.clone(), reason: "unhealthy".into() })
            }
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

fn dead_letters(dir: &Path, sink: &str) -> Vec<Record> {
    LogReader::open(&dir.join("dead_letter").join(sink), 0).unwrap().collect::<Result<_, _>>().unwrap()
}

fn dead_letter_count(metrics: &SampleMetrics, sink: &str) -> u64 {
    metrics.dead_letter.get_or_create(&DeadLetterLabels { sink: sink.into(), reason: "too_large".into() }).get()
}

#[tokio::test]
async fn a_refused_record_is_dead_lettered_counted_and_passed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, metrics) = open(dir.path(), 1 << 20, &["k"]);
    log.append(&payloads(1..=40)).unwrap();
    let written = log.read_after(0, usize::MAX).unwrap();
    let sink = TestSink::refusing("k", &[7, 20, 21]);
    let cancel = CancellationToken::new();
    let tail = spawn_tail(log.clone(), sink.clone(), fast(), metrics.clone(), cancel.clone());
    eventually("past every record", || log.cursor("k") == 40).await;
    cancel.cancel();
    join(tail).await;

    let expected: Vec<u64> = (1..=40).filter(|s| ![7, 20, 21].contains(s)).collect();
    assert_eq!(sink.got(), expected, "the records after a refused one are delivered, in order");
    assert_eq!(dead_letter_count(&metrics, "k"), 3);
    assert_eq!(metrics.sink_delivered.get_or_create(&labels("k")).get(), 37);
    assert_eq!(metrics.sink_errors.get_or_create(&labels("k")).get(), 0, "a refusal is no failed attempt");
    let kept = dead_letters(dir.path(), "k");
    let ids = |records: &[Record]| records.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&kept), ids(&[written[6].clone(), written[19].clone(), written[20].clone()]));
    assert_eq!(kept[0].payload, written[6].payload, "kept as the log had it");
}

#[tokio::test]
async fn an_unwritable_dead_letter_log_holds_the_cursor_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let (log, metrics) = open(dir.path(), 1 << 20, &["k"]);
    log.append(&payloads(1..=10)).unwrap();
    // A file where the dead-letter directory belongs: creating it fails.
    let blocker = dir.path().join("dead_letter");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let sink = TestSink::refusing("k", &[3]);
    let cancel = CancellationToken::new();
    let tail = spawn_tail(log.clone(), sink.clone(), fast(), metrics.clone(), cancel.clone());
    eventually("failed attempts", || metrics.sink_errors.get_or_create(&labels("k")).get() >= 2).await;
    assert_eq!(log.cursor("k"), 0, "never past a record that is neither delivered nor kept");
    assert_eq!(dead_letter_count(&metrics, "k"), 0);

    std::fs::remove_file(&blocker).unwrap();
    eventually("past every record", || log.cursor("k") == 10).await;
    assert_eq!(dead_letter_count(&metrics, "k"), 1);
    assert_eq!(dead_letters(dir.path(), "k").len(), 1);
    cancel.cancel();
    join(tail).await;
}

#[tokio::test]
async fn delivery_does_not_wait_for_the_health_check_and_its_failure_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (log, metrics) = open(dir.path(), 1 << 20, &["k", "stuck"]);
    log.append(&payloads(1..=20)).unwrap();
    let (busy, stuck) = (TestSink::new("k", true), TestSink::new("stuck", true));
    let (busy_answer, gate) = tokio::sync::oneshot::channel();
    *busy.health.lock().await = Some(gate);
    let (stuck_answer, gate) = tokio::sync::oneshot::channel();
    *stuck.health.lock().await = Some(gate);
    // No delivery of "stuck" ever ends: only its health check speaks for it.
    stuck.hang.store(true, Ordering::SeqCst);
    let cancel = CancellationToken::new();
    let tails = [
        spawn_tail(log.clone(), busy.clone(), fast(), metrics.clone(), cancel.clone()),
        spawn_tail(
            log.clone(),
            stuck.clone(),
            TailConfig { drain_timeout_ms: 0, ..fast() },
            metrics.clone(),
            cancel.clone(),
        ),
    ];
    eventually("delivered while the health check is pending", || log.cursor("k") == 20).await;
    let failures = |sink: &str| metrics.sink_healthcheck_failures.get_or_create(&labels(sink)).get();
    assert_eq!(failures("k"), 0, "still pending");

    busy_answer.send(false).unwrap();
    stuck_answer.send(false).unwrap();
    eventually("both failures counted", || failures("k") == 1 && failures("stuck") == 1).await;
    assert_eq!(metrics.sink_up.get_or_create(&labels("k")).get(), 1, "a later delivery outranks a stale health check");
    assert_eq!(metrics.sink_up.get_or_create(&labels("stuck")).get(), 0, "reported down");
    cancel.cancel();
    for tail in tails {
        join(tail).await;
    }
}

#[test]
fn tail_settings_come_from_the_sink_section_with_defaults_and_named_errors() {
    let parse = |tail: &str| {
        crate::config::Config::from_toml(&format!(
            "[samples]\nenabled = true\n[[samples.sinks]]\nkind = \"redis_stream\"\nurl = \"redis://r\"\n\
             stream = \"s\"\n{tail}"
        ))
    };
    let config = parse("").expect("no tail section");
    assert_eq!(config.samples.sinks[0].tail(), &TailConfig::default());
    let config = parse("[samples.sinks.tail]\nbatch_max = 64\ndrain_timeout_ms = 250").expect("parses");
    assert_eq!(
        config.samples.sinks[0].tail(),
        &TailConfig { batch_max: 64, drain_timeout_ms: 250, ..TailConfig::default() },
        "the rest defaulted"
    );
    for (bad, key) in [
        ("batch_max = 0", "samples.sinks[0].tail.batch_max"),
        ("backoff_min_ms = 0", "samples.sinks[0].tail.backoff_min_ms"),
        ("backoff_min_ms = 500\nbackoff_max_ms = 100", "samples.sinks[0].tail.backoff_max_ms"),
        ("drain_timeout_ms = 3600000", "samples.sinks[0].tail.drain_timeout_ms"),
    ] {
        let error = parse(&format!("[samples.sinks.tail]\n{bad}")).expect_err(bad).to_string();
        assert!(error.contains(key), "{bad}: {error}");
    }
    let error = parse("[samples.sinks.tail]\nbatch = 5").expect_err("unknown key").to_string();
    assert!(error.contains("batch"), "{error}");
}
