//! `[samples.quality]`: the window and the bounds of online quality per model version
//! ([`crate::quality`]). Nested under `[samples]` because it is computed from the label join
//! and runs only when sample logging does.

use serde::Deserialize;

use crate::validate::{Invalid, in_range, invalid};

/// `[samples.quality]`: online impressions, CTR, calibration, log loss and AUC per (scene,
/// model, version), over a sliding window of `buckets` x `bucket_s` seconds of emitted samples.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Off: no `augur_quality_*` metric, nothing on the status page or in ListModels.
    #[serde(default = "default_quality_enabled")]
    pub enabled: bool,
    /// The event type that makes a sample positive (CTR, log loss, AUC). A known event type.
    #[serde(default = "default_positive_event")]
    pub positive_event: String,
    /// Width of one window bucket, in s: the window moves by this step.
    #[serde(default = "default_bucket_s")]
    pub bucket_s: u64,
    /// Buckets in the window: the numbers cover the last `buckets x bucket_s` seconds.
    #[serde(default = "default_buckets")]
    pub buckets: usize,
    /// Score bins of the AUC histograms (uniform in log-odds over [-10, 10]): more bins, a
    /// smaller AUC error bound, `bins x buckets x 8` bytes per tracked version.
    #[serde(default = "default_bins")]
    pub bins: usize,
    /// Versions tracked per scene at most; a new one evicts the version whose last sample is
    /// oldest (counted in `augur_quality_evicted_versions_total`).
    #[serde(default = "default_max_versions")]
    pub max_versions: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            enabled: default_quality_enabled(),
            positive_event: default_positive_event(),
            bucket_s: default_bucket_s(),
            buckets: default_buckets(),
            bins: default_bins(),
            max_versions: default_max_versions(),
        }
    }
}

const fn default_quality_enabled() -> bool {
    true
}

fn default_positive_event() -> String {
    "click".to_owned()
}

const fn default_bucket_s() -> u64 {
    300
}

const fn default_buckets() -> usize {
    12
}

const fn default_bins() -> usize {
    2048
}

const fn default_max_versions() -> usize {
    4
}

/// Memory one tracked version's histograms may take at most (`bins x buckets x 8` bytes).
const MAX_VERSION_BYTES: usize = 64 << 20;

impl QualityConfig {
    /// Checks the bounds; `is_event_type` says which event types the join accepts.
    pub fn validate(&self, is_event_type: impl Fn(&str) -> bool) -> Result<(), Invalid> {
        if !is_event_type(&self.positive_event) {
            return Err(invalid(
                "samples.quality.positive_event",
                &format!("`{}` is not a known event type (add it to samples.join.event_types)", self.positive_event),
            ));
        }
        in_range("samples.quality.bucket_s", self.bucket_s as usize, 1, 86_400)?;
        in_range("samples.quality.buckets", self.buckets, 1, 1440)?;
        in_range("samples.quality.bins", self.bins, 16, 65_536)?;
        in_range("samples.quality.max_versions", self.max_versions, 1, 64)?;
        if self.bins * self.buckets * 8 > MAX_VERSION_BYTES {
            return Err(invalid(
                "samples.quality.bins",
                &format!(
                    "bins x buckets x 8 = {} bytes per version, more than {MAX_VERSION_BYTES}",
                    self.bins * self.buckets * 8
                ),
            ));
        }
        Ok(())
    }

    /// The window's length in ms.
    pub fn window_ms(&self) -> i64 {
        self.bucket_s as i64 * 1000 * self.buckets as i64
    }
}
