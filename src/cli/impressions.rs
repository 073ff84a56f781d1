//! Impression logs, the input of the offline tools that rebuild a model's inputs
//! ([`export`](super::export), [`backfill`](super::backfill)): one row per shown candidate, read
//! as a stream (never the whole file in memory) from CSV or Parquet.
//!
//! Columns, by name (others are ignored): `user_id`, `item_id`, `label` (0 or 1), `timestamp_ms`
//! (ms since the Unix epoch; required where the tool needs the impression's time), optionally
//! `request_id`, and context columns named like the spec's `context.<field>` sources. CSV cells
//! are text (assembly parses them against the spec, as it parses the store's text); Parquet
//! columns keep their type (strings, integers, floats; integer ids are read as their decimal
//! text). An empty CSV cell or a Parquet null is a missing context value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::fetch::Value;

/// One impression.
#[derive(Debug, Clone, PartialEq)]
pub struct Impression {
    /// When it was shown (ms since the Unix epoch); 0 when the log has no `timestamp_ms`.
    pub timestamp_ms: i64,
    /// The prediction's request id, when logged.
    pub request_id: Option<String>,
    /// User id.
    pub user_id: String,
    /// Item id.
    pub item_id: String,
    /// 0 or 1.
    pub label: f32,
    /// Context values by the spec's context field name.
    pub context: HashMap<String, Value>,
}

/// Why an impression log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ImpressionError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The log.
        path: PathBuf,
        /// What the OS or the CSV reader said.
        #[source]
        source: std::io::Error,
    },
    /// A row (CSV line, or Parquet row counted from 1) is unusable.
    #[error("{path}:{row}: {problem}")]
    Row {
        /// The log.
        path: PathBuf,
        /// 1-based CSV line (the header is line 1) or Parquet row.
        row: u64,
        /// What is wrong, naming the column.
        problem: String,
    },
    /// The Parquet reader failed.
    #[cfg(feature = "parquet")]
    #[error("{path}: {source}")]
    Parquet {
        /// The log.
        path: PathBuf,
        /// What the reader said.
        #[source]
        source: parquet::errors::ParquetError,
    },
}

/// Which columns a tool needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// `user_id`, `item_id`, `label` (export).
    Ids,
    /// Those and `timestamp_ms` (backfill).
    IdsAndTime,
}

/// An open log: an iterator of impressions in file order.
#[derive(Debug)]
pub struct Impressions {
    path: PathBuf,
    source: Source,
    columns: Columns,
    /// Rows handed out so far (the CSV header not counted).
    rows: u64,
}

/// Column positions (in the CSV header or the Parquet schema).
#[derive(Debug, Clone)]
struct Columns {
    time: Option<usize>,
    request: Option<usize>,
    user: usize,
    item: usize,
    label: usize,
    context: Vec<(usize, String)>,
}

enum Source {
    Csv(csv::StringRecordsIntoIter<std::fs::File>),
    #[cfg(feature = "parquet")]
    Parquet(parquet_source::Batches),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Csv(_) => "Csv",
            #[cfg(feature = "parquet")]
            Source::Parquet(_) => "Parquet",
        })
    }
}

// === impl Impressions ===

impl Impressions {
    /// Opens `path` (`.parquet` by its extension, CSV otherwise); `context_fields` are the spec's
    /// context field names.
    pub fn open(
        path: &Path,
        context_fields: impl Fn(&str) -> bool,
        needs: Needs,
    ) -> Result<Impressions, ImpressionError> {
        let io = |source| ImpressionError::Io { path: path.to_owned(), source };
        let (source, names) = if path.extension().is_some_and(|e| e == "parquet") {
            #[cfg(feature = "parquet")]
            {
                let (batches, names) = parquet_source::Batches::open(path)?;
                (Source::Parquet(batches), names)
            }
            #[cfg(not(feature = "parquet"))]
            return Err(ImpressionError::Row {
                path: path.to_owned(),
                row: 0,
                problem: "reading Parquet needs augur built with the `parquet` feature".into(),
            });
        } else {
            let mut reader = csv::Reader::from_path(path).map_err(|e| io(csv_io(e)))?;
            let names: Vec<String> = reader.headers().map_err(|e| io(csv_io(e)))?.iter().map(str::to_owned).collect();
            (Source::Csv(reader.into_records()), names)
        };
        let find = |name: &str| names.iter().position(|n| n == name);
        let required = |name: &str| {
            find(name).ok_or_else(|| ImpressionError::Row {
                path: path.to_owned(),
                row: 1,
                problem: format!("no `{name}` column (columns: {})", names.join(", ")),
            })
        };
        let columns = Columns {
            time: if needs == Needs::IdsAndTime { Some(required("timestamp_ms")?) } else { find("timestamp_ms") },
            request: find("request_id"),
            user: required("user_id")?,
            item: required("item_id")?,
            label: required("label")?,
            context: names.iter().enumerate().filter(|(_, n)| context_fields(n)).map(|(i, n)| (i, n.clone())).collect(),
        };
        Ok(Impressions { path: path.to_owned(), source, columns, rows: 0 })
    }

    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn row_error(&self, problem: String) -> ImpressionError {
        // A CSV line number counts the header.
        let row = match self.source {
            Source::Csv(_) => self.rows + 1,
            #[cfg(feature = "parquet")]
            Source::Parquet(_) => self.rows,
        };
        ImpressionError::Row { path: self.path.clone(), row, problem }
    }

    /// One row from its cells (by column position; `None` = empty or null).
    fn impression(&self, cell: impl Fn(usize) -> Option<Value>) -> Result<Impression, ImpressionError> {
        let c = &self.columns;
        let text = |column: usize, name: &str| match cell(column) {
            Some(Value::Str(s)) if !s.is_empty() => Ok(s),
            Some(Value::Int(i)) => Ok(i.to_string()),
            Some(other) => {
                Err(self.row_error(format!("{name}: expected text or an integer, got {}", other.type_name())))
            }
            None => Err(self.row_error(format!("{name}: empty"))),
        };
        let timestamp_ms = match c.time {
            None => 0,
            Some(i) => match cell(i) {
                Some(Value::Int(t)) => t,
                Some(Value::Str(s)) => s.trim().parse().map_err(|_| {
                    self.row_error(format!("timestamp_ms: `{s}` is not an integer (ms since the Unix epoch)"))
                })?,
                other => return Err(self.row_error(format!("timestamp_ms: expected an integer, got {other:?}"))),
            },
        };
        let label = match cell(c.label) {
            Some(Value::Int(0)) => 0.0,
            Some(Value::Int(1)) => 1.0,
            Some(Value::Float(f)) if f == 0.0 || f == 1.0 => f as f32,
            Some(Value::Str(s)) if s.trim() == "0" || s.trim() == "1" => {
                if s.trim() == "1" {
                    1.0
                } else {
                    0.0
                }
            }
            other => return Err(self.row_error(format!("label must be 0 or 1, got {other:?}"))),
        };
        let request_id = match c.request.map(&cell) {
            Some(Some(Value::Str(s))) if !s.is_empty() => Some(s),
            Some(Some(Value::Int(i))) => Some(i.to_string()),
            _ => None,
        };
        let context = c.context.iter().filter_map(|(i, name)| cell(*i).map(|v| (name.clone(), v))).collect();
        Ok(Impression {
            timestamp_ms,
            request_id,
            user_id: text(c.user, "user_id")?,
            item_id: text(c.item, "item_id")?,
            label,
            context,
        })
    }
}

impl Iterator for Impressions {
    type Item = Result<Impression, ImpressionError>;

    fn next(&mut self) -> Option<Self::Item> {
        let result = match &mut self.source {
            Source::Csv(records) => {
                let record = records.next()?;
                self.rows += 1;
                match record {
                    Ok(record) => {
                        self.impression(|i| record.get(i).filter(|s| !s.is_empty()).map(|s| Value::Str(s.to_owned())))
                    }
                    Err(e) => Err(self.row_error(e.to_string())),
                }
            }
            #[cfg(feature = "parquet")]
            Source::Parquet(batches) => {
                let row = match batches.next_row(&self.path)? {
                    Ok(row) => row,
                    Err(e) => return Some(Err(e)),
                };
                self.rows += 1;
                self.impression(|i| row.get(i).cloned().flatten())
            }
        };
        Some(result)
    }
}

fn csv_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

#[cfg(feature = "parquet")]
mod parquet_source {
    //! Parquet rows as [`Value`]s, one record batch (8192 rows) in memory at a time.

    use std::collections::VecDeque;
    use std::fs::File;
    use std::path::Path;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMillisecondType, UInt8Type,
        UInt16Type, UInt32Type, UInt64Type,
    };
    use arrow_array::{Array, RecordBatch};
    use arrow_schema::{DataType, TimeUnit};
    use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

    use super::ImpressionError;
    use crate::fetch::Value;

    const BATCH_ROWS: usize = 8192;

    pub(super) struct Batches {
        reader: ParquetRecordBatchReader,
        rows: VecDeque<Vec<Option<Value>>>,
    }

    impl Batches {
        pub(super) fn open(path: &Path) -> Result<(Batches, Vec<String>), ImpressionError> {
            let file = File::open(path).map_err(|source| ImpressionError::Io { path: path.to_owned(), source })?;
            let parquet = |source| ImpressionError::Parquet { path: path.to_owned(), source };
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?;
            let names = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
            let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(parquet)?;
            Ok((Batches { reader, rows: VecDeque::new() }, names))
        }

        /// The next row's cells, reading the next batch when the last one is used up.
        pub(super) fn next_row(&mut self, path: &Path) -> Option<Result<Vec<Option<Value>>, ImpressionError>> {
            while self.rows.is_empty() {
                match self.reader.next()? {
                    Ok(batch) => match rows(&batch) {
                        Ok(rows) => self.rows.extend(rows),
                        Err(problem) => {
                            return Some(Err(ImpressionError::Row { path: path.to_owned(), row: 0, problem }));
                        }
                    },
                    Err(e) => {
                        let source = parquet::errors::ParquetError::ArrowError(e.to_string());
                        return Some(Err(ImpressionError::Parquet { path: path.to_owned(), source }));
                    }
                }
            }
            self.rows.pop_front().map(Ok)
        }
    }

    /// The batch as rows of values (columns of a type impressions cannot hold are `None`, and
    /// a required one is then reported as empty by the caller).
    fn rows(batch: &RecordBatch) -> Result<Vec<Vec<Option<Value>>>, String> {
        let mut rows = vec![Vec::with_capacity(batch.num_columns()); batch.num_rows()];
        for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
            for (r, row) in rows.iter_mut().enumerate() {
                let cell =
                    if column.is_null(r) {
                        None
                    } else {
                        Some(value(column.as_ref(), r).ok_or_else(|| {
                            format!("column `{}`: type {} is not read", field.name(), field.data_type())
                        })?)
                    };
                row.push(cell);
            }
        }
        Ok(rows)
    }

    fn value(a: &dyn Array, r: usize) -> Option<Value> {
        Some(match a.data_type() {
            DataType::Utf8 => Value::Str(a.as_string::<i32>().value(r).to_owned()),
            DataType::LargeUtf8 => Value::Str(a.as_string::<i64>().value(r).to_owned()),
            DataType::Utf8View => Value::Str(a.as_string_view().value(r).to_owned()),
            DataType::Boolean => Value::Int(i64::from(a.as_boolean().value(r))),
            DataType::Int8 => Value::Int(a.as_primitive::<Int8Type>().value(r).into()),
            DataType::Int16 => Value::Int(a.as_primitive::<Int16Type>().value(r).into()),
            DataType::Int32 => Value::Int(a.as_primitive::<Int32Type>().value(r).into()),
            DataType::Int64 => Value::Int(a.as_primitive::<Int64Type>().value(r)),
            DataType::UInt8 => Value::Int(a.as_primitive::<UInt8Type>().value(r).into()),
            DataType::UInt16 => Value::Int(a.as_primitive::<UInt16Type>().value(r).into()),
            DataType::UInt32 => Value::Int(a.as_primitive::<UInt32Type>().value(r).into()),
            DataType::UInt64 => Value::Int(i64::try_from(a.as_primitive::<UInt64Type>().value(r)).ok()?),
            DataType::Float32 => Value::Float(a.as_primitive::<Float32Type>().value(r).into()),
            DataType::Float64 => Value::Float(a.as_primitive::<Float64Type>().value(r)),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                Value::Int(a.as_primitive::<TimestampMillisecondType>().value(r))
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_with_time_context_and_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imp.csv");
        std::fs::write(&path, "timestamp_ms,user_id,item_id,label,hour,other\n5,u1,i1,1,20,x\n6,u2,i2,0,,y\n").unwrap();
        let rows: Vec<Impression> =
            Impressions::open(&path, |f| f == "hour", Needs::IdsAndTime).unwrap().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].timestamp_ms, rows[0].label), (5, 1.0));
        assert_eq!(rows[0].context.get("hour"), Some(&Value::Str("20".into())));
        assert!(rows[1].context.is_empty(), "an empty cell is a missing value");

        std::fs::write(&path, "user_id,item_id,label\nu1,i1,1\n").unwrap();
        let err = Impressions::open(&path, |_| false, Needs::IdsAndTime).unwrap_err().to_string();
        assert!(err.contains("no `timestamp_ms` column"), "{err}");
        std::fs::write(&path, "timestamp_ms,user_id,item_id,label\nx,u1,i1,1\n1,u1,i1,2\n").unwrap();
        let errs: Vec<String> = Impressions::open(&path, |_| false, Needs::IdsAndTime)
            .unwrap()
            .map(|r| r.unwrap_err().to_string())
            .collect();
        assert!(errs[0].contains("imp.csv:2: timestamp_ms: `x` is not an integer"), "{}", errs[0]);
        assert!(errs[1].contains("imp.csv:3: label must be 0 or 1"), "{}", errs[1]);
    }
}
