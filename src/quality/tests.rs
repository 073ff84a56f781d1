//! The estimators against exact computations on the same rows, and the tracker's window,
//! corrections and version bound.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::QualityConfig;
use super::estimator::{Accumulator, auc, exact_auc, log_loss};
use super::*;
use crate::proto::Label;

/// The error the docs state for the default bins on CTR-like scores.
const STATED_AUC_ERROR: f64 = 0.005;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `n` rows of a CTR-like model: a latent logit ~ N(mu, sd); the label is drawn from the true
/// probability, the score is that probability seen through `noise` (a model that is not the
/// true one). Seeded, so every run tests the same rows.
fn rows(seed: u64, n: usize, mu: f64, sd: f64, noise: f64) -> Vec<(f32, bool)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(0.0, 1.0).unwrap();
    (0..n)
        .map(|_| {
            let z = mu + sd * rng.sample::<f64, _>(normal);
            let clicked = rng.random::<f64>() < sigmoid(z);
            let score = sigmoid(z + noise * rng.sample::<f64, _>(normal)) as f32;
            (score, clicked)
        })
        .collect()
}

fn accumulate(rows: &[(f32, bool)], bins: usize) -> Accumulator {
    let mut acc = Accumulator::new(bins);
    for &(s, y) in rows {
        acc.add(s, y);
    }
    acc
}

#[test]
fn exact_auc_counts_ties_half() {
    assert_eq!(exact_auc(&[(0.1, false), (0.9, true)]), Some(1.0));
    assert_eq!(exact_auc(&[(0.1, true), (0.9, false)]), Some(0.0));
    assert_eq!(exact_auc(&[(0.5, true), (0.5, false)]), Some(0.5));
    // 2 positives x 2 negatives: (0.3 > 0.2), (0.3 = 0.3) half, (0.8 > both).
    assert_eq!(exact_auc(&[(0.2, false), (0.3, false), (0.3, true), (0.8, true)]), Some(3.5 / 4.0));
    assert_eq!(exact_auc(&[(0.2, true)]), None);
    assert_eq!(auc(&[1, 0], &[0, 0]), None);
}

/// The stated bound holds on every seeded data set, and the measured error stays within 0.005
/// with the default 2048 bins (what docs/quality.md states), from weak to strong models, rare to
/// common positives.
#[test]
fn histogram_auc_is_within_the_stated_error_of_the_exact_auc() {
    let bins = QualityConfig::default().bins;
    let mut worst: f64 = 0.0;
    let mut worst_bound: f64 = 0.0;
    for (seed, (mu, sd, noise)) in
        [(-3.5, 1.0, 0.3), (-2.0, 0.5, 1.0), (-1.0, 2.0, 0.0), (-5.0, 1.5, 0.5), (0.0, 0.2, 2.0), (-2.5, 1.0, 0.05)]
            .into_iter()
            .enumerate()
    {
        for n in [2_000, 50_000] {
            let rows = rows(seed as u64, n, mu, sd, noise);
            let exact = exact_auc(&rows).unwrap();
            let summary = accumulate(&rows, bins).summary();
            let (estimate, bound) = (summary.auc.unwrap(), summary.auc_error_bound.unwrap());
            let error = (estimate - exact).abs();
            assert!(error <= bound + 1e-12, "seed {seed} n {n}: error {error} above its bound {bound}");
            assert!(error <= STATED_AUC_ERROR, "seed {seed} n {n}: error {error} (exact {exact}, est {estimate})");
            worst = worst.max(error);
            worst_bound = worst_bound.max(bound);
        }
    }
    eprintln!("histogram AUC, {bins} bins: worst error {worst:.2e}, worst bound {worst_bound:.2e}");
}

/// Scores that are many exact ties (a model that outputs few distinct values): the estimate and
/// the exact AUC agree, since ties are half in both.
#[test]
fn quantized_scores_give_the_exact_auc() {
    let rows: Vec<(f32, bool)> =
        rows(7, 10_000, -2.0, 1.0, 0.2).into_iter().map(|(s, y)| ((s * 20.0).round() / 20.0, y)).collect();
    let exact = exact_auc(&rows).unwrap();
    let estimate = accumulate(&rows, 2048).summary().auc.unwrap();
    assert!((estimate - exact).abs() < 1e-12, "{estimate} vs {exact}");
}

#[test]
fn log_loss_ctr_and_calibration_are_exact() {
    let rows = rows(11, 20_000, -2.5, 1.0, 0.4);
    let s = accumulate(&rows, 64).summary();
    let n = rows.len() as f64;
    let positives = rows.iter().filter(|r| r.1).count() as f64;
    let mean_score = rows.iter().map(|r| f64::from(r.0)).sum::<f64>() / n;
    let loss = rows.iter().map(|&(p, y)| log_loss(f64::from(p), y)).sum::<f64>() / n;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    assert!(close(s.ctr.unwrap(), positives / n));
    assert!(close(s.mean_score.unwrap(), mean_score));
    assert!(close(s.log_loss.unwrap(), loss), "{:?} vs {loss}", s.log_loss);
    assert!(close(s.calibration.unwrap(), mean_score / (positives / n)));
    assert!(close(s.calibration_difference.unwrap(), mean_score - positives / n));
    // Log loss by hand on two rows.
    let two = accumulate(&[(0.25, true), (0.25, false)], 16).summary();
    assert!(close(two.log_loss.unwrap(), (-(0.25f64.ln()) - 0.75f64.ln()) / 2.0));
    // A score that is not finite counts in CTR only.
    let odd = accumulate(&[(f32::NAN, true), (0.5, false)], 16).summary();
    assert_eq!((odd.impressions, odd.positives, odd.ctr), (2, 1, Some(0.5)));
    assert_eq!((odd.mean_score, odd.observed_rate), (Some(0.5), Some(0.0)));
    assert_eq!(odd.calibration, None, "no observed positive: the ratio is undefined");
}

/// Merging buckets is adding their rows.
#[test]
fn merged_buckets_equal_one_bucket_of_all_rows() {
    let rows = rows(3, 5_000, -2.0, 1.0, 0.5);
    let (a, b) = rows.split_at(1_234);
    let mut merged = accumulate(a, 256);
    merged.merge(&accumulate(b, 256));
    let whole = accumulate(&rows, 256);
    assert_eq!((merged.pos.clone(), merged.neg.clone()), (whole.pos.clone(), whole.neg.clone()));
    let (m, w) = (merged.summary(), whole.summary());
    assert_eq!(m.auc, w.auc);
    assert!((m.log_loss.unwrap() - w.log_loss.unwrap()).abs() < 1e-12);
}

// === the tracker ===

fn config(buckets: usize, max_versions: usize) -> QualityConfig {
    QualityConfig { bucket_s: 10, buckets, bins: 256, max_versions, ..QualityConfig::default() }
}

fn sample(version: &str, score: f32, labels: &[&str], revision: u32, emitted_ms: i64) -> LogRecord {
    LogRecord {
        record: Some(log_record::Record::Sample(Sample {
            scene: "ranking".into(),
            model_name: "ranking".into(),
            model_version: version.into(),
            score,
            revision,
            emitted_ms,
            labels: labels.iter().map(|t| Label { r#type: (*t).into(), timestamp_ms: 0, value: None }).collect(),
            ..Default::default()
        })),
    }
}

fn one(q: &Quality, now: i64, version: &str) -> VersionQuality {
    q.snapshot(now).versions.into_iter().find(|v| v.key.version == version).expect("tracked")
}

#[test]
fn inert_until_started() {
    let q = Quality::default();
    q.observe(&[sample("1", 0.5, &["impression"], 0, 1000)]);
    assert_eq!(q.snapshot(1000), QualitySnapshot::default());
    q.start(&QualityConfig { enabled: false, ..QualityConfig::default() });
    assert!(!q.is_on());
}

#[test]
fn impressions_events_and_corrections_are_counted_as_documented() {
    let q = Quality::default();
    q.start(&config(3, 4));
    let t = 1_000_000;
    q.observe(&[
        sample("1", 0.2, &["impression"], 0, t),
        sample("1", 0.6, &["impression", "click"], 0, t),
        sample("1", 0.4, &["click", "click"], 0, t),
        // Unimpressed (no label): not an impression.
        sample("1", 0.9, &[], 0, t),
        // A correction: counted apart, the window is unchanged.
        sample("1", 0.2, &["impression", "click"], 1, t + 1),
    ]);
    let v = one(&q, t + 1, "1");
    assert_eq!((v.window.impressions, v.window.positives), (3, 2));
    assert_eq!(v.impressions_total, 3);
    assert_eq!(v.corrections_total, 1);
    assert_eq!(v.events_total.get("impression"), Some(&2));
    assert_eq!(v.events_total.get("click"), Some(&2), "a type counts once per sample");
    assert_eq!(v.window.auc, exact_auc(&[(0.2, false), (0.6, true), (0.4, true)]));
}

#[test]
fn the_window_slides_by_bucket() {
    let q = Quality::default();
    q.start(&config(3, 4));
    // Buckets of 10 s; the window is the current bucket and the two before it.
    for (k, t) in [0i64, 10_000, 20_000].into_iter().enumerate() {
        q.observe(&[sample("1", 0.5, &["impression"], 0, 1_000_000 + t + k as i64)]);
    }
    assert_eq!(one(&q, 1_020_000, "1").window.impressions, 3);
    assert_eq!(one(&q, 1_030_000, "1").window.impressions, 2, "the first bucket left the window");
    assert_eq!(one(&q, 1_050_000, "1").window.impressions, 0);
    assert_eq!(one(&q, 1_050_000, "1").impressions_total, 3);
    // A slot reused by a newer bucket forgets the old one.
    q.observe(&[sample("1", 0.5, &["impression"], 0, 1_030_000)]);
    assert_eq!(one(&q, 1_030_000, "1").window.impressions, 3);
    // Older than the window when it arrives: not counted.
    q.observe(&[sample("1", 0.5, &["impression"], 0, 1_000_000)]);
    let s = q.snapshot(1_030_000);
    assert_eq!((s.too_old, s.versions[0].window.impressions), (1, 3));
}

#[test]
fn versions_are_bounded_per_scene_and_evictions_counted() {
    let q = Quality::default();
    q.start(&config(3, 2));
    q.observe(&[sample("1", 0.5, &["impression"], 0, 1_000)]);
    q.observe(&[sample("2", 0.5, &["impression"], 0, 2_000)]);
    q.observe(&[sample("1", 0.5, &["impression"], 0, 3_000)]);
    // Version 2 has the oldest last sample now.
    q.observe(&[sample("3", 0.5, &["impression"], 0, 4_000)]);
    let s = q.snapshot(4_000);
    let versions: Vec<&str> = s.versions.iter().map(|v| v.key.version.as_str()).collect();
    assert_eq!(versions, ["1", "3"]);
    assert_eq!(s.evicted.get("ranking"), Some(&1));
}

#[test]
fn metrics_export_the_window_and_drop_evicted_versions() {
    let metrics = crate::telemetry::Metrics::new();
    let sm = metrics.of::<crate::sample_log::metrics::SampleMetrics>();
    assert!(!metrics.render().contains("augur_quality_"), "nothing before the joiner starts it");
    sm.quality.start(&config(3, 1));
    let now = now_ms();
    sm.quality.observe(&[sample("7", 0.25, &["impression"], 0, now), sample("7", 0.75, &["click"], 0, now)]);
    let text = metrics.render();
    let labels = "{scene=\"ranking\",model=\"ranking\",version=\"7\"}";
    assert!(text.contains(&format!("augur_quality_auc{labels} 1.0")), "{text}");
    assert!(text.contains(&format!("augur_quality_ctr{labels} 0.5")), "{text}");
    assert!(text.contains(&format!("augur_quality_impressions_total{labels} 2")), "{text}");
    assert!(
        text.contains("augur_quality_events_total{scene=\"ranking\",model=\"ranking\",version=\"7\",type=\"click\"} 1")
    );
    assert!(text.contains("# TYPE augur_quality_calibration gauge"), "{text}");
    sm.quality.observe(&[sample("8", 0.5, &["impression"], 0, now + 1)]);
    let text = metrics.render();
    assert!(!text.contains("version=\"7\""), "evicted: its series end\n{text}");
    assert!(text.contains("augur_quality_evicted_versions_total{scene=\"ranking\"} 1"), "{text}");
}

#[test]
fn config_validation_names_the_key() {
    let known = |t: &str| ["impression", "click"].contains(&t);
    assert!(QualityConfig::default().validate(known).is_ok());
    let bad = QualityConfig { positive_event: "purchase".into(), ..QualityConfig::default() };
    assert_eq!(bad.validate(known).unwrap_err().key, "samples.quality.positive_event");
    let bad = QualityConfig { buckets: 0, ..QualityConfig::default() };
    assert_eq!(bad.validate(known).unwrap_err().key, "samples.quality.buckets");
    let bad = QualityConfig { bins: 65_536, buckets: 1440, ..QualityConfig::default() };
    assert_eq!(bad.validate(known).unwrap_err().key, "samples.quality.bins");
}
