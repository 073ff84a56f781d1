//! The Redis Streams sample sink against a real `redis-server`: a killed or frozen server fails
//! the batch within the sink's bound (never a hang), the same batch retried after a restart (or
//! thaw) is delivered, and every sample reads back once after dedup by id, each request's samples
//! in log order;
//! `MAXLEN ~` keeps the stream near its bound however much is appended.
//!
//! No assertion times anything (shared, noisy machines): the only clocks are bounds a hang trips.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use augur::config::RedisStreamSinkConfig;
use augur::proto::{LogRecord, Sample, log_record};
use augur::sample_log::record::{Record, encode};
use augur::sample_log::redis_stream::{RedisStreamSink, read_stream};
use augur::sample_log::sink::{SampleSink, SinkError};
use tokio::time::Instant;

use crate::common;
use crate::common::redis_server::RedisServer;

const STREAM: &str = "augur:samples";
/// Far above the sink's 1 s batch timeout: only a hang trips it.
const HANG: Duration = Duration::from_secs(60);
/// `stream-node-max-entries` (Redis default): `MAXLEN ~` trims whole nodes only, so a stream may
/// hold up to one node more than `maxlen`.
const TRIM_SLACK: u64 = 100;

fn sink_config(server: &RedisServer, maxlen: u64) -> RedisStreamSinkConfig {
    RedisStreamSinkConfig {
        name: "stream".into(),
        url: server.url(),
        stream: STREAM.into(),
        maxlen,
        timeout_ms: 1_000,
        tail: Default::default(),
    }
}

/// Three candidates per request; request `s % requests` at position `s / requests`, so a
/// request's samples span the batches (and the outage).
fn log_records(n: u64) -> Vec<Record> {
    let requests = n / 3;
    (0..n)
        .map(|seq| {
            let request_id = format!("rq{}", seq % requests);
            let position = (seq / requests) as u32;
            let sample = Sample {
                sample_id: format!("{request_id}:{position}"),
                item_id: format!("i{position}"),
                request_id,
                position,
                score: 0.5,
                ..Default::default()
            };
            let record = LogRecord { record: Some(log_record::Record::Sample(sample)) };
            Record::new(seq, encode(&record).into()).expect("decodes")
        })
        .collect()
}

/// The tail driver's contract in miniature: the same batch until it is acknowledged, each
/// attempt bounded by [`HANG`]. Returns the failed attempts.
async fn deliver_until_acked(sink: &RedisStreamSink, batch: &[Record]) -> Vec<SinkError> {
    let started = Instant::now();
    let mut failed = Vec::new();
    loop {
        match tokio::time::timeout(HANG, sink.deliver(batch)).await.expect("deliver hung") {
            Ok(_) => return failed,
            Err(e) => failed.push(e),
        }
        assert!(started.elapsed() < HANG, "never acknowledged after the restart: {:?}", failed.last());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the stream back and checks it against `produced`: every id once after dedup, intact,
/// each request's samples in log order (first copies). Returns (records read, duplicates).
async fn check_read_back(server: &RedisServer, produced: &[Record]) -> (usize, usize) {
    let read = read_stream(&server.url(), STREAM).await.expect("read back");
    let mut first: HashMap<&str, &Record> = HashMap::new();
    let mut order: HashMap<&str, Vec<u64>> = HashMap::new();
    for r in &read {
        if first.insert(r.id.as_str(), r).is_none() {
            order.entry(r.key.as_str()).or_default().push(r.sequence);
        }
    }
    let want: HashSet<&str> = produced.iter().map(|r| r.id.as_str()).collect();
    let got: HashSet<&str> = first.keys().copied().collect();
    assert_eq!(got.len(), want.len(), "unique ids read back");
    assert!(got == want, "missing {:?}", want.difference(&got).take(5).collect::<Vec<_>>());
    for p in produced {
        assert_eq!(first[p.id.as_str()], p, "{} came back intact", p.id);
    }
    for (key, sequences) in &order {
        assert!(sequences.is_sorted() && sequences.len() == 3, "request {key}: {sequences:?}");
    }
    (read.len(), read.len() - got.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_fails_the_batch_in_bounded_time_and_the_retry_delivers_after_restart() {
    common::require!(Redis);
    let mut server = RedisServer::start();
    let sink = RedisStreamSink::new(&sink_config(&server, 1_000_000)).await.expect("sink");
    sink.healthcheck().await.expect("redis answers");
    let produced = log_records(2_400);
    let (before, during) = produced.split_at(1_200);
    for batch in before.chunks(200) {
        deliver_until_acked(&sink, batch).await;
    }
    // The fault under test is the outage, not Redis's durability: snapshot what was acknowledged
    // so the restarted server (same dir) loads it.
    let _: () = server.query(&mut redis::cmd("SAVE")).expect("SAVE");

    server.kill();
    let outcome = tokio::time::timeout(HANG, sink.deliver(&during[..200])).await.expect("deliver must not hang");
    let error = outcome.expect_err("nothing can acknowledge while redis is down");
    assert!(tokio::time::timeout(HANG, sink.healthcheck()).await.expect("bounded").is_err(), "health sees the outage");

    server.restart();
    let mut failures = vec![error];
    for batch in during.chunks(200) {
        failures.extend(deliver_until_acked(&sink, batch).await);
    }

    let (read, duplicates) = check_read_back(&server, &produced).await;
    eprintln!(
        "redis stream outage: produced {}, read {}, duplicates {}, failed attempts {}",
        produced.len(),
        read,
        duplicates,
        failures.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxlen_keeps_the_stream_near_its_bound() {
    common::require!(Redis);
    let server = RedisServer::start();
    let maxlen = 500;
    let sink = RedisStreamSink::new(&sink_config(&server, maxlen)).await.expect("sink");
    let produced = log_records(6_000);
    for batch in produced.chunks(250) {
        deliver_until_acked(&sink, batch).await;
    }
    let len: u64 = server.query(redis::cmd("XLEN").arg(STREAM)).expect("XLEN");
    assert!((maxlen..=maxlen + TRIM_SLACK).contains(&len), "XLEN {len} for MAXLEN ~ {maxlen}");
    let read = read_stream(&server.url(), STREAM).await.expect("read back");
    assert_eq!(read.len() as u64, len);
    // Trimming drops the oldest: what is left is the log's tail, in order.
    let tail: Vec<u64> = read.iter().map(|r| r.sequence).collect();
    let want: Vec<u64> = (6_000 - len..6_000).collect();
    assert_eq!(tail, want);
    eprintln!("redis stream trim: appended {}, XLEN {len} (MAXLEN ~ {maxlen})", produced.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_redis_times_the_batch_out_and_the_retry_delivers_after_it_thaws() {
    common::require!(Redis);
    let server = RedisServer::start();
    let sink = RedisStreamSink::new(&sink_config(&server, 1_000_000)).await.expect("sink");
    let produced = log_records(900);
    deliver_until_acked(&sink, &produced[..300]).await;

    // SIGSTOP: the connection stays open and nothing answers, so only the sink's own bound ends
    // the batch.
    server.freeze();
    let outcome = tokio::time::timeout(HANG, sink.deliver(&produced[300..600])).await.expect("deliver must not hang");
    let error = outcome.expect_err("a frozen redis acknowledges nothing");
    assert!(matches!(error, SinkError::Timeout { after_ms: 1_000, .. }), "{error}");

    server.resume();
    let mut failures = vec![error];
    for batch in produced[300..].chunks(300) {
        failures.extend(deliver_until_acked(&sink, batch).await);
    }
    // The timed-out pipeline was still in the socket: Redis appends it when it thaws, and the
    // retry appends it again — the duplicates consumers drop by id.
    let (read, duplicates) = check_read_back(&server, &produced).await;
    eprintln!(
        "redis stream freeze: produced {}, read {read}, duplicates {duplicates}, failed attempts {}",
        produced.len(),
        failures.len()
    );
}
