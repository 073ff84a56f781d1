//! The columns of a part: one row per sample record.
//!
//! | column | type | |
//! | --- | --- | --- |
//! | `sample_id` | utf8 | `<request_id>:<position>` |
//! | `revision` | uint32 | 0, then one more per correction: keep the highest per sample_id |
//! | `sequence` | uint64 | the record's sample-log sequence |
//! | `request_id`, `item_id` | utf8 | |
//! | `position` | uint32 | the candidate's index in the request |
//! | `scene`, `model_name`, `model_version`, `user_id` | utf8 | |
//! | `timestamp_ms` | int64 | prediction time, ms since the Unix epoch (UTC) |
//! | `emitted_ms` | int64 | emission time of this revision |
//! | `score` | float32 | what the model served |
//! | `label_<type>` | bool | one per event type (built-in and `samples.join.event_types`) |
//! | `labels` | list<struct<type: utf8, timestamp_ms: int64, value: float64?>> | every label |
//! | `fallbacks` | list<utf8> | features served from defaults |
//! | `input_<name>` | fixed_size_list<int64 or float32>[width] | the model input row as served |

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    UInt32Array, UInt64Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};

use crate::proto::Sample;

/// Column of the model input `name`.
pub fn input_column(name: &str) -> String {
    format!("input_{name}")
}

/// Column of the event type `event`.
pub fn label_column(event: &str) -> String {
    format!("label_{event}")
}

/// The inputs' names, types (int64 or float32) and widths: a part holds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Signature(Vec<(String, bool, i32)>);

impl Signature {
    pub(super) fn of(sample: &Sample) -> Signature {
        Signature(
            sample
                .inputs
                .iter()
                .map(|t| {
                    let int = !t.int64_values.is_empty() || t.float_values.is_empty();
                    let width = if int { t.int64_values.len() } else { t.float_values.len() };
                    (t.name.clone(), int, i32::try_from(width).unwrap_or(i32::MAX))
                })
                .collect(),
        )
    }
}

fn item(int: bool) -> Arc<Field> {
    Arc::new(Field::new("item", if int { DataType::Int64 } else { DataType::Float32 }, false))
}

/// The column of model input `name`: a fixed-size list of `width` int64 (`int`) or float32.
pub fn input_field(name: &str, int: bool, width: i32) -> Field {
    Field::new(input_column(name), DataType::FixedSizeList(item(int), width), false)
}

/// A model input column from its rows' values back to back (int64 or float32), `width` per row.
pub fn input_array(name: &str, int: bool, width: i32, values: ArrayRef) -> Result<ArrayRef, ArrowError> {
    let list = FixedSizeListArray::try_new(item(int), width, values, None)
        .map_err(|e| ArrowError::InvalidArgumentError(format!("input `{name}`: {e}")))?;
    Ok(Arc::new(list))
}

/// The `fallbacks` column's type: per row, the features served from defaults.
pub fn fallbacks_field() -> Field {
    Field::new("fallbacks", DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))), false)
}

/// A `fallbacks` column: `lengths` names per row, `names` back to back.
pub fn fallbacks_array(lengths: impl IntoIterator<Item = usize>, names: StringArray) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", DataType::Utf8, false)),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(names),
        None,
    )?))
}

fn label_fields() -> Fields {
    Fields::from(vec![
        Field::new("type", DataType::Utf8, false),
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("value", DataType::Float64, true),
    ])
}

/// The schema of a part holding `signature`'s inputs.
pub(super) fn schema(label_types: &[String], signature: &Signature) -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    let mut fields = vec![
        text("sample_id"),
        Field::new("revision", DataType::UInt32, false),
        Field::new("sequence", DataType::UInt64, false),
        text("request_id"),
        text("item_id"),
        Field::new("position", DataType::UInt32, false),
        text("scene"),
        text("model_name"),
        text("model_version"),
        text("user_id"),
        Field::new("timestamp_ms", DataType::Int64, false),
        Field::new("emitted_ms", DataType::Int64, false),
        Field::new("score", DataType::Float32, false),
    ];
    fields.extend(label_types.iter().map(|t| Field::new(label_column(t), DataType::Boolean, false)));
    fields.push(Field::new(
        "labels",
        DataType::List(Arc::new(Field::new("item", DataType::Struct(label_fields()), false))),
        false,
    ));
    fields.push(fallbacks_field());
    fields.extend(signature.0.iter().map(|(name, int, width)| input_field(name, *int, *width)));
    Arc::new(Schema::new(fields))
}

/// `rows` (sequence, sample; all of `signature`) as one batch of `schema`.
pub(super) fn batch(
    schema: &SchemaRef,
    label_types: &[String],
    signature: &Signature,
    rows: &[(u64, Sample)],
) -> Result<RecordBatch, ArrowError> {
    let strings = |f: fn(&Sample) -> &str| -> ArrayRef {
        Arc::new(rows.iter().map(|(_, s)| Some(f(s))).collect::<StringArray>())
    };
    let mut columns: Vec<ArrayRef> = vec![
        strings(|s| &s.sample_id),
        Arc::new(rows.iter().map(|(_, s)| s.revision).collect::<UInt32Array>()),
        Arc::new(rows.iter().map(|(seq, _)| *seq).collect::<UInt64Array>()),
        strings(|s| &s.request_id),
        strings(|s| &s.item_id),
        Arc::new(rows.iter().map(|(_, s)| s.position).collect::<UInt32Array>()),
        strings(|s| &s.scene),
        strings(|s| &s.model_name),
        strings(|s| &s.model_version),
        strings(|s| &s.user_id),
        Arc::new(rows.iter().map(|(_, s)| s.timestamp_ms).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|(_, s)| s.emitted_ms).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|(_, s)| s.score).collect::<Float32Array>()),
    ];
    for t in label_types {
        let mut b = BooleanBuilder::with_capacity(rows.len());
        for (_, s) in rows {
            b.append_value(s.labels.iter().any(|l| &l.r#type == t));
        }
        columns.push(Arc::new(b.finish()));
    }
    // labels: list<struct>.
    let (mut kinds, mut times, mut values) = (StringBuilder::new(), Int64Builder::new(), Float64Builder::new());
    for (_, s) in rows {
        for l in &s.labels {
            kinds.append_value(&l.r#type);
            times.append_value(l.timestamp_ms);
            values.append_option(l.value);
        }
    }
    let structs = StructArray::try_new(
        label_fields(),
        vec![Arc::new(kinds.finish()), Arc::new(times.finish()), Arc::new(values.finish())],
        None,
    )?;
    columns.push(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", DataType::Struct(label_fields()), false)),
        OffsetBuffer::from_lengths(rows.iter().map(|(_, s)| s.labels.len())),
        Arc::new(structs),
        None,
    )?));
    // fallbacks: list<utf8>.
    let mut names = StringBuilder::new();
    for (_, s) in rows {
        for f in &s.fallbacks {
            names.append_value(&f.feature);
        }
    }
    columns.push(fallbacks_array(rows.iter().map(|(_, s)| s.fallbacks.len()), names.finish())?);
    // Inputs: the rows' values back to back, `width` per row.
    for (i, (name, int, width)) in signature.0.iter().enumerate() {
        let values: ArrayRef = if *int {
            Arc::new(Int64Array::from_iter_values(
                rows.iter().flat_map(|(_, s)| s.inputs[i].int64_values.iter().copied()),
            ))
        } else {
            Arc::new(Float32Array::from_iter_values(
                rows.iter().flat_map(|(_, s)| s.inputs[i].float_values.iter().copied()),
            ))
        };
        columns.push(input_array(name, *int, *width, values)?);
    }
    RecordBatch::try_new(Arc::clone(schema), columns)
}
