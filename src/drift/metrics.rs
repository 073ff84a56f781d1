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
use crate::telemetry::{ModuleMetrics, SceneLabels, SceneVersionLabels, encode_series};

/// `{scene, model, version, feature}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftFeatureLabels {
    /// Which version.
    #[prometheus(flatten)]
    pub version: SceneVersionLabels,
    /// Feature name, as the spec names it.
    pub feature: String,
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

fn version_labels(v: &VersionDrift) -> SceneVersionLabels {
    SceneVersionLabels::new(&v.key.scene, &v.key.model, v.key.version)
}

impl Collector for Drift {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if !self.is_on() {
            return Ok(());
        }
        let snapshot = self.snapshot(now_ms());
        let versions = &snapshot.versions;
        for (name, help, read) in FEATURE_GAUGES {
            let series = versions.iter().flat_map(|v| {
                v.features.iter().filter_map(move |f| {
                    let labels = DriftFeatureLabels { version: version_labels(v), feature: f.name.clone() };
                    Some((labels, ConstGauge::new(read(f)?)))
                })
            });
            encode_series(&mut encoder, name, help, series)?;
        }
        encode_series(
            &mut encoder,
            "window_rows",
            "Rows (candidates of observed requests) per served version in the drift window",
            versions.iter().map(|v| (version_labels(v), ConstGauge::new(v.rows as i64))),
        )?;
        encode_series(
            &mut encoder,
            "reference",
            "1 when the version was loaded with a usable training reference (reference.json), else 0",
            versions.iter().map(|v| (version_labels(v), ConstGauge::new(i64::from(v.has_reference)))),
        )?;
        encode_series(
            &mut encoder,
            "evicted_versions",
            "Tracked versions dropped by drift.max_versions, by scene",
            snapshot.evicted.iter().map(|(scene, n)| (SceneLabels { scene: scene.clone() }, ConstCounter::new(*n))),
        )?;
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
