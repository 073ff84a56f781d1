//! The decision rule: a one-sided non-inferiority test on the AUC difference of two independent
//! arms (canary users vs stable users over the same window), with DeLong's variance computed
//! exactly from the score histograms the quality tracker keeps, and a calibration guard.
//!
//! ```text
//! d  = AUC_canary − AUC_stable                      (histogram estimates)
//! se = sqrt(Var_DeLong(canary) + Var_DeLong(stable)) (independent arms: different users)
//! e  = binning bound of d (sum of both arms' AUC error bounds, crate::quality::estimator)
//! rollback early  if (d + e + δ) / se < −3.09   any look, Haybittle–Peto boundary (α = 0.001)
//! at the window's end:
//!   promote       if (d − e + δ) / se > 1.645   canary AUC ≥ stable − δ shown at α = 0.05
//!   rollback      otherwise
//! ```
//!
//! δ is `max_auc_drop`. DeLong's variance of one AUC from placement values: each positive's
//! share of negatives below it (ties half), each negative's share of positives above it; with
//! scores binned, every sample in a bin has the same placement, so the variance is a sum over
//! bins — exact for the binned scores, no Hanley–McNeil shape assumption.
//!
//! Error behaviour (normal approximation, docs/quality.md): a canary whose true AUC is δ below
//! the stable's is promoted with probability at most 5% (less the further below, and the
//! binning term `e` only makes promotion harder); the early-rollback boundary adds at most 0.1%
//! per look of rolling back an equal canary. An equal canary is rolled back at the window's end
//! with probability Φ(1.645 − δ/se): about 5% when se = δ/3.29, which sets the impressions
//! needed per arm (docs/quality.md has the arithmetic).
//!
//! Calibration guard: the canary's mean score m against its observed rate r ± z·sqrt(r(1−r)/n);
//! it is rolled back when the whole interval of m/r lies outside 1 ± `max_calibration_error`
//! (z = 3.09 at any look, 1.645 at the end).

use super::config::RolloutConfig;
use crate::quality::estimator::{Accumulator, auc};
use crate::repository::rollout::Comparison;

/// One-sided 5% quantile of the standard normal: the final look.
pub const Z_FINAL: f64 = 1.644_853_626_951_472_2;
/// One-sided 0.1% quantile: the early-rollback (Haybittle–Peto) boundary.
pub const Z_EARLY: f64 = 3.090_232_306_167_813;

/// What one look concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not enough evidence yet (too few impressions, one class only, window not over).
    Wait,
    /// The canary becomes stable.
    Promote,
    /// The canary is refused.
    Rollback,
}

impl Outcome {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Wait => "wait",
            Outcome::Promote => "promote",
            Outcome::Rollback => "rollback",
        }
    }
}

/// A look's outcome, why, and its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// What to do.
    pub outcome: Outcome,
    /// Why, in words, with the numbers that decided.
    pub reason: String,
    /// The numbers.
    pub comparison: Comparison,
}

/// The histogram AUC and its DeLong variance (`None` without both classes).
pub fn auc_with_variance(pos: &[u32], neg: &[u32]) -> Option<(f64, f64)> {
    let (a, _) = auc(pos, neg)?;
    let p: f64 = pos.iter().map(|&c| f64::from(c)).sum();
    let n: f64 = neg.iter().map(|&c| f64::from(c)).sum();
    let neg_below: Vec<f64> = neg
        .iter()
        .scan(0.0, |below, &c| {
            let here = *below;
            *below += f64::from(c);
            Some(here)
        })
        .collect();
    let mut pos_above = vec![0.0; pos.len()];
    let mut above = 0.0;
    for b in (0..pos.len()).rev() {
        pos_above[b] = above;
        above += f64::from(pos[b]);
    }
    let (mut s10, mut s01) = (0.0, 0.0);
    for b in 0..pos.len() {
        let (pb, nb) = (f64::from(pos[b]), f64::from(neg[b]));
        // A positive in bin b beats the negatives below and ties (half) those in b.
        let v10 = (neg_below[b] + 0.5 * nb) / n;
        // A negative in bin b loses to the positives above and ties (half) those in b.
        let v01 = (pos_above[b] + 0.5 * pb) / p;
        s10 += pb * (v10 - a).powi(2);
        s01 += nb * (v01 - a).powi(2);
    }
    let s10 = s10 / (p - 1.0).max(1.0);
    let s01 = s01 / (n - 1.0).max(1.0);
    Some((a, s10 / p + s01 / n))
}

/// `numerator / se`, infinite (by sign) when the variance is zero.
fn ratio(numerator: f64, se: f64) -> f64 {
    if se > 0.0 {
        numerator / se
    } else if numerator > 0.0 {
        f64::INFINITY
    } else if numerator < 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    }
}

/// Whether the canary's calibration is shown (at `z`) to be outside 1 ± `max`.
fn miscalibrated(canary: &Accumulator, z: f64, max: f64) -> bool {
    if canary.scored == 0 {
        return false;
    }
    let n = canary.scored as f64;
    let m = canary.score_sum / n;
    let r = canary.scored_positives as f64 / n;
    let half = z * (r * (1.0 - r) / n).sqrt();
    let over = m / (r + half) > 1.0 + max;
    let under = r - half > 0.0 && m / (r - half) < 1.0 - max;
    over || under
}

/// One look at the arms over the same window; `final_look` once the canary has served the
/// whole decision window.
pub fn assess(
    policy: &RolloutConfig,
    stable: &Accumulator,
    canary: &Accumulator,
    final_look: bool,
    window_ms: (i64, i64),
) -> Assessment {
    let s = stable.summary();
    let c = canary.summary();
    let mut comparison = Comparison {
        stable_impressions: stable.impressions,
        canary_impressions: canary.impressions,
        stable_auc: s.auc,
        canary_auc: c.auc,
        canary_calibration: c.calibration,
        window_start_ms: window_ms.0,
        window_end_ms: window_ms.1,
        ..Comparison::default()
    };
    let wait = |reason: String, comparison: Comparison| Assessment { outcome: Outcome::Wait, reason, comparison };
    let min = policy.min_impressions;
    if stable.impressions < min || canary.impressions < min {
        return wait(
            format!(
                "too few impressions: stable {}, canary {}, each needs {min}",
                stable.impressions, canary.impressions
            ),
            comparison,
        );
    }
    let (Some((auc_s, var_s)), Some((auc_c, var_c))) =
        (auc_with_variance(&stable.pos, &stable.neg), auc_with_variance(&canary.pos, &canary.neg))
    else {
        return wait("an arm has no positive or no negative yet: AUC undefined".into(), comparison);
    };
    let d = auc_c - auc_s;
    let se = (var_s + var_c).sqrt();
    let e = s.auc_error_bound.unwrap_or(0.0) + c.auc_error_bound.unwrap_or(0.0);
    let delta = policy.max_auc_drop;
    comparison.auc_difference = Some(d);
    comparison.standard_error = Some(se);
    comparison.binning_error = Some(e);
    comparison.z = Some(ratio(d + delta, se));
    let numbers = format!(
        "AUC canary {auc_c:.4} vs stable {auc_s:.4}: difference {d:+.4} ± {se:.4} (se), binning ±{e:.4}, margin {delta}"
    );
    let z_harm = ratio(d + e + delta, se);
    let calibration = c.calibration.map_or_else(|| "undefined".to_owned(), |x| format!("{x:.3}"));
    let max_cal = policy.max_calibration_error;
    if z_harm < -Z_EARLY {
        return Assessment {
            outcome: Outcome::Rollback,
            reason: format!("canary AUC is below stable − {delta} (z {z_harm:.2} < −{Z_EARLY:.2}); {numbers}"),
            comparison,
        };
    }
    if miscalibrated(canary, Z_EARLY, max_cal) {
        return Assessment {
            outcome: Outcome::Rollback,
            reason: format!("canary calibration {calibration} is outside 1 ± {max_cal} (at z {Z_EARLY:.2}); {numbers}"),
            comparison,
        };
    }
    if !final_look {
        return wait(format!("decision window not over; {numbers}"), comparison);
    }
    let z_ok = ratio(d - e + delta, se);
    if z_ok <= Z_FINAL {
        return Assessment {
            outcome: Outcome::Rollback,
            reason: format!(
                "canary AUC not shown to be at least stable − {delta} (z {z_ok:.2} ≤ {Z_FINAL:.3}); {numbers}"
            ),
            comparison,
        };
    }
    if miscalibrated(canary, Z_FINAL, max_cal) {
        return Assessment {
            outcome: Outcome::Rollback,
            reason: format!("canary calibration {calibration} is outside 1 ± {max_cal} (at z {Z_FINAL:.3}); {numbers}"),
            comparison,
        };
    }
    Assessment {
        outcome: Outcome::Promote,
        reason: format!(
            "canary AUC at least stable − {delta} (z {z_ok:.2} > {Z_FINAL:.3}), calibration {calibration}; {numbers}"
        ),
        comparison,
    }
}
