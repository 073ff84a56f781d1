//! The Kafka sink: the sample log's records, acknowledged by every in-sync replica, on a topic
//! keyed by request_id.
//!
//! Why each choice:
//! - **Idempotent producer, acks=all** (`enable.idempotence=true`): librdkafka retries a request
//!   without writing it twice and keeps a partition's records in send order, and a record counts
//!   as acknowledged only once the in-sync replicas hold it — the tail driver advances its cursor
//!   on exactly that. User `properties` may tune anything else, but not turn these off under any
//!   of librdkafka's names for them (`properties.rs`).
//! - **Key = request_id**: every sample of a prediction hashes to one partition, so a consumer
//!   sees them (and their later corrections) in log order.
//! - **Header `augur-id`** (`Record::id`): idempotence dedups only within one producer session; a
//!   batch retried after a timeout, or after a restart, is sent again. Consumers keep one record
//!   per id. **Header `augur-seq`** (the log sequence) lets them check order and find gaps.
//! - **Bounded `message.timeout.ms`**: an outage fails the batch (and the driver retries it from
//!   the log) rather than parking it in librdkafka's memory indefinitely.
//! - **Refusals are per record**: a record librdkafka refuses for good (larger than
//!   `message.max.bytes`; the broker calling it too large or invalid even when sent alone) is
//!   reported as refused, and the tail driver dead-letters it; every other error fails the batch.
//!   The broker answers a whole request with one error, so after a "too large"/"invalid" answer
//!   each of its records is sent again alone and only one refused again is refused for good. Such
//!   a record lands after the batch's later records, the one case where a request's samples may
//!   arrive out of log order (`augur-seq` tells).
//! - **The health check is a metadata request** the tail driver runs in the background at start:
//!   an unreachable cluster is reported (log, `augur_samples_sink_up`,
//!   `augur_samples_sink_healthcheck_failures_total`) without holding up serving.
//!
//! [`read_topic`] reads a topic back (all partitions, from the beginning) for tests and
//! `augur samples dump`.

pub mod mock;
mod properties;
mod read;
mod sink;
#[cfg(test)]
mod tests;

pub use read::read_topic;
pub use sink::KafkaSink;

use crate::sample_log::record::DecodeError;

/// Header carrying [`Record::id`](crate::sample_log::record::Record::id): the dedup id.
pub const ID_HEADER: &str = "augur-id";
/// Header carrying [`Record::sequence`](crate::sample_log::record::Record::sequence), decimal.
pub const SEQ_HEADER: &str = "augur-seq";

/// Why a Kafka sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    /// A user property would undo a guarantee the sink promises, or duplicates a config field
    /// (under any of its librdkafka names).
    #[error("kafka sink `{sink}`: property `{key}` = `{value}` refused (librdkafka's `{property}`): {reason}")]
    Property {
        /// The sink's name.
        sink: String,
        /// The key as configured.
        key: String,
        /// Its configured value.
        value: String,
        /// The librdkafka property the key names (itself, or the property it is an alias of).
        property: &'static str,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Two keys name one librdkafka property (aliases, or with and without `topic.`): librdkafka
    /// would apply them in no fixed order.
    #[error(
        "kafka sink `{sink}`: properties `{first}` and `{second}` both set librdkafka's `{property}` \
         (applied in no fixed order); keep one"
    )]
    SameProperty {
        /// The sink's name.
        sink: String,
        /// One key.
        first: String,
        /// The other key.
        second: String,
        /// The property both name.
        property: String,
    },
    /// librdkafka refused the configuration.
    #[error("kafka sink `{sink}`: creating the producer")]
    Client {
        /// The sink's name.
        sink: String,
        /// What librdkafka said.
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// Why a topic could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Creating the consumer, fetching metadata or consuming failed.
    #[error("kafka topic `{topic}`: {action}")]
    Client {
        /// The topic read.
        topic: String,
        /// What was being done.
        action: &'static str,
        /// What librdkafka said.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The topic does not exist (or has no partitions).
    #[error("kafka topic `{topic}`: not found")]
    NoTopic {
        /// The topic read.
        topic: String,
    },
    /// A message has no augur headers and its payload is not a `LogRecord`.
    #[error("kafka topic `{topic}` partition {partition} offset {offset}")]
    Malformed {
        /// The topic read.
        topic: String,
        /// Where the message sits.
        partition: i32,
        /// Where the message sits.
        offset: i64,
        /// Why the payload did not decode.
        #[source]
        source: DecodeError,
    },
    /// The blocking read task panicked or was cancelled.
    #[error("kafka topic `{topic}`: reader task")]
    Task {
        /// The topic read.
        topic: String,
        /// What tokio said.
        #[source]
        source: tokio::task::JoinError,
    },
}
