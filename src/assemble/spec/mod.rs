//! The declarative feature spec (`features/<scene>.yaml`), parsed and compiled.
//!
//! Each feature names its source (`user.<field>`, `item.<field>`, `context.<field>`, or
//! `user.$key` / `item.$key` for the entity id), its type, a default for when the value is
//! missing, a chain of transforms, and the model input it feeds. Columns are assigned in
//! declaration order; every id-producing feature owns a disjoint id range `[base, base + range)`
//! in its input, whose first id (`base`) is reserved for "missing / padding / out of vocabulary".
//!
//! Text: a `string` feature whose chain starts with a tokenizer (`tokens`, `char_ngrams: {n}`)
//! becomes a list of hashed ids, padded/truncated to its `length`. Two sources: a feature may
//! `derive: {cross: [a, b]}` (the two texts joined, hashed) or `derive: {prefix_len: [a, b]}`
//! (shared leading characters, an int) instead of naming one `source`.
//!
//! Split by job, in the order a spec goes through them: `schema` is the YAML as serde reads it
//! (private to this module); `compile` checks it and lays out columns and id ranges; `steps`
//! type-checks each transform chain; `types` holds the compiled pieces a [`Spec`] is made of,
//! re-exported here for the encoder and the model checks.

mod compile;
mod schema;
mod steps;
mod types;

use std::collections::HashMap;
use std::path::Path;

pub use types::{
    DType, DeriveOp, Derived, Entity, Feature, FeatureType, Field, Input, Level, SourceRef, Step, StoredInput,
};

/// Why a spec cannot be used. Messages name the feature (and the input) at fault.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("feature spec {path}: {source}")]
    Io {
        /// The spec file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not match the schema.
    #[error("feature spec {path}: {source}")]
    Yaml {
        /// The spec file.
        path: String,
        /// The parse error (with line and column).
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The spec parsed but is inconsistent.
    #[error("feature spec `{scene}`: {problem}")]
    Invalid {
        /// Scene of the spec.
        scene: String,
        /// What is wrong, naming the feature.
        problem: String,
    },
}

/// The compiled spec of one scene.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Scene name.
    pub scene: String,
    /// Store table with user rows.
    pub user_table: String,
    /// The request must carry a user id.
    pub user_required: bool,
    /// Store table with item rows.
    pub item_table: String,
    /// Model inputs, in declaration order.
    pub inputs: Vec<Input>,
    /// With request-level inputs: the model input (int64 `[rows]`) that gives each row the
    /// index of its request's row in the request-level inputs.
    pub request_index: Option<String>,
    /// The inputs as snapshots, samples, exports and GetFeatures hold them (every candidate's
    /// full row; request-level columns expanded into the input they are `part_of`).
    pub stored: Vec<StoredInput>,
    /// The model output holding one score per row.
    pub output: String,
    /// Features, in declaration order.
    pub features: Vec<Feature>,
    /// User fields to fetch.
    pub user_fields: Vec<String>,
    /// Item fields to fetch.
    pub item_fields: Vec<String>,
    /// Context field → declared type (for request validation).
    pub context_fields: HashMap<String, FeatureType>,
    /// Item field → declared type (request-time overrides allowed on candidates).
    pub item_field_types: HashMap<String, FeatureType>,
    /// Fingerprint of how this spec encodes item features from an item row alone: the tag of
    /// the encoding assembly memoizes on each row ([`crate::fetch::Row::memo`]). Specs with the
    /// same item features share it.
    pub item_memo_tag: u64,
}

// === impl Spec ===

impl Spec {
    /// Reads and compiles a spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io { path: shown.clone(), source })?;
        Self::parse(&text).map_err(|e| match e {
            SpecError::Yaml { source, .. } => SpecError::Yaml { path: shown, source },
            other => other,
        })
    }

    /// Compiles a spec from YAML text.
    pub fn parse(yaml: &str) -> Result<Self, SpecError> {
        let file: schema::SpecFile =
            serde_yaml_ng::from_str(yaml).map_err(|source| SpecError::Yaml { path: "<text>".into(), source })?;
        compile::compile(file)
    }

    /// Whether the feature named `name` is marked `required`.
    pub fn is_required(&self, name: &str) -> bool {
        self.features.iter().any(|f| f.required && f.name == name)
    }

    /// Index of the input named `name`.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|i| i.name == name)
    }
}

#[cfg(test)]
mod tests;
