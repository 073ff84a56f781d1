//! The batcher's and inference threads' metrics, per model version: `augur_batch_*`,
//! `augur_inference_panics_total` and `augur_inference_cpu_seconds_total`.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::telemetry::{ModelLabels, ModuleMetrics, SceneVersionLabels, VersionLabels};

/// Rows per model run: powers of two up to the largest `max_batch_rows`.
fn batch_rows_buckets() -> impl Iterator<Item = f64> {
    (0..=16).map(|i| f64::from(1u32 << i))
}

/// Batcher and inference metrics, per model version.
#[derive(Debug, Clone)]
pub struct BatchMetrics {
    /// `augur_batch_runs_total{model, version}`: model runs.
    pub runs: Family<VersionLabels, Counter>,
    /// `augur_batch_rows_total{model, version}`: rows scored.
    pub rows: Family<VersionLabels, Counter>,
    /// `augur_batch_size_rows{model}`: rows per model run (is dynamic batching working?).
    pub size: Family<ModelLabels, Histogram>,
    /// `augur_batch_expired_total{model, version}`: chunks whose deadline passed in the queue.
    pub expired: Family<VersionLabels, Counter>,
    /// `augur_batch_rejected_total{model, version}`: chunks refused by a full queue.
    pub rejected: Family<VersionLabels, Counter>,
    /// `augur_batch_queue_depth{model, version}`: chunks waiting for an inference thread.
    pub queue_depth: Family<VersionLabels, Gauge>,
    /// `augur_inference_panics_total{model, version}`: model runs that panicked (thread replaced).
    pub panics: Family<VersionLabels, Counter>,
    /// `augur_inference_cpu_seconds_total{scene, model, version}`: CPU time of the inference
    /// threads inside model runs (merging the batch included): what a version costs.
    pub cpu: Family<SceneVersionLabels, Counter<f64, AtomicU64>>,
}

impl Default for BatchMetrics {
    fn default() -> Self {
        BatchMetrics {
            runs: Family::default(),
            rows: Family::default(),
            size: Family::new_with_constructor(|| Histogram::new(batch_rows_buckets())),
            expired: Family::default(),
            rejected: Family::default(),
            queue_depth: Family::default(),
            panics: Family::default(),
            cpu: Family::default(),
        }
    }
}

impl ModuleMetrics for BatchMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("batch_runs", "Model runs", self.runs.clone());
        r.register("batch_rows", "Rows scored", self.rows.clone());
        r.register("batch_size_rows", "Rows per model run", self.size.clone());
        r.register("batch_expired", "Queued chunks whose deadline passed", self.expired.clone());
        r.register("batch_rejected", "Chunks refused by a full inference queue", self.rejected.clone());
        r.register("batch_queue_depth", "Chunks waiting for an inference thread", self.queue_depth.clone());
        r.register(
            "inference_panics",
            "Model runs that panicked; the thread's model was reopened",
            self.panics.clone(),
        );
        r.register(
            "inference_cpu_seconds",
            "CPU time of the inference threads in model runs (thread CPU clock; with model.intra_op_threads > 1, ORT's pool threads are not in it)",
            self.cpu.clone(),
        );
    }
}
