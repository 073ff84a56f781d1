//! The online quality numbers of a version and of a canary decision, rounded the one way every
//! reader shows them: `augur models rollout` (a table, [`crate::cli`]) and the status page
//! ([`crate::admin`]). One place, so a person comparing the tool's table with the page sees the
//! same digits; the JSON and the API keep every digit. It sits here, not in either reader,
//! because both already depend on this module and neither may depend on the other
//! (scripts/check_module_cycles.py).

use crate::proto::{CanaryDecision, VersionQuality};

/// `x` to `places` decimals, or `absent` when it is missing or not finite (a ratio over nothing).
pub fn rounded(x: Option<f64>, places: usize, absent: &str) -> String {
    x.filter(|x| x.is_finite()).map_or_else(|| absent.to_owned(), |x| format!("{x:.places$}"))
}

/// A version's quality (`ListModels`' `quality`), each ratio rounded; `absent` where undefined
/// (no impression, no positive, one class only) or where the version has no quality yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityCells {
    /// Click-through rate, 4 places.
    pub ctr: String,
    /// Mean predicted score, 4 places.
    pub mean_score: String,
    /// Mean score / observed rate, 3 places.
    pub calibration: String,
    /// Mean score - observed rate, 4 places.
    pub calibration_difference: String,
    /// 4 places.
    pub log_loss: String,
    /// 4 places.
    pub auc: String,
    /// The AUC's error bound (from the score histograms), 4 places.
    pub auc_error_bound: String,
}

impl QualityCells {
    /// The cells of `quality` (`None`: every cell `absent`).
    pub fn of(quality: Option<&VersionQuality>, absent: &str) -> Self {
        let cell = |f: fn(&VersionQuality) -> Option<f64>, places| rounded(quality.and_then(f), places, absent);
        QualityCells {
            ctr: cell(|q| q.ctr, 4),
            mean_score: cell(|q| q.mean_score, 4),
            calibration: cell(|q| q.calibration, 3),
            calibration_difference: cell(|q| q.calibration_difference, 4),
            log_loss: cell(|q| q.log_loss, 4),
            auc: cell(|q| q.auc, 4),
            auc_error_bound: cell(|q| q.auc_error_bound, 4),
        }
    }
}

/// What a canary decision compared, each number rounded; `absent` where the test had none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionCells {
    /// 4 places.
    pub stable_auc: String,
    /// 4 places.
    pub canary_auc: String,
    /// Canary - stable, 4 places.
    pub auc_difference: String,
    /// Of the difference (DeLong), 4 places.
    pub standard_error: String,
    /// 2 places.
    pub z: String,
    /// The canary's mean score / observed rate, 3 places.
    pub canary_calibration: String,
}

impl DecisionCells {
    /// The cells of `d`.
    pub fn of(d: &CanaryDecision, absent: &str) -> Self {
        DecisionCells {
            stable_auc: rounded(d.stable_auc, 4, absent),
            canary_auc: rounded(d.canary_auc, 4, absent),
            auc_difference: rounded(d.auc_difference, 4, absent),
            standard_error: rounded(d.standard_error, 4, absent),
            z: rounded(d.z, 2, absent),
            canary_calibration: rounded(d.canary_calibration, 3, absent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_each_number_its_way_and_shows_absent_and_non_finite_alike() {
        let q =
            VersionQuality { ctr: Some(0.123_456), calibration: Some(f64::NAN), auc: Some(0.75), ..Default::default() };
        let cells = QualityCells::of(Some(&q), "-");
        assert_eq!((cells.ctr.as_str(), cells.calibration.as_str(), cells.auc.as_str()), ("0.1235", "-", "0.7500"));
        assert_eq!(cells.log_loss, "-");
        assert_eq!(QualityCells::of(None, ""), QualityCells::of(Some(&VersionQuality::default()), ""));
        let d = CanaryDecision { z: Some(-1.234), canary_calibration: Some(1.0), ..Default::default() };
        let cells = DecisionCells::of(&d, "");
        assert_eq!(
            (cells.z.as_str(), cells.canary_calibration.as_str(), cells.stable_auc.as_str()),
            ("-1.23", "1.000", "")
        );
    }
}
