//! The backfill's Parquet files: one hour at a time (hours come in order, so one part is open),
//! each part written hidden and committed by rename (the sample sink's
//! [`commit_part`](crate::sample_log::parquet::commit_part)).
//!
//! ```text
//! <out>/dt=YYYY-MM-DD/hour=HH/part-00000.parquet
//! ```
//!
//! | column | type | |
//! | --- | --- | --- |
//! | `request_id` | utf8, nullable | when the impression log has it |
//! | `user_id`, `item_id` | utf8 | |
//! | `timestamp_ms` | int64 | impression time, ms since the Unix epoch (UTC) |
//! | `label` | float32 | 0 or 1 |
//! | `fallbacks` | list<utf8> | features served from defaults |
//! | `input_<name>` | fixed_size_list<int64 or float32>[width] | the model input row (stored form), as the sample sink names it |

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use crate::assemble::{Assembled, DType, Spec, TensorData};
use crate::cli::impressions::Impression;
use crate::hourly::hour_dir;
use crate::sample_log::parquet::{
    ParquetError, commit_part, fallbacks_array, fallbacks_field, input_array, input_field, writer_properties,
};

/// Writes the rows of one hour after another.
pub(super) struct HourWriter {
    out: PathBuf,
    schema: SchemaRef,
    properties: WriterProperties,
    /// (name, int, width) of each stored input.
    inputs: Vec<(String, bool, usize)>,
    row_group_rows: usize,
    max_file_rows: usize,
    part: Option<Part>,
    rows: Rows,
    /// Parts committed, relative to `out`.
    pub(super) committed: Vec<String>,
    pub(super) bytes: u64,
}

struct Part {
    hour: i64,
    index: usize,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    rows: usize,
}

/// Rows buffered for the next record batch.
#[derive(Default)]
struct Rows {
    request_ids: Vec<Option<String>>,
    user_ids: Vec<String>,
    item_ids: Vec<String>,
    times: Vec<i64>,
    labels: Vec<f32>,
    fallbacks: Vec<Vec<String>>,
    inputs: Vec<TensorData>,
}

impl std::fmt::Debug for HourWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HourWriter").field("out", &self.out).field("committed", &self.committed).finish_non_exhaustive()
    }
}

// === impl HourWriter ===

impl HourWriter {
    pub(super) fn new(out: &Path, spec: &Spec, row_group_rows: usize, max_file_rows: usize) -> HourWriter {
        let inputs: Vec<(String, bool, usize)> =
            spec.stored.iter().map(|i| (i.name.clone(), i.dtype == DType::Int64, i.columns.len())).collect();
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        let mut fields = vec![
            Field::new("request_id", DataType::Utf8, true),
            text("user_id"),
            text("item_id"),
            Field::new("timestamp_ms", DataType::Int64, false),
            Field::new("label", DataType::Float32, false),
            fallbacks_field(),
        ];
        fields.extend(inputs.iter().map(|(name, int, width)| input_field(name, *int, *width as i32)));
        HourWriter {
            out: out.to_owned(),
            schema: Arc::new(Schema::new(fields)),
            properties: writer_properties(row_group_rows),
            rows: Rows::empty(&inputs),
            inputs,
            row_group_rows: row_group_rows.max(1),
            max_file_rows: max_file_rows.max(1),
            part: None,
            committed: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a row to the part of `hour` (the hour of the rows before it, or a later one).
    pub(super) fn push(&mut self, hour: i64, impression: Impression, assembled: Assembled) -> Result<(), ParquetError> {
        if self.part.as_ref().is_some_and(|p| p.hour != hour) {
            self.commit()?;
        }
        if self.part.is_none() {
            self.open(hour, 0)?;
        }
        let rows = &mut self.rows;
        rows.request_ids.push(impression.request_id);
        rows.user_ids.push(impression.user_id);
        rows.item_ids.push(impression.item_id);
        rows.times.push(impression.timestamp_ms);
        rows.labels.push(impression.label);
        rows.fallbacks.push(assembled.fallbacks.into_iter().map(|f| f.feature).collect());
        for (column, tensor) in rows.inputs.iter_mut().zip(assembled.tensors) {
            match (column, tensor.data) {
                (TensorData::I64(c), TensorData::I64(v)) => c.extend(v),
                (TensorData::F32(c), TensorData::F32(v)) => c.extend(v),
                _ => unreachable!("assemble follows the spec's dtypes"),
            }
        }
        if rows.times.len() >= self.row_group_rows {
            self.write_batch()?;
        }
        let part = self.part.as_ref().expect("opened above");
        if part.rows + self.rows.times.len() >= self.max_file_rows {
            let (hour, index) = (part.hour, part.index);
            self.commit()?;
            self.open(hour, index + 1)?;
        }
        Ok(())
    }

    /// Commits the open part, if any.
    pub(super) fn commit(&mut self) -> Result<(), ParquetError> {
        self.write_batch()?;
        let Some(part) = self.part.take() else { return Ok(()) };
        if part.rows == 0 {
            drop(part.writer);
            return fs::remove_file(&part.tmp).map_err(|source| ParquetError::Io {
                op: "removing",
                path: part.tmp,
                source,
            });
        }
        let path = part.tmp.with_file_name(format!("part-{:05}.parquet", part.index));
        self.bytes += commit_part(part.writer, &part.tmp, &path)?;
        self.committed.push(path.strip_prefix(&self.out).unwrap_or(&path).display().to_string());
        Ok(())
    }

    fn open(&mut self, hour: i64, index: usize) -> Result<(), ParquetError> {
        let dir = hour_dir(&self.out, hour);
        fs::create_dir_all(&dir).map_err(|source| ParquetError::Io { op: "creating", path: dir.clone(), source })?;
        let tmp = dir.join(format!(".part-{index:05}.tmp"));
        let file =
            File::create(&tmp).map_err(|source| ParquetError::Io { op: "creating", path: tmp.clone(), source })?;
        let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(self.properties.clone()))
            .map_err(|source| ParquetError::Encode { path: tmp.clone(), source })?;
        self.part = Some(Part { hour, index, tmp, writer, rows: 0 });
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), ParquetError> {
        let n = self.rows.times.len();
        let Some(part) = self.part.as_mut() else { return Ok(()) };
        if n == 0 {
            return Ok(());
        }
        let rows = std::mem::replace(&mut self.rows, Rows::empty(&self.inputs));
        let mut names = StringBuilder::new();
        rows.fallbacks.iter().flatten().for_each(|f| names.append_value(f));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(rows.request_ids)),
            Arc::new(StringArray::from(rows.user_ids)),
            Arc::new(StringArray::from(rows.item_ids)),
            Arc::new(Int64Array::from(rows.times)),
            Arc::new(Float32Array::from(rows.labels)),
            fallbacks_array(rows.fallbacks.iter().map(Vec::len), names.finish())?,
        ];
        for ((name, int, width), data) in self.inputs.iter().zip(rows.inputs) {
            let values: ArrayRef = match data {
                TensorData::I64(v) => Arc::new(Int64Array::from(v)),
                TensorData::F32(v) => Arc::new(Float32Array::from(v)),
            };
            columns.push(input_array(name, *int, *width as i32, values)?);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        part.writer.write(&batch).map_err(|source| ParquetError::Encode { path: part.tmp.clone(), source })?;
        part.rows += n;
        Ok(())
    }
}

impl Rows {
    fn empty(inputs: &[(String, bool, usize)]) -> Rows {
        Rows {
            inputs: inputs
                .iter()
                .map(|(_, int, _)| if *int { TensorData::I64(Vec::new()) } else { TensorData::F32(Vec::new()) })
                .collect(),
            ..Rows::default()
        }
    }
}
