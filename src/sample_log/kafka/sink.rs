//! [`KafkaSink`]: one idempotent `FutureProducer`; a batch is acknowledged when every record's
//! delivery report is.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::time::Instant;

use super::{ID_HEADER, SEQ_HEADER, SinkBuildError};
use crate::config::KafkaSinkConfig;
use crate::fetch::BoxFuture;
use crate::sample_log::record::Record;
use crate::sample_log::sink::{SampleSink, SinkError};

/// On top of `message.timeout.ms`: librdkafka fails each record within that timeout by itself;
/// this outer bound only guards against a delivery report that never comes.
const REPORT_GRACE: Duration = Duration::from_secs(5);
/// Pause before offering a record again when librdkafka's queue
/// (`queue.buffering.max.messages` / `.kbytes`) is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);
/// Bound on the healthcheck's metadata request.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(10);

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

// === impl KafkaSink ===

impl KafkaSink {
    /// Builds the producer (it connects lazily: a Kafka outage at start-up fails batches, not the
    /// build). Refuses user properties that would turn idempotence or acks=all off.
    pub fn new(config: &KafkaSinkConfig) -> Result<KafkaSink, SinkBuildError> {
        let mut client_config = ClientConfig::new();
        client_config
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", format!("augur-{}", config.name))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.message_timeout_ms.to_string());
        for (key, value) in &config.properties {
            if let Some(reason) = refusal(key, value) {
                return Err(SinkBuildError::Property {
                    sink: config.name.clone(),
                    key: key.clone(),
                    value: value.clone(),
                    reason,
                });
            }
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

    /// Whether the brokers answer and know the topic (a metadata request), for start-up logs.
    pub async fn healthcheck(&self) -> Result<(), SinkError> {
        let producer = self.producer();
        let topic = self.topic.clone();
        let metadata =
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(Some(&topic), HEALTHCHECK_TIMEOUT))
                .await
                .map_err(|e| self.unavailable(format!("metadata task: {e}")))?
                .map_err(|e| self.unavailable(format!("metadata: {e}")))?;
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

    async fn deliver_batch(&self, records: &[Record]) -> Result<(), SinkError> {
        let producer = self.producer();
        let deadline = Instant::now() + self.message_timeout + REPORT_GRACE;
        let mut pending = Vec::with_capacity(records.len());
        let mut refused = None;
        // Offered one at a time, in log order: that order is the partition's order (idempotence
        // keeps it through librdkafka's retries).
        'records: for record in records {
            let sequence = record.sequence.to_string();
            loop {
                let headers = OwnedHeaders::new_with_capacity(2)
                    .insert(Header { key: ID_HEADER, value: Some(record.id.as_str()) })
                    .insert(Header { key: SEQ_HEADER, value: Some(sequence.as_str()) });
                let message = FutureRecord::to(&self.topic)
                    .key(record.key.as_str())
                    .payload(&record.payload[..])
                    .headers(headers);
                match producer.send_result(message) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        continue 'records;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if Instant::now() < deadline =>
                    {
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                    Err((e, _)) => {
                        refused = Some(self.classify(&e));
                        break 'records;
                    }
                }
            }
        }
        // Even after a refusal, wait for what is already queued: the retry then starts with
        // nothing of this batch still in librdkafka's queue, so copies never pile up there.
        let reports = tokio::time::timeout_at(deadline, join_all(pending)).await.map_err(|_| self.timeout())?;
        let mut failed = 0usize;
        let mut first = None;
        for report in reports {
            let error = match report {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => self.classify(&e),
                Err(_canceled) => self.unavailable("producer dropped the delivery report".to_owned()),
            };
            failed += 1;
            first.get_or_insert(error);
        }
        if let Some(error) = refused.or(first) {
            tracing::debug!(sink = %self.name, batch = records.len(), failed, error = %error, "kafka batch not acknowledged");
            self.renew_if_fatal(&producer);
            return Err(error);
        }
        Ok(())
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

    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(self.deliver_batch(records))
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

/// Why a user property may not be set, if it may not.
fn refusal(key: &str, value: &str) -> Option<&'static str> {
    match key {
        "enable.idempotence" if !value.trim().eq_ignore_ascii_case("true") => {
            Some("must stay `true`: retries must neither duplicate nor reorder a partition's records")
        }
        "acks" | "request.required.acks" if !matches!(value.trim(), "all" | "-1") => {
            Some("must stay `all`: a record is delivered only once every in-sync replica has it")
        }
        "bootstrap.servers" | "metadata.broker.list" => Some("set the sink's `brokers` instead"),
        "message.timeout.ms" | "delivery.timeout.ms" => Some("set the sink's `message_timeout_ms` instead"),
        _ => None,
    }
}
