//! Feature-stream metrics: `augur_feature_stream_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::telemetry::ModuleMetrics;

/// `{stream}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// `feature_streams[].name`.
    pub stream: String,
}

/// `{stream, result}` of an update.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpdateLabels {
    /// The stream.
    pub stream: String,
    /// `applied` (at least one feature written) or `stale` (every feature held a value as new or
    /// newer: a replay or a late update).
    pub result: String,
}

/// `{stream, table}` of a feature no scene's spec reads.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// The stream.
    pub stream: String,
    /// The table the update was written to (a `tables` value of the stream's config: bounded).
    pub table: String,
}

/// `{stream, reason}` of a bad message.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BadLabels {
    /// The stream.
    pub stream: String,
    /// `decode`, `entity`, `entity_id`, `event_time`, `features`, `value`, `table` or `store`.
    pub reason: String,
}

/// `{stream, partition}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The stream.
    pub stream: String,
    /// Kafka partition of the stream's topic.
    pub partition: String,
}

/// `{stream, path}` of a freshness observation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FreshnessLabels {
    /// The stream.
    pub stream: String,
    /// `write`: on the replica that wrote the update, once the store has it and its cache
    /// entry is gone. `pubsub`: on every replica (the writer too), once the invalidation
    /// message reached it.
    pub path: String,
}

/// Seconds from an update's event time to servable: 10 ms to 1 h.
fn freshness_buckets() -> impl Iterator<Item = f64> {
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0].into_iter()
}

/// Feature-stream metrics.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    /// `augur_feature_stream_updates_total{stream, result}`.
    pub updates: Family<UpdateLabels, Counter>,
    /// `augur_feature_stream_bad_messages_total{stream, reason}`: skipped and dead-lettered.
    pub bad_messages: Family<BadLabels, Counter>,
    /// `augur_feature_stream_unknown_features_total{stream, table}`: feature values applied that
    /// no scene's spec reads from that table (the name is logged, never a label: it comes from
    /// the message).
    pub unknown_features: Family<TableLabels, Counter>,
    /// `augur_feature_stream_lag_messages{stream, partition}`: messages behind the partition's
    /// end, as of the last batch or the last periodic check.
    pub lag: Family<PartitionLabels, Gauge>,
    /// `augur_feature_stream_freshness_seconds{stream, path}`: update event time → servable.
    pub freshness: Family<FreshnessLabels, Histogram>,
    /// `augur_feature_stream_write_errors_total{stream}`: failed store writes (retried; the
    /// offsets wait).
    pub write_errors: Family<StreamLabels, Counter>,
    /// `augur_feature_stream_consumer_errors_total{stream}`: errors librdkafka reported while
    /// consuming (a broker outage shows here; serving goes on with the values held).
    pub consumer_errors: Family<StreamLabels, Counter>,
    /// `augur_feature_stream_resubscribes_total`: cache-invalidation subscriptions re-established
    /// (each drops the local cache).
    pub resubscribes: Counter,
}

impl Default for StreamMetrics {
    fn default() -> Self {
        StreamMetrics {
            updates: Family::default(),
            bad_messages: Family::default(),
            unknown_features: Family::default(),
            lag: Family::default(),
            freshness: Family::new_with_constructor(|| Histogram::new(freshness_buckets())),
            write_errors: Family::default(),
            consumer_errors: Family::default(),
            resubscribes: Counter::default(),
        }
    }
}

impl ModuleMetrics for StreamMetrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("feature_stream");
        r.register("updates", "Feature updates consumed, by result (applied or stale)", self.updates.clone());
        r.register("bad_messages", "Messages skipped and dead-lettered, by reason", self.bad_messages.clone());
        r.register(
            "unknown_features",
            "Feature values applied that no scene's spec reads from their table",
            self.unknown_features.clone(),
        );
        r.register("lag_messages", "Messages behind the end of each partition", self.lag.clone());
        r.register("freshness_seconds", "Update event time to servable", self.freshness.clone());
        r.register("write_errors", "Failed feature store writes (retried)", self.write_errors.clone());
        r.register("consumer_errors", "Errors reported by the Kafka consumer", self.consumer_errors.clone());
        r.register("resubscribes", "Cache-invalidation subscriptions re-established", self.resubscribes.clone());
    }
}
