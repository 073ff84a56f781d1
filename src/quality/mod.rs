//! Online quality per served model version, computed where the labels arrive: the joiner hands
//! every sample record it wrote to the sample log to [`Quality::observe`], and this module keeps,
//! per (scene, model, version), impressions, events per type, CTR, calibration (mean score vs
//! observed rate), log loss and AUC over a sliding window, in bounded memory
//! ([`estimator`]: counts, sums and one score histogram per label). Exported as
//! `augur_quality_*` ([`metrics`], computed at scrape time so the window moves without traffic),
//! in `ModelAdmin.ListModels` and on the status page.
//!
//! What counts (docs/quality.md):
//! - an *impression* is a revision-0 sample with at least one label (the candidate was seen):
//!   unimpressed candidates (`samples.join.emit_unimpressed`) are not counted;
//! - it is *positive* when its labels hold `samples.quality.positive_event` (click by default):
//!   the labels known when the positive wait ended, the same ones the revision-0 training
//!   sample carries;
//! - a *correction* (revision > 0: a label that came after the sample was emitted) is counted in
//!   `augur_quality_corrections_total` and changes nothing else: the window describes what the
//!   join knew at emission, and the correction count says how much that undercounts;
//! - the window holds samples by their emission time (`emitted_ms`), `buckets` buckets of
//!   `bucket_s` seconds; an emitted sample older than the window (a clock step) is not counted.
//!
//! Bounded: at most `max_versions` versions per scene (scenes and event types are bounded by the
//! config); a new version evicts the one whose last sample is oldest, counted by scene.

pub mod config;
pub mod display;
pub mod estimator;
pub mod metrics;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use self::config::QualityConfig;
use self::estimator::{Accumulator, Summary};
use crate::proto::{LogRecord, Sample, log_record};

/// The tracker, shared by the joiner (which feeds it), the metrics exposition and ModelAdmin.
/// Cheap to clone. Inert until [`start`](Self::start)ed: `observe` does nothing and nothing is
/// exported, so a process with quality off shows no `augur_quality_*` family.
#[derive(Debug, Clone, Default)]
pub struct Quality {
    inner: Arc<OnceLock<Tracker>>,
}

/// (scene, model, version).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionKey {
    /// Scene.
    pub scene: String,
    /// Model repository name.
    pub model: String,
    /// Model version (as the snapshot names it).
    pub version: String,
}

/// What one tracked version shows: the window's numbers and the counts since it was first seen.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionQuality {
    /// Which version.
    pub key: VersionKey,
    /// The window's numbers.
    pub window: Summary,
    /// Window start and end, ms since the Unix epoch (end = when this was computed).
    pub window_ms: (i64, i64),
    /// Impressions since first seen (not windowed).
    pub impressions_total: u64,
    /// Impressed samples carrying each event type, since first seen.
    pub events_total: BTreeMap<String, u64>,
    /// Corrections (revision > 0 samples) since first seen.
    pub corrections_total: u64,
    /// Emission time of its last sample.
    pub last_ms: i64,
}

/// Everything tracked, as of one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualitySnapshot {
    /// Tracked versions, by key.
    pub versions: Vec<VersionQuality>,
    /// Versions evicted by the `max_versions` bound, by scene.
    pub evicted: BTreeMap<String, u64>,
    /// Impressed samples older than the window when they arrived (not counted).
    pub too_old: u64,
}

#[derive(Debug)]
struct Tracker {
    config: QualityConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    versions: BTreeMap<VersionKey, VersionState>,
    evicted: BTreeMap<String, u64>,
    too_old: u64,
}

#[derive(Debug)]
struct VersionState {
    /// Ring of `buckets` buckets; slot `i` holds bucket number `epochs[i]` (time / bucket_ms).
    buckets: Vec<Accumulator>,
    epochs: Vec<i64>,
    impressions_total: u64,
    events_total: BTreeMap<String, u64>,
    corrections_total: u64,
    last_ms: i64,
}

// === impl Quality ===

impl Quality {
    /// Starts tracking with `config` (a no-op when it is off or the tracker already started:
    /// the first start's config stays).
    pub fn start(&self, config: &QualityConfig) {
        if config.enabled {
            let _ = self.inner.set(Tracker { config: config.clone(), state: Mutex::new(State::default()) });
        }
    }

    /// Whether it was started.
    pub fn is_on(&self) -> bool {
        self.inner.get().is_some()
    }

    /// Counts the sample records among `records` (written to the sample log: call only after the
    /// write succeeded, or a retried batch counts twice). One lock per call.
    pub fn observe<'a>(&self, records: impl IntoIterator<Item = &'a LogRecord>) {
        let Some(tracker) = self.inner.get() else { return };
        let mut state = tracker.state.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            if let Some(log_record::Record::Sample(sample)) = &record.record {
                state.observe(&tracker.config, sample);
            }
        }
    }

    /// The tracked versions' numbers over the window ending at `now_ms`.
    pub fn snapshot(&self, now_ms: i64) -> QualitySnapshot {
        let Some(tracker) = self.inner.get() else { return QualitySnapshot::default() };
        let state = tracker.state.lock().unwrap_or_else(|e| e.into_inner());
        let config = &tracker.config;
        let bucket_ms = config.bucket_s as i64 * 1000;
        let newest = now_ms.div_euclid(bucket_ms);
        let oldest = newest - config.buckets as i64 + 1;
        let mut merged = Accumulator::new(config.bins);
        let versions = state
            .versions
            .iter()
            .map(|(key, v)| {
                merged.clear();
                for (slot, epoch) in v.buckets.iter().zip(&v.epochs) {
                    if (oldest..=newest).contains(epoch) {
                        merged.merge(slot);
                    }
                }
                VersionQuality {
                    key: key.clone(),
                    window: merged.summary(),
                    window_ms: (oldest * bucket_ms, now_ms),
                    impressions_total: v.impressions_total,
                    events_total: v.events_total.clone(),
                    corrections_total: v.corrections_total,
                    last_ms: v.last_ms,
                }
            })
            .collect();
        QualitySnapshot { versions, evicted: state.evicted.clone(), too_old: state.too_old }
    }

    /// The merged buckets of `key` from the one holding `from_ms` to the one holding `now_ms`
    /// (at most the whole window): what the rollout decider compares two versions on, so both
    /// arms cover the same buckets. `None` when not tracked.
    pub fn accumulated(&self, key: &VersionKey, from_ms: i64, now_ms: i64) -> Option<Accumulator> {
        let tracker = self.inner.get()?;
        let state = tracker.state.lock().unwrap_or_else(|e| e.into_inner());
        let v = state.versions.get(key)?;
        let config = &tracker.config;
        let bucket_ms = config.bucket_s as i64 * 1000;
        let newest = now_ms.div_euclid(bucket_ms);
        let oldest = (newest - config.buckets as i64 + 1).max(from_ms.div_euclid(bucket_ms));
        let mut merged = Accumulator::new(config.bins);
        for (slot, epoch) in v.buckets.iter().zip(&v.epochs) {
            if (oldest..=newest).contains(epoch) {
                merged.merge(slot);
            }
        }
        Some(merged)
    }

    /// The configured window, when started.
    pub fn config(&self) -> Option<&QualityConfig> {
        self.inner.get().map(|t| &t.config)
    }
}

// === impl State ===

impl State {
    fn observe(&mut self, config: &QualityConfig, sample: &Sample) {
        let key = VersionKey {
            scene: sample.scene.clone(),
            model: sample.model_name.clone(),
            version: sample.model_version.clone(),
        };
        if sample.revision == 0 && sample.labels.is_empty() {
            // Never impressed (emit_unimpressed): says nothing about the model's ranking.
            return;
        }
        if !self.versions.contains_key(&key) {
            self.admit(config, &key);
        }
        let Some(v) = self.versions.get_mut(&key) else { return };
        v.last_ms = v.last_ms.max(sample.emitted_ms);
        if sample.revision > 0 {
            v.corrections_total += 1;
            return;
        }
        v.impressions_total += 1;
        let mut types: Vec<&str> = sample.labels.iter().map(|l| l.r#type.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        for t in &types {
            // Label types are the join's accepted types: bounded by the config.
            *v.events_total.entry((*t).to_owned()).or_default() += 1;
        }
        let positive = types.contains(&config.positive_event.as_str());
        let bucket_ms = config.bucket_s as i64 * 1000;
        let epoch = sample.emitted_ms.div_euclid(bucket_ms);
        let slot = epoch.rem_euclid(config.buckets as i64) as usize;
        match v.epochs[slot].cmp(&epoch) {
            std::cmp::Ordering::Equal => {}
            std::cmp::Ordering::Less => {
                v.buckets[slot].clear();
                v.epochs[slot] = epoch;
            }
            std::cmp::Ordering::Greater => {
                // The slot already moved past this sample's bucket: older than the window.
                self.too_old += 1;
                return;
            }
        }
        v.buckets[slot].add(sample.score, positive);
    }

    /// Makes room for `key` in its scene (evicting the version with the oldest last sample when
    /// the scene is at its bound) and inserts it.
    fn admit(&mut self, config: &QualityConfig, key: &VersionKey) {
        let in_scene: Vec<(&VersionKey, i64)> =
            self.versions.iter().filter(|(k, _)| k.scene == key.scene).map(|(k, v)| (k, v.last_ms)).collect();
        if in_scene.len() >= config.max_versions
            && let Some(oldest) = in_scene.iter().min_by_key(|(k, last)| (*last, *k)).map(|(k, _)| (*k).clone())
        {
            self.versions.remove(&oldest);
            *self.evicted.entry(key.scene.clone()).or_default() += 1;
            tracing::info!(
                scene = %oldest.scene, model = %oldest.model, version = %oldest.version,
                "quality: version evicted by samples.quality.max_versions"
            );
        }
        self.versions.insert(
            key.clone(),
            VersionState {
                buckets: (0..config.buckets).map(|_| Accumulator::new(config.bins)).collect(),
                epochs: vec![i64::MIN; config.buckets],
                impressions_total: 0,
                events_total: BTreeMap::new(),
                corrections_total: 0,
                last_ms: i64::MIN,
            },
        );
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
