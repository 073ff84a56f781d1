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

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::fetch::Value;

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

// === the YAML schema ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    scene: String,
    entities: EntitiesDecl,
    inputs: Vec<InputDecl>,
    output: String,
    features: Vec<FeatureDecl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitiesDecl {
    user: EntityDecl,
    item: EntityDecl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityDecl {
    table: String,
    #[serde(default)]
    required: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputDecl {
    name: String,
    dtype: DType,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureDecl {
    name: String,
    // Exactly one of `source` and `derive`.
    #[serde(default)]
    source: Option<String>,
    #[serde(default, with = "serde_yaml_ng::with::singleton_map_recursive")]
    derive: Option<DeriveDecl>,
    // Required with `source`; a derived feature's type follows from its operation.
    #[serde(rename = "type", default)]
    ty: Option<FeatureType>,
    #[serde(default)]
    default: Option<serde_yaml_ng::Value>,
    // Steps are written `- log1p` or `- hash: {buckets: 10}` (maps, not YAML tags).
    #[serde(default, with = "serde_yaml_ng::with::singleton_map_recursive")]
    transform: Vec<Step>,
    #[serde(default)]
    length: Option<usize>,
    input: String,
    #[serde(default)]
    required: bool,
}

/// `derive: {cross: [a, b]}` or `derive: {prefix_len: [a, b]}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum DeriveDecl {
    Cross(Vec<String>),
    PrefixLen(Vec<String>),
}

/// Element type of a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// Ids for embedding lookups.
    Int64,
    /// Dense values.
    Float32,
}

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

    fn is_list(self) -> bool {
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

// === the compiled spec ===

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
    /// Both texts joined by [`super::text::CROSS_SEPARATOR`]: a string, hashed.
    Cross,
    /// Leading characters the two lowercased texts share: an int.
    PrefixLen,
}

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
    /// Index into [`Spec::inputs`].
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

/// A compiled model input.
#[derive(Debug, Clone)]
pub struct Input {
    /// ONNX input name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Columns: sum of the widths of the features feeding it.
    pub width: usize,
    /// For int64 inputs: every id is in `[0, vocab)` (embedding table size).
    pub vocab: u64,
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
}

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
        let file: SpecFile =
            serde_yaml_ng::from_str(yaml).map_err(|source| SpecError::Yaml { path: "<text>".into(), source })?;
        compile(file)
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

fn compile(file: SpecFile) -> Result<Spec, SpecError> {
    let scene = file.scene.clone();
    let bad = |problem: String| SpecError::Invalid { scene: scene.clone(), problem };
    if file.inputs.is_empty() {
        return Err(bad("declares no inputs".into()));
    }
    let mut inputs: Vec<Input> = Vec::new();
    for decl in &file.inputs {
        if inputs.iter().any(|i| i.name == decl.name) {
            return Err(bad(format!("input `{}` is declared twice", decl.name)));
        }
        inputs.push(Input { name: decl.name.clone(), dtype: decl.dtype, width: 0, vocab: 0 });
    }
    // Types the plain features give their fields (first declaration wins; conflicts are reported
    // below), so a derived feature reads a field the same way wherever it is declared.
    let mut declared: HashMap<(Entity, String), FeatureType> = HashMap::new();
    for decl in &file.features {
        if let (Some(source), Some(ty)) = (&decl.source, decl.ty)
            && let Some((entity, Field::Named(field))) = parse_source(source)
        {
            declared.entry((entity, field)).or_insert(ty);
        }
    }
    let mut features = Vec::with_capacity(file.features.len());
    let mut spec_fields: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut context_fields = HashMap::new();
    let mut item_field_types = HashMap::new();
    for decl in file.features {
        let name = decl.name.clone();
        if features.iter().any(|f: &Feature| f.name == name) {
            return Err(bad(format!("feature `{name}` is declared twice")));
        }
        // (entity, field, type) of every source read, and the derivation if any.
        let (reads, ty, derive) = match (&decl.source, &decl.derive) {
            (Some(_), Some(_)) => {
                return Err(bad(format!("feature `{name}` has both `source` and `derive`; give one")));
            }
            (None, None) => return Err(bad(format!("feature `{name}` needs a `source` or a `derive`"))),
            (Some(source), None) => {
                let (entity, field) = parse_source(source).ok_or_else(|| bad(format!("feature `{name}`: source `{source}` is not user.<field>, item.<field>, context.<field>, user.$key or item.$key")))?;
                let ty = decl.ty.ok_or_else(|| bad(format!("feature `{name}` needs a `type`")))?;
                (vec![SourceRef { entity, field, ty }], ty, None)
            }
            (None, Some(derive)) => {
                let derived = compile_derive(&name, derive, decl.ty, &declared).map_err(&bad)?;
                (derived.sources.to_vec(), derived.op.output(), Some(derived))
            }
        };
        let input = inputs.iter().position(|i| i.name == decl.input).ok_or_else(|| {
            bad(format!("feature `{name}` feeds input `{}`, which is not declared under inputs", decl.input))
        })?;
        let tokenized = decl.transform.first().is_some_and(Step::is_tokenizer);
        if tokenized && derive.is_some() {
            return Err(bad(format!(
                "feature `{name}`: a derived value is hashed whole; {} does not apply",
                decl.transform[0].name()
            )));
        }
        let width = match (ty.is_list() || tokenized, decl.length) {
            (true, Some(n)) if n > 0 => n,
            (true, _) if tokenized => {
                return Err(bad(format!(
                    "feature `{name}`: a tokenized string needs `length` > 0 (pad/truncate the tokens)"
                )));
            }
            (true, _) => {
                return Err(bad(format!(
                    "feature `{name}`: list type {} needs `length` > 0 (pad/truncate)",
                    ty.name()
                )));
            }
            (false, None) => 1,
            (false, Some(_)) => {
                return Err(bad(format!(
                    "feature `{name}`: `length` only applies to list types and to strings whose transform starts with tokens or char_ngrams"
                )));
            }
        };
        let is_key = derive.is_none() && reads[0].field == Field::Key;
        let (produces_ids, range) = check_steps(&name, ty, &decl.transform, is_key).map_err(&bad)?;
        let dtype = inputs[input].dtype;
        match (produces_ids, dtype) {
            (true, DType::Int64) | (false, DType::Float32) => {}
            (true, DType::Float32) => {
                return Err(bad(format!("feature `{name}` produces ids but input `{}` is float32", decl.input)));
            }
            (false, DType::Int64) => {
                return Err(bad(format!(
                    "feature `{name}` produces numbers but input `{}` is int64 (end the transform with hash, bucketize or identity)",
                    decl.input
                )));
            }
        }
        let default = match &decl.default {
            None => None,
            Some(yaml) => Some(
                default_value(ty, yaml)
                    .ok_or_else(|| bad(format!("feature `{name}`: default {yaml:?} is not a {}", ty.name())))?,
            ),
        };
        if is_key && default.is_some() {
            return Err(bad(format!("feature `{name}`: an entity key has no default")));
        }
        let slot = &mut inputs[input];
        let id_base = slot.vocab as i64;
        let offset = slot.width;
        slot.width += width;
        slot.vocab += range;
        for read in &reads {
            if let Field::Named(f) = &read.field {
                match read.entity {
                    Entity::User => push_unique(&mut spec_fields[0], f),
                    Entity::Item => {
                        push_unique(&mut spec_fields[1], f);
                        declare_type(&mut item_field_types, f, read.ty, &name).map_err(&bad)?;
                    }
                    Entity::Context => declare_type(&mut context_fields, f, read.ty, &name).map_err(&bad)?,
                }
            }
        }
        // A derived feature is encoded per candidate when it reads an item.
        let home = reads.iter().find(|r| r.entity == Entity::Item).unwrap_or(&reads[0]);
        features.push(Feature {
            name,
            entity: home.entity,
            field: home.field.clone(),
            ty,
            required: decl.required,
            steps: decl.transform,
            input,
            offset,
            width,
            id_base,
            default,
            derive,
        });
    }
    for input in &inputs {
        if input.width == 0 {
            return Err(bad(format!("input `{}` is fed by no feature", input.name)));
        }
    }
    let [user_fields, item_fields] = spec_fields;
    Ok(Spec {
        scene: file.scene,
        user_table: file.entities.user.table,
        user_required: file.entities.user.required,
        item_table: file.entities.item.table,
        inputs,
        output: file.output,
        features,
        user_fields,
        item_fields,
        context_fields,
        item_field_types,
    })
}

/// Checks a `derive:` and types its sources: a field no plain feature declares is read as a
/// string; one declared `int` is read as an int (its decimal text); lists and floats are refused.
fn compile_derive(
    name: &str,
    decl: &DeriveDecl,
    ty: Option<FeatureType>,
    declared: &HashMap<(Entity, String), FeatureType>,
) -> Result<Derived, String> {
    let (op, sources) = match decl {
        DeriveDecl::Cross(sources) => (DeriveOp::Cross, sources),
        DeriveDecl::PrefixLen(sources) => (DeriveOp::PrefixLen, sources),
    };
    let op_name = op.name();
    let [a, b] = sources.as_slice() else {
        return Err(format!("feature `{name}`: derive {op_name} takes exactly two sources, got {}", sources.len()));
    };
    if let Some(ty) = ty
        && ty != op.output()
    {
        return Err(format!(
            "feature `{name}`: derive {op_name} produces {}, but the feature declares type {}",
            op.output().name(),
            ty.name()
        ));
    }
    let source = |text: &String| -> Result<SourceRef, String> {
        let (entity, field) = parse_source(text).ok_or_else(|| {
            format!(
                "feature `{name}`: derive {op_name} source `{text}` is not user.<field>, item.<field>, context.<field>, user.$key or item.$key"
            )
        })?;
        let ty = match &field {
            Field::Key => FeatureType::String,
            Field::Named(f) => match declared.get(&(entity, f.clone())) {
                None => FeatureType::String,
                Some(t @ (FeatureType::String | FeatureType::Int)) => *t,
                Some(t) => {
                    return Err(format!(
                        "feature `{name}`: derive {op_name} reads `{text}`, which another feature declares as {}; only string and int values can be derived from (no lists, no floats)",
                        t.name()
                    ));
                }
            },
        };
        Ok(SourceRef { entity, field, ty })
    };
    Ok(Derived { op, sources: [source(a)?, source(b)?] })
}

fn push_unique(fields: &mut Vec<String>, field: &str) {
    if !fields.iter().any(|f| f == field) {
        fields.push(field.to_owned());
    }
}

fn declare_type(
    types: &mut HashMap<String, FeatureType>,
    field: &str,
    ty: FeatureType,
    feature: &str,
) -> Result<(), String> {
    match types.insert(field.to_owned(), ty) {
        Some(prev) if prev != ty => Err(format!(
            "feature `{feature}` reads field `{field}` as {} but another feature reads it as {}",
            ty.name(),
            prev.name()
        )),
        _ => Ok(()),
    }
}

fn parse_source(source: &str) -> Option<(Entity, Field)> {
    let (entity, field) = source.split_once('.')?;
    let entity = match entity {
        "user" => Entity::User,
        "item" => Entity::Item,
        "context" => Entity::Context,
        _ => return None,
    };
    let field = match field {
        "" => return None,
        "$key" if entity != Entity::Context => Field::Key,
        f if f.starts_with('$') => return None,
        f => Field::Named(f.to_owned()),
    };
    Some((entity, field))
}

/// Walks the transform chain and returns (produces ids, id range incl. the reserved id).
fn check_steps(name: &str, ty: FeatureType, steps: &[Step], is_key: bool) -> Result<(bool, u64), String> {
    #[derive(PartialEq)]
    enum Domain {
        RawInt,
        Num,
        Text,
    }
    let mut domain = match ty {
        FeatureType::Int | FeatureType::IntList => Domain::RawInt,
        FeatureType::Float | FeatureType::FloatList => Domain::Num,
        FeatureType::String | FeatureType::StringList => Domain::Text,
    };
    if is_key && ty != FeatureType::String {
        return Err(format!("feature `{name}`: an entity key is a string; declare type: string"));
    }
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        let terminal = |buckets: u64| -> Result<(bool, u64), String> {
            if !last {
                return Err(format!("feature `{name}`: {step:?} produces ids and must be the last transform"));
            }
            if buckets == 0 || buckets > (1 << 40) {
                return Err(format!("feature `{name}`: buckets must be between 1 and 2^40"));
            }
            Ok((true, buckets + 1))
        };
        match step {
            Step::Tokens | Step::CharNgrams { .. } => {
                let tokenizer = step.name();
                if i != 0 {
                    return Err(format!("feature `{name}`: {tokenizer} must be the first transform"));
                }
                if ty != FeatureType::String {
                    return Err(format!(
                        "feature `{name}`: {tokenizer} splits a string, but the feature is {}",
                        ty.name()
                    ));
                }
                if let Step::CharNgrams { n } = step
                    && !(1..=8).contains(n)
                {
                    return Err(format!("feature `{name}`: char_ngrams needs n between 1 and 8 (got {n})"));
                }
                if !matches!(steps.get(1), Some(Step::Hash { .. })) {
                    return Err(format!("feature `{name}`: {tokenizer} must be followed by hash (tokens are text)"));
                }
            }
            Step::Log1p | Step::Clip { .. } | Step::Normalize { .. } => {
                if domain == Domain::Text {
                    return Err(format!("feature `{name}`: {step:?} needs a number, the value is a string"));
                }
                if let Step::Clip { min, max } = step
                    && (min.is_nan() || max.is_nan() || min > max)
                {
                    return Err(format!("feature `{name}`: clip needs min <= max"));
                }
                if let Step::Normalize { std, .. } = step
                    && !(*std > 0.0 && std.is_finite())
                {
                    return Err(format!("feature `{name}`: normalize needs std > 0"));
                }
                domain = Domain::Num;
            }
            Step::Hash { buckets } => {
                if domain == Domain::Num && ty != FeatureType::Int && ty != FeatureType::IntList {
                    return Err(format!("feature `{name}`: hash of a float is ambiguous; bucketize it"));
                }
                return terminal(*buckets);
            }
            Step::Bucketize { boundaries } => {
                if domain == Domain::Text {
                    return Err(format!("feature `{name}`: bucketize needs a number, the value is a string"));
                }
                if boundaries.is_empty()
                    || boundaries.iter().any(|b| !b.is_finite())
                    || boundaries.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err(format!(
                        "feature `{name}`: bucketize boundaries must be finite and strictly ascending"
                    ));
                }
                return terminal(boundaries.len() as u64 + 1);
            }
            Step::Identity { buckets } => {
                if domain != Domain::RawInt {
                    return Err(format!("feature `{name}`: identity ids need an untransformed int"));
                }
                return terminal(*buckets);
            }
        }
    }
    if domain == Domain::Text {
        return Err(format!("feature `{name}`: a string must end in a hash transform"));
    }
    Ok((false, 0))
}

fn default_value(ty: FeatureType, yaml: &serde_yaml_ng::Value) -> Option<Value> {
    use serde_yaml_ng::Value as Y;
    let list = |y: &Y| y.as_sequence().cloned();
    Some(match ty {
        FeatureType::Int => Value::Int(yaml.as_i64()?),
        FeatureType::Float => Value::Float(yaml.as_f64()?),
        FeatureType::String => Value::Str(yaml.as_str()?.to_owned()),
        FeatureType::IntList => Value::IntList(list(yaml)?.iter().map(Y::as_i64).collect::<Option<_>>()?),
        FeatureType::FloatList => Value::FloatList(list(yaml)?.iter().map(Y::as_f64).collect::<Option<_>>()?),
        FeatureType::StringList => {
            Value::StrList(list(yaml)?.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<_>>()?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "scene: t\nentities: {user: {table: u, required: true}, item: {table: i}}\ninputs: [{name: ids, dtype: int64}, {name: dense, dtype: float32}]\noutput: ctr\nfeatures:\n";

    fn parse(features: &str) -> Result<Spec, SpecError> {
        Spec::parse(&format!("{BASE}{features}"))
    }

    #[test]
    fn every_spec_in_features_dir_compiles() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("features");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let spec = Spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!spec.features.is_empty());
                seen += 1;
            }
        }
        assert!(seen >= 2, "expected the ranking and movielens specs");
    }

    #[test]
    fn columns_and_id_ranges_are_assigned_in_order() {
        let spec = parse(
            "  - {name: u, source: user.$key, type: string, transform: [hash: {buckets: 10}], input: ids}\n  - {name: tags, source: item.tags, type: string_list, length: 3, transform: [hash: {buckets: 5}], input: ids}\n  - {name: price, source: item.price, type: float, transform: [log1p], input: dense}\n",
        )
        .unwrap();
        let ids = &spec.inputs[0];
        assert_eq!((ids.width, ids.vocab), (4, 11 + 6));
        assert_eq!((spec.features[1].offset, spec.features[1].id_base), (1, 11));
        assert_eq!(spec.inputs[1].width, 1);
        assert_eq!(spec.item_fields, vec!["tags".to_string(), "price".to_string()]);
    }

    #[test]
    fn inconsistent_specs_name_the_feature() {
        let cases = [
            (
                "  - {name: c, source: item.c, type: string, input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
                "`c`",
            ),
            (
                "  - {name: c, source: item.c, type: float, transform: [log1p], input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
                "`c` produces numbers",
            ),
            (
                "  - {name: c, source: item.c, type: int, transform: [hash: {buckets: 3}], input: nope}\n",
                "input `nope`",
            ),
            (
                "  - {name: c, source: item.c, type: int, transform: [bucketize: {boundaries: [2, 1]}], input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
                "strictly ascending",
            ),
            (
                "  - {name: c, source: item.c, type: int_list, transform: [hash: {buckets: 3}], input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
                "needs `length`",
            ),
            (
                "  - {name: c, source: item.c, type: int, default: oops, transform: [hash: {buckets: 3}], input: ids}\n  - {name: p, source: item.p, type: float, input: dense}\n",
                "default",
            ),
            (
                "  - {name: c, source: item.c, type: int, transform: [hash: {buckets: 3}], input: ids}\n",
                "input `dense` is fed by no feature",
            ),
        ];
        for (features, needle) in cases {
            let err = parse(features).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }

    const DENSE: &str = "  - {name: p, source: item.p, type: float, input: dense}\n";

    #[test]
    fn text_and_derived_features_compile_and_register_their_fields() {
        let spec = parse(
            "  - {name: q_tok, source: context.query, type: string, length: 4, transform: [tokens, hash: {buckets: 100}], input: ids}\n\
             \x20\x20- {name: q_tri, source: context.query, type: string, length: 6, transform: [char_ngrams: {n: 3}, hash: {buckets: 100}], input: ids}\n\
             \x20\x20- {name: q_x_cat, derive: {cross: [context.query, item.category]}, type: string, transform: [hash: {buckets: 50}], input: ids}\n\
             \x20\x20- {name: seg_x_dev, derive: {cross: [user.segment, context.device]}, transform: [hash: {buckets: 50}], input: ids}\n\
             \x20\x20- {name: age_x_item, derive: {cross: [user.age, item.$key]}, transform: [hash: {buckets: 50}], input: ids}\n\
             \x20\x20- {name: age, source: user.age, type: int, transform: [identity: {buckets: 99}], input: ids}\n\
             \x20\x20- {name: q_prefix, derive: {prefix_len: [context.query, item.$key]}, type: int, transform: [{clip: {min: 0, max: 10}}, {normalize: {mean: 2, std: 2}}], input: dense}\n"
        )
        .unwrap();
        let f = |n: &str| spec.features.iter().find(|f| f.name == n).unwrap();
        assert_eq!((f("q_tok").width, f("q_tri").width, f("q_x_cat").width), (4, 6, 1));
        assert_eq!(f("q_tri").offset, 4);
        assert_eq!(spec.inputs[0].width, 4 + 6 + 1 + 1 + 1 + 1);
        assert_eq!(spec.inputs[0].vocab, 101 + 101 + 51 * 3 + 100);
        // Per candidate when either source is an item; shared otherwise.
        assert_eq!(f("q_x_cat").entity, Entity::Item);
        assert_eq!(f("q_prefix").entity, Entity::Item);
        assert_eq!(f("seg_x_dev").entity, Entity::User);
        assert_eq!((f("q_x_cat").ty, f("q_prefix").ty), (FeatureType::String, FeatureType::Int));
        // Fields read only by derived features are fetched and validated as strings; a field
        // another feature declares int keeps its type.
        assert_eq!(spec.context_fields.get("query"), Some(&FeatureType::String));
        assert_eq!(spec.context_fields.get("device"), Some(&FeatureType::String));
        assert_eq!(spec.item_field_types.get("category"), Some(&FeatureType::String));
        assert_eq!(spec.item_fields, vec!["category".to_string()]);
        assert_eq!(spec.user_fields, vec!["segment".to_string(), "age".to_string()]);
        let age = &f("age_x_item").derive.as_ref().unwrap().sources[0];
        assert_eq!((age.entity, age.ty), (Entity::User, FeatureType::Int));
    }

    #[test]
    fn text_and_derived_misuse_names_the_feature() {
        let tok = |transform: &str, extra: &str| {
            format!(
                "  - {{name: q, source: context.query, type: string{extra}, transform: {transform}, input: ids}}\n{DENSE}"
            )
        };
        let derive = |derive: &str, rest: &str| format!("  - {{name: d, derive: {{{derive}}}{rest}}}\n{DENSE}");
        let cases = [
            (tok("[tokens, hash: {buckets: 9}]", ""), "`q`: a tokenized string needs `length`"),
            (tok("[tokens]", ", length: 3"), "`q`: tokens must be followed by hash"),
            (
                tok("[char_ngrams: {n: 3}, identity: {buckets: 3}]", ", length: 3"),
                "`q`: char_ngrams must be followed by hash",
            ),
            (
                tok("[char_ngrams: {n: 0}, hash: {buckets: 9}]", ", length: 3"),
                "`q`: char_ngrams needs n between 1 and 8 (got 0)",
            ),
            (tok("[char_ngrams: {n: 9}, hash: {buckets: 9}]", ", length: 3"), "(got 9)"),
            (tok("[hash: {buckets: 9}]", ", length: 3"), "`q`: `length` only applies to list types"),
            (
                format!(
                    "  - {{name: q, source: context.n, type: int, length: 2, transform: [tokens, hash: {{buckets: 9}}], input: ids}}\n{DENSE}"
                ),
                "`q`: tokens splits a string, but the feature is int",
            ),
            (
                format!(
                    "  - {{name: q, source: context.q, type: string_list, length: 2, transform: [tokens, hash: {{buckets: 9}}], input: ids}}\n{DENSE}"
                ),
                "but the feature is string_list",
            ),
            (derive("cross: [context.q, item.c]", ", input: ids"), "`d`: a string must end in a hash transform"),
            (
                derive("cross: [context.q, item.c, user.s]", ", transform: [hash: {buckets: 9}], input: ids"),
                "`d`: derive cross takes exactly two sources, got 3",
            ),
            (
                derive("cross: [context.q, item.tags]", ", transform: [hash: {buckets: 9}], input: ids")
                    + "  - {name: t, source: item.tags, type: string_list, length: 2, transform: [hash: {buckets: 9}], input: ids}\n",
                "`d`: derive cross reads `item.tags`, which another feature declares as string_list",
            ),
            (
                derive("prefix_len: [context.q, item.p]", ", transform: [identity: {buckets: 9}], input: ids"),
                "`d`: derive prefix_len reads `item.p`, which another feature declares as float",
            ),
            (
                derive(
                    "prefix_len: [context.q, item.$key]",
                    ", type: string, transform: [hash: {buckets: 9}], input: ids",
                ),
                "`d`: derive prefix_len produces int, but the feature declares type string",
            ),
            (
                derive("cross: [context.q, shop.c]", ", transform: [hash: {buckets: 9}], input: ids"),
                "`d`: derive cross source `shop.c`",
            ),
            (
                derive("cross: [context.$key, item.c]", ", transform: [hash: {buckets: 9}], input: ids"),
                "source `context.$key`",
            ),
            (
                derive(
                    "cross: [context.q, item.c]",
                    ", length: 2, transform: [tokens, hash: {buckets: 9}], input: ids",
                ),
                "`d`: a derived value is hashed whole; tokens does not apply",
            ),
            (
                format!(
                    "  - {{name: d, source: item.c, derive: {{cross: [context.q, item.c]}}, type: string, transform: [hash: {{buckets: 9}}], input: ids}}\n{DENSE}"
                ),
                "`d` has both `source` and `derive`",
            ),
            (format!("  - {{name: d, type: string, input: ids}}\n{DENSE}"), "`d` needs a `source` or a `derive`"),
            (format!("  - {{name: d, source: item.c, input: ids}}\n{DENSE}"), "`d` needs a `type`"),
        ];
        for (features, needle) in cases {
            let err = parse(&features).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }
}
