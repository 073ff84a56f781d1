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
use crate::telemetry::{SceneLabels, SceneVersionLabels, encode_series};

/// `{scene, model, version, type}`: events of one type on a version's impressions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QualityEventLabels {
    /// Which version.
    #[prometheus(flatten)]
    pub version: SceneVersionLabels,
    /// Event type (the join's accepted types: bounded).
    pub r#type: String,
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

fn labels(v: &VersionQuality) -> SceneVersionLabels {
    SceneVersionLabels::new(&v.key.scene, &v.key.model, &v.key.version)
}

impl Collector for Quality {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if !self.is_on() {
            return Ok(());
        }
        let snapshot = self.snapshot(now_ms());
        let versions = &snapshot.versions;
        for (name, help, read) in GAUGES {
            let series = versions.iter().filter_map(|v| Some((labels(v), ConstGauge::new(read(&v.window)?))));
            encode_series(&mut encoder, name, help, series)?;
        }
        encode_series(
            &mut encoder,
            "impressions",
            "Impressions (revision-0 samples with a label) per served version, since it was first seen",
            versions.iter().map(|v| (labels(v), ConstCounter::new(v.impressions_total))),
        )?;
        let events = versions.iter().flat_map(|v| {
            v.events_total.iter().map(move |(kind, count)| {
                (QualityEventLabels { version: labels(v), r#type: kind.clone() }, ConstCounter::new(*count))
            })
        });
        encode_series(
            &mut encoder,
            "events",
            "Impressions carrying each event type per served version, since it was first seen",
            events,
        )?;
        encode_series(
            &mut encoder,
            "corrections",
            "Corrections (labels after emission) per served version: not in the window's numbers",
            versions.iter().map(|v| (labels(v), ConstCounter::new(v.corrections_total))),
        )?;
        encode_series(
            &mut encoder,
            "evicted_versions",
            "Tracked versions dropped by samples.quality.max_versions, by scene",
            snapshot.evicted.iter().map(|(scene, n)| (SceneLabels { scene: scene.clone() }, ConstCounter::new(*n))),
        )?;
        let family = encoder.encode_descriptor(
            "too_old",
            "Impressions older than the quality window when emitted (not counted)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(snapshot.too_old).encode(family)?;
        let family =
            encoder.encode_descriptor("versions", "Versions the quality tracker holds", None, MetricType::Gauge)?;
        ConstGauge::new(versions.len() as i64).encode(family)?;
        Ok(())
    }
}
