//! The Kafka sink against librdkafka's mock cluster (the real protocol, in process): faults while
//! producing must cost neither a sample nor a partition's order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::types::RDKafkaRespErr;
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::mock::{Fault, MockKafka};
use super::*;
use crate::proto::{Label, LogRecord, Sample, log_record};
use crate::sample_log::config::{KafkaSinkConfig, SampleLogConfig};
use crate::sample_log::file::{LogReader, SegmentLog};
use crate::sample_log::metrics::{DeadLetterLabels, SampleMetrics, SinkLabels};
use crate::sample_log::record::{self, Record};
use crate::sample_log::sink::{SampleSink, SinkError};
use crate::sample_log::tail::{TailConfig, spawn_tail};

const TOPIC: &str = "samples";
/// Overall bound on one batch's retries: far beyond any injected fault, so only a sink that
/// never recovers trips it.
const RECOVERY_BOUND: Duration = Duration::from_secs(120);

// === helpers ===

fn config(brokers: &str, message_timeout_ms: u64, properties: &[(&str, &str)]) -> KafkaSinkConfig {
    KafkaSinkConfig {
        name: "kafka".to_owned(),
        brokers: brokers.to_owned(),
        topic: TOPIC.to_owned(),
        properties: properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
        message_timeout_ms,
        tail: Default::default(),
    }
}

/// `n` log records: samples of `n / 4` requests with 4 candidates each, a request's samples
/// spread over the log (sequence s is request s % requests, position s / requests), so a
/// request's order spans batches and faults.
fn records(n: u64) -> Vec<Record> {
    let requests = n / 4;
    (0..n)
        .map(|sequence| {
            let (request, position) = (sequence % requests, sequence / requests);
            let request_id = format!("req-{request:04}");
            let sample = Sample {
                sample_id: format!("{request_id}:{position}"),
                revision: 0,
                request_id,
                item_id: format!("item-{}", (request * 7 + position) % 97),
                position: position as u32,
                timestamp_ms: 1_700_000_000_000 + sequence as i64,
                scene: "home".to_owned(),
                model_name: "ctr".to_owned(),
                model_version: "1".to_owned(),
                user_id: format!("user-{}", request % 13),
                score: 0.25,
                labels: vec![Label { r#type: "impression".to_owned(), timestamp_ms: 1_700_000_000_500, value: None }],
                ..Default::default()
            };
            let payload = record::encode(&LogRecord { record: Some(log_record::Record::Sample(sample)) });
            Record::new(sequence, Bytes::from(payload)).expect("valid record")
        })
        .collect()
}

/// The tail driver's contract in miniature: the same batch again until it is acknowledged.
/// Returns the failed attempts.
async fn deliver_until_acked(sink: &KafkaSink, batch: &[Record]) -> Vec<SinkError> {
    let started = Instant::now();
    let mut failures = Vec::new();
    loop {
        match sink.deliver(batch).await {
            Ok(delivered) => {
                assert!(delivered.refused.is_empty(), "nothing here is too large: {:?}", delivered.refused);
                return failures;
            }
            Err(e) => {
                assert!(started.elapsed() < RECOVERY_BOUND, "batch never acknowledged; last error: {e}");
                failures.push(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// What came back, checked against what was produced: every id once after dedup, nothing
/// extra, each record's headers agreeing with its payload, and each request's samples in log
/// order (first copies). Returns the raw duplicate count.
fn check_read_back(produced: &[Record], read: &[Record]) -> usize {
    let produced_ids: HashSet<&str> = produced.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(produced_ids.len(), produced.len(), "test records have unique ids");
    let mut first: HashMap<&str, &Record> = HashMap::new();
    let mut order: HashMap<&str, Vec<u64>> = HashMap::new();
    for r in read {
        let decoded = Record::new(r.sequence, r.payload.clone()).expect("payload is a LogRecord");
        assert_eq!((&decoded.key, &decoded.id), (&r.key, &r.id), "headers match the payload");
        if first.insert(r.id.as_str(), r).is_none() {
            order.entry(r.key.as_str()).or_default().push(r.sequence);
        }
    }
    let read_ids: HashSet<&str> = first.keys().copied().collect();
    let missing: Vec<_> = produced_ids.difference(&read_ids).take(5).collect();
    let extra: Vec<_> = read_ids.difference(&produced_ids).take(5).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?}");
    for p in produced {
        assert_eq!(first[p.id.as_str()].payload, p.payload, "{} came back intact", p.id);
    }
    for (key, sequences) in &order {
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "request {key} out of order: {sequences:?}");
    }
    read.len() - read_ids.len()
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_faults_and_broker_outages_lose_and_reorder_nothing() {
    let kafka = MockKafka::start(TOPIC, 3);
    let faults = kafka.faults();
    // Shorter than the long outage: batches stalled by it fail and are retried whole, which is
    // what makes duplicates for the consumer's dedup.
    let sink = KafkaSink::new(&config(&kafka.bootstrap, 2_000, &[("linger.ms", "5")])).expect("sink");
    sink.healthcheck().await.expect("healthcheck against the mock cluster");

    let produced = records(2_000);
    let mut failures = Vec::new();
    let mut outages = Vec::new();
    for (i, batch) in produced.chunks(100).enumerate() {
        match i {
            // Retriable Produce errors: librdkafka retries them itself, in order.
            2 | 12 => {
                use RDKafkaRespErr::*;
                let errors = vec![
                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                    RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                ];
                faults.inject(Fault::ProduceErrors(errors)).await;
            }
            // A blip: shorter than the message timeout.
            5 => outages.push(faults.outage(1, Duration::from_millis(250)).await),
            // Longer than the message timeout: the batch fails until broker 2 is back.
            9 => outages.push(faults.outage(2, Duration::from_secs(4)).await),
            _ => {}
        }
        failures.extend(deliver_until_acked(&sink, batch).await);
    }
    for outage in outages {
        outage.await.expect("outage task");
    }

    let read = read_topic(&kafka.bootstrap, TOPIC, Duration::from_secs(30)).await.expect("read back");
    let duplicates = check_read_back(&produced, &read);
    eprintln!(
        "kafka faults: produced {}, read {}, duplicates {duplicates}, failed batch attempts {} ({} timeouts)",
        produced.len(),
        read.len(),
        failures.len(),
        failures.iter().filter(|e| matches!(e, SinkError::Timeout { .. })).count()
    );
    assert!(!failures.is_empty(), "the 4 s outage outlasts the 2 s message timeout: some batch must have failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_brokers_down_fails_the_batch_in_bounded_time_and_delivers_after_recovery() {
    let kafka = MockKafka::start(TOPIC, 3);
    let faults = kafka.faults();
    let sink = KafkaSink::new(&config(&kafka.bootstrap, 1_000, &[])).expect("sink");
    let produced = records(400);
    deliver_until_acked(&sink, &produced[..200]).await;

    faults.inject(Fault::Down(-1)).await;
    // Generous: the sink's own bound (1 s + report grace) must end it long before.
    let outcome = tokio::time::timeout(RECOVERY_BOUND, sink.deliver(&produced[200..])).await;
    let error = outcome.expect("deliver must fail, not hang, while every broker is down").expect_err("no broker acks");
    assert!(matches!(error, SinkError::Timeout { after_ms: 1_000, .. }), "{error}");
    assert!(sink.healthcheck().await.is_err(), "healthcheck reports the outage");

    faults.inject(Fault::Up(-1)).await;
    deliver_until_acked(&sink, &produced[200..]).await;
    let read = read_topic(&kafka.bootstrap, TOPIC, Duration::from_secs(30)).await.expect("read back");
    let duplicates = check_read_back(&produced, &read);
    eprintln!("kafka all down: produced {}, read {}, duplicates {duplicates}", produced.len(), read.len());
}

/// Every name of each protected property, with and without `topic.`: (key, refused value,
/// librdkafka property, a word of the reason).
const PROTECTED: &[(&str, &str, &str, &str)] = &[
    ("enable.idempotence", "false", "enable.idempotence", "reorder"),
    ("topic.enable.idempotence", "false", "enable.idempotence", "reorder"),
    ("acks", "1", "request.required.acks", "in-sync replica"),
    ("topic.acks", "1", "request.required.acks", "in-sync replica"),
    ("request.required.acks", "0", "request.required.acks", "in-sync replica"),
    ("topic.request.required.acks", "1", "request.required.acks", "in-sync replica"),
    ("message.timeout.ms", "600000", "message.timeout.ms", "message_timeout_ms"),
    ("topic.message.timeout.ms", "600000", "message.timeout.ms", "message_timeout_ms"),
    ("delivery.timeout.ms", "600000", "message.timeout.ms", "message_timeout_ms"),
    ("topic.delivery.timeout.ms", "600000", "message.timeout.ms", "message_timeout_ms"),
    ("bootstrap.servers", "elsewhere:9092", "metadata.broker.list", "brokers"),
    ("topic.bootstrap.servers", "elsewhere:9092", "metadata.broker.list", "brokers"),
    ("metadata.broker.list", "elsewhere:9092", "metadata.broker.list", "brokers"),
    ("topic.metadata.broker.list", "elsewhere:9092", "metadata.broker.list", "brokers"),
    ("max.in.flight", "10", "max.in.flight.requests.per.connection", "in flight"),
    ("topic.max.in.flight", "10", "max.in.flight.requests.per.connection", "in flight"),
    ("max.in.flight.requests.per.connection", "6", "max.in.flight.requests.per.connection", "in flight"),
    ("topic.max.in.flight.requests.per.connection", "0", "max.in.flight.requests.per.connection", "in flight"),
    ("retries", "0", "message.send.max.retries", "reorders"),
    ("topic.retries", "0", "message.send.max.retries", "reorders"),
    ("message.send.max.retries", "0", "message.send.max.retries", "reorders"),
    ("topic.message.send.max.retries", "-1", "message.send.max.retries", "reorders"),
    ("queuing.strategy", "lifo", "queuing.strategy", "log order"),
    ("topic.queuing.strategy", "lifo", "queuing.strategy", "log order"),
    ("partitioner", "random", "partitioner", "one partition"),
    ("topic.partitioner", "random", "partitioner", "one partition"),
    ("transactional.id", "augur", "transactional.id", "transaction"),
    ("topic.transactional.id", "augur", "transactional.id", "transaction"),
];

#[test]
fn every_name_of_a_protected_property_is_refused_naming_the_key_and_the_reason() {
    for &(key, value, property, why) in PROTECTED {
        let error = KafkaSink::new(&config("127.0.0.1:1", 1_000, &[(key, value)])).expect_err(key);
        assert!(
            matches!(&error, SinkBuildError::Property { key: k, property: p, .. } if k == key && *p == property),
            "{key}: {error}"
        );
        let message = error.to_string();
        assert!(message.contains(&format!("`{key}` = `{value}`")), "names the key: {message}");
        assert!(message.contains(why), "says why: {message}");
    }
}

#[test]
fn topic_acks_1_is_refused_on_every_run() {
    // Was: augur's `acks` and the user's `topic.acks` reached librdkafka in HashMap order, so
    // either won (start with acks=1, or librdkafka's unnamed refusal).
    for _ in 0..20 {
        let error = KafkaSink::new(&config("127.0.0.1:1", 1_000, &[("topic.acks", "1")])).expect_err("acks=1");
        assert!(matches!(&error, SinkBuildError::Property { key, .. } if key == "topic.acks"), "{error}");
    }
}

#[test]
fn values_that_keep_the_guarantees_are_allowed() {
    for (key, value) in [
        ("enable.idempotence", "true"),
        ("enable.idempotence", "TRUE"),
        ("topic.enable.idempotence", "1"),
        ("acks", "all"),
        ("acks", "-1"),
        ("topic.acks", "all"),
        ("topic.request.required.acks", "-1"),
        ("max.in.flight", "5"),
        ("topic.max.in.flight.requests.per.connection", "1"),
        ("retries", "3"),
        ("queuing.strategy", "fifo"),
        ("partitioner", "murmur2_random"),
        ("topic.partitioner", "consistent_random"),
        ("linger.ms", "20"),
        ("message.max.bytes", "2000"),
    ] {
        // `topic.` + a global name is unknown to librdkafka: only the vetting is under test there.
        match KafkaSink::new(&config("127.0.0.1:1", 1_000, &[(key, value)])) {
            Ok(_) | Err(SinkBuildError::Client { .. }) if key.starts_with("topic.") => {}
            Ok(_) => {}
            Err(e) => panic!("{key}={value} is allowed: {e}"),
        }
    }
    let error = KafkaSink::new(&config("127.0.0.1:1", 1_000, &[("no.such.property", "1")])).expect_err("unknown");
    assert!(matches!(error, SinkBuildError::Client { .. }), "{error}");
    // librdkafka's own refusal names the key in the cause, which start-up prints with the error.
    let cause = std::error::Error::source(&error).map(|c| c.to_string()).unwrap_or_default();
    assert!(cause.contains("no.such.property"), "{cause}");
}

#[test]
fn two_names_of_one_property_are_refused_naming_both() {
    for (a, b, property) in [
        ("linger.ms", "queue.buffering.max.ms", "queue.buffering.max.ms"),
        ("acks", "topic.request.required.acks", "request.required.acks"),
        ("compression.codec", "compression.type", "compression.codec"),
        ("topic.compression.codec", "topic.compression.type", "compression.codec"),
        ("request.timeout.ms", "topic.request.timeout.ms", "request.timeout.ms"),
    ] {
        let error = KafkaSink::new(&config("127.0.0.1:1", 1_000, &[(a, "all"), (b, "all")])).expect_err(a);
        assert!(matches!(&error, SinkBuildError::SameProperty { property: p, .. } if p == property), "{error}");
        let message = error.to_string();
        assert!(message.contains(&format!("`{a}`")) && message.contains(&format!("`{b}`")), "{message}");
    }
    // The global default and the topic's own are two properties.
    KafkaSink::new(&config("127.0.0.1:1", 1_000, &[("compression.type", "lz4"), ("topic.compression.type", "gzip")]))
        .expect("global and topic compression are distinct");
}

#[tokio::test]
async fn read_topic_names_a_missing_topic() {
    let kafka = MockKafka::start(TOPIC, 1);
    let error = read_topic(&kafka.bootstrap, "no-such-topic", Duration::from_secs(5)).await.expect_err("no topic");
    assert!(matches!(&error, ReadError::NoTopic { topic } if topic == "no-such-topic"), "{error}");
}

#[test]
fn config_defaults_the_message_timeout_and_bounds_it() {
    let sink = |extra: &str| {
        crate::config::Config::from_toml(&format!(
            "[samples]\nenabled = true\n[[samples.sinks]]\nkind = \"kafka\"\nbrokers = \"k:9092\"\ntopic = \"t\"\n{extra}"
        ))
    };
    let config = sink("properties = { \"linger.ms\" = \"20\" }").expect("parses");
    match &config.samples.sinks[..] {
        [crate::sample_log::config::SinkConfig::Kafka(k)] => {
            assert_eq!((k.name.as_str(), k.message_timeout_ms), ("kafka", 30_000));
            assert_eq!(k.properties.get("linger.ms").map(String::as_str), Some("20"));
        }
        other => panic!("{other:?}"),
    }
    let error = sink("message_timeout_ms = 0").expect_err("0 never acknowledges").to_string();
    assert!(error.contains("samples.sinks[0].message_timeout_ms"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_starts_a_new_session_and_delivery_goes_on() {
    let kafka = MockKafka::start(TOPIC, 3);
    let faults = kafka.faults();
    // With the gapless guarantee, a permanent Produce error is fatal to the producer session:
    // the sink must start a new one, or no batch would ever be acknowledged again.
    let sink = KafkaSink::new(&config(&kafka.bootstrap, 5_000, &[("enable.gapless.guarantee", "true")])).expect("sink");
    let produced = records(400);
    deliver_until_acked(&sink, &produced[..200]).await;
    let before = Arc::as_ptr(&sink.producer());
    faults.inject(Fault::ProduceErrors(vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD])).await;
    let failures = deliver_until_acked(&sink, &produced[200..]).await;
    assert!(!failures.is_empty(), "the permanent error failed a batch");
    assert!(!std::ptr::eq(before, Arc::as_ptr(&sink.producer())), "a new producer session: {failures:?}");
    let read = read_topic(&kafka.bootstrap, TOPIC, Duration::from_secs(30)).await.expect("read back");
    let duplicates = check_read_back(&produced, &read);
    eprintln!(
        "kafka fatal: produced {}, read {}, duplicates {duplicates}, failures {failures:?}",
        produced.len(),
        read.len()
    );
}

/// A sample whose `user_id` pads it to about `bytes`.
fn record_of(sequence: u64, bytes: usize) -> Vec<u8> {
    let sample = Sample {
        sample_id: format!("big-{sequence}:0"),
        request_id: format!("big-{sequence}"),
        user_id: "u".repeat(bytes),
        ..Default::default()
    };
    record::encode(&LogRecord { record: Some(log_record::Record::Sample(sample)) })
}

/// A small sample log in `dir` with one sink, `kafka`.
fn open_log(dir: &std::path::Path, metrics: &SampleMetrics) -> Arc<SegmentLog> {
    let log_config = SampleLogConfig {
        dir: dir.to_owned(),
        segment_max_bytes: 1 << 20,
        segment_max_age_s: 3600,
        fsync_interval_ms: 10,
        max_disk_bytes: 1 << 24,
    };
    Arc::new(SegmentLog::open(&log_config, &["kafka".to_owned()], metrics.clone()).unwrap().0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_message_max_bytes_is_dead_lettered_and_the_rest_delivered() {
    let kafka = MockKafka::start(TOPIC, 3);
    let dir = tempfile::tempdir().unwrap();
    let metrics = SampleMetrics::default();
    let log = open_log(dir.path(), &metrics);
    // Record 11 of 30 is over the limit (librdkafka's minimum is 1000).
    let payloads: Vec<Vec<u8>> = records(40)[..30]
        .iter()
        .enumerate()
        .map(|(i, r)| if i == 10 { record_of(11, 3_000) } else { r.payload.to_vec() })
        .collect();
    log.append(&payloads).unwrap();
    let expected: Vec<Record> = log.read_after(0, usize::MAX).unwrap();
    let big = expected[10].clone();

    let mut sink_config = config(&kafka.bootstrap, 5_000, &[("message.max.bytes", "2000")]);
    sink_config.tail = TailConfig { batch_max: 8, backoff_min_ms: 10, backoff_max_ms: 100, drain_timeout_ms: 5_000 };
    let sink = Arc::new(KafkaSink::new(&sink_config).expect("sink"));
    let cancel = CancellationToken::new();
    let tail = spawn_tail(Arc::clone(&log), sink, sink_config.tail.clone(), metrics.clone(), cancel.clone());
    let labels = SinkLabels { sink: "kafka".to_owned() };
    eventually("the cursor past every record", || log.cursor("kafka") == 30).await;
    cancel.cancel();
    tail.await.expect("tail");

    let dead = DeadLetterLabels { sink: "kafka".to_owned(), reason: "too_large".to_owned() };
    assert_eq!(metrics.dead_letter.get_or_create(&dead).get(), 1, "counted once");
    assert_eq!(metrics.sink_delivered.get_or_create(&labels).get(), 29);
    let kept: Vec<Record> =
        LogReader::open(&dir.path().join("dead_letter").join("kafka"), 0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(kept.len(), 1, "the dead-letter log holds the refused record");
    assert_eq!((&kept[0].id, &kept[0].payload), (&big.id, &big.payload));

    let read = read_topic(&kafka.bootstrap, TOPIC, Duration::from_secs(30)).await.expect("read back");
    let delivered: Vec<Record> = expected.iter().filter(|r| r.id != big.id).cloned().collect();
    check_read_back(&delivered, &read);
    assert!(read.iter().all(|r| r.id != big.id), "the big record never reached the topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_reported_unhealthy_in_the_background() {
    // Nothing listens on port 1. Building the sink and starting its driver do not wait for the
    // health check: delivery is already being attempted (and failing) while it runs.
    let dir = tempfile::tempdir().unwrap();
    let metrics = SampleMetrics::default();
    let log = open_log(dir.path(), &metrics);
    log.append(&records(4).iter().map(|r| r.payload.to_vec()).collect::<Vec<_>>()).unwrap();
    let mut sink_config = config("127.0.0.1:1", 200, &[]);
    sink_config.tail = TailConfig { batch_max: 8, backoff_min_ms: 10, backoff_max_ms: 100, drain_timeout_ms: 0 };
    let sink = Arc::new(KafkaSink::new(&sink_config).expect("an unreachable cluster builds"));
    let cancel = CancellationToken::new();
    let tail = spawn_tail(Arc::clone(&log), sink, sink_config.tail.clone(), metrics.clone(), cancel.clone());
    let labels = SinkLabels { sink: "kafka".to_owned() };
    let failures = || metrics.sink_healthcheck_failures.get_or_create(&labels).get();
    eventually("a failed delivery attempt", || metrics.sink_errors.get_or_create(&labels).get() >= 1).await;
    assert_eq!(failures(), 0, "delivery started before the health check answered");
    assert_eq!(metrics.sink_up.get_or_create(&labels).get(), 0, "the failed attempt marks the sink down");
    eventually("the health check's failure", || failures() == 1).await;
    assert_eq!(metrics.sink_up.get_or_create(&labels).get(), 0);
    assert_eq!(log.cursor("kafka"), 0, "nothing acknowledged");
    cancel.cancel();
    tail.await.expect("tail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_start_does_not_wait_for_an_unreachable_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = crate::sample_log::config::SamplesConfig { enabled: true, ..Default::default() };
    samples.log.dir = dir.path().to_owned();
    samples.sinks = vec![crate::sample_log::config::SinkConfig::Kafka(config("127.0.0.1:1", 1_000, &[]))];
    let metrics = SampleMetrics::default();
    let pipeline = crate::sample_log::pipeline::SamplePipeline::start(&samples, &metrics).await.expect("starts");
    let labels = SinkLabels { sink: "kafka".to_owned() };
    let failures = || metrics.sink_healthcheck_failures.get_or_create(&labels).get();
    // The health check against an unreachable cluster ends only at its timeout: had start waited
    // for it, the failure would already be counted.
    assert_eq!(failures(), 0, "start returned before the health check answered");
    eventually("the health check's failure", || failures() == 1).await;
    assert_eq!(metrics.sink_up.get_or_create(&labels).get(), 0, "reported unhealthy");
    pipeline.shutdown(std::time::Duration::from_secs(60), std::future::pending()).await;
}

/// Polls `done`; the generous bound only catches a hang.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < RECOVERY_BOUND, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_refusing_a_whole_request_dead_letters_nothing_that_goes_through_alone() {
    let kafka = MockKafka::start(TOPIC, 1);
    let sink = KafkaSink::new(&config(&kafka.bootstrap, 5_000, &[("linger.ms", "50")])).expect("sink");
    let produced = records(40);
    deliver_until_acked(&sink, &produced[..20]).await;
    // The broker answers the next Produce request (a batch of many records) with "too large":
    // no record is to blame, so each is tried alone and none is refused.
    let too_large = RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    kafka.faults().inject(Fault::ProduceErrors(vec![too_large])).await;
    let failures = deliver_until_acked(&sink, &produced[20..]).await;
    let read = read_topic(&kafka.bootstrap, TOPIC, Duration::from_secs(30)).await.expect("read back");
    let duplicates = check_read_back(&produced, &read);
    eprintln!("kafka request-level too large: failures {failures:?}, duplicates {duplicates}");
}
