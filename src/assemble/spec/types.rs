//! The compiled spec's building blocks: what [`super::Spec`] is made of and what the encoder
//! reads per request.
//!
//! `DType`, `FeatureType` and `Step` are also what the YAML spells (they deserialize as written);
//! the rest exists only after compilation: sources resolved to entity and field, and each
//! feature placed at an input index, a column offset and an id range.

use serde::Deserialize;

use crate::fetch::Value;

/// Element type of a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// Ids for embedding lookups.
    Int64,
    /// Dense values.
    Float32,
}

// === impl DType ===

impl DType {
    /// Name as ONNX and the spec spell it.
    pub fn name(self) -> &'static str {
        match self {
            DType::Int64 => "int64",
            DType::Float32 => "float32",
        }
    }
}

/// A feature's declared value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureType {
    /// 64-bit integer.
    Int,
    /// Float.
    Float,
    /// Text.
    String,
    /// List of integers (needs `length`).
    IntList,
    /// List of floats (needs `length`).
    FloatList,
    /// List of strings (needs `length`).
    StringList,
}

// === impl FeatureType ===

impl FeatureType {
    /// Spec spelling, used in messages.
    pub fn name(self) -> &'static str {
        match self {
            FeatureType::Int => "int",
            FeatureType::Float => "float",
            FeatureType::String => "string",
            FeatureType::IntList => "int_list",
            FeatureType::FloatList => "float_list",
            FeatureType::StringList => "string_list",
        }
    }

    /// Whether values are lists (padded/truncated to `length` columns).
    pub(super) fn is_list(self) -> bool {
        matches!(self, FeatureType::IntList | FeatureType::FloatList | FeatureType::StringList)
    }

    /// Whether a request value of this type is acceptable as-is (ints widen to floats).
    pub fn accepts(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (FeatureType::Int, Value::Int(_))
                | (FeatureType::Float, Value::Int(_) | Value::Float(_))
                | (FeatureType::String, Value::Str(_))
                | (FeatureType::IntList, Value::IntList(_))
                | (FeatureType::FloatList, Value::IntList(_) | Value::FloatList(_))
                | (FeatureType::StringList, Value::StrList(_))
        )
    }
}

/// One transform step, applied element-wise (to each list element for list features, to each
/// token after a tokenizer).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Tokenizer (first step of a `string` feature with a `length`): lowercase words split on
    /// anything not alphanumeric; must be followed by `hash`.
    Tokens,
    /// Tokenizer: the lowercased text wrapped in `#`, every `n`-character window (1..=8); must be
    /// followed by `hash`.
    CharNgrams {
        /// Characters per n-gram.
        n: usize,
    },
    /// `ln(1 + max(x, 0))`.
    Log1p,
    /// Clamp into `[min, max]`.
    Clip {
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// `(x - mean) / std`.
    Normalize {
        /// Subtracted first.
        mean: f64,
        /// Divided by; must be > 0.
        std: f64,
    },
    /// Hash the value's text (ints by their decimal form) into `buckets` ids.
    Hash {
        /// Number of buckets.
        buckets: u64,
    },
    /// Id = number of boundaries `<=` x (boundaries strictly ascending).
    Bucketize {
        /// Bucket edges.
        boundaries: Vec<f64>,
    },
    /// An int that already is an id in `[0, buckets)`; others map to the reserved id.
    Identity {
        /// Size of the id space.
        buckets: u64,
    },
}

// === impl Step ===

impl Step {
    /// Whether the step turns one string into a list of tokens.
    pub fn is_tokenizer(&self) -> bool {
        matches!(self, Step::Tokens | Step::CharNgrams { .. })
    }

    /// Spec spelling, used in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Tokens => "tokens",
            Step::CharNgrams { .. } => "char_ngrams",
            Step::Log1p => "log1p",
            Step::Clip { .. } => "clip",
            Step::Normalize { .. } => "normalize",
            Step::Hash { .. } => "hash",
            Step::Bucketize { .. } => "bucketize",
            Step::Identity { .. } => "identity",
        }
    }
}

/// Which entity a feature reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    /// The request's user (one row shared by all candidates).
    User,
    /// Each candidate item.
    Item,
    /// Request context values.
    Context,
}

/// Where a feature's raw value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The entity's id itself (`user.$key`).
    Key,
    /// A named field of the row / context map.
    Named(String),
}

/// The operation of a derived feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeriveOp {
    /// Both texts joined by [`crate::assemble::text::CROSS_SEPARATOR`]: a string, hashed.
    Cross,
    /// Leading characters the two lowercased texts share: an int.
    PrefixLen,
}

// === impl DeriveOp ===

impl DeriveOp {
    /// Spec spelling.
    pub fn name(self) -> &'static str {
        match self {
            DeriveOp::Cross => "cross",
            DeriveOp::PrefixLen => "prefix_len",
        }
    }

    /// The type of the derived value.
    pub fn output(self) -> FeatureType {
        match self {
            DeriveOp::Cross => FeatureType::String,
            DeriveOp::PrefixLen => FeatureType::Int,
        }
    }
}

/// One input of a derived feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// Entity it reads.
    pub entity: Entity,
    /// Field it reads.
    pub field: Field,
    /// How the raw value is read: `string`, or `int` when another feature declares the field so
    /// (its decimal text is used).
    pub ty: FeatureType,
}

/// A feature computed from two sources (`derive:`).
#[derive(Debug, Clone)]
pub struct Derived {
    /// What is computed.
    pub op: DeriveOp,
    /// The two inputs, in spec order (a fallback reports the first missing one's reason).
    pub sources: [SourceRef; 2],
}

/// A compiled feature.
#[derive(Debug, Clone)]
pub struct Feature {
    /// Spec name (reported in fallbacks and layouts).
    pub name: String,
    /// Entity it reads. For a derived feature: `Item` when either source is an item (encoded per
    /// candidate), else the first source's entity (encoded once, shared).
    pub entity: Entity,
    /// Field it reads (for a derived feature, that of the source `entity` came from).
    pub field: Field,
    /// Declared type.
    pub ty: FeatureType,
    /// Transform chain.
    pub steps: Vec<Step>,
    /// Index into [`Spec::inputs`](super::Spec::inputs).
    pub input: usize,
    /// First column in that input.
    pub offset: usize,
    /// Columns (1, or `length` for lists).
    pub width: usize,
    /// First id of this feature's range (int64 inputs only); `id_base` itself means missing.
    pub id_base: i64,
    /// Raw default value, already of the declared type.
    pub default: Option<Value>,
    /// A fallback fails the request (FAILED_PRECONDITION) instead of serving the default.
    pub required: bool,
    /// Set for `derive:` features; `entity` / `field` then only say where the feature is encoded.
    pub derive: Option<Derived>,
}

/// How many rows of a model input one request contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// One row per candidate (`[N, width]`).
    #[default]
    Row,
    /// One row per request (`[R, width]`): only user and context features, computed once and
    /// gathered per candidate inside the graph by the request index.
    Request,
}

/// A compiled model input.
#[derive(Debug, Clone)]
pub struct Input {
    /// ONNX input name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Rows per candidate or per request.
    pub level: Level,
    /// For a request-level input: the per-row input whose stored form holds its columns.
    pub part_of: Option<usize>,
    /// Columns: sum of the widths of the features feeding it.
    pub width: usize,
    /// For int64 inputs: every id is in `[0, vocab)` (embedding table size). A request-level
    /// input that is `part_of` another shares that input's id space (one embedding table).
    pub vocab: u64,
}

/// One input as snapshots, samples, exports and GetFeatures hold it: every candidate's full
/// row, as a spec without request-level inputs would feed the model. For such a spec the stored
/// inputs are the model inputs.
#[derive(Debug, Clone)]
pub struct StoredInput {
    /// Name (that of the per-row model input it extends).
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Per stored column: (model input, column in it).
    pub columns: Vec<(usize, usize)>,
    /// Id space, as [`Input::vocab`].
    pub vocab: u64,
}
