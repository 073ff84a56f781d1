//! The columns of a changelog part (see the module doc of [`super`]): changes → record batches
//! and back.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};

use super::{Change, ChangeKind};
use crate::fetch::Value;

fn feature_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
    ])
}

fn features_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Struct(feature_fields()), false)))
}

/// The schema every part has.
pub(super) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("entity_id", DataType::Utf8, false),
        Field::new("event_time_ms", DataType::Int64, false),
        Field::new("applied_time_ms", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("features", features_type(), false),
    ]))
}

/// `changes` as one record batch.
pub(super) fn batch(schema: &SchemaRef, changes: &[Change]) -> Result<RecordBatch, ArrowError> {
    let strings = |f: &dyn Fn(&Change) -> &str| -> ArrayRef {
        Arc::new(changes.iter().map(|c| Some(f(c))).collect::<StringArray>())
    };
    let ints = |f: &dyn Fn(&Change) -> i64| -> ArrayRef { Arc::new(changes.iter().map(f).collect::<Int64Array>()) };
    let all = || changes.iter().flat_map(|c| c.features.iter());
    let names: StringArray = all().map(|(name, _)| Some(name.as_str())).collect();
    let types: StringArray = all().map(|(_, v)| v.as_ref().map(Value::type_name)).collect();
    let values: StringArray = all().map(|(_, v)| v.as_ref().map(Value::store_text)).collect();
    let features = StructArray::try_new(
        feature_fields(),
        vec![Arc::new(names) as ArrayRef, Arc::new(types), Arc::new(values)],
        None,
    )?;
    let offsets = OffsetBuffer::from_lengths(changes.iter().map(|c| c.features.len()));
    let DataType::List(item) = features_type() else { unreachable!("a list type") };
    let features = ListArray::try_new(item, offsets, Arc::new(features), None)?;
    RecordBatch::try_new(
        schema.clone(),
        vec![
            strings(&|c| c.table.as_str()),
            strings(&|c| c.entity_id.as_str()),
            ints(&|c| c.event_time_ms),
            ints(&|c| c.applied_time_ms),
            strings(&|c| c.kind.as_str()),
            Arc::new(features),
        ],
    )
}

/// A record batch read back, its columns typed.
#[derive(Debug)]
pub(super) struct Decoded {
    table: StringArray,
    entity_id: StringArray,
    event_time_ms: Int64Array,
    applied_time_ms: Int64Array,
    kind: StringArray,
    features: ListArray,
    names: StringArray,
    types: StringArray,
    values: StringArray,
}

// === impl Decoded ===

impl Decoded {
    /// Types the columns; `Err` names what does not match the schema.
    pub(super) fn new(batch: &RecordBatch) -> Result<Decoded, String> {
        fn column<T: Clone + 'static>(batch: &RecordBatch, name: &str) -> Result<T, String> {
            let column = batch.column_by_name(name).ok_or_else(|| format!("no column `{name}`"))?;
            column.as_any().downcast_ref::<T>().cloned().ok_or_else(|| format!("column `{name}` has the wrong type"))
        }
        let features: ListArray = column(batch, "features")?;
        let fields = features
            .values()
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or("column `features` is not a list of structs")?
            .clone();
        let field = |name: &str| -> Result<StringArray, String> {
            fields
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                .ok_or_else(|| format!("`features` has no utf8 field `{name}`"))
        };
        Ok(Decoded {
            table: column(batch, "table")?,
            entity_id: column(batch, "entity_id")?,
            event_time_ms: column(batch, "event_time_ms")?,
            applied_time_ms: column(batch, "applied_time_ms")?,
            kind: column(batch, "kind")?,
            names: field("name")?,
            types: field("type")?,
            values: field("value")?,
            features,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn applied_time_ms(&self, row: usize) -> i64 {
        self.applied_time_ms.value(row)
    }

    /// Row `row` as a change; `Err` says what is wrong with it.
    pub(super) fn change(&self, row: usize) -> Result<Change, String> {
        let kind = ChangeKind::parse(self.kind.value(row))
            .ok_or_else(|| format!("row {row}: kind `{}` is not upsert or load", self.kind.value(row)))?;
        let offsets = self.features.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        let mut features = Vec::with_capacity(end - start);
        for i in start..end {
            let name = self.names.value(i).to_owned();
            let value = if self.types.is_null(i) || self.values.is_null(i) {
                None
            } else {
                let (type_name, text) = (self.types.value(i), self.values.value(i));
                Some(
                    Value::from_store_text(type_name, text)
                        .ok_or_else(|| format!("row {row}: feature `{name}`: `{text}` is not a {type_name}"))?,
                )
            };
            features.push((name, value));
        }
        Ok(Change {
            table: self.table.value(row).to_owned(),
            entity_id: self.entity_id.value(row).to_owned(),
            event_time_ms: self.event_time_ms.value(row),
            applied_time_ms: self.applied_time_ms.value(row),
            kind,
            features,
        })
    }
}
