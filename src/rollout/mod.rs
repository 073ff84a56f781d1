//! The canary that decides, beside the control plane: for a scene with a rollout policy
//! (`scenes[].rollout`, [`config`]) the repository routes `canary_share` of users to the newest
//! undecided version ([`crate::repository::rollout`]), and the decider here looks every
//! `check_interval_ms` at both versions' online quality over the same window (the label join's
//! [`crate::quality`] tracker), tests canary against stable ([`stats`]) and records `promote`
//! (the canary becomes stable) or `rollback` (it is refused, share 0) in the model repository.
//!
//! Several replicas: the decision is shared state, not a replica's memory. Each replica's decider
//! judges its own traffic and records its verdict create-if-absent in the version's directory;
//! the first replica to reach a verdict decides, every replica (it included) routes by the
//! recorded decision once its watcher rescans (with a bucket source, once its poller has copied
//! the decision from the bucket). An operator overrides through
//! `ModelAdmin.DecideCanary` ([`operator`]): promote, roll back, hold (the decider leaves the
//! version alone) or resume (the decision is removed and the decider looks again).
//!
//! Every decision is logged with its numbers and counted in `augur_canary_decisions_total`
//! ([`metrics`]); each look in `augur_canary_evaluations_total`.

pub mod config;
pub mod metrics;
pub mod stats;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::RolloutConfig;
use self::metrics::{DecisionLabels, EvaluationLabels, RolloutMetrics};
use self::stats::{Outcome, assess};
use crate::quality::estimator::Accumulator;
use crate::quality::{Quality, VersionKey};
use crate::repository::rollout::{Decision, Evaluation, Verdict, Written, replica_name};
use crate::repository::{CanaryError, Repository};
use crate::telemetry::Metrics;

/// What an operator asks for a version (`ModelAdmin.DecideCanary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Make it stable now.
    Promote,
    /// Refuse it now.
    Rollback,
    /// Keep it canary; the decider leaves it alone.
    Hold,
    /// Remove its decision: the decider (and the routing) treat it as new again.
    Resume,
}

impl Action {
    /// Lower-case name (the `decision` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::Hold => "hold",
            Action::Resume => "resume",
        }
    }
}

/// One scene's decider.
#[derive(Debug, Clone)]
pub struct Decider {
    scene: String,
    repo: Arc<Repository>,
    policy: RolloutConfig,
    quality: Quality,
    metrics: RolloutMetrics,
}

impl Decider {
    /// A decider for `repo` (serving `scene`) under `policy`, reading `quality`.
    pub fn new(scene: &str, repo: Arc<Repository>, policy: RolloutConfig, quality: Quality, metrics: &Metrics) -> Self {
        Decider { scene: scene.to_owned(), repo, policy, quality, metrics: metrics.of::<RolloutMetrics>() }
    }

    /// Looks every `check_interval_ms` until shutdown.
    pub fn spawn(self, tracker: &TaskTracker, shutdown: CancellationToken) {
        tracker.spawn(async move {
            let every = Duration::from_millis(self.policy.check_interval_ms);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                self.look(crate::quality::now_ms()).await;
            }
        });
    }

    /// One look at the canary, as of `now_ms`: records a decision when the test reaches one.
    /// Returns the look, `None` when there is no canary to judge (or it is held).
    pub async fn look(&self, now_ms: i64) -> Option<Evaluation> {
        let view = self.repo.rollout().await?;
        let (canary, _, since) = view.canary?;
        let stable = view.stable?;
        if view.decisions.get(&canary).is_some_and(|d| d.verdict == Verdict::Hold) {
            return None;
        }
        let from = since.max(now_ms - self.policy.window_ms());
        let final_look = now_ms - since >= self.policy.window_ms();
        let arm = |version: u64| {
            let key = VersionKey {
                scene: self.scene.clone(),
                model: self.repo.name().to_owned(),
                version: version.to_string(),
            };
            let bins = self.quality.config().map_or(16, |c| c.bins);
            self.quality.accumulated(&key, from, now_ms).unwrap_or_else(|| Accumulator::new(bins))
        };
        let assessment = assess(&self.policy, &arm(stable), &arm(canary), final_look, (from, now_ms));
        let evaluation = Evaluation {
            at_ms: now_ms,
            version: canary,
            stable,
            outcome: assessment.outcome.as_str().to_owned(),
            reason: assessment.reason.clone(),
            comparison: assessment.comparison.clone(),
        };
        self.repo.set_evaluation(evaluation.clone());
        let labels = EvaluationLabels {
            scene: self.scene.clone(),
            model: self.repo.name().to_owned(),
            outcome: evaluation.outcome.clone(),
        };
        self.metrics.evaluations.get_or_create(&labels).inc();
        let verdict = match assessment.outcome {
            Outcome::Wait => {
                tracing::debug!(scene = %self.scene, model = %self.repo.name(), canary, stable, reason = %assessment.reason, "canary: waiting");
                return Some(evaluation);
            }
            Outcome::Promote => Verdict::Promote,
            Outcome::Rollback => Verdict::Rollback,
        };
        let decision = Decision {
            version: canary,
            verdict,
            by: "auto".into(),
            at_ms: now_ms,
            stable: Some(stable),
            reason: assessment.reason,
            replica: replica_name(),
            comparison: Some(assessment.comparison),
        };
        match self.repo.decide(&decision, false).await {
            Ok(Written::Recorded) => self.recorded(&decision),
            Ok(Written::AlreadyDecided(theirs)) => tracing::info!(
                scene = %self.scene, model = %self.repo.name(), version = canary,
                ours = verdict.as_str(), theirs = theirs.verdict.as_str(), by = %theirs.by, replica = %theirs.replica,
                "canary: already decided elsewhere; following the recorded decision"
            ),
            Err(e) => tracing::warn!(
                scene = %self.scene, model = %self.repo.name(), version = canary, error = %e,
                "canary: cannot record the decision; will look again"
            ),
        }
        Some(evaluation)
    }

    /// Logs and counts a decision this replica recorded: the one place both happen.
    fn recorded(&self, d: &Decision) {
        let labels = DecisionLabels {
            scene: self.scene.clone(),
            model: self.repo.name().to_owned(),
            decision: d.verdict.as_str().to_owned(),
            by: d.by.clone(),
        };
        self.metrics.decisions.get_or_create(&labels).inc();
        let c = d.comparison.clone().unwrap_or_default();
        tracing::warn!(
            scene = %self.scene, model = %self.repo.name(), version = d.version, stable = ?d.stable,
            decision = d.verdict.as_str(), by = %d.by,
            stable_impressions = c.stable_impressions, canary_impressions = c.canary_impressions,
            stable_auc = ?c.stable_auc, canary_auc = ?c.canary_auc, auc_difference = ?c.auc_difference,
            standard_error = ?c.standard_error, z = ?c.z, canary_calibration = ?c.canary_calibration,
            reason = %d.reason,
            "canary decision recorded"
        );
    }
}

/// An operator's decision on `version` of `repo` (scene `scene`), recorded in the repository
/// (replacing any decision), logged and counted.
pub async fn operator(
    scene: &str,
    repo: &Repository,
    version: u64,
    action: Action,
    reason: &str,
    metrics: &Metrics,
) -> Result<(), CanaryError> {
    let stable = repo.rollout().await.ok_or_else(|| CanaryError::NoPolicy { model: repo.name().to_owned() })?.stable;
    let verdict = match action {
        Action::Promote => Verdict::Promote,
        Action::Rollback => Verdict::Rollback,
        Action::Hold => Verdict::Hold,
        Action::Resume => {
            repo.clear_decision(version).await?;
            count_operator(scene, repo, version, action, reason, metrics);
            return Ok(());
        }
    };
    let decision = Decision {
        version,
        verdict,
        by: "operator".into(),
        at_ms: crate::quality::now_ms(),
        stable,
        reason: if reason.is_empty() { "operator".into() } else { reason.to_owned() },
        replica: replica_name(),
        comparison: None,
    };
    repo.decide(&decision, true).await?;
    count_operator(scene, repo, version, action, reason, metrics);
    Ok(())
}

fn count_operator(scene: &str, repo: &Repository, version: u64, action: Action, reason: &str, metrics: &Metrics) {
    let labels = DecisionLabels {
        scene: scene.to_owned(),
        model: repo.name().to_owned(),
        decision: action.as_str().to_owned(),
        by: "operator".into(),
    };
    metrics.of::<RolloutMetrics>().decisions.get_or_create(&labels).inc();
    tracing::warn!(scene, model = %repo.name(), version, decision = action.as_str(), reason, "canary decision by operator");
}
