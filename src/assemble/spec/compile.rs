//! Spec compilation: a parsed [`SpecFile`] becomes a [`Spec`], or a [`SpecError`] naming the
//! feature at fault.
//!
//! Everything a request would otherwise have to work out happens here once, at load: sources
//! resolved to entity + field, defaults converted to the declared type, columns and id ranges
//! assigned in declaration order, and the fields to fetch collected. Transform chains are checked
//! by [`super::steps`].

use std::collections::HashMap;

use super::schema::{DeriveDecl, SpecFile};
use super::steps::check_steps;
use super::types::{
    DType, DeriveOp, Derived, Entity, Feature, FeatureType, Field, Input, Level, SourceRef, Step, StoredInput,
};
use super::{Spec, SpecError};
use crate::fetch::Value;

/// Checks a parsed file and lays it out: inputs, then features in declaration order, each given
/// its columns and id range, then the fields to fetch and the types to validate requests against.
pub(super) fn compile(file: SpecFile) -> Result<Spec, SpecError> {
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
        inputs.push(Input {
            name: decl.name.clone(),
            dtype: decl.dtype,
            level: decl.level,
            part_of: None,
            width: 0,
            vocab: 0,
        });
    }
    for (index, decl) in file.inputs.iter().enumerate() {
        match (decl.level, &decl.part_of) {
            (Level::Row, Some(_)) => {
                return Err(bad(format!("input `{}`: `part_of` applies only to `level: request` inputs", decl.name)));
            }
            (Level::Request, Some(home)) => {
                let at = inputs.iter().position(|i| &i.name == home).ok_or_else(|| {
                    bad(format!("input `{}` is part_of `{home}`, which is not declared under inputs", decl.name))
                })?;
                if inputs[at].level != Level::Row || inputs[at].dtype != decl.dtype {
                    return Err(bad(format!(
                        "input `{}` is part_of `{home}`, which must be a per-row input of the same dtype ({})",
                        decl.name,
                        decl.dtype.name()
                    )));
                }
                inputs[index].part_of = Some(at);
            }
            _ => {}
        }
    }
    let request_level = inputs.iter().any(|i| i.level == Level::Request);
    match (&file.request_index, request_level) {
        (None, true) => {
            return Err(bad(
                "request-level inputs need `request_index: <name>`: the model input (int64 [rows]) giving each row's request"
                    .into(),
            ));
        }
        (Some(name), false) => {
            return Err(bad(format!("`request_index: {name}` is set but no input is `level: request`")));
        }
        (Some(name), true) if inputs.iter().any(|i| &i.name == name) || *name == file.output => {
            return Err(bad(format!("`request_index: {name}` clashes with an input or the output")));
        }
        _ => {}
    }
    if !inputs.iter().any(|i| i.level == Level::Row) {
        return Err(bad("declares no per-row input (every input is `level: request`)".into()));
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
        if inputs[input].level == Level::Request
            && let Some(item) = reads.iter().find(|r| r.entity == Entity::Item)
        {
            let field = match &item.field {
                Field::Key => "$key".to_owned(),
                Field::Named(f) => f.clone(),
            };
            return Err(bad(format!(
                "feature `{name}` reads item.{field}, but input `{}` is request-level (one row per request): only user and context sources may feed it",
                decl.input
            )));
        }
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
        // Ids are numbered in the stored input, so a request-level input and the per-row input
        // it is part of share one id space (one embedding table, as in the flat model).
        let home = inputs[input].part_of.unwrap_or(input);
        let id_base = inputs[home].vocab as i64;
        inputs[home].vocab += range;
        let slot = &mut inputs[input];
        let offset = slot.width;
        slot.width += width;
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
    for index in 0..inputs.len() {
        if let Some(home) = inputs[index].part_of {
            inputs[index].vocab = inputs[home].vocab;
        }
    }
    let stored = stored_layout(&inputs, &features);
    let [user_fields, item_fields] = spec_fields;
    // Everything that decides the bytes an item row encodes to (steps, offsets, id bases,
    // defaults, widths) is in the features' Debug form.
    let item_memo_tag = xxhash_rust::xxh3::xxh3_64(
        format!("{:?}", features.iter().filter(|f| f.entity == Entity::Item).collect::<Vec<_>>()).as_bytes(),
    );
    Ok(Spec {
        scene: file.scene,
        user_table: file.entities.user.table,
        user_required: file.entities.user.required,
        item_table: file.entities.item.table,
        inputs,
        request_index: file.request_index,
        stored,
        output: file.output,
        features,
        user_fields,
        item_fields,
        context_fields,
        item_field_types,
        item_memo_tag,
    })
}

/// The stored form of the inputs: each per-row input, and each request-level input not `part_of`
/// one, with its features' columns in declaration order. A spec without request-level inputs
/// stores exactly its model inputs.
fn stored_layout(inputs: &[Input], features: &[Feature]) -> Vec<StoredInput> {
    let mut stored: Vec<(usize, StoredInput)> = inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| i.part_of.is_none())
        .map(|(index, i)| {
            (index, StoredInput { name: i.name.clone(), dtype: i.dtype, columns: Vec::new(), vocab: i.vocab })
        })
        .collect();
    for feature in features {
        let home = inputs[feature.input].part_of.unwrap_or(feature.input);
        let (_, slot) = stored.iter_mut().find(|(i, _)| *i == home).expect("every home input is stored");
        slot.columns.extend((feature.offset..feature.offset + feature.width).map(|c| (feature.input, c)));
    }
    stored.into_iter().map(|(_, s)| s).collect()
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
