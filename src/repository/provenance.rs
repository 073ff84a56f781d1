//! What a version's completion marker ([`super::bucket::Marker`]) says about where the version
//! came from and how it compared when it was published: the publish gate's [`Evaluation`]
//! (written by `augur models publish`, `crate::cli::gate`) and the trainer's [`Lineage`].
//!
//! Both are optional fields of the marker, so markers written before them still load. Neither
//! denies unknown fields: a newer publisher may record more, and an older reader keeps what it
//! knows. `ModelAdmin.ListModels` and the status page show them for every loaded version, so a
//! served score can be traced to the run and the samples that made its model.

use serde::{Deserialize, Serialize};

/// What the publish gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The candidate is within the tolerances of the version `LATEST` named.
    Passed,
    /// The candidate is worse beyond a tolerance: only published with `--force` (then
    /// [`Evaluation::forced`] is set).
    Refused,
    /// No `LATEST` yet: nothing to compare with.
    FirstVersion,
    /// Too few held-out joined samples (or none) to compare on.
    NoSamples,
    /// `LATEST` names a version whose model could not be read: only published with `--force`.
    NoBaseline,
}

impl Decision {
    /// The word markers, `models list`, ListModels and the status page use.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Passed => "passed",
            Decision::Refused => "refused",
            Decision::FirstVersion => "first_version",
            Decision::NoSamples => "no_samples",
            Decision::NoBaseline => "no_baseline",
        }
    }
}

/// One model's offline numbers on the evaluation rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Exact AUC (ties half); absent when the rows hold one class only.
    pub auc: Option<f64>,
    /// Mean log loss, natural log, scores clamped as the online quality clamps them.
    pub log_loss: f64,
    /// Mean score.
    pub mean_score: f64,
    /// Mean score / observed positive rate (1 = calibrated); absent without a positive.
    pub calibration: Option<f64>,
}

/// How much worse than the baseline a candidate may be and still move `LATEST`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    /// Largest AUC drop (baseline - candidate).
    pub max_auc_drop: f64,
    /// Largest log loss rise (candidate - baseline).
    pub max_log_loss_rise: f64,
    /// Largest rise of the calibration error |calibration - 1| (candidate - baseline).
    pub max_calibration_error: f64,
}

/// The publish gate's evaluation of a version against the one `LATEST` named, on the same rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// What the gate decided.
    pub decision: Decision,
    /// Published with `--force` although the decision was a refusal.
    #[serde(default)]
    pub forced: bool,
    /// Each failed check with both numbers, or why nothing was compared.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The version `LATEST` named when the candidate was evaluated.
    #[serde(default)]
    pub baseline_version: Option<u64>,
    /// Joined samples (impressed, highest revision) both models scored.
    pub rows: u64,
    /// ... of which carry the positive event.
    pub positives: u64,
    /// The event type that made a row positive.
    pub positive_event: String,
    /// Prediction times of the first and last row, ms since the Unix epoch (0 without rows).
    pub window_start_ms: i64,
    /// See `window_start_ms`.
    pub window_end_ms: i64,
    /// The rows are at or after this time, the end of the candidate's training window (its
    /// lineage): held out from its training. Absent: the most recent rows were taken, which the
    /// candidate may have trained on.
    #[serde(default)]
    pub held_out_from_ms: Option<i64>,
    /// Where the samples were read (a sample-log directory).
    pub samples: String,
    /// The candidate's numbers.
    #[serde(default)]
    pub candidate: Option<Scores>,
    /// The baseline's numbers on the same rows.
    #[serde(default)]
    pub baseline: Option<Scores>,
    /// The tolerances the decision applied.
    pub tolerance: Tolerance,
    /// When, ms since the Unix epoch.
    pub evaluated_at_ms: i64,
}

/// What the trainer says made the model (`augur models publish --lineage FILE.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The training run's parameters as the trainer reported them (epochs, seed, learning rate,
    /// label shuffling, ...): kept as given.
    #[serde(default)]
    pub run: serde_json::Map<String, serde_json::Value>,
    /// The joined samples it trained on.
    #[serde(default)]
    pub samples: Option<TrainedOn>,
    /// The version whose weights it started from; absent: trained from scratch.
    #[serde(default)]
    pub warm_start_version: Option<u64>,
}

/// The sample window a model trained on: prediction times `[from_ms, to_ms)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainedOn {
    /// First prediction time, ms since the Unix epoch.
    pub from_ms: i64,
    /// End of the window (exclusive): later samples were held out.
    pub to_ms: i64,
    /// Rows trained on.
    #[serde(default)]
    pub rows: u64,
    /// ... of which positive.
    #[serde(default)]
    pub positives: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineage_keeps_what_it_knows_and_ignores_the_rest() {
        let json = r#"{"run": {"epochs": 1, "shuffle_labels": true}, "samples": {"from_ms": 5, "to_ms": 9,
            "rows": 3, "extra": 1}, "warm_start_version": 2, "future": "field"}"#;
        let lineage: Lineage = serde_json::from_str(json).unwrap();
        assert_eq!(lineage.warm_start_version, Some(2));
        assert_eq!(lineage.samples.as_ref().map(|s| (s.from_ms, s.to_ms, s.rows, s.positives)), Some((5, 9, 3, 0)));
        assert_eq!(lineage.run["shuffle_labels"], true);
        assert_eq!(serde_json::from_str::<Lineage>("{}").unwrap(), Lineage::default());
    }
}
