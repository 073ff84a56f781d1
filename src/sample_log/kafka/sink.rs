//! [`KafkaSink`]: one idempotent `FutureProducer`; a batch is settled when every record's
//! delivery report is in and each is either acknowledged or refused for good.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::time::Instant;

use super::properties::vet;
use super::{ID_HEADER, SEQ_HEADER, SinkBuildError};
use crate::fetch::BoxFuture;
use crate::sample_log::config::KafkaSinkConfig;
use crate::sample_log::record::Record;
use crate::sample_log::sink::{Delivered, Refused, SampleSink, SinkError};
use crate::validate::librdkafka::Refusal;

/// On top of `message.timeout.ms`: librdkafka fails each record within that timeout by itself;
/// this outer bound only guards against a delivery report that never comes.
const REPORT_GRACE: Duration = Duration::from_secs(5);
/// Pause before offering a record again when librdkafka's queue
/// (`queue.buffering.max.messages` / `.kbytes`) is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);
/// Bound on the whole health check...
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// ... made of metadata requests this long: each blocks a thread of the blocking pool, so a
/// check abandoned at shutdown keeps one for at most this long (the runtime waits for it).
const HEALTHCHECK_ATTEMPT: Duration = Duration::from_secs(1);

/// Delivers sample-log batches to one Kafka topic (see the module docs for the guarantees).
pub struct KafkaSink {
    name: String,
    topic: String,
    /// Kept to start a new producer session when librdkafka declares the current one fatally
    /// broken (an idempotent producer can: e.g. an unrecoverable sequence gap); without it the sink
    /// would fail every batch until the process restarts.
    client_config: ClientConfig,
    /// Read-locked only to clone the `Arc`; never held across an await.
    producer: RwLock<Arc<FutureProducer>>,
    message_timeout: Duration,
}

/// What became of one record offered to librdkafka.
enum Offer {
    /// Queued: its delivery report will tell.
    Queued(DeliveryFuture),
    /// Refused before queueing, for good.
    Refused(Refused),
}

// === impl KafkaSink ===

impl KafkaSink {
    /// Builds the producer (it connects lazily: a Kafka outage at start-up fails batches, not the
    /// build). Refuses user properties that would turn idempotence or acks=all off, or that name
    /// one librdkafka property twice (see `properties.rs`).
    pub fn new(config: &KafkaSinkConfig) -> Result<KafkaSink, SinkBuildError> {
        if let Some(refusal) = vet(&config.properties) {
            let sink = config.name.clone();
            return Err(match refusal {
                Refusal::Protected { key, property, reason } => {
                    let value = config.properties.get(&key).cloned().unwrap_or_default();
                    SinkBuildError::Property { sink, key, value, property, reason }
                }
                Refusal::SameProperty { first, second, property } => {
                    SinkBuildError::SameProperty { sink, first, second, property }
                }
            });
        }
        let mut client_config = ClientConfig::new();
        client_config
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", format!("augur-{}", config.name))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.message_timeout_ms.to_string());
        for (key, value) in &config.properties {
            client_config.set(key, value);
        }
        let producer = create(&config.name, &client_config)?;
        Ok(KafkaSink {
            name: config.name.clone(),
            topic: config.topic.clone(),
            client_config,
            producer: RwLock::new(Arc::new(producer)),
            message_timeout: Duration::from_millis(config.message_timeout_ms),
        })
    }

    /// Whether the brokers answer and know the topic (metadata requests, up to 10 s).
    pub async fn healthcheck(&self) -> Result<(), SinkError> {
        let deadline = Instant::now() + HEALTHCHECK_TIMEOUT;
        let metadata = loop {
            let (producer, topic) = (self.producer(), self.topic.clone());
            let attempt = tokio::task::spawn_blocking(move || {
                producer.client().fetch_metadata(Some(&topic), HEALTHCHECK_ATTEMPT)
            })
            .await
            .map_err(|e| self.unavailable(format!("metadata task: {e}")))?;
            match attempt {
                Ok(metadata) => break metadata,
                Err(_) if Instant::now() < deadline => continue,
                Err(e) => return Err(self.unavailable(format!("metadata: {e}"))),
            }
        };
        self.check_topic(&metadata)
    }

    fn check_topic(&self, metadata: &Metadata) -> Result<(), SinkError> {
        match metadata.topics().iter().find(|t| t.name() == self.topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
            Some(t) => Err(self.unavailable(format!(
                "topic `{}`: {:?}, {} partitions",
                self.topic,
                t.error(),
                t.partitions().len()
            ))),
            None => Err(self.unavailable(format!("topic `{}` not in the metadata", self.topic))),
        }
    }

    async fn deliver_batch(&self, records: &[Record]) -> Result<Delivered, SinkError> {
        let producer = self.producer();
        let deadline = Instant::now() + self.message_timeout + REPORT_GRACE;
        let mut pending = Vec::with_capacity(records.len());
        let mut refused = Vec::new();
        let mut failed = None;
        // Offered one at a time, in log order: that order is the partition's order (idempotence
        // keeps it through librdkafka's retries).
        for (index, record) in records.iter().enumerate() {
            match self.offer(&producer, index, record, deadline).await {
                Ok(Offer::Queued(delivery)) => pending.push((index, delivery)),
                Ok(Offer::Refused(r)) => refused.push(r),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // Even after a failure, wait for what is already queued: the retry then starts with
        // nothing of this batch still in librdkafka's queue, so copies never pile up there.
        let (indices, deliveries): (Vec<usize>, Vec<DeliveryFuture>) = pending.into_iter().unzip();
        let reports = tokio::time::timeout_at(deadline, join_all(deliveries)).await.map_err(|_| self.timeout())?;
        let mut suspects = Vec::new();
        let mut failures = 0usize;
        let mut first = None;
        for (index, report) in indices.into_iter().zip(reports) {
            let error = match report {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) if permanent(&e).is_some() && producer.client().fatal_error().is_none() => {
                    suspects.push(index);
                    continue;
                }
                Ok(Err((e, _))) => self.classify(&e),
                Err(_canceled) => self.unavailable("producer dropped the delivery report".to_owned()),
            };
            failures += 1;
            first.get_or_insert(error);
        }
        if let Some(error) = failed.or(first) {
            tracing::debug!(sink = %self.name, batch = records.len(), failures, error = %error, "kafka batch not acknowledged");
            self.renew_if_fatal(&producer);
            return Err(error);
        }
        // The broker answers a whole request (many records) with one error, so a permanent-looking
        // one may be another record's doing: only a record refused when sent alone is refused.
        if !suspects.is_empty() {
            tracing::debug!(sink = %self.name, records = suspects.len(), "kafka request refused as too large or invalid; sending its records alone");
        }
        for index in suspects {
            if let Some(r) = self.send_alone(&producer, index, &records[index]).await? {
                refused.push(r);
            }
        }
        refused.sort_unstable_by_key(|r| r.index);
        Ok(Delivered { refused })
    }

    /// Queues one record, waiting (up to `deadline`) while librdkafka's queue is full.
    async fn offer(
        &self,
        producer: &FutureProducer,
        index: usize,
        record: &Record,
        deadline: Instant,
    ) -> Result<Offer, SinkError> {
        let sequence = record.sequence.to_string();
        loop {
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header { key: ID_HEADER, value: Some(record.id.as_str()) })
                .insert(Header { key: SEQ_HEADER, value: Some(sequence.as_str()) });
            let message =
                FutureRecord::to(&self.topic).key(record.key.as_str()).payload(&record.payload[..]).headers(headers);
            match producer.send_result(message) {
                Ok(delivery) => return Ok(Offer::Queued(delivery)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if Instant::now() < deadline => {
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                // librdkafka checks the size against `message.max.bytes` before queueing: this
                // record will never fit, whatever the brokers say.
                Err((e @ KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    return Ok(Offer::Refused(Refused { index, reason: "too_large", detail: e.to_string() }));
                }
                Err((e, _)) => return Err(self.classify(&e)),
            }
        }
    }

    /// Sends `record` on its own and waits for its report: `Some` if refused for good again.
    async fn send_alone(
        &self,
        producer: &Arc<FutureProducer>,
        index: usize,
        record: &Record,
    ) -> Result<Option<Refused>, SinkError> {
        let deadline = Instant::now() + self.message_timeout + REPORT_GRACE;
        let delivery = match self.offer(producer, index, record, deadline).await? {
            Offer::Queued(delivery) => delivery,
            Offer::Refused(r) => return Ok(Some(r)),
        };
        match tokio::time::timeout_at(deadline, delivery).await.map_err(|_| self.timeout())? {
            Ok(Ok(_)) => Ok(None),
            Ok(Err((e, _))) => match permanent(&e) {
                Some(reason) if producer.client().fatal_error().is_none() => {
                    Ok(Some(Refused { index, reason, detail: e.to_string() }))
                }
                _ => {
                    self.renew_if_fatal(producer);
                    Err(self.classify(&e))
                }
            },
            Err(_canceled) => Err(self.unavailable("producer dropped the delivery report".to_owned())),
        }
    }

    pub(super) fn producer(&self) -> Arc<FutureProducer> {
        // A poisoned lock still holds a valid producer: a panic elsewhere must not stop delivery.
        self.producer.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces `failed` with a new producer session if librdkafka raised a fatal error on it.
    fn renew_if_fatal(&self, failed: &Arc<FutureProducer>) {
        let Some((code, reason)) = failed.client().fatal_error() else { return };
        let fresh = match create(&self.name, &self.client_config) {
            Ok(fresh) => Arc::new(fresh),
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "kafka producer fatal, and a new one failed");
                return;
            }
        };
        let mut current = self.producer.write().unwrap_or_else(|p| p.into_inner());
        // Another batch may have renewed it already.
        if Arc::ptr_eq(&current, failed) {
            let old = std::mem::replace(&mut *current, fresh);
            drop(current);
            // Dropping a producer purges and flushes (blocking up to ~0.5 s): not on an async worker.
            tokio::task::spawn_blocking(move || drop(old));
            tracing::warn!(sink = %self.name, ?code, %reason, "kafka producer fatal error: new producer session");
        }
    }

    fn classify(&self, e: &KafkaError) -> SinkError {
        match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => self.timeout(),
            other => self.unavailable(other.to_string()),
        }
    }

    fn timeout(&self) -> SinkError {
        SinkError::Timeout { sink: self.name.clone(), after_ms: self.message_timeout.as_millis() as u64 }
    }

    fn unavailable(&self, reason: String) -> SinkError {
        SinkError::Unavailable { sink: self.name.clone(), reason }
    }
}

impl SampleSink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<Delivered, SinkError>> {
        Box::pin(self.deliver_batch(records))
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        // The inherent method (inherent methods take precedence over the trait's).
        Box::pin(KafkaSink::healthcheck(self))
    }
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .field("message_timeout", &self.message_timeout)
            .finish_non_exhaustive()
    }
}

fn create(sink: &str, config: &ClientConfig) -> Result<FutureProducer, SinkBuildError> {
    config.create().map_err(|source| SinkBuildError::Client { sink: sink.to_owned(), source })
}

/// The dead-letter reason of a delivery-report error that says the record itself is unacceptable
/// (not the cluster's state), if it is one.
fn permanent(error: &KafkaError) -> Option<&'static str> {
    match error.rdkafka_error_code()? {
        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge => Some("too_large"),
        RDKafkaErrorCode::InvalidRecord => Some("invalid"),
        _ => None,
    }
}
