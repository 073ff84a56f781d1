//! `augur_drift_*`: the tracker's numbers, computed at scrape time (a collector, not stored
//! gauges: the window moves with the clock even when no request arrives, and an evicted
//! version's series end with it). Nothing is exported until the tracker is started.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::{Drift, FeatureDrift, VersionDrift, now_ms};
use crate::telemetry::ModuleMetrics;

/// `{scene, model, version}` of a tracked version.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftVersionLabels {
    /// Scene.
    pub scene: String,
    /// Model repository name.
    pub model: String,
    /// Model version.
    pub version: String,
}

/// `{scene, model, version, feature}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftFeatureLabels {
    /// Scene.
    pub scene: String,
    /// Model repository name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Feature name, as the spec names it.
    pub feature: String,
}

/// `{scene}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SceneLabels {
    scene: String,
}

/// The per-feature gauges: name, help, and how each reads a [`FeatureDrift`] (absent where
/// undefined).
type Read = fn(&FeatureDrift) -> Option<f64>;
const FEATURE_GAUGES: [(&str, &str, Read); 3] = [
    (
        "psi",
        "Population stability index of the served values against the version's training reference, over the drift window",
        |f| f.psi,
    ),
    ("fallback_rate", "Share of observed rows served from the feature's default, over the drift window", |f| {
        f.fallback_rate
    }),
    ("reference_fallback_rate", "Share of training rows served from the feature's default, per the reference", |f| {
        f.reference_fallback_rate
    }),
];

impl ModuleMetrics for Drift {
    fn register(&self, registry: &mut Registry) {
        registry.sub_registry_with_prefix("drift").register_collector(Box::new(self.clone()));
    }
}

fn version_labels(v: &VersionDrift) -> DriftVersionLabels {
    DriftVersionLabels { scene: v.key.scene.clone(), model: v.key.model.clone(), version: v.key.version.to_string() }
}

impl Collector for Drift {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if !self.is_on() {
            return Ok(());
        }
        let snapshot = self.snapshot(now_ms());
        for (name, help, read) in FEATURE_GAUGES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for v in &snapshot.versions {
                for f in &v.features {
                    if let Some(value) = read(f) {
                        let labels = DriftFeatureLabels {
                            scene: v.key.scene.clone(),
                            model: v.key.model.clone(),
                            version: v.key.version.to_string(),
                            feature: f.name.clone(),
                        };
                        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "window_rows",
            "Rows (candidates of observed requests) per served version in the drift window",
            None,
            MetricType::Gauge,
        )?;
        for v in &snapshot.versions {
            ConstGauge::new(v.rows as i64).encode(family.encode_family(&version_labels(v))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "reference",
            "1 when the version was loaded with a usable training reference (reference.json), else 0",
            None,
            MetricType::Gauge,
        )?;
        for v in &snapshot.versions {
            ConstGauge::new(i64::from(v.has_reference)).encode(family.encode_family(&version_labels(v))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "evicted_versions",
            "Tracked versions dropped by drift.max_versions, by scene",
            None,
            MetricType::Counter,
        )?;
        for (scene, count) in &snapshot.evicted {
            ConstCounter::new(*count).encode(family.encode_family(&SceneLabels { scene: scene.clone() })?)?;
        }
        let family = encoder.encode_descriptor(
            "observed_requests",
            "Predict requests whose features were added to the drift histograms (one in drift.sample_every)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(snapshot.observed).encode(family)?;
        Ok(())
    }
}
