//! The Kafka sink against librdkafka's mock cluster (the real protocol, in process): faults while
//! producing must cost neither a sample nor a partition's order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::types::RDKafkaRespErr;
use tokio::time::Instant;

use super::mock::{Fault, MockKafka};
use super::*;
use crate::config::KafkaSinkConfig;
use crate::proto::{Label, LogRecord, Sample, log_record};
use crate::sample_log::record::{self, Record};
use crate::sample_log::sink::{SampleSink, SinkError};

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

#[test]
fn properties_that_undo_idempotence_or_acks_all_are_refused_by_name() {
    for (key, value) in [
        ("enable.idempotence", "false"),
        ("acks", "1"),
        ("request.required.acks", "0"),
        ("message.timeout.ms", "600000"),
        ("bootstrap.servers", "elsewhere:9092"),
    ] {
        let error = KafkaSink::new(&config("127.0.0.1:1", 1_000, &[(key, value)])).expect_err(key);
        assert!(matches!(&error, SinkBuildError::Property { key: k, .. } if k == key), "{error}");
        assert!(error.to_string().contains(key), "{error}");
    }
    for (key, value) in [("enable.idempotence", "true"), ("acks", "all"), ("acks", "-1"), ("linger.ms", "20")] {
        KafkaSink::new(&config("127.0.0.1:1", 1_000, &[(key, value)]))
            .unwrap_or_else(|e| panic!("{key}={value} is allowed: {e}"));
    }
    let error = KafkaSink::new(&config("127.0.0.1:1", 1_000, &[("no.such.property", "1")])).expect_err("unknown");
    assert!(matches!(error, SinkBuildError::Client { .. }), "{error}");
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
        [crate::config::SinkConfig::Kafka(k)] => {
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
