//! The sample sinks end to end: augur with a Kafka sink (librdkafka's mock cluster, the real
//! protocol) and a Redis Streams sink (a real redis-server), both down while predictions and
//! events flow. Serving does not notice (zero failed Predicts, no snapshot dropped), the samples
//! wait in the log, and after recovery each sink holds exactly the expected samples, with the
//! labels and the features GetFeatures gives for the same request.

use std::collections::BTreeMap;
use std::time::Duration;

use augur::proto::{LogRecord, ReportEventsRequest};
use augur::sample_log::kafka::mock::{Fault, MockKafka};
use augur::sample_log::record::Record;

use crate::common;
use crate::common::redis_server::RedisServer;
use crate::common::samples::{
    EMITTED, check_samples, events, features_request, latest_samples, metric, request, samples_config, wait_for,
};

fn decode(records: &[Record]) -> Vec<LogRecord> {
    records.iter().map(|r| r.decode().expect("a LogRecord")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_down_cost_serving_nothing_and_deliver_after_recovery() {
    common::require!(Redis, Ort);
    let kafka = MockKafka::start("samples", 3);
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "[[samples.sinks]]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic = \"samples\"\nmessage_timeout_ms = 1000\n\
         [[samples.sinks]]\nkind = \"redis_stream\"\nurl = \"{}\"\nstream = \"augur:samples\"\ntimeout_ms = 500\n",
        kafka.bootstrap,
        redis.url()
    );
    let server = common::start(samples_config(dir.path(), &sinks)).await;

    // Both sinks go down before any traffic.
    let faults = kafka.faults();
    for broker in 1..=3 {
        faults.inject(Fault::Down(broker)).await;
    }
    redis.kill();

    let mut client = server.client().await;
    let n = 12;
    let mut features = BTreeMap::new();
    let mut failed = 0;
    for k in 0..n {
        let r = request(k);
        if client.predict(r.clone()).await.is_err() {
            failed += 1;
        }
        features.insert(r.request_id.clone(), client.get_features(features_request(&r)).await.unwrap().into_inner());
    }
    wait_for(&server.metrics, "augur_samples_pending", n as f64).await;
    let (events, expected) = events(n);
    let results = client.report_events(ReportEventsRequest { events }).await.expect("report").into_inner();
    assert!(results.results.iter().all(|r| r.status == augur::proto::EventStatus::Accepted as i32));
    wait_for(&server.metrics, EMITTED, expected.len() as f64).await;
    assert_eq!(failed, 0, "a sink outage fails no Predict");

    let exposition = server.metrics.render();
    assert_eq!(metric(&exposition, "augur_samples_dropped_total{reason=\"queue_full\"}"), 0.0);
    assert_eq!(metric(&exposition, "augur_samples_sink_delivered_total{sink=\"kafka\"}"), 0.0);
    assert_eq!(metric(&exposition, "augur_samples_sink_delivered_total{sink=\"redis_stream\"}"), 0.0);
    let written = metric(&exposition, "augur_samples_log_sequence");
    assert!(metric(&exposition, "augur_samples_sink_lag_records{sink=\"kafka\"}") > 0.0, "kafka lags while down");

    // Recovery: every record written while down is delivered to both.
    for broker in 1..=3 {
        faults.inject(Fault::Up(broker)).await;
    }
    redis.restart();
    wait_for(&server.metrics, "augur_samples_sink_delivered_total{sink=\"kafka\"}", written).await;
    wait_for(&server.metrics, "augur_samples_sink_delivered_total{sink=\"redis_stream\"}", written).await;
    server.stop().await;

    let topic = augur::sample_log::kafka::read_topic(&kafka.bootstrap, "samples", Duration::from_secs(30))
        .await
        .expect("read topic");
    check_samples(&latest_samples(&decode(&topic)), &expected, &features);
    let stream =
        augur::sample_log::redis_stream::read_stream(&redis.url(), "augur:samples").await.expect("read stream");
    check_samples(&latest_samples(&decode(&stream)), &expected, &features);
}
