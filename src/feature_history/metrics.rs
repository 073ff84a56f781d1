//! Changelog metrics: `augur_feature_history_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::ModuleMetrics;

/// `{source}`: which writer (`stream:<name>` or `load`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `stream:<feature_streams[].name>` or `load`.
    pub source: String,
}

/// `{source, op}` of a failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The writer.
    pub source: String,
    /// `write` (creating, encoding or committing a part; the changes stay pending and the
    /// commit is retried) or `clean` (removing stale temporary parts at start-up; the writer
    /// starts anyway).
    pub op: String,
}

/// Changelog metrics.
#[derive(Debug, Clone, Default)]
pub struct HistoryMetrics {
    /// `augur_feature_history_parts_total{source}`: parts committed.
    pub parts: Family<SourceLabels, Counter>,
    /// `augur_feature_history_rows_total{source}`: changes committed.
    pub rows: Family<SourceLabels, Counter>,
    /// `augur_feature_history_bytes_total{source}`: bytes of the parts committed.
    pub bytes: Family<SourceLabels, Counter>,
    /// `augur_feature_history_failures_total{source, op}`.
    pub failures: Family<FailureLabels, Counter>,
    /// `augur_feature_history_refused_rows_total{source}`: changes refused because the writer
    /// already held `max_uncommitted_rows` (the caller waits and retries).
    pub refused_rows: Family<SourceLabels, Counter>,
    /// `augur_feature_history_pending_rows{source}`: changes held, not yet in a committed part.
    pub pending_rows: Family<SourceLabels, Gauge>,
    /// `augur_feature_history_stale_temps_removed_total{source}`: temporary parts a killed writer
    /// left, removed by this writer at start-up (`stale_temp_after_s`).
    pub stale_temps_removed: Family<SourceLabels, Counter>,
}

impl ModuleMetrics for HistoryMetrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("feature_history");
        r.register("parts", "Changelog parts committed", self.parts.clone());
        r.register("rows", "Changes committed to the changelog", self.rows.clone());
        r.register("bytes", "Bytes of changelog parts committed", self.bytes.clone());
        r.register("failures", "Failed changelog writes (the changes stay pending)", self.failures.clone());
        r.register("refused_rows", "Changes refused: the writer held max_uncommitted_rows", self.refused_rows.clone());
        r.register("pending_rows", "Changes held, not yet in a committed part", self.pending_rows.clone());
        r.register(
            "stale_temps_removed",
            "Temporary parts of killed writers removed at start-up",
            self.stale_temps_removed.clone(),
        );
    }
}
