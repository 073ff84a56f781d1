//! The request path's metrics, per scene: feature fallbacks and candidates scored (the stage
//! latencies are [`crate::telemetry::StageMetrics`]: the batcher records the queue stage too).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::telemetry::{ModuleMetrics, SceneLabels};

/// `{scene, feature, reason}` of a fallback.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    /// Scene.
    pub scene: String,
    /// Feature name from the spec.
    pub feature: String,
    /// `missing_row`, `missing_field`, `parse_error`, `timeout` or `store_error`.
    pub reason: String,
}

/// The request path's metrics, per scene.
#[derive(Debug, Clone, Default)]
pub struct PathMetrics {
    /// `augur_feature_fallbacks_total{scene, feature, reason}`: rows served from a default.
    pub fallbacks: Family<FallbackLabels, Counter>,
    /// `augur_candidates_scored_total{scene}`: candidates answered with a score by Predict
    /// (requests count calls; this counts the rows they carried).
    pub scored: Family<SceneLabels, Counter>,
}

impl ModuleMetrics for PathMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("feature_fallbacks", "Rows served from a feature default, by reason", self.fallbacks.clone());
        r.register("candidates_scored", "Candidates answered with a score by Predict", self.scored.clone());
    }
}
