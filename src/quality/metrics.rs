//! `augur_quality_*`: the tracker's numbers, computed at scrape time (a collector, not stored
//! gauges: the window moves with the clock even when no sample arrives, and an evicted version's
//! series end with it). Registered with the sample pipeline's metrics; nothing is exported until
//! the tracker is started, so "absent" means quality (or sample logging) is off.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::estimator::Summary;
use super::{Quality, VersionQuality, now_ms};

/// `{scene, model, version}` of a tracked version.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QualityLabels {
    /// Scene.
    pub scene: String,
    /// Model repository name.
    pub model: String,
    /// Model version.
    pub version: String,
}

/// `{scene, model, version, type}`: events of one type on a version's impressions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QualityEventLabels {
    /// Scene.
    pub scene: String,
    /// Model repository name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Event type (the join's accepted types: bounded).
    pub r#type: String,
}

/// `{scene}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SceneLabels {
    scene: String,
}

/// The window gauges: name, help, and how each reads a [`Summary`] (absent where undefined).
type Read = fn(&Summary) -> Option<f64>;
const GAUGES: [(&str, &str, Read); 9] = [
    ("window_impressions", "Impressions in the quality window", |s| Some(s.impressions as f64)),
    ("window_positives", "Impressions with the positive event in the quality window", |s| Some(s.positives as f64)),
    ("ctr", "Positives / impressions in the quality window", |s| s.ctr),
    ("mean_score", "Mean predicted score of the impressions in the quality window", |s| s.mean_score),
    ("calibration", "Mean predicted score / observed positive rate in the quality window (1 = calibrated)", |s| {
        s.calibration
    }),
    ("calibration_difference", "Mean predicted score minus observed positive rate in the quality window", |s| {
        s.calibration_difference
    }),
    ("log_loss", "Mean log loss (natural log) of the impressions in the quality window", |s| s.log_loss),
    ("auc", "AUC of the scores against the positive event in the quality window (score histograms)", |s| s.auc),
    ("auc_error_bound", "Upper bound of |augur_quality_auc - exact AUC| (pairs sharing a score bin / 2)", |s| {
        s.auc_error_bound
    }),
];

impl Quality {
    /// Registers the `augur_quality_*` collector (into the `augur_`-prefixed registry).
    pub fn register(&self, registry: &mut Registry) {
        registry.sub_registry_with_prefix("quality").register_collector(Box::new(self.clone()));
    }
}

fn labels(v: &VersionQuality) -> QualityLabels {
    QualityLabels { scene: v.key.scene.clone(), model: v.key.model.clone(), version: v.key.version.clone() }
}

impl Collector for Quality {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if !self.is_on() {
            return Ok(());
        }
        let snapshot = self.snapshot(now_ms());
        for (name, help, read) in GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for v in &snapshot.versions {
                if let Some(value) = read(&v.window) {
                    let labels = labels(v);
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "impressions",
            "Impressions (revision-0 samples with a label) per served version, since it was first seen",
            None,
            MetricType::Counter,
        )?;
        for v in &snapshot.versions {
            let labels = labels(v);
            ConstCounter::new(v.impressions_total).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "events",
            "Impressions carrying each event type per served version, since it was first seen",
            None,
            MetricType::Counter,
        )?;
        for v in &snapshot.versions {
            for (kind, count) in &v.events_total {
                let labels = QualityEventLabels {
                    scene: v.key.scene.clone(),
                    model: v.key.model.clone(),
                    version: v.key.version.clone(),
                    r#type: kind.clone(),
                };
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "corrections",
            "Corrections (labels after emission) per served version: not in the window's numbers",
            None,
            MetricType::Counter,
        )?;
        for v in &snapshot.versions {
            let labels = labels(v);
            ConstCounter::new(v.corrections_total).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "evicted_versions",
            "Tracked versions dropped by samples.quality.max_versions, by scene",
            None,
            MetricType::Counter,
        )?;
        for (scene, count) in &snapshot.evicted {
            ConstCounter::new(*count).encode(family.encode_family(&SceneLabels { scene: scene.clone() })?)?;
        }
        let family = encoder.encode_descriptor(
            "too_old",
            "Impressions older than the quality window when emitted (not counted)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(snapshot.too_old).encode(family)?;
        let family =
            encoder.encode_descriptor("versions", "Versions the quality tracker holds", None, MetricType::Gauge)?;
        ConstGauge::new(snapshot.versions.len() as i64).encode(family)?;
        Ok(())
    }
}
