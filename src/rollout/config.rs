//! `scenes[].rollout`: a scene's rollout policy ([`crate::rollout`]). In the scene's config
//! rather than in `model.yaml`: the thresholds are the scene's risk tolerance, not a property of
//! one model artifact; they are validated at start-up naming the key, and they are the same on
//! every replica because the replicas are deployed from one config. What changes at run time —
//! which version is stable, what was decided — lives in the model repository, shared.

use serde::Deserialize;

use crate::validate::{Invalid, in_range, invalid};

/// How a scene rolls out a new model version: `canary_share` of users go to it until the
/// decider promotes it (it becomes stable) or rolls it back (it is refused), docs/quality.md.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Share of users (sticky by hashed user id) routed to the newest undecided version.
    #[serde(default = "default_canary_share")]
    pub canary_share: f64,
    /// Impressions each arm (stable and canary) needs in the window before any decision: below
    /// it the decider waits, whatever the numbers say.
    #[serde(default = "default_min_impressions")]
    pub min_impressions: u64,
    /// How much lower than the stable's the canary's online AUC may be and still be promoted
    /// (the non-inferiority margin of the test).
    #[serde(default = "default_max_auc_drop")]
    pub max_auc_drop: f64,
    /// How far the canary's calibration (mean score / observed rate) may be from 1; a canary
    /// shown to be further off is rolled back.
    #[serde(default = "default_max_calibration_error")]
    pub max_calibration_error: f64,
    /// The canary serves this long before the final decision (promote or roll back); the arms
    /// are compared over the last `decision_window_s` (at most since the canary started). A
    /// clearly worse canary is rolled back before. At most the quality window
    /// (`samples.quality.bucket_s x buckets`).
    #[serde(default = "default_decision_window_s")]
    pub decision_window_s: u64,
    /// How often the decider looks at the numbers.
    #[serde(default = "default_check_interval_ms")]
    pub check_interval_ms: u64,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            canary_share: default_canary_share(),
            min_impressions: default_min_impressions(),
            max_auc_drop: default_max_auc_drop(),
            max_calibration_error: default_max_calibration_error(),
            decision_window_s: default_decision_window_s(),
            check_interval_ms: default_check_interval_ms(),
        }
    }
}

const fn default_canary_share() -> f64 {
    0.1
}

const fn default_min_impressions() -> u64 {
    200_000
}

const fn default_max_auc_drop() -> f64 {
    0.01
}

const fn default_max_calibration_error() -> f64 {
    0.2
}

const fn default_decision_window_s() -> u64 {
    3600
}

const fn default_check_interval_ms() -> u64 {
    10_000
}

impl RolloutConfig {
    /// Checks the values serde cannot; `key` is the dotted path of this table.
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if !(self.canary_share > 0.0 && self.canary_share < 1.0) {
            return Err(invalid(
                &format!("{key}.canary_share"),
                &format!("must be above 0 and below 1 (got {})", self.canary_share),
            ));
        }
        if self.min_impressions == 0 {
            return Err(invalid(&format!("{key}.min_impressions"), "must be at least 1"));
        }
        if !(0.0..=0.5).contains(&self.max_auc_drop) {
            return Err(invalid(
                &format!("{key}.max_auc_drop"),
                &format!("must be between 0 and 0.5 (got {})", self.max_auc_drop),
            ));
        }
        if !(self.max_calibration_error > 0.0 && self.max_calibration_error <= 10.0) {
            return Err(invalid(
                &format!("{key}.max_calibration_error"),
                &format!("must be above 0 and at most 10 (got {})", self.max_calibration_error),
            ));
        }
        in_range(&format!("{key}.decision_window_s"), self.decision_window_s as usize, 1, 7 * 86_400)?;
        in_range(&format!("{key}.check_interval_ms"), self.check_interval_ms as usize, 10, 3_600_000)?;
        Ok(())
    }

    /// The decision window in ms.
    pub fn window_ms(&self) -> i64 {
        self.decision_window_s as i64 * 1000
    }
}
