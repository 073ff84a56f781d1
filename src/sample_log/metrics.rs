//! The sample pipeline's metrics: `augur_samples_*`, registered only when sample logging is on
//! (the pipeline asks for them), so a scrape and the status page say "off" rather than show zeros.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::{ModuleMetrics, SceneLabels};

/// `{reason}` of a refused or lost sample-pipeline item.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Bounded set chosen by the caller (`queue_full`, `join_store_full`, `log_full`, ...).
    pub reason: String,
}

/// `{type, result}` of a reported event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// Event type (built-in or configured: bounded); `invalid` for rejected unknown types.
    pub r#type: String,
    /// `accepted`, `duplicate`, `orphan` or `rejected`.
    pub result: String,
}

/// `{kind}` of an emitted log record.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordKindLabels {
    /// `sample`, `correction` or `orphan`.
    pub kind: String,
}

/// `{sink}`: one configured sample sink.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// Sink name from the config.
    pub sink: String,
}

/// `{sink, reason}` of a record a sink refused for good.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// Sink name from the config.
    pub sink: String,
    /// Why the sink refused it (`too_large`, `invalid`: bounded by the sinks).
    pub reason: String,
}

/// The sample pipeline (`src/sample_log/`): snapshots, joins, the segment log and its sinks.
#[derive(Debug, Clone, Default)]
pub struct SampleMetrics {
    /// Snapshots queued for the joiner, by scene.
    pub snapshots: Family<SceneLabels, Counter>,
    /// Snapshots, records or labels lost to a bound or a failure, by reason.
    pub dropped: Family<ReasonLabels, Counter>,
    /// Snapshots waiting in the queue between Predict and the joiner.
    pub queue_depth: Gauge,
    /// Reported events by type and result.
    pub events: Family<EventLabels, Counter>,
    /// Predictions waiting for their labels in the join store (this process's view).
    pub pending: Gauge,
    /// Bytes the in-memory join store holds.
    pub pending_bytes: Gauge,
    /// `samples.join.store.max_bytes` of the in-memory store (0 with Redis): the fill level is
    /// `pending_bytes / join_store_max_bytes`, alerted on before snapshots are refused.
    pub join_store_max_bytes: Gauge,
    /// Records appended to the segment log, by kind.
    pub emitted: Family<RecordKindLabels, Counter>,
    /// Candidates that left the join store with their prediction's window without an event
    /// (never impressed; `emit_unimpressed` off): the one way a held candidate yields no record.
    pub expired_unlabelled: Counter,
    /// Claimed candidates found in doubt after a crash (claimed, not confirmed), by outcome:
    /// `in_log` (their sample made it) or `emitted_again` (it did not: due again); with the
    /// Redis store, `lease_expired` (a replica's claim never confirmed: claimed again).
    pub recovered: Family<ReasonLabels, Counter>,
    /// Bytes of segment files on disk.
    pub log_disk_bytes: Gauge,
    /// Last sequence fsynced: what a power loss cannot take.
    pub log_durable_sequence: Gauge,
    /// Last sequence written.
    pub log_sequence: Gauge,
    /// Last sequence written to the in-memory join store's journal.
    pub journal_sequence: Gauge,
    /// Last journal sequence fsynced: pending joins up to it survive a crash.
    pub journal_durable_sequence: Gauge,
    /// Corrupt records skipped when reading the log (bad checksum, torn tail, impossible length).
    pub log_corrupt: Counter,
    /// Bytes of torn tail truncated when the log was opened.
    pub log_truncated_bytes: Counter,
    /// Records acknowledged by each sink.
    pub sink_delivered: Family<SinkLabels, Counter>,
    /// Failed delivery attempts per sink (retried).
    pub sink_errors: Family<SinkLabels, Counter>,
    /// Records written to the log but not yet acknowledged by the sink.
    pub sink_lag: Family<SinkLabels, Gauge>,
    /// 1 when the sink's last word (start-up health check, then each delivery attempt) was good.
    pub sink_up: Family<SinkLabels, Gauge>,
    /// Start-up health checks that failed (the sink is unreachable or misconfigured).
    pub sink_healthcheck_failures: Family<SinkLabels, Counter>,
    /// Records a sink refused for good, kept in its dead-letter log instead of retried forever.
    pub dead_letter: Family<DeadLetterLabels, Counter>,
    /// Parquet sink: part files committed (renamed into place).
    pub parquet_files: Family<SinkLabels, Counter>,
    /// Parquet sink: rows in committed parts.
    pub parquet_rows: Family<SinkLabels, Counter>,
    /// Parquet sink: bytes of committed parts.
    pub parquet_bytes: Family<SinkLabels, Counter>,
    /// Parquet sink: hours closed (`_SUCCESS` written).
    pub parquet_hours_closed: Family<SinkLabels, Counter>,
    /// Parquet sink: rows written to an hour already closed (a new part after its `_SUCCESS`).
    pub parquet_late_rows: Family<SinkLabels, Counter>,
    /// Parquet sink: records not written, by reason (`orphan`: orphans are not training
    /// samples; `committed`: re-delivered after a restart, already in a committed part).
    pub parquet_skipped: Family<DeadLetterLabels, Counter>,
    /// Parquet sink: parts open (being written, not yet committed).
    pub parquet_open_files: Family<SinkLabels, Gauge>,
    /// Online quality per model version (`augur_quality_*`), fed by the joiner with what it wrote.
    pub quality: crate::quality::Quality,
}

impl ModuleMetrics for SampleMetrics {
    fn register(&self, r: &mut Registry) {
        self.quality.register(r);
        let r = r.sub_registry_with_prefix("samples");
        r.register("snapshots", "Prediction snapshots queued for the label join, by scene", self.snapshots.clone());
        r.register(
            "dropped",
            "Snapshots, labels or records lost to a bound or failure, by reason",
            self.dropped.clone(),
        );
        r.register("queue_depth", "Snapshots waiting between Predict and the joiner", self.queue_depth.clone());
        r.register("events", "Reported events by type and result", self.events.clone());
        r.register("pending", "Predictions waiting for labels in the join store", self.pending.clone());
        r.register("pending_bytes", "Bytes held by the in-memory join store", self.pending_bytes.clone());
        r.register(
            "join_store_max_bytes",
            "Bound of the in-memory join store (samples.join.store.max_bytes; 0 with Redis)",
            self.join_store_max_bytes.clone(),
        );
        r.register("emitted", "Records appended to the sample log, by kind", self.emitted.clone());
        r.register(
            "expired_unlabelled",
            "Held candidates that left with their prediction's join window without any event",
            self.expired_unlabelled.clone(),
        );
        r.register(
            "recovered_claims",
            "Claims in doubt after a crash, by outcome (in_log | emitted_again | lease_expired)",
            self.recovered.clone(),
        );
        r.register("log_disk_bytes", "Bytes of sample-log segments on disk", self.log_disk_bytes.clone());
        r.register("log_durable_sequence", "Last sample-log sequence fsynced", self.log_durable_sequence.clone());
        r.register("log_sequence", "Last sample-log sequence written", self.log_sequence.clone());
        r.register("journal_sequence", "Last join-journal sequence written", self.journal_sequence.clone());
        r.register(
            "journal_durable_sequence",
            "Last join-journal sequence fsynced (pending joins up to it survive a crash)",
            self.journal_durable_sequence.clone(),
        );
        r.register("log_corrupt_records", "Corrupt sample-log records detected and skipped", self.log_corrupt.clone());
        r.register(
            "log_truncated_bytes",
            "Torn sample-log tail bytes truncated at open",
            self.log_truncated_bytes.clone(),
        );
        r.register("sink_delivered", "Records acknowledged by a sink", self.sink_delivered.clone());
        r.register("sink_errors", "Failed sink delivery attempts (retried)", self.sink_errors.clone());
        r.register("sink_lag_records", "Records in the log not yet acknowledged by the sink", self.sink_lag.clone());
        r.register("sink_up", "1 if the sink's health check or last delivery attempt succeeded", self.sink_up.clone());
        r.register(
            "sink_healthcheck_failures",
            "Failed start-up health checks of a sink",
            self.sink_healthcheck_failures.clone(),
        );
        r.register("parquet_files", "Parquet part files committed by a sink", self.parquet_files.clone());
        r.register("parquet_rows", "Rows in committed Parquet parts", self.parquet_rows.clone());
        r.register("parquet_bytes", "Bytes of committed Parquet parts", self.parquet_bytes.clone());
        r.register(
            "parquet_hours_closed",
            "Hours a Parquet sink closed (_SUCCESS written)",
            self.parquet_hours_closed.clone(),
        );
        r.register(
            "parquet_late_rows",
            "Rows a Parquet sink wrote into an hour already closed",
            self.parquet_late_rows.clone(),
        );
        r.register(
            "parquet_skipped",
            "Records a Parquet sink did not write, by reason (orphan | committed)",
            self.parquet_skipped.clone(),
        );
        r.register("parquet_open_files", "Parquet parts open, not yet committed", self.parquet_open_files.clone());
        r.register(
            "dead_letter",
            "Records a sink refused for good, kept in <log dir>/dead_letter/<sink>/, by reason",
            self.dead_letter.clone(),
        );
    }
}
