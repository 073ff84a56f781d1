//! `augur features publish`: writes updates to a topic (demos, tests, backfilling a topic from a
//! file). Each message is keyed `<entity>:<entity_id>`, so one entity's updates keep their order
//! on one partition; the producer is idempotent with acks=all.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::StreamError;
use super::config::UpdateFormat;
use super::update::Update;

/// Sends `updates` to `topic` in order, encoded as `format` (`Auto` means protobuf), and waits for
/// every acknowledgement. Returns the number sent.
pub async fn publish(
    brokers: &str,
    topic: &str,
    format: UpdateFormat,
    updates: &[Update],
) -> Result<usize, StreamError> {
    publish_raw(brokers, topic, updates.iter().map(|u| (u.key(), encode(format, u)))).await
}

/// The payload of `update` as `format` says.
pub fn encode(format: UpdateFormat, update: &Update) -> Vec<u8> {
    match format {
        UpdateFormat::Json => update.to_json().into_bytes(),
        UpdateFormat::Protobuf | UpdateFormat::Auto => update.to_proto(),
    }
}

/// Sends (key, payload) pairs as they are: also how tests put a poison message on a topic.
pub async fn publish_raw(
    brokers: &str,
    topic: &str,
    messages: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<usize, StreamError> {
    let error = |action: &'static str| move |source| StreamError::Kafka { stream: "publish".into(), action, source };
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "augur-features-publish")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "30000")
        .create()
        .map_err(error("creating the producer"))?;
    let mut sent = 0;
    for (key, payload) in messages {
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&payload), Duration::from_secs(30))
            .await
            .map_err(|(source, _)| StreamError::Kafka { stream: "publish".into(), action: "sending", source })?;
        sent += 1;
    }
    Ok(sent)
}
