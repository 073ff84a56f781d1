//! The estimators, in bounded memory: counts and sums for CTR, calibration and log loss (exact up
//! to float rounding), and one score histogram per label for AUC.
//!
//! AUC is the probability that a positive scores above a negative, ties counted half. From the
//! histograms it is the same sum over bins: a positive in bin `b` beats every negative in a lower
//! bin and ties (half) with every negative in `b`. Pairs in different bins are ordered exactly as
//! the scores are, so the only error comes from pairs sharing a bin, which the estimate counts
//! half and the exact AUC counts 0, 1/2 or 1. Hence the bound, computed from the same histograms:
//!
//! ```text
//! |AUC_hist - AUC_exact| <= 1/2 * sum_b pos_b * neg_b / (P * N)
//! ```
//!
//! Bins are uniform in log-odds over [-10, 10] (scores beyond share the end bins): CTR scores
//! crowd near 0, where uniform bins over [0, 1] would put most of them in a few bins.

/// Log-odds range the bins cover: scores below sigmoid(-10) ~ 4.5e-5 or above 1 - 4.5e-5 share
/// the end bins.
const LOGIT_RANGE: f64 = 10.0;

/// Scores are clamped to [EPS, 1 - EPS] for log loss, so a score of exactly 0 or 1 costs a
/// large finite loss instead of infinity.
pub const EPS: f64 = 1e-7;

/// The bin of `score` among `bins` (uniform in log-odds).
pub fn bin_of(score: f64, bins: usize) -> usize {
    let p = score.clamp(EPS, 1.0 - EPS);
    let logit = (p / (1.0 - p)).ln();
    let x = (logit + LOGIT_RANGE) / (2.0 * LOGIT_RANGE) * bins as f64;
    (x.max(0.0) as usize).min(bins - 1)
}

/// The log loss of one sample: `-ln p` for a positive, `-ln (1 - p)` for a negative, with `p`
/// clamped to [EPS, 1 - EPS].
pub fn log_loss(score: f64, positive: bool) -> f64 {
    let p = score.clamp(EPS, 1.0 - EPS);
    if positive { -p.ln() } else { -(1.0 - p).ln() }
}

/// What one window bucket (or a whole window, merged) holds: mergeable by addition.
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator {
    /// Impressed samples.
    pub impressions: u64,
    /// ... with the positive event.
    pub positives: u64,
    /// Impressed samples with a finite score (the score statistics' denominator).
    pub scored: u64,
    /// ... of which positive.
    pub scored_positives: u64,
    /// Sum of the finite scores.
    pub score_sum: f64,
    /// Sum of the per-sample log losses.
    pub log_loss_sum: f64,
    /// Score histogram of the positives.
    pub pos: Vec<u32>,
    /// Score histogram of the negatives.
    pub neg: Vec<u32>,
}

/// The numbers of an [`Accumulator`]; `None` where undefined (no sample, one class only).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Impressed samples.
    pub impressions: u64,
    /// ... with the positive event.
    pub positives: u64,
    /// positives / impressions.
    pub ctr: Option<f64>,
    /// Mean score of the scored samples.
    pub mean_score: Option<f64>,
    /// Observed positive rate of the scored samples (the calibration's reference).
    pub observed_rate: Option<f64>,
    /// mean_score / observed_rate: 1 is calibrated, above 1 over-predicts.
    pub calibration: Option<f64>,
    /// mean_score - observed_rate.
    pub calibration_difference: Option<f64>,
    /// Mean log loss of the scored samples (natural log).
    pub log_loss: Option<f64>,
    /// AUC from the histograms (ties half).
    pub auc: Option<f64>,
    /// Upper bound of |auc - exact AUC| (module doc).
    pub auc_error_bound: Option<f64>,
}

// === impl Accumulator ===

impl Accumulator {
    /// Empty, with `bins` score bins per label.
    pub fn new(bins: usize) -> Self {
        Accumulator {
            impressions: 0,
            positives: 0,
            scored: 0,
            scored_positives: 0,
            score_sum: 0.0,
            log_loss_sum: 0.0,
            pos: vec![0; bins],
            neg: vec![0; bins],
        }
    }

    /// Back to empty, keeping the bins' memory.
    pub fn clear(&mut self) {
        self.impressions = 0;
        self.positives = 0;
        self.scored = 0;
        self.scored_positives = 0;
        self.score_sum = 0.0;
        self.log_loss_sum = 0.0;
        self.pos.fill(0);
        self.neg.fill(0);
    }

    /// One impressed sample; a score that is not finite counts in CTR only.
    pub fn add(&mut self, score: f32, positive: bool) {
        self.impressions += 1;
        self.positives += u64::from(positive);
        if !score.is_finite() {
            return;
        }
        let score = f64::from(score);
        self.scored += 1;
        self.scored_positives += u64::from(positive);
        self.score_sum += score;
        self.log_loss_sum += log_loss(score, positive);
        let bin = bin_of(score, self.pos.len());
        let counts = if positive { &mut self.pos } else { &mut self.neg };
        counts[bin] = counts[bin].saturating_add(1);
    }

    /// Adds `other` (same number of bins) into `self`.
    pub fn merge(&mut self, other: &Accumulator) {
        self.impressions += other.impressions;
        self.positives += other.positives;
        self.scored += other.scored;
        self.scored_positives += other.scored_positives;
        self.score_sum += other.score_sum;
        self.log_loss_sum += other.log_loss_sum;
        for (a, b) in self.pos.iter_mut().zip(&other.pos) {
            *a = a.saturating_add(*b);
        }
        for (a, b) in self.neg.iter_mut().zip(&other.neg) {
            *a = a.saturating_add(*b);
        }
    }

    /// The numbers.
    pub fn summary(&self) -> Summary {
        let ratio = |a: f64, b: u64| (b > 0).then(|| a / b as f64);
        let mean_score = ratio(self.score_sum, self.scored);
        let observed_rate = ratio(self.scored_positives as f64, self.scored);
        let (auc, auc_error_bound) = match auc(&self.pos, &self.neg) {
            Some((a, e)) => (Some(a), Some(e)),
            None => (None, None),
        };
        Summary {
            impressions: self.impressions,
            positives: self.positives,
            ctr: ratio(self.positives as f64, self.impressions),
            mean_score,
            observed_rate,
            calibration: mean_score.zip(observed_rate).and_then(|(m, o)| (o > 0.0).then(|| m / o)),
            calibration_difference: mean_score.zip(observed_rate).map(|(m, o)| m - o),
            log_loss: ratio(self.log_loss_sum, self.scored),
            auc,
            auc_error_bound,
        }
    }
}

/// AUC from per-bin counts of positives and negatives (ascending scores), ties in a bin counted
/// half, and its error bound (module doc); `None` without both a positive and a negative.
pub fn auc(pos: &[u32], neg: &[u32]) -> Option<(f64, f64)> {
    let p: f64 = pos.iter().map(|&c| f64::from(c)).sum();
    let n: f64 = neg.iter().map(|&c| f64::from(c)).sum();
    if p == 0.0 || n == 0.0 {
        return None;
    }
    // Counts are integers below 2^53 and so are their products' partial sums in practice; f64
    // keeps the sums exact for any window this tracker can hold.
    let (mut below, mut wins, mut ties) = (0.0, 0.0, 0.0);
    for (&pb, &nb) in pos.iter().zip(neg) {
        let (pb, nb) = (f64::from(pb), f64::from(nb));
        wins += pb * below;
        ties += pb * nb;
        below += nb;
    }
    let pairs = p * n;
    Some(((wins + 0.5 * ties) / pairs, 0.5 * ties / pairs))
}

/// The exact AUC of `(score, positive)` pairs, ties counted half (sort, then rank sums): the
/// reference the histogram estimate is tested against, and what an offline check computes.
pub fn exact_auc(samples: &[(f32, bool)]) -> Option<f64> {
    let mut sorted: Vec<(f32, bool)> = samples.iter().copied().filter(|(s, _)| s.is_finite()).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut below, mut wins) = (0.0f64, 0.0f64);
    let (mut p, mut n) = (0.0f64, 0.0f64);
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        let (mut tp, mut tn) = (0.0, 0.0);
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            if sorted[j].1 {
                tp += 1.0
            } else {
                tn += 1.0
            }
            j += 1;
        }
        wins += tp * below + 0.5 * tp * tn;
        below += tn;
        p += tp;
        n += tn;
        i = j;
    }
    (p > 0.0 && n > 0.0).then(|| wins / (p * n))
}
