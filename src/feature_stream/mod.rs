//! Beside the path, feeding step 3: feature streams. `[[feature_streams]]` consumes Kafka topics
//! of feature updates (`augur.v1.FeatureUpdate`, or its JSON form) and upserts them into the
//! store the scenes read, so a new item or a changed price is servable seconds after it happens
//! instead of at the next bulk load.
//!
//! - [`config`] — the section: brokers, topic, group, format, entity → table, dead-letter file,
//!   librdkafka properties (vetted by `properties`).
//! - [`update`] — decoding and checking one update; encoding for `augur features publish`.
//! - [`target`] — the write: event-time last-writer-wins per field (a Lua script on Redis and
//!   Redis Cluster, a compare under the lock in memory) and the local cache invalidated.
//! - [`invalidate`] — how every replica learns of a write: Redis pub/sub, published by the
//!   script in the same atomic step as the write.
//! - `consumer` — the consumer group member: batch, write, record in the changelog
//!   ([`crate::feature_history`]), then commit (cargo feature `kafka`).
//! - `publish` — the producer behind `augur features publish` (cargo feature `kafka`).
//! - [`dead_letter`], [`metrics`].
//!
//! Replicas: with Redis, every replica runs one member of the stream's consumer group (the
//! partitions are shared out, each update is written once) and one pub/sub subscription (every
//! replica invalidates). With the in-memory store each replica is its own group and applies
//! every update to its own memory, replaying the topic from its beginning at each start.
//! docs/features.md ("Feature streams") is the operator's version.

pub mod config;
#[cfg(feature = "kafka")]
mod consumer;
pub mod dead_letter;
pub mod invalidate;
pub mod metrics;
mod properties;
#[cfg(feature = "kafka")]
pub mod publish;
pub mod target;
pub mod update;

use std::time::{SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{EntityKind, FeatureStreamConfig, UpdateFormat};
pub use metrics::StreamMetrics;
pub use target::{RedisTarget, Target};
pub use update::{BadMessage, Update};

/// Why a feature stream could not start (or `augur features publish` failed).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// librdkafka refused the configuration or the call.
    #[error("feature stream `{stream}`: {action}")]
    Kafka {
        /// The stream (or `publish`).
        stream: String,
        /// What was being done.
        action: &'static str,
        /// What librdkafka said.
        #[source]
        source: rdkafka_error::Error,
    },
    /// The stream's changelog writer could not be opened.
    #[error("feature stream `{stream}`: {source}")]
    History {
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: crate::feature_history::HistoryError,
    },
    /// Streams are configured but the store they would write is not the configured one (a
    /// store supplied by an embedding), or this build has no Kafka support.
    #[error("feature streams: {0}")]
    Unsupported(String),
}

#[cfg(feature = "kafka")]
mod rdkafka_error {
    pub(super) type Error = rdkafka::error::KafkaError;
}
#[cfg(not(feature = "kafka"))]
mod rdkafka_error {
    pub(super) type Error = std::convert::Infallible;
}

/// The changelog every stream appends to (each with a writer of its own), when it is on.
#[derive(Debug, Clone)]
pub struct History<'a> {
    /// `[feature_history]`, with a directory.
    pub config: &'a crate::feature_history::HistoryConfig,
    /// Where the writers count.
    pub metrics: crate::feature_history::HistoryMetrics,
}

/// Starts a consumer per stream (and, for Redis with a local cache, the invalidation
/// subscription) on `tracker`, until `stop`.
pub fn start(
    streams: &[FeatureStreamConfig],
    target: Target,
    redis: Option<&crate::fetch::config::RedisConfig>,
    metrics: &StreamMetrics,
    history: Option<History<'_>>,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> Result<(), StreamError> {
    if streams.is_empty() {
        return Ok(());
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (target, redis, metrics, history, tracker, stop);
        Err(StreamError::Unsupported("this build has no Kafka support (cargo feature `kafka`)".into()))
    }
    #[cfg(feature = "kafka")]
    {
        if let (Target::Redis(RedisTarget { cache: Some(cache), .. }), Some(redis)) = (&target, redis) {
            tracker.spawn(invalidate::run(redis.clone(), std::sync::Arc::clone(cache), metrics.clone(), stop.clone()));
        }
        for stream in streams {
            let writer = match history.as_ref().and_then(|h| Some((h, h.config.active_dir()?))) {
                Some((h, dir)) => Some(
                    crate::feature_history::write::HistoryWriter::open(
                        dir,
                        h.config,
                        &format!("stream:{}", stream.name),
                        h.metrics.clone(),
                    )
                    .map_err(|source| StreamError::History { stream: stream.name.clone(), source })?,
                ),
                None => None,
            };
            let task = consumer::StreamConsumerTask::new(stream, target.clone(), metrics.clone(), writer)?;
            tracker.spawn(task.run(stop.clone()));
        }
        Ok(())
    }
}

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Seconds from `event_time_ms` to now (0 for an event time in the future: clock skew).
pub(crate) fn age_seconds(event_time_ms: i64) -> f64 {
    (now_ms() - event_time_ms).max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests;
