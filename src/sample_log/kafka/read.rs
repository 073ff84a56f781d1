//! [`read_topic`]: a topic's records back as [`Record`]s, for tests and `augur samples dump`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{ID_HEADER, ReadError, SEQ_HEADER};
use crate::sample_log::record::Record;

/// Bound on each metadata / watermark request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll's wait; the read checks for `idle` between polls.
const POLL: Duration = Duration::from_millis(100);

/// Reads every partition of `topic` from the beginning up to where it ended when the read
/// started (its high watermarks), or until nothing arrived for `idle`. Records come in offset
/// order per partition (partitions interleaved), duplicates included: dedup by [`Record::id`] is
/// the caller's. A message without augur's headers is decoded to find its key and id.
///
/// No consumer group offsets are committed: reading never disturbs other consumers.
pub async fn read_topic(brokers: &str, topic: &str, idle: Duration) -> Result<Vec<Record>, ReadError> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    // librdkafka's consumer API is blocking.
    tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || read_blocking(&brokers, &topic, idle)
    })
    .await
    .map_err(|source| ReadError::Task { topic, source })?
}

fn read_blocking(brokers: &str, topic: &str, idle: Duration) -> Result<Vec<Record>, ReadError> {
    let client = |action| move |source| ReadError::Client { topic: topic.to_owned(), action, source };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        // librdkafka wants a group for a consumer; with assign() and no commits it is never joined.
        .set("group.id", "augur-samples-read")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(client("creating the consumer"))?;
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT).map_err(client("fetching metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ReadError::NoTopic { topic: topic.to_owned() });
    }
    // Where each non-empty partition ends now: reaching every end finishes the read without
    // waiting out `idle`.
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT).map_err(client("fetching watermarks"))?;
        if high > low {
            ends.insert(partition, high);
        }
        assignment.add_partition_offset(topic, partition, Offset::Beginning).map_err(client("assigning"))?;
    }
    consumer.assign(&assignment).map_err(client("assigning"))?;

    let mut records = Vec::new();
    let mut last = Instant::now();
    while !ends.is_empty() && last.elapsed() < idle {
        let Some(message) = consumer.poll(POLL) else { continue };
        let message = message.map_err(client("consuming"))?;
        last = Instant::now();
        if ends.get(&message.partition()).is_some_and(|&end| message.offset() + 1 >= end) {
            ends.remove(&message.partition());
        }
        records.push(record_of(topic, &message)?);
    }
    Ok(records)
}

fn record_of(topic: &str, message: &BorrowedMessage<'_>) -> Result<Record, ReadError> {
    let payload = Bytes::copy_from_slice(message.payload().unwrap_or_default());
    let header = |name: &str| {
        let headers = message.headers()?;
        (0..headers.count())
            .filter_map(|i| headers.try_get(i))
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    };
    let sequence = header(SEQ_HEADER).and_then(|s| s.parse::<u64>().ok());
    match (header(ID_HEADER), sequence) {
        (Some(id), Some(sequence)) => {
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            Ok(Record { sequence, key, id, payload })
        }
        // Not written by augur's sink: the payload names key and id, the offset stands in for
        // the sequence.
        _ => Record::new(message.offset().max(0) as u64, payload).map_err(|source| ReadError::Malformed {
            topic: topic.to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            source,
        }),
    }
}
