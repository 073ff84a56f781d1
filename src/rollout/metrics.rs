//! The decider's metrics: `augur_canary_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::telemetry::ModuleMetrics;

/// `{scene, model, decision, by}` of a recorded decision.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Scene.
    pub scene: String,
    /// Repository name.
    pub model: String,
    /// `promote`, `rollback`, `hold` or `resume`.
    pub decision: String,
    /// `auto` (this replica's decider) or `operator` (ModelAdmin.DecideCanary on this replica).
    pub by: String,
}

/// `{scene, model, outcome}` of one look at a canary.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvaluationLabels {
    /// Scene.
    pub scene: String,
    /// Repository name.
    pub model: String,
    /// `wait`, `promote` or `rollback`.
    pub outcome: String,
}

/// Rollout metrics.
#[derive(Debug, Clone, Default)]
pub struct RolloutMetrics {
    /// `augur_canary_decisions_total{scene, model, decision, by}`: decisions this replica
    /// recorded in the model repository (a replica that follows another's decision does not
    /// count it: sum over replicas for the fleet).
    pub decisions: Family<DecisionLabels, Counter>,
    /// `augur_canary_evaluations_total{scene, model, outcome}`: the decider's looks.
    pub evaluations: Family<EvaluationLabels, Counter>,
}

impl ModuleMetrics for RolloutMetrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("canary");
        r.register("decisions", "Canary decisions recorded by this replica", self.decisions.clone());
        r.register("evaluations", "Looks of the canary decider at a canary, by outcome", self.evaluations.clone());
    }
}
