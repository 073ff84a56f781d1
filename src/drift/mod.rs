//! Drift: are the features a version is served with still distributed like the rows it was
//! trained on? Beside the path, after step 5: [`crate::predict`] hands one Predict request in
//! `drift.sample_every` (its assembled tensors and fallbacks, already in memory) to
//! [`Drift::observe`], which adds each feature's served values to a histogram in the bins of the
//! version's training reference ([`reference`], `reference.json` beside `model.onnx`) and counts
//! the rows served from the feature's default. A split scene's tensors (request-level inputs one
//! row per request, `crate::assemble::forms`) are observed in the stored form, every candidate's
//! full row, because the reference was made from samples, which hold that form: a user feature
//! counts once per candidate on both sides, and a split scene drifts exactly as its flat twin.
//!
//! Per (scene, model, version, feature), over a sliding window of `buckets x bucket_s` seconds
//! (a ring of per-bucket counts: bounded memory, `features x bins x buckets x 8` bytes a version):
//! - the served fallback rate (rows served from the default / rows observed), beside the
//!   training one the reference records;
//! - the population stability index of the served histogram against the reference shares,
//!   `PSI = Σ (served − ref) × ln(served / ref)` with each share floored at `drift.epsilon`,
//!   once the window holds `drift.min_rows` rows; flagged above `drift.psi_threshold`.
//!
//! Exported as `augur_drift_*` ([`metrics`], computed at scrape time so the window moves without
//! traffic) and shown on the status page. A version without a reference still serves: its
//! fallback rates are tracked and drift says "no reference". At most `max_versions` versions per
//! scene: a new one evicts the one observed least recently.
//!
//! The tracker is the module's [`ModuleMetrics`]: `Metrics::of::<Drift>()` is the same tracker
//! for the app (which starts it), the predictor (which feeds it) and the admin surface.

pub mod config;
pub mod metrics;
pub mod reference;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use self::config::DriftConfig;
use self::reference::{Binner, Reference, psi};
use crate::assemble::{DType, Fallback, Spec, Tensor, TensorData};

/// The tracker, shared by the predictor (which feeds it), the metrics exposition and the status
/// page. Cheap to clone. Inert until [`start`](Self::start)ed: `observe` returns at once and
/// nothing is exported.
#[derive(Debug, Clone, Default)]
pub struct Drift {
    inner: Arc<OnceLock<Tracker>>,
}

/// (scene, model, version).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionKey {
    /// Scene.
    pub scene: String,
    /// Model repository name.
    pub model: String,
    /// Model version.
    pub version: u64,
}

/// One feature of one version, over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDrift {
    /// Feature name (spec order).
    pub name: String,
    /// Whether the reference summarises this feature.
    pub in_reference: bool,
    /// PSI of the window's served values against the reference (`None`: no reference for it, or
    /// fewer than `min_rows` rows in the window).
    pub psi: Option<f64>,
    /// Above `psi_threshold`.
    pub flagged: bool,
    /// Rows served from the default / rows observed in the window (`None`: no row).
    pub fallback_rate: Option<f64>,
    /// The training rows' fallback rate, per the reference.
    pub reference_fallback_rate: Option<f64>,
}

/// One tracked version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionDrift {
    /// Which version.
    pub key: VersionKey,
    /// Whether it was loaded with a usable training reference.
    pub has_reference: bool,
    /// Rows observed in the window.
    pub rows: u64,
    /// Rows observed since first seen.
    pub rows_total: u64,
    /// Window start and end, ms since the Unix epoch.
    pub window_ms: (i64, i64),
    /// Per feature, spec order.
    pub features: Vec<FeatureDrift>,
}

/// Everything tracked, as of one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftSnapshot {
    /// Tracked versions, by key.
    pub versions: Vec<VersionDrift>,
    /// Requests observed (one in `sample_every`).
    pub observed: u64,
    /// Versions evicted by `max_versions`, by scene.
    pub evicted: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Tracker {
    config: DriftConfig,
    /// Predict requests seen, observed or not: the 1-in-N sampler.
    seen: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Few (scenes x max_versions): a linear search by borrowed key, no allocation per request.
    versions: Vec<VersionState>,
    observed: u64,
    evicted: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct VersionState {
    key: VersionKey,
    has_reference: bool,
    /// Slot `i` holds bucket number `epochs[i]` (time / bucket_ms).
    epochs: Vec<i64>,
    /// Rows per slot.
    rows: Vec<u64>,
    rows_total: u64,
    features: Vec<FeatureState>,
    last_ms: i64,
}

#[derive(Debug)]
struct FeatureState {
    name: String,
    /// Stored-form input (index into the stored tensors), first column and columns in it.
    input: usize,
    offset: usize,
    width: usize,
    /// The reference's bins and shares for it, if any.
    binner: Option<Binner>,
    shares: Vec<f64>,
    reference_fallback_rate: Option<f64>,
    /// `buckets x bins` counts, slot-major.
    counts: Vec<u64>,
    /// Rows served from the default, per slot.
    fallbacks: Vec<u64>,
}

// === impl Drift ===

impl Drift {
    /// Starts tracking with `config` (a no-op when it is off or already started).
    pub fn start(&self, config: &DriftConfig) {
        if config.enabled {
            let _ = self.inner.set(Tracker {
                config: config.clone(),
                seen: AtomicU64::new(0),
                state: Mutex::new(State::default()),
            });
        }
    }

    /// Whether it was started.
    pub fn is_on(&self) -> bool {
        self.inner.get().is_some()
    }

    /// The configuration, when started.
    pub fn config(&self) -> Option<&DriftConfig> {
        self.inner.get().map(|t| &t.config)
    }

    /// One answered Predict request of `spec`'s scene, scored by `model` `version` (loaded with
    /// `reference`): `tensors` as the model got them (the model form: a split scene's
    /// request-level inputs one row, observed per candidate), `fallbacks` as assembly reported them.
    /// Counted only for one request in `sample_every`; the others cost one atomic increment.
    pub fn observe(
        &self,
        spec: &Spec,
        model: &str,
        version: u64,
        reference: Option<&Reference>,
        tensors: &[Tensor],
        fallbacks: &[Fallback],
    ) {
        let Some(tracker) = self.inner.get() else { return };
        if tracker.seen.fetch_add(1, Ordering::Relaxed) % tracker.config.sample_every != 0 {
            return;
        }
        self.observe_at(now_ms(), spec, model, version, reference, tensors, fallbacks);
    }

    /// [`observe`](Self::observe) without the sampler, at `now_ms` (tests).
    #[allow(clippy::too_many_arguments)]
    pub fn observe_at(
        &self,
        now_ms: i64,
        spec: &Spec,
        model: &str,
        version: u64,
        reference: Option<&Reference>,
        tensors: &[Tensor],
        fallbacks: &[Fallback],
    ) {
        let Some(tracker) = self.inner.get() else { return };
        let config = &tracker.config;
        // A split scene's request-level inputs hold one row per request, but the training
        // reference counts every candidate's row (it is made from samples, which keep the stored
        // form): observed in the model form, a user feature would be weighed once per request
        // and its PSI taken on another population. The copy is made for observed requests only.
        let stored;
        let (tensors, rows) = if spec.has_request_level() {
            let rows = tensors.get(spec.inputs.len()).map_or(0, Tensor::rows);
            stored = spec.stored_form(tensors, rows);
            (&stored[..], rows)
        } else {
            (tensors, tensors.first().map_or(0, Tensor::rows))
        };
        if rows == 0 {
            return;
        }
        let mut state = tracker.state.lock().unwrap_or_else(|e| e.into_inner());
        state.observed += 1;
        let found = state
            .versions
            .iter()
            .position(|v| v.key.version == version && v.key.model == model && v.key.scene == spec.scene);
        let index = match found {
            Some(i) => i,
            None => state.admit(config, spec, model, version, reference),
        };
        let v = &mut state.versions[index];
        v.last_ms = v.last_ms.max(now_ms);
        let bucket_ms = config.bucket_s as i64 * 1000;
        let epoch = now_ms.div_euclid(bucket_ms);
        let slot = epoch.rem_euclid(config.buckets as i64) as usize;
        if v.epochs[slot] < epoch {
            v.clear_slot(slot);
            v.epochs[slot] = epoch;
        } else if v.epochs[slot] > epoch {
            // The clock stepped back past this slot: not worth a counter of its own.
            return;
        }
        v.rows[slot] += rows as u64;
        v.rows_total += rows as u64;
        for f in fallbacks {
            if let Some(feature) = v.features.iter_mut().find(|s| s.name == f.feature) {
                // A user or context feature falls back in every row (`candidates` empty).
                let affected = if f.candidates.is_empty() { rows } else { f.candidates.len().min(rows) };
                feature.fallbacks[slot] += affected as u64;
            }
        }
        for feature in &mut v.features {
            feature.add(slot, tensors);
        }
    }

    /// The tracked versions over the window ending at `now_ms`.
    pub fn snapshot(&self, now_ms: i64) -> DriftSnapshot {
        let Some(tracker) = self.inner.get() else { return DriftSnapshot::default() };
        let config = &tracker.config;
        let state = tracker.state.lock().unwrap_or_else(|e| e.into_inner());
        let bucket_ms = config.bucket_s as i64 * 1000;
        let newest = now_ms.div_euclid(bucket_ms);
        let oldest = newest - config.buckets as i64 + 1;
        let mut versions: Vec<VersionDrift> = state
            .versions
            .iter()
            .map(|v| {
                let live: Vec<usize> =
                    (0..config.buckets).filter(|s| (oldest..=newest).contains(&v.epochs[*s])).collect();
                let rows: u64 = live.iter().map(|s| v.rows[*s]).sum();
                let features = v
                    .features
                    .iter()
                    .map(|f| {
                        let fallback_rows: u64 = live.iter().map(|s| f.fallbacks[*s]).sum();
                        let psi = f
                            .binner
                            .as_ref()
                            .filter(|_| rows >= config.min_rows)
                            .and_then(|_| psi(&f.window(&live), &f.shares, config.epsilon));
                        FeatureDrift {
                            name: f.name.clone(),
                            in_reference: f.binner.is_some(),
                            psi,
                            flagged: psi.is_some_and(|p| p > config.psi_threshold),
                            fallback_rate: (rows > 0).then(|| fallback_rows as f64 / rows as f64),
                            reference_fallback_rate: f.reference_fallback_rate,
                        }
                    })
                    .collect();
                VersionDrift {
                    key: v.key.clone(),
                    has_reference: v.has_reference,
                    rows,
                    rows_total: v.rows_total,
                    window_ms: (oldest * bucket_ms, now_ms),
                    features,
                }
            })
            .collect();
        versions.sort_by(|a, b| a.key.cmp(&b.key));
        DriftSnapshot { versions, observed: state.observed, evicted: state.evicted.clone() }
    }
}

// === impl State ===

impl State {
    /// Makes room for the version in its scene (evicting the one observed least recently when
    /// the scene is at its bound), inserts it and returns its index.
    fn admit(
        &mut self,
        config: &DriftConfig,
        spec: &Spec,
        model: &str,
        version: u64,
        reference: Option<&Reference>,
    ) -> usize {
        let in_scene = self.versions.iter().enumerate().filter(|(_, v)| v.key.scene == spec.scene);
        if in_scene.clone().count() >= config.max_versions
            && let Some((oldest, _)) = in_scene.min_by_key(|(_, v)| (v.last_ms, v.key.clone()))
        {
            let gone = self.versions.swap_remove(oldest);
            *self.evicted.entry(spec.scene.clone()).or_default() += 1;
            tracing::info!(
                scene = %gone.key.scene, model = %gone.key.model, version = gone.key.version,
                "drift: version evicted by drift.max_versions"
            );
        }
        // Columns are read in the stored form (see `observe_at`).
        let places = spec.stored_places();
        let features = spec
            .features
            .iter()
            .zip(places)
            .map(|(f, (input, offset))| {
                // A summary of the wrong kind for the input's dtype (ids binned as dense values or
                // the reverse) would compare nothing meaningful: treated as absent.
                let dense = spec.inputs.get(f.input).is_some_and(|i| i.dtype == DType::Float32);
                let summary = reference.and_then(|r| r.feature(&f.name)).filter(|s| s.is_dense() == dense);
                let bins = summary.map_or(0, |s| s.bins());
                FeatureState {
                    name: f.name.clone(),
                    input,
                    offset,
                    width: f.width,
                    binner: summary.map(|s| s.binner()),
                    shares: summary.map_or_else(Vec::new, |s| s.shares.clone()),
                    reference_fallback_rate: summary.map(|s| s.fallback_rate),
                    counts: vec![0; bins * config.buckets],
                    fallbacks: vec![0; config.buckets],
                }
            })
            .collect();
        self.versions.push(VersionState {
            key: VersionKey { scene: spec.scene.clone(), model: model.to_owned(), version },
            has_reference: reference.is_some(),
            epochs: vec![i64::MIN; config.buckets],
            rows: vec![0; config.buckets],
            rows_total: 0,
            features,
            last_ms: i64::MIN,
        });
        self.versions.len() - 1
    }
}

// === impl VersionState ===

impl VersionState {
    fn clear_slot(&mut self, slot: usize) {
        self.rows[slot] = 0;
        for f in &mut self.features {
            f.fallbacks[slot] = 0;
            let bins = f.shares.len();
            f.counts[slot * bins..(slot + 1) * bins].fill(0);
        }
    }
}

// === impl FeatureState ===

impl FeatureState {
    /// Adds this feature's columns of every row to `slot`'s histogram.
    fn add(&mut self, slot: usize, tensors: &[Tensor]) {
        let (Some(binner), Some(tensor)) = (&self.binner, tensors.get(self.input)) else { return };
        if self.offset + self.width > tensor.width {
            return;
        }
        let bins = self.shares.len();
        let counts = &mut self.counts[slot * bins..(slot + 1) * bins];
        let columns = self.offset..self.offset + self.width;
        let stride = tensor.width.max(1);
        match &tensor.data {
            TensorData::F32(values) => {
                for row in values.chunks_exact(stride) {
                    for x in &row[columns.clone()] {
                        counts[binner.dense(*x)] += 1;
                    }
                }
            }
            TensorData::I64(values) => {
                for row in values.chunks_exact(stride) {
                    for id in &row[columns.clone()] {
                        counts[binner.id(*id)] += 1;
                    }
                }
            }
        }
    }

    /// The window's histogram: the live slots' counts summed.
    fn window(&self, live: &[usize]) -> Vec<u64> {
        let bins = self.shares.len();
        let mut sum = vec![0; bins];
        for slot in live {
            for (total, count) in sum.iter_mut().zip(&self.counts[slot * bins..(slot + 1) * bins]) {
                *total += count;
            }
        }
        sum
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
