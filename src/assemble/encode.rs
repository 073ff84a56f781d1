//! Applies a compiled [`Spec`] to one request: rows + request values → tensors + fallbacks.
//!
//! User and context features are encoded once and copied into every candidate's row; a
//! request-level input keeps that one row, and a request index (all zeros) says every candidate
//! reads it. Values that
//! are missing, or stored values that do not parse as the declared type, are replaced by the
//! feature's default (or the reserved "missing" id / 0.0) and reported as a [`Fallback`] — never
//! silently. A derived feature falls back when either source is missing, with that source's
//! reason.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::fallback::{Fallback, FallbackReason};
use super::spec::{DType, DeriveOp, Derived, Entity, Feature, FeatureType, Field, Input, Level, SourceRef, Spec, Step};
use super::tensor::{Tensor, TensorData};
use super::text;
use crate::fetch::{Row, Value};

/// The model-ready form of one request.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// One tensor per spec input, in spec order, then the request index when the spec has
    /// request-level inputs (the model form: see [`super::forms`]).
    pub tensors: Vec<Tensor>,
    /// Rows (= candidates).
    pub rows: usize,
    /// Features that fell back.
    pub fallbacks: Vec<Fallback>,
}

/// What assembly needs from a request, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// User id (may be empty when the spec does not require one).
    pub user_id: &'a str,
    /// Context values.
    pub context: &'a HashMap<String, Value>,
    /// Per candidate: item id and request-time overrides.
    pub candidates: &'a [(String, HashMap<String, Value>)],
    /// Reported for user features when the user row is absent: `MissingRow`, or `Timeout` /
    /// `StoreError` when the fetch itself failed.
    pub user_absent: FallbackReason,
    /// The same for item rows.
    pub items_absent: FallbackReason,
}

impl<'a> RequestView<'a> {
    /// A view whose absent rows are plain missing rows.
    pub fn new(
        user_id: &'a str,
        context: &'a HashMap<String, Value>,
        candidates: &'a [(String, HashMap<String, Value>)],
    ) -> Self {
        RequestView {
            user_id,
            context,
            candidates,
            user_absent: FallbackReason::MissingRow,
            items_absent: FallbackReason::MissingRow,
        }
    }
}

/// Encodes one request. `user_row` / `item_rows` are what the store returned (`item_rows`
/// aligned with `request.candidates`).
pub fn assemble(
    spec: &Spec,
    request: RequestView<'_>,
    user_row: Option<&Arc<Row>>,
    item_rows: &[Option<Arc<Row>>],
) -> Assembled {
    let rows = request.candidates.len();
    debug_assert_eq!(rows, item_rows.len());
    // Request-level inputs have one row whatever the candidates: the template below is it.
    let rows_of = |input: &Input| if input.level == Level::Request { 1 } else { rows };
    let mut tensors: Vec<Tensor> = spec
        .inputs
        .iter()
        .map(|input| Tensor {
            name: input.name.clone(),
            width: input.width,
            data: match input.dtype {
                DType::Int64 => TensorData::I64(vec![0; rows_of(input) * input.width]),
                DType::Float32 => TensorData::F32(vec![0.0; rows_of(input) * input.width]),
            },
        })
        .collect();
    let mut fallbacks = Vec::new();

    // Shared features: encode into a one-row template, then copy into every row (into the one
    // row of a request-level input).
    let mut template = one_row(spec);
    let shared = RequestSide { user_id: Value::Str(request.user_id.to_owned()), request: &request, user_row };
    for feature in spec.features.iter().filter(|f| f.entity != Entity::Item) {
        let derived;
        let found = match &feature.derive {
            None => shared.value(feature.entity, &feature.field),
            Some(d) => {
                derived = derive(d, |s| shared.value(s.entity, &s.field));
                derived.as_ref().map_err(|r| *r)
            }
        };
        let slot = &mut template[feature.input];
        if let Some(reason) = encode_feature(feature, found, slot, 0) {
            fallbacks.push(Fallback { feature: feature.name.clone(), reason, candidates: Vec::new() });
        }
    }
    for (tensor, row) in tensors.iter_mut().zip(&template) {
        let width = tensor.width;
        match (&mut tensor.data, row) {
            (TensorData::I64(out), TensorData::I64(t)) => {
                out.chunks_exact_mut(width).for_each(|c| c.copy_from_slice(t))
            }
            (TensorData::F32(out), TensorData::F32(t)) => {
                out.chunks_exact_mut(width).for_each(|c| c.copy_from_slice(t))
            }
            _ => unreachable!("template and tensors share dtypes"),
        }
    }

    // Item features: per candidate; request-time values override the store. A shared row's
    // own features come from its memo (encoded once per row, see `ItemMemo`); derived features
    // and candidates with overrides are encoded here.
    let mut item_fallbacks: Vec<(usize, FallbackReason, Vec<u32>)> = Vec::new();
    for (index, ((item_id, overrides), row)) in request.candidates.iter().zip(item_rows).enumerate() {
        let memo = match row {
            Some(row) if overrides.is_empty() => memo(spec, item_id, row),
            _ => None,
        };
        // Built only when a feature reads `item.$key` outside the memo.
        let key = OnceCell::new();
        let item = |field: &Field| match field {
            Field::Key => Ok(key.get_or_init(|| Value::Str(item_id.clone()))),
            Field::Named(f) => match overrides.get(f) {
                Some(v) => Ok(v),
                None => match row {
                    None => Err(request.items_absent),
                    Some(row) => row.get(f).ok_or(FallbackReason::MissingField),
                },
            },
        };
        for (feature_index, feature) in spec.features.iter().enumerate().filter(|(_, f)| f.entity == Entity::Item) {
            let width = spec.inputs[feature.input].width;
            let reason = match (memo, &feature.derive) {
                (Some(memo), None) => {
                    memo.copy_into(feature, &mut tensors[feature.input].data, index * width);
                    memo.fallbacks[feature_index]
                }
                (_, derive_op) => {
                    let derived;
                    let found = match derive_op {
                        None => item(&feature.field),
                        Some(d) => {
                            derived = derive(d, |s| match s.entity {
                                Entity::Item => item(&s.field),
                                _ => shared.value(s.entity, &s.field),
                            });
                            derived.as_ref().map_err(|r| *r)
                        }
                    };
                    encode_feature(feature, found, &mut tensors[feature.input].data, index * width)
                }
            };
            if let Some(reason) = reason {
                match item_fallbacks.iter_mut().find(|(f, r, _)| *f == feature_index && *r == reason) {
                    Some((_, _, list)) => list.push(index as u32),
                    None => item_fallbacks.push((feature_index, reason, vec![index as u32])),
                }
            }
        }
    }
    fallbacks.extend(item_fallbacks.into_iter().map(|(f, reason, candidates)| Fallback {
        feature: spec.features[f].name.clone(),
        reason,
        candidates,
    }));
    if let Some(name) = &spec.request_index {
        // Every row reads the request's row 0; the batcher renumbers when it merges requests.
        tensors.push(Tensor { name: name.clone(), width: 1, data: TensorData::I64(vec![0; rows]) });
    }
    Assembled { tensors, rows, fallbacks }
}

/// Where user and context values come from (the same for every candidate).
struct RequestSide<'a> {
    /// The user id as a value, for `user.$key`.
    user_id: Value,
    request: &'a RequestView<'a>,
    user_row: Option<&'a Arc<Row>>,
}

impl RequestSide<'_> {
    fn value(&self, entity: Entity, field: &Field) -> Result<&Value, FallbackReason> {
        match (entity, field) {
            (Entity::User, Field::Key) if !self.request.user_id.is_empty() => Ok(&self.user_id),
            (Entity::User, Field::Key) => Err(FallbackReason::MissingField),
            (Entity::User, Field::Named(f)) => match self.user_row {
                None => Err(self.request.user_absent),
                Some(row) => row.get(f).ok_or(FallbackReason::MissingField),
            },
            (_, Field::Named(f)) => self.request.context.get(f).ok_or(FallbackReason::MissingField),
            (_, Field::Key) => unreachable!("spec compile rejects context.$key; item sources are read per candidate"),
        }
    }
}

/// An item row's encoding under one spec: the columns of every feature that reads the item row
/// alone (not derived, no request-time override), as one row per input, and their fallbacks.
/// Kept on the row ([`Row::memo`]) so a row that outlives the request — in the in-memory store
/// or the local cache — is parsed, transformed and hashed once, not on every request.
struct ItemMemo {
    /// The id the row was encoded for: `item.$key` features depend on it, and a store could
    /// hand the same row out under two ids.
    id: String,
    /// Per spec input, one row (only the memoized features' columns are meaningful).
    columns: Vec<TensorData>,
    /// Per spec feature, the fallback its memoized encoding reported.
    fallbacks: Vec<Option<FallbackReason>>,
}

impl ItemMemo {
    fn encode(spec: &Spec, id: &str, row: &Row) -> Self {
        let mut columns = one_row(spec);
        let key = Value::Str(id.to_owned());
        let fallbacks = spec
            .features
            .iter()
            .map(|feature| {
                if feature.entity != Entity::Item || feature.derive.is_some() {
                    return None;
                }
                let found = match &feature.field {
                    Field::Key => Ok(&key),
                    Field::Named(f) => row.get(f).ok_or(FallbackReason::MissingField),
                };
                encode_feature(feature, found, &mut columns[feature.input], 0)
            })
            .collect();
        ItemMemo { id: id.to_owned(), columns, fallbacks }
    }

    /// Copies `feature`'s columns into `out` at the row starting at `row_start`.
    fn copy_into(&self, feature: &Feature, out: &mut TensorData, row_start: usize) {
        let (from, to) = (feature.offset, feature.offset + feature.width);
        let at = row_start + feature.offset;
        match (out, &self.columns[feature.input]) {
            (TensorData::I64(o), TensorData::I64(m)) => o[at..at + feature.width].copy_from_slice(&m[from..to]),
            (TensorData::F32(o), TensorData::F32(m)) => o[at..at + feature.width].copy_from_slice(&m[from..to]),
            _ => unreachable!("memo and tensors share dtypes"),
        }
    }
}

/// The memoized encoding of `row` for candidate `id`, when the row is shared (held by a store or
/// cache besides this request: a row read fresh for one request would pay for a memo it never
/// reuses) and its memo slot is this spec's and this id's.
fn memo<'r>(spec: &Spec, id: &str, row: &'r Arc<Row>) -> Option<&'r ItemMemo> {
    if Arc::strong_count(row) < 2 {
        return None;
    }
    row.memo(spec.item_memo_tag, |r| ItemMemo::encode(spec, id, r)).filter(|m| m.id == id)
}

/// One zeroed row per spec input.
fn one_row(spec: &Spec) -> Vec<TensorData> {
    spec.inputs
        .iter()
        .map(|input| match input.dtype {
            DType::Int64 => TensorData::I64(vec![0; input.width]),
            DType::Float32 => TensorData::F32(vec![0.0; input.width]),
        })
        .collect()
}

/// Computes a derived value from its two sources; the first source that is missing (or does not
/// read as its type) gives the fallback reason.
fn derive<'v>(
    derived: &Derived,
    mut value: impl FnMut(&SourceRef) -> Result<&'v Value, FallbackReason>,
) -> Result<Value, FallbackReason> {
    let [a, b] = &derived.sources;
    let (va, vb) = (value(a), value(b));
    let (va, vb) = (va?, vb?);
    let (ta, tb) = (source_text(a, va)?, source_text(b, vb)?);
    Ok(match derived.op {
        DeriveOp::Cross => Value::Str(text::cross(&ta, &tb)),
        DeriveOp::PrefixLen => Value::Int(text::prefix_len(&ta, &tb) as i64),
    })
}

/// A derived feature's input as text (ints by their decimal form).
fn source_text<'v>(source: &SourceRef, value: &'v Value) -> Result<Cow<'v, str>, FallbackReason> {
    match scalar(source.ty, value) {
        Ok(Elem::Text(s)) => Ok(Cow::Borrowed(s)),
        Ok(Elem::Int(i)) => Ok(Cow::Owned(i.to_string())),
        Ok(Elem::Num(_)) | Err(Unparsable) => Err(FallbackReason::ParseError),
    }
}

/// Writes one feature of one row at `row_start + feature.offset`; returns the fallback reason if
/// the default had to be used.
fn encode_feature(
    feature: &Feature,
    found: Result<&Value, FallbackReason>,
    out: &mut TensorData,
    row_start: usize,
) -> Option<FallbackReason> {
    let start = row_start + feature.offset;
    let reason = match found {
        Ok(value) => match write_value(feature, value, out, start) {
            Ok(()) => return None,
            Err(Unparsable) => FallbackReason::ParseError,
        },
        Err(reason) => reason,
    };
    write_default(feature, out, start);
    Some(reason)
}

fn write_default(feature: &Feature, out: &mut TensorData, start: usize) {
    let written = feature.default.as_ref().is_some_and(|d| write_value(feature, d, out, start).is_ok());
    if !written {
        match out {
            TensorData::I64(o) => o[start..start + feature.width].fill(feature.id_base),
            TensorData::F32(o) => o[start..start + feature.width].fill(0.0),
        }
    }
}

/// A value that cannot be read as the feature's declared type.
#[derive(Debug)]
struct Unparsable;

/// A value on its way through the transform chain.
#[derive(Debug, Clone, Copy)]
enum Elem<'a> {
    Int(i64),
    Num(f64),
    Text(&'a str),
}

fn write_value(feature: &Feature, value: &Value, out: &mut TensorData, start: usize) -> Result<(), Unparsable> {
    if let Some((tokenizer, rest)) = feature.steps.split_first()
        && tokenizer.is_tokenizer()
    {
        return write_tokens(feature, tokenizer, rest, value, out, start);
    }
    let (from, to) = (start, start + feature.width);
    if !matches!(feature.ty, FeatureType::IntList | FeatureType::FloatList | FeatureType::StringList) {
        let elem = scalar(feature.ty, value)?;
        return write_elem(feature, &feature.steps, elem, out, from);
    }
    let elems = list(feature.ty, value)?;
    let n = elems.len().min(feature.width);
    for (i, elem) in elems.into_iter().take(n).enumerate() {
        write_elem(feature, &feature.steps, elem, out, from + i)?;
    }
    pad(feature, out, from + n, to);
    Ok(())
}

/// A tokenized string: each token runs through the `rest` of the chain (a hash), up to `width`
/// tokens, then padding. Kept out of [`write_value`] so the common path stays small.
#[inline(never)]
fn write_tokens(
    feature: &Feature,
    tokenizer: &Step,
    rest: &[Step],
    value: &Value,
    out: &mut TensorData,
    start: usize,
) -> Result<(), Unparsable> {
    let text = match scalar(feature.ty, value)? {
        Elem::Text(s) => Cow::Borrowed(s),
        Elem::Int(i) => Cow::Owned(i.to_string()),
        Elem::Num(_) => return Err(Unparsable),
    };
    let mut n = 0;
    let mut written = Ok(());
    text::tokenize(tokenizer, &text, |token| {
        written = write_elem(feature, rest, Elem::Text(token), out, start + n);
        n += 1;
        written.is_ok() && n < feature.width
    });
    written?;
    pad(feature, out, start + n, start + feature.width);
    Ok(())
}

/// Pads a list's unused columns: the reserved id for id features, 0.0 for dense ones.
fn pad(feature: &Feature, out: &mut TensorData, from: usize, to: usize) {
    match out {
        TensorData::I64(o) => o[from..to].fill(feature.id_base),
        TensorData::F32(o) => o[from..to].fill(0.0),
    }
}

fn write_elem(
    feature: &Feature,
    steps: &[Step],
    elem: Elem<'_>,
    out: &mut TensorData,
    at: usize,
) -> Result<(), Unparsable> {
    let mut elem = elem;
    for step in steps {
        let id = match (step, elem) {
            (Step::Hash { buckets }, Elem::Text(s)) => 1 + xxh3_64(s.as_bytes()) % buckets,
            (Step::Hash { buckets }, Elem::Int(i)) => 1 + xxh3_64(i.to_string().as_bytes()) % buckets,
            (Step::Identity { buckets }, Elem::Int(i)) => {
                if (0..*buckets as i64).contains(&i) {
                    1 + i as u64
                } else {
                    0
                }
            }
            (Step::Bucketize { boundaries }, e) => {
                let x = number(e)?;
                1 + boundaries.partition_point(|b| *b <= x) as u64
            }
            (Step::Log1p, e) => {
                elem = Elem::Num(number(e)?.max(0.0).ln_1p());
                continue;
            }
            (Step::Clip { min, max }, e) => {
                elem = Elem::Num(number(e)?.clamp(*min, *max));
                continue;
            }
            (Step::Normalize { mean, std }, e) => {
                elem = Elem::Num((number(e)? - mean) / std);
                continue;
            }
            _ => return Err(Unparsable),
        };
        // Id-producing steps are last (checked when the spec compiles).
        match out {
            TensorData::I64(o) => o[at] = feature.id_base + id as i64,
            TensorData::F32(_) => return Err(Unparsable),
        }
        return Ok(());
    }
    match (out, elem) {
        // Beyond f32's range the value is garbage for the model: fall back instead of feeding inf.
        (TensorData::F32(o), e) => o[at] = Some(number(e)? as f32).filter(|x| x.is_finite()).ok_or(Unparsable)?,
        (TensorData::I64(_), _) => return Err(Unparsable),
    }
    Ok(())
}

/// Store text lists are joined by `|`; an empty string is an empty list.
fn split(s: &str) -> Vec<&str> {
    if s.is_empty() { Vec::new() } else { s.split('|').collect() }
}

fn number(elem: Elem<'_>) -> Result<f64, Unparsable> {
    match elem {
        Elem::Int(i) => Ok(i as f64),
        Elem::Num(x) => Ok(x),
        Elem::Text(_) => Err(Unparsable),
    }
}

fn parse_int(s: &str) -> Result<i64, Unparsable> {
    s.trim().parse().map_err(|_| Unparsable)
}

fn parse_float(s: &str) -> Result<f64, Unparsable> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite()).ok_or(Unparsable)
}

/// Reads a scalar as the declared type; text from stores is parsed. Always inlined: returned
/// through memory, the `Elem` costs a store-forwarding stall on every value (~10% of ranking
/// assembly, measured with criterion + perf).
#[inline(always)]
fn scalar(ty: FeatureType, value: &Value) -> Result<Elem<'_>, Unparsable> {
    Ok(match (ty, value) {
        (FeatureType::Int, Value::Int(i)) => Elem::Int(*i),
        (FeatureType::Int, Value::Float(x)) if x.fract() == 0.0 && x.abs() < 9.0e15 => Elem::Int(*x as i64),
        (FeatureType::Int, Value::Str(s)) => Elem::Int(parse_int(s)?),
        (FeatureType::Float, Value::Int(i)) => Elem::Num(*i as f64),
        (FeatureType::Float, Value::Float(x)) if x.is_finite() => Elem::Num(*x),
        (FeatureType::Float, Value::Str(s)) => Elem::Num(parse_float(s)?),
        (FeatureType::String, Value::Str(s)) => Elem::Text(s),
        (FeatureType::String, Value::Int(i)) => Elem::Int(*i),
        _ => return Err(Unparsable),
    })
}

/// Reads a list as the declared type; text from stores is split on `|`.
fn list(ty: FeatureType, value: &Value) -> Result<Vec<Elem<'_>>, Unparsable> {
    Ok(match (ty, value) {
        (FeatureType::IntList, Value::IntList(v)) => v.iter().map(|i| Elem::Int(*i)).collect(),
        (FeatureType::IntList, Value::Str(s)) => {
            split(s).into_iter().map(|p| parse_int(p).map(Elem::Int)).collect::<Result<_, _>>()?
        }
        (FeatureType::FloatList, Value::FloatList(v)) if v.iter().all(|x| x.is_finite()) => {
            v.iter().map(|x| Elem::Num(*x)).collect()
        }
        (FeatureType::FloatList, Value::IntList(v)) => v.iter().map(|i| Elem::Num(*i as f64)).collect(),
        (FeatureType::FloatList, Value::Str(s)) => {
            split(s).into_iter().map(|p| parse_float(p).map(Elem::Num)).collect::<Result<_, _>>()?
        }
        (FeatureType::StringList, Value::StrList(v)) => v.iter().map(|s| Elem::Text(s)).collect(),
        (FeatureType::StringList, Value::IntList(v)) => v.iter().map(|i| Elem::Int(*i)).collect(),
        (FeatureType::StringList, Value::Str(s)) => split(s).into_iter().map(Elem::Text).collect(),
        _ => return Err(Unparsable),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
scene: t
entities: {user: {table: u, required: false}, item: {table: i}}
inputs: [{name: ids, dtype: int64}, {name: dense, dtype: float32}]
output: ctr
features:
  - {name: uid, source: user.$key, type: string, transform: [hash: {buckets: 100}], input: ids}
  - {name: age, source: user.age, type: int, default: 30, transform: [bucketize: {boundaries: [18, 30, 50]}], input: ids}
  - {name: hour, source: context.hour, type: int, transform: [identity: {buckets: 24}], input: ids}
  - {name: tags, source: item.tags, type: string_list, length: 2, transform: [hash: {buckets: 10}], input: ids}
  - {name: price, source: item.price, type: float, default: 1.0, transform: [log1p, {clip: {min: 0, max: 2}}], input: dense}
"#;

    fn run(user: Option<Row>, context: &[(&str, Value)], items: Vec<(&str, Option<Row>)>) -> (Spec, Assembled) {
        let spec = Spec::parse(SPEC).unwrap();
        let context: HashMap<String, Value> = context.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let candidates: Vec<(String, HashMap<String, Value>)> =
            items.iter().map(|(id, _)| (id.to_string(), HashMap::new())).collect();
        let rows: Vec<Option<Arc<Row>>> = items.into_iter().map(|(_, r)| r.map(Arc::new)).collect();
        let user = user.map(Arc::new);
        let view = RequestView::new("u1", &context, &candidates);
        let out = assemble(&spec, view, user.as_ref(), &rows);
        (spec, out)
    }

    fn row(pairs: &[(&str, &str)]) -> Row {
        pairs.iter().map(|(k, v)| (k.to_string(), Value::Str(v.to_string()))).collect()
    }

    #[test]
    fn encodes_ids_and_dense_values_with_fallbacks() {
        let (spec, out) = run(
            Some(row(&[("age", "25")])),
            &[("hour", Value::Int(7))],
            vec![("a", Some(row(&[("tags", "x|y|z"), ("price", "e")]))), ("b", None)],
        );
        let TensorData::I64(ids) = &out.tensors[0].data else { panic!() };
        let TensorData::F32(dense) = &out.tensors[1].data else { panic!() };
        let f = |n: &str| spec.features.iter().find(|f| f.name == n).unwrap().id_base;
        // age 25 → bucket 2 (one boundary <= 25) → id base + 1 + 1
        assert_eq!(ids[1], f("age") + 2);
        assert_eq!(ids[2], f("hour") + 8);
        // list truncated to 2 hashed ids; candidate b has no row → both padded with the reserved id
        assert!(ids[3] > f("tags") && ids[4] > f("tags"));
        assert_eq!(&ids[5 + 3..5 + 5], &[f("tags"), f("tags")]);
        // shared features are copied into both rows
        assert_eq!(ids[0], ids[5]);
        // "e" is not a float: default 1.0 → log1p → clip
        assert_eq!(dense[0], (1.0f64).ln_1p() as f32);
        let reasons: Vec<_> =
            out.fallbacks.iter().map(|f| (f.feature.as_str(), f.reason, f.candidates.clone())).collect();
        assert!(reasons.contains(&("price", FallbackReason::ParseError, vec![0])));
        assert!(reasons.contains(&("tags", FallbackReason::MissingRow, vec![1])));
        assert!(reasons.contains(&("price", FallbackReason::MissingRow, vec![1])));
    }

    #[test]
    fn missing_user_row_and_context_use_defaults() {
        let (spec, out) = run(None, &[], vec![("a", None)]);
        let TensorData::I64(ids) = &out.tensors[0].data else { panic!() };
        let age = spec.features.iter().find(|f| f.name == "age").unwrap();
        assert_eq!(ids[1], age.id_base + 3, "default 30 → two boundaries <= 30 → id base + 1 + 2");
        let hour = spec.features.iter().find(|f| f.name == "hour").unwrap();
        assert_eq!(ids[2], hour.id_base, "no default → reserved id");
        let names: Vec<_> =
            out.fallbacks.iter().filter(|f| f.candidates.is_empty()).map(|f| f.feature.as_str()).collect();
        assert_eq!(names, vec!["age", "hour"]);
    }

    #[test]
    fn hashing_is_stable_across_text_and_int_values() {
        let (_, a) = run(None, &[], vec![("a", Some(row(&[("tags", "7")])))]);
        let spec = Spec::parse(SPEC).unwrap();
        let candidates = vec![("a".to_string(), HashMap::from([("tags".to_string(), Value::IntList(vec![7]))]))];
        let ctx = HashMap::new();
        let b = assemble(&spec, RequestView::new("u1", &ctx, &candidates), None, &[None]);
        assert_eq!(a.tensors[0].data, b.tensors[0].data);
    }

    #[test]
    fn kept_rows_are_encoded_once_and_only_for_their_own_id() {
        let spec = Spec::parse(
            r#"
scene: t
entities: {user: {table: u, required: false}, item: {table: i}}
inputs: [{name: ids, dtype: int64}]
output: ctr
features:
  - {name: iid, source: item.$key, type: string, transform: [hash: {buckets: 1000}], input: ids}
  - {name: cat, source: item.category, type: string, transform: [hash: {buckets: 100}], input: ids}
  - {name: brand, source: item.brand, type: string, transform: [hash: {buckets: 100}], input: ids}
"#,
        )
        .unwrap();
        let ctx = HashMap::new();
        let assemble_ids = |candidates: &[(String, HashMap<String, Value>)], rows: &[Option<Arc<Row>>]| {
            let out = assemble(&spec, RequestView::new("u", &ctx, candidates), None, rows);
            let TensorData::I64(ids) = out.tensors[0].data.clone() else { panic!() };
            (ids, out.fallbacks)
        };
        let fresh = |id: &str, overrides: &[(&str, &str)]| {
            let candidates = vec![(
                id.to_string(),
                overrides.iter().map(|(k, v)| (k.to_string(), Value::Str(v.to_string()))).collect(),
            )];
            assemble_ids(&candidates, &[Some(Arc::new(row(&[("category", "c1")])))])
        };
        // One row kept by the "store" and handed out for two ids (as a test double might).
        let kept = Arc::new(row(&[("category", "c1")]));
        let rows = vec![Some(Arc::clone(&kept)), Some(Arc::clone(&kept))];
        let candidates: Vec<(String, HashMap<String, Value>)> =
            ["a", "b"].iter().map(|id| (id.to_string(), HashMap::new())).collect();
        let (ids, fallbacks) = assemble_ids(&candidates, &rows);
        assert!(kept.memo::<ItemMemo>(spec.item_memo_tag, |_| unreachable!("memo built")).is_some());
        let (a, b) = (fresh("a", &[]), fresh("b", &[]));
        assert_eq!(ids, [a.0.clone(), b.0.clone()].concat(), "b must not reuse a's memo (item.$key differs)");
        assert_ne!(a.0[0], b.0[0]);
        assert_eq!(
            fallbacks,
            vec![Fallback { feature: "brand".into(), reason: FallbackReason::MissingField, candidates: vec![0, 1] }]
        );
        // Read from the memo now (already built): same again; an override bypasses it.
        assert_eq!(assemble_ids(&candidates[..1], &rows[..1]).0, a.0);
        let overridden = vec![("a".to_string(), HashMap::from([("category".to_string(), Value::Str("c2".into()))]))];
        assert_eq!(assemble_ids(&overridden, &rows[..1]).0, fresh("a", &[("category", "c2")]).0);
        assert_ne!(fresh("a", &[("category", "c2")]).0, a.0);
    }

    const TEXT_SPEC: &str = r#"
scene: t
entities: {user: {table: u}, item: {table: i}}
inputs: [{name: ids, dtype: int64}, {name: dense, dtype: float32}]
output: ctr
features:
  - {name: q_tok, source: context.query, type: string, length: 3, transform: [tokens, hash: {buckets: 1000}], input: ids}
  - {name: q_tri, source: context.query, type: string, length: 4, default: "zz", transform: [char_ngrams: {n: 3}, hash: {buckets: 1000}], input: ids}
  - {name: q_x_cat, derive: {cross: [context.query, item.category]}, transform: [hash: {buckets: 1000}], input: ids}
  - {name: seg_x_cat, derive: {cross: [user.segment, item.category]}, transform: [hash: {buckets: 1000}], input: ids}
  - {name: q_prefix, derive: {prefix_len: [context.query, item.$key]}, transform: [{clip: {min: 0, max: 5}}], input: dense}
"#;

    struct TextRun {
        spec: Spec,
        ids: Vec<i64>,
        dense: Vec<f32>,
        fallbacks: Vec<(String, FallbackReason, Vec<u32>)>,
    }

    impl TextRun {
        fn new(
            user: Option<Row>,
            user_absent: FallbackReason,
            context: &[(&str, Value)],
            items: Vec<(&str, Option<Row>)>,
        ) -> Self {
            let spec = Spec::parse(TEXT_SPEC).unwrap();
            let context: HashMap<String, Value> = context.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            let candidates: Vec<(String, HashMap<String, Value>)> =
                items.iter().map(|(id, _)| (id.to_string(), HashMap::new())).collect();
            let rows: Vec<Option<Arc<Row>>> = items.into_iter().map(|(_, r)| r.map(Arc::new)).collect();
            let user = user.map(Arc::new);
            let mut view = RequestView::new("u1", &context, &candidates);
            view.user_absent = user_absent;
            let out = assemble(&spec, view, user.as_ref(), &rows);
            let TensorData::I64(ids) = out.tensors[0].data.clone() else { panic!() };
            let TensorData::F32(dense) = out.tensors[1].data.clone() else { panic!() };
            let fallbacks = out.fallbacks.into_iter().map(|f| (f.feature, f.reason, f.candidates)).collect();
            TextRun { spec, ids, dense, fallbacks }
        }

        fn feature(&self, name: &str) -> &Feature {
            self.spec.features.iter().find(|f| f.name == name).unwrap()
        }

        /// The id `text` hashes to in `feature`'s range.
        fn id(&self, name: &str, text: &str) -> i64 {
            let f = self.feature(name);
            let Some(Step::Hash { buckets }) = f.steps.last() else { panic!() };
            f.id_base + 1 + (xxh3_64(text.as_bytes()) % buckets) as i64
        }

        fn row(&self, index: usize) -> &[i64] {
            let width = self.spec.inputs[0].width;
            &self.ids[index * width..(index + 1) * width]
        }

        fn fallback(&self, name: &str) -> Option<(FallbackReason, Vec<u32>)> {
            self.fallbacks.iter().find(|f| f.0 == name).map(|f| (f.1, f.2.clone()))
        }
    }

    fn str_row(pairs: &[(&str, &str)]) -> Option<Row> {
        Some(row(pairs))
    }

    #[test]
    fn tokenizers_write_padded_hashed_token_ids() {
        let query = Value::Str("Hello, WORLD! foo bar".into());
        let run = TextRun::new(
            str_row(&[("segment", "s1")]),
            FallbackReason::MissingRow,
            &[("query", query)],
            vec![("hello kitty", str_row(&[("category", "c1")]))],
        );
        let row = run.row(0);
        // Tokens truncated to length 3, char trigrams to length 4.
        assert_eq!(&row[0..3], &[run.id("q_tok", "hello"), run.id("q_tok", "world"), run.id("q_tok", "foo")]);
        let grams = ["#he", "hel", "ell", "llo"].map(|g| run.id("q_tri", g));
        assert_eq!(&row[3..7], &grams);
        assert!(run.fallbacks.is_empty(), "{:?}", run.fallbacks);

        // Short text: tokens padded with the reserved id; multi-byte n-grams by characters.
        let run =
            TextRun::new(None, FallbackReason::MissingRow, &[("query", Value::Str("Brü".into()))], vec![("x", None)]);
        let (tok, tri) = (run.feature("q_tok").id_base, run.feature("q_tri").id_base);
        assert_eq!(&run.row(0)[0..3], &[run.id("q_tok", "brü"), tok, tok]);
        assert_eq!(&run.row(0)[3..7], &[run.id("q_tri", "#br"), run.id("q_tri", "brü"), run.id("q_tri", "rü#"), tri]);

        // An int request value is tokenized by its decimal text.
        let run = TextRun::new(None, FallbackReason::MissingRow, &[("query", Value::Int(42))], vec![("x", None)]);
        assert_eq!(run.row(0)[0], run.id("q_tok", "42"));
    }

    #[test]
    fn empty_text_is_all_padding_and_missing_text_falls_back() {
        let run =
            TextRun::new(None, FallbackReason::MissingRow, &[("query", Value::Str(String::new()))], vec![("x", None)]);
        let (tok, tri) = (run.feature("q_tok").id_base, run.feature("q_tri").id_base);
        assert_eq!(&run.row(0)[0..7], &[tok, tok, tok, tri, tri, tri, tri]);
        assert_eq!(run.fallback("q_tok"), None, "an empty query is a value, not a fallback");

        let run = TextRun::new(None, FallbackReason::MissingRow, &[], vec![("x", None), ("y", None)]);
        assert_eq!(&run.row(1)[0..3], &[tok, tok, tok]);
        // The default is tokenized like a value.
        assert_eq!(&run.row(1)[3..7], &[run.id("q_tri", "#zz"), run.id("q_tri", "zz#"), tri, tri]);
        assert_eq!(run.fallback("q_tok"), Some((FallbackReason::MissingField, vec![])));
        assert_eq!(run.fallback("q_tri"), Some((FallbackReason::MissingField, vec![])));

        // A list where a string belongs is unparsable.
        let list = Value::StrList(vec!["a".into()]);
        let run = TextRun::new(None, FallbackReason::MissingRow, &[("query", list)], vec![("x", None)]);
        assert_eq!(run.fallback("q_tok"), Some((FallbackReason::ParseError, vec![])));
    }

    #[test]
    fn cross_hashes_both_texts_joined_and_prefix_len_counts_characters() {
        let run = TextRun::new(
            str_row(&[("segment", "s3")]),
            FallbackReason::MissingRow,
            &[("query", Value::Str("Brü".into()))],
            vec![("brülo", str_row(&[("category", "c1")])), ("bread", str_row(&[("category", "c2")]))],
        );
        let col = |name: &str| run.feature(name).offset;
        assert_eq!(run.row(0)[col("q_x_cat")], run.id("q_x_cat", "Brü\u{1f}c1"));
        assert_eq!(run.row(1)[col("q_x_cat")], run.id("q_x_cat", "Brü\u{1f}c2"));
        assert_eq!(run.row(0)[col("seg_x_cat")], run.id("seg_x_cat", "s3\u{1f}c1"));
        // "Brü" vs "brülo": 3 characters (4 bytes) in common; vs "bread": 2; clipped to [0, 5].
        assert_eq!(run.dense, vec![3.0, 2.0]);
        assert!(run.fallbacks.is_empty(), "{:?}", run.fallbacks);
    }

    #[test]
    fn derived_features_fall_back_with_the_missing_sources_reason() {
        // Candidate 1 has no item row: the crosses with item.category fall back (missing row)
        // for it alone, while prefix_len still reads its key.
        let run = TextRun::new(
            str_row(&[("segment", "s3")]),
            FallbackReason::MissingRow,
            &[("query", Value::Str("he".into()))],
            vec![("hello", str_row(&[("category", "c1")])), ("help", None), ("hat", str_row(&[]))],
        );
        assert_eq!(run.fallback("q_x_cat"), Some((FallbackReason::MissingRow, vec![1])));
        assert!(run.fallbacks.contains(&("q_x_cat".into(), FallbackReason::MissingField, vec![2])));
        assert_eq!(run.row(1)[run.feature("q_x_cat").offset], run.feature("q_x_cat").id_base);
        assert_eq!(run.dense, vec![2.0, 2.0, 1.0]);
        assert_eq!(run.fallback("q_prefix"), None);

        // No query: every query-derived feature falls back with the context's reason; the user
        // fetch timed out: the segment cross reports the timeout for every candidate.
        let run = TextRun::new(None, FallbackReason::Timeout, &[], vec![("hello", str_row(&[("category", "c1")]))]);
        assert_eq!(run.fallback("q_x_cat"), Some((FallbackReason::MissingField, vec![0])));
        assert_eq!(run.fallback("q_prefix"), Some((FallbackReason::MissingField, vec![0])));
        assert_eq!(run.fallback("seg_x_cat"), Some((FallbackReason::Timeout, vec![0])));
        assert_eq!(run.dense, vec![0.0]);

        // Both sources missing: the first one's reason. A stored list is unparsable.
        let run = TextRun::new(None, FallbackReason::StoreError, &[], vec![("a", None)]);
        assert_eq!(run.fallback("seg_x_cat"), Some((FallbackReason::StoreError, vec![0])));
        let mut list = Row::new();
        list.insert("category".into(), Value::StrList(vec!["c1".into()]));
        let run = TextRun::new(
            None,
            FallbackReason::MissingRow,
            &[("query", Value::Str("a".into()))],
            vec![("a", Some(list))],
        );
        assert_eq!(run.fallback("q_x_cat"), Some((FallbackReason::ParseError, vec![0])));
    }
}
