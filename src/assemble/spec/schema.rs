//! The YAML schema of `features/<scene>.yaml`: the file as serde reads it, before
//! [`super::compile`] checks it and assigns columns and id ranges.
//!
//! These structs mirror the file (optional keys, `source` strings, raw YAML defaults); the
//! compiled types in [`super::types`] hold what the encoder needs. Only `compile` reads them, so
//! they stay private to the spec module. The leaf types the file spells directly (`DType`,
//! `FeatureType`, `Step`) deserialize as they are and are shared with the compiled spec.

use serde::Deserialize;

use super::types::{DType, FeatureType, Level, Step};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpecFile {
    pub(super) scene: String,
    pub(super) entities: EntitiesDecl,
    pub(super) inputs: Vec<InputDecl>,
    // Required when an input is request-level: the model input carrying row → request.
    #[serde(default)]
    pub(super) request_index: Option<String>,
    pub(super) output: String,
    pub(super) features: Vec<FeatureDecl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EntitiesDecl {
    pub(super) user: EntityDecl,
    pub(super) item: EntityDecl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EntityDecl {
    pub(super) table: String,
    #[serde(default)]
    pub(super) required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputDecl {
    pub(super) name: String,
    pub(super) dtype: DType,
    #[serde(default)]
    pub(super) level: Level,
    // A request-level input's columns are stored (snapshots, samples, exports) as columns of
    // this per-row input, at the places their features hold in declaration order.
    #[serde(default)]
    pub(super) part_of: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeatureDecl {
    pub(super) name: String,
    // Exactly one of `source` and `derive`.
    #[serde(default)]
    pub(super) source: Option<String>,
    #[serde(default, with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub(super) derive: Option<DeriveDecl>,
    // Required with `source`; a derived feature's type follows from its operation.
    #[serde(rename = "type", default)]
    pub(super) ty: Option<FeatureType>,
    #[serde(default)]
    pub(super) default: Option<serde_yaml_ng::Value>,
    // Steps are written `- log1p` or `- hash: {buckets: 10}` (maps, not YAML tags).
    #[serde(default, with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub(super) transform: Vec<Step>,
    #[serde(default)]
    pub(super) length: Option<usize>,
    pub(super) input: String,
    #[serde(default)]
    pub(super) required: bool,
}

/// `derive: {cross: [a, b]}` or `derive: {prefix_len: [a, b]}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum DeriveDecl {
    Cross(Vec<String>),
    PrefixLen(Vec<String>),
}
