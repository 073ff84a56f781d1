//! The model control plane's metrics: `augur_model_*` (rescans, loads, rejections, the loaded
//! versions, reloads by strategy and the calls refused during a release-first one, bucket polls
//! and refusals).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::{ModelLabels, ModuleMetrics, VersionLabels};

/// `{model, outcome}` of a bucket poll.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourcePollLabels {
    /// Repository name.
    pub model: String,
    /// `not_modified`, `changed`, `missing` (no `LATEST`) or `error`.
    pub outcome: String,
}

/// `{model, reason}` of a bucket version refused before loading.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceRejectLabels {
    /// Repository name.
    pub model: String,
    /// `no_marker`, `bad_marker`, `missing_file`, `size`, `checksum` or `too_large`.
    pub reason: String,
}

/// `{model, strategy}` of a reload.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// Repository name.
    pub model: String,
    /// `overlap` (new version loaded beside the old) or `release_first` (old one freed first).
    pub strategy: String,
}

/// Model repository metrics.
#[derive(Debug, Clone, Default)]
pub struct ModelMetrics {
    /// `augur_model_rescans_total{model}`.
    pub rescans: Family<ModelLabels, Counter>,
    /// `augur_model_loads_total{model}`: versions loaded, validated and warmed up.
    pub loads: Family<ModelLabels, Counter>,
    /// `augur_model_rejected_total{model}`: versions (or model.yaml) refused.
    pub rejected: Family<ModelLabels, Counter>,
    /// `augur_model_unloads_total{model}`.
    pub unloads: Family<ModelLabels, Counter>,
    /// `augur_model_reloads_total{model, strategy}`: a version loaded while others served, by
    /// how (`model.reload`; release_first counts as overlap when nothing had to be released).
    pub reloads: Family<ReloadLabels, Counter>,
    /// `augur_model_reload_refused_total{model}`: Predict calls answered UNAVAILABLE because a
    /// release-first reload had freed the old version and the new one was not warm yet.
    pub reload_refused: Family<ModelLabels, Counter>,
    /// `augur_model_version_info{model, version}`: 1 while the version is loaded.
    pub version_info: Family<VersionLabels, Gauge>,
    /// `augur_model_source_polls_total{model, outcome}`: polls of a bucket's `LATEST`.
    pub source_polls: Family<SourcePollLabels, Counter>,
    /// `augur_model_source_rejected_total{model, reason}`: bucket versions refused before
    /// loading (no marker, bad checksum, ...); the loaded versions keep serving.
    pub source_rejected: Family<SourceRejectLabels, Counter>,
}

impl ModuleMetrics for ModelMetrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("model");
        r.register("rescans", "Model repository rescans", self.rescans.clone());
        r.register("loads", "Model versions loaded, validated and warmed up", self.loads.clone());
        r.register("rejected", "Model versions or model.yaml refused", self.rejected.clone());
        r.register("unloads", "Model versions unloaded", self.unloads.clone());
        r.register("reloads", "Model reloads by strategy (overlap or release_first)", self.reloads.clone());
        r.register(
            "reload_refused",
            "Predict calls refused while a release-first reload had no version to serve",
            self.reload_refused.clone(),
        );
        r.register("version_info", "1 for each loaded model version", self.version_info.clone());
        r.register("source_polls", "Polls of a model bucket's LATEST by outcome", self.source_polls.clone());
        r.register(
            "source_rejected",
            "Bucket model versions refused before loading, by reason",
            self.source_rejected.clone(),
        );
    }
}
