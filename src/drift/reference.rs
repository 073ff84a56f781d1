//! The training reference stored with a model version: `reference.json` beside `model.onnx`,
//! written by the trainer (`tools/train/reference.py`) from the rows it trained on and carried
//! by `augur models publish` like any file of the version.
//!
//! Per model input feature (named as `features/<scene>.yaml` names it), a summary of its training
//! distribution over the values the model saw (after the spec's transforms):
//! - a dense (`float32` input) feature: fixed quantile bin edges and the training share per bin;
//!   a value `x` falls in bin `#{edges e : e <= x}` (numpy's `searchsorted(edges, x, "right")`);
//! - an id (`int64` input) feature: the top-K most frequent ids with their shares, then one
//!   "other" bin for every other id. Every column of a multi-column feature counts.
//!
//! Both carry the share of training rows served from the feature's default (`fallback_rate`).
//! A version without the file loads and serves as before; drift then says "no reference".

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file name, beside `model.onnx` in a version directory.
pub const REFERENCE_FILE: &str = "reference.json";

/// Bins one feature may declare at most: the served histograms are `bins x buckets` counters.
pub const MAX_BINS: usize = 256;

/// The format this build reads.
pub const FORMAT: u32 = 1;

/// A version's training reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// File format; only [`FORMAT`] is read.
    pub format: u32,
    /// Scene whose spec named the features (informational).
    #[serde(default)]
    pub scene: String,
    /// Training rows summarised.
    pub rows: u64,
    /// One summary per model input feature.
    pub features: Vec<FeatureReference>,
}

/// One feature's training distribution. Other keys are ignored (the trainer adds `input` for
/// readers; `deny_unknown_fields` does not combine with the flattened `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReference {
    /// Feature name, as the spec names it.
    pub name: String,
    /// How its values are binned.
    #[serde(flatten)]
    pub bins: Bins,
    /// Training share per bin (sums to 1): `edges.len() + 1` for quantiles, `values.len() + 1`
    /// (the last one "other") for top values.
    pub shares: Vec<f64>,
    /// Share of training rows served from the feature's default.
    #[serde(default)]
    pub fallback_rate: f64,
}

/// How a feature's values map to bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Bins {
    /// Dense values: strictly increasing bin edges (training quantiles).
    Quantiles {
        /// Inner edges; `edges.len() + 1` bins.
        edges: Vec<f64>,
    },
    /// Ids: the most frequent training ids, each its own bin, then "other".
    TopValues {
        /// Distinct ids, most frequent first.
        values: Vec<i64>,
    },
}

/// Why a reference file could not be used (the version still loads; drift shows no reference).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// Unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not a reference.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

// === impl Reference ===

impl Reference {
    /// Reads `reference.json` from a version directory: `Ok(None)` when there is none.
    pub fn load(version_dir: &Path) -> Result<Option<Self>, ReferenceError> {
        let path = version_dir.join(REFERENCE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ReferenceError::Io { path: path.display().to_string(), source }),
        };
        Self::parse(&bytes, &path.display().to_string()).map(Some)
    }

    /// Parses and checks the content of a reference file (`path` names it in errors).
    pub fn parse(bytes: &[u8], path: &str) -> Result<Self, ReferenceError> {
        let invalid = |problem: String| ReferenceError::Invalid { path: path.to_owned(), problem };
        let reference: Reference = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        reference.check().map_err(invalid)?;
        Ok(reference)
    }

    /// Checks the format and every feature's bins and shares.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {} (this build reads {FORMAT})", self.format));
        }
        for f in &self.features {
            f.check().map_err(|problem| format!("feature `{}`: {problem}", f.name))?;
        }
        Ok(())
    }

    /// The summary of `feature`, if the reference has one.
    pub fn feature(&self, name: &str) -> Option<&FeatureReference> {
        self.features.iter().find(|f| f.name == name)
    }
}

// === impl FeatureReference ===

impl FeatureReference {
    fn check(&self) -> Result<(), String> {
        let bins = match &self.bins {
            Bins::Quantiles { edges } => {
                if edges.iter().any(|e| !e.is_finite()) || edges.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("edges must be finite and strictly increasing".into());
                }
                edges.len() + 1
            }
            Bins::TopValues { values } => {
                let mut sorted = values.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() != values.len() {
                    return Err("values must be distinct".into());
                }
                values.len() + 1
            }
        };
        if bins > MAX_BINS {
            return Err(format!("{bins} bins, more than {MAX_BINS}"));
        }
        if self.shares.len() != bins {
            return Err(format!("{} shares for {bins} bins", self.shares.len()));
        }
        if self.shares.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return Err("shares must be finite and not negative".into());
        }
        let sum: f64 = self.shares.iter().sum();
        if (sum - 1.0).abs() > 1e-3 {
            return Err(format!("shares sum to {sum}, not 1"));
        }
        if !(0.0..=1.0).contains(&self.fallback_rate) {
            return Err(format!("fallback_rate {} is not a share", self.fallback_rate));
        }
        Ok(())
    }

    /// Whether it bins dense values (quantile edges) rather than ids.
    pub fn is_dense(&self) -> bool {
        matches!(self.bins, Bins::Quantiles { .. })
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.shares.len()
    }

    /// A binner for this feature's served values.
    pub fn binner(&self) -> Binner {
        match &self.bins {
            Bins::Quantiles { edges } => Binner::Edges(edges.clone()),
            Bins::TopValues { values } => {
                let mut ids: Vec<(i64, u16)> = values.iter().enumerate().map(|(i, v)| (*v, i as u16)).collect();
                ids.sort_unstable();
                Binner::Ids { ids, other: values.len() as u16 }
            }
        }
    }
}

/// Maps one served value to its reference bin.
#[derive(Debug, Clone, PartialEq)]
pub enum Binner {
    /// Quantile edges (dense values).
    Edges(Vec<f64>),
    /// Top ids sorted by id, with their bin; everything else is `other`.
    Ids {
        /// (id, bin), sorted by id.
        ids: Vec<(i64, u16)>,
        /// The "other" bin.
        other: u16,
    },
}

// === impl Binner ===

impl Binner {
    /// The bin of a dense value: the number of edges `<= x` (NaN: the last bin).
    pub fn dense(&self, x: f32) -> usize {
        match self {
            Binner::Edges(edges) => {
                let x = f64::from(x);
                if x.is_nan() { edges.len() } else { edges.partition_point(|e| *e <= x) }
            }
            Binner::Ids { other, .. } => usize::from(*other),
        }
    }

    /// The bin of an id: its own when among the top values, else "other".
    pub fn id(&self, id: i64) -> usize {
        match self {
            Binner::Ids { ids, other } => {
                ids.binary_search_by_key(&id, |(v, _)| *v).map_or(usize::from(*other), |i| usize::from(ids[i].1))
            }
            Binner::Edges(edges) => edges.partition_point(|e| *e <= id as f64),
        }
    }
}

/// Population stability index of `served` counts against `reference` shares:
/// `Σ (s − r) × ln(s / r)`, each share floored at `epsilon` so an empty bin stays finite.
/// `None` when nothing was served.
pub fn psi(served: &[u64], reference: &[f64], epsilon: f64) -> Option<f64> {
    let total: u64 = served.iter().sum();
    if total == 0 || served.len() != reference.len() {
        return None;
    }
    let total = total as f64;
    Some(
        served
            .iter()
            .zip(reference)
            .map(|(count, r)| {
                let s = (*count as f64 / total).max(epsilon);
                let r = r.max(epsilon);
                (s - r) * (s / r).ln()
            })
            .sum(),
    )
}
