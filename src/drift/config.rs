//! `[drift]`: how served feature values are sampled and windowed for the comparison with each
//! version's training reference ([`crate::drift`]).

use serde::Deserialize;

use crate::validate::{Invalid, in_range, invalid};

/// `[drift]`: per (scene, model, version, feature) the served fallback rate and the histogram of
/// served values in the reference's bins over a sliding window of `buckets x bucket_s` seconds,
/// compared with the training reference (PSI).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// Off: nothing observed, no `augur_drift_*` metric, the status page says so.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Observe one Predict request in this many (every candidate row of an observed request
    /// counts): the cost on the request path is one atomic increment for the others.
    #[serde(default = "default_sample_every")]
    pub sample_every: u64,
    /// Width of one window bucket, in s: the window moves by this step.
    #[serde(default = "default_bucket_s")]
    pub bucket_s: u64,
    /// Buckets in the window: the numbers cover the last `buckets x bucket_s` seconds.
    #[serde(default = "default_buckets")]
    pub buckets: usize,
    /// Observed rows a version needs in the window before its PSI is computed: fewer rows give a
    /// PSI dominated by sampling noise (about `(bins - 1) / rows` for an unshifted feature).
    #[serde(default = "default_min_rows")]
    pub min_rows: u64,
    /// PSI above which the status page flags a feature (the alert rule uses its own copy:
    /// deploy/prometheus/alerts.yml). 0.1-0.25 is the usual "moderate shift" band.
    #[serde(default = "default_psi_threshold")]
    pub psi_threshold: f64,
    /// Floor of a bin's share in the PSI, so an empty bin (served or reference) stays finite.
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Versions tracked per scene at most; a new one evicts the version observed least recently.
    #[serde(default = "default_max_versions")]
    pub max_versions: usize,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            enabled: default_enabled(),
            sample_every: default_sample_every(),
            bucket_s: default_bucket_s(),
            buckets: default_buckets(),
            min_rows: default_min_rows(),
            psi_threshold: default_psi_threshold(),
            epsilon: default_epsilon(),
            max_versions: default_max_versions(),
        }
    }
}

const fn default_enabled() -> bool {
    true
}

const fn default_sample_every() -> u64 {
    16
}

const fn default_bucket_s() -> u64 {
    60
}

const fn default_buckets() -> usize {
    30
}

const fn default_min_rows() -> u64 {
    1000
}

const fn default_psi_threshold() -> f64 {
    0.25
}

const fn default_epsilon() -> f64 {
    1e-4
}

const fn default_max_versions() -> usize {
    4
}

impl DriftConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("drift.sample_every", self.sample_every.min(usize::MAX as u64) as usize, 1, 1_000_000)?;
        in_range("drift.bucket_s", self.bucket_s.min(usize::MAX as u64) as usize, 1, 86_400)?;
        in_range("drift.buckets", self.buckets, 1, 1440)?;
        in_range("drift.max_versions", self.max_versions, 1, 64)?;
        if !(self.psi_threshold.is_finite() && self.psi_threshold > 0.0) {
            return Err(invalid("drift.psi_threshold", "must be a positive number"));
        }
        if !(self.epsilon > 0.0 && self.epsilon < 0.01) {
            return Err(invalid("drift.epsilon", "must be in (0, 0.01)"));
        }
        Ok(())
    }

    /// The window's length in ms.
    pub fn window_ms(&self) -> i64 {
        self.bucket_s as i64 * 1000 * self.buckets as i64
    }
}
