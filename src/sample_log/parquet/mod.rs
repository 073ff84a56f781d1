//! The Parquet sink: joined samples as hourly Parquet files on local disk, the format training and
//! data tools (pyarrow, DuckDB, Spark) read directly.
//!
//! ```text
//! <dir>/dt=YYYY-MM-DD/hour=HH/scene=<scene>/part-<first seq>-<last seq>.parquet
//! <dir>/dt=YYYY-MM-DD/hour=HH/_SUCCESS
//! ```
//!
//! Why each choice:
//! - **Partitioned by prediction hour** (`Sample.timestamp_ms`, UTC), not emission hour: an hour's
//!   directory holds the predictions made in it, and a sample's corrections (same prediction time)
//!   land beside it, so "the highest revision per sample_id" is decided within one hour. Then
//!   **by scene**: a scene's inputs have one shape, so a part has one schema.
//! - **One row per record**, corrections included (column `revision`): readers keep the highest
//!   revision per `sample_id`. Orphans are not training samples: skipped and counted
//!   (`augur_samples_parquet_skipped_total{reason="orphan"}`); the log and other sinks keep them.
//! - **Committed by rename**: a part is written as a hidden `.part-<first>.tmp` (readers skip
//!   names starting with `.` or `_`, and it does not match `*.parquet`), closed, fsynced, renamed,
//!   and the directory fsynced. A part is committed at `max_file_rows`, after
//!   `commit_interval_s`, when its hour closes, when more than `max_open_files` are open (the
//!   oldest), when the scene's input shape changes, and at shutdown.
//! - **`_SUCCESS` per hour** once no more samples can land in it: the samples delivered were
//!   emitted `samples.join.window_s + close_grace_s` past the hour's end (or, when the sink is
//!   caught up with the log, the clock says so). It lists the hour's parts (JSON). A sample for a
//!   closed hour still gets written, in a new part, and is counted as late. Shutdown commits the
//!   open parts without markers; an hour left open is closed by a later run (found at start).
//! - **Idempotent across crashes**: the tail driver's cursor stays before the oldest row staged
//!   in an open part (see [`SampleSink::staging`](crate::sample_log::sink::SampleSink::staging)),
//!   so a crash re-delivers everything not committed. A part's name holds the log sequence range
//!   it covers, and within a partition (hour, scene) records arrive in log order, so every record
//!   of the partition with a sequence up to the newest part's last is in a committed part: those
//!   are skipped (`reason="committed"`), the rest are written again. No row twice, none lost.
//! - **Bounded memory**: an open part holds at most one row group (`row_group_rows`) unencoded
//!   in the writer; at most `max_open_files` parts are open.

mod schema;
mod sink;
#[cfg(test)]
mod tests;
mod writer;

pub use schema::{fallbacks_array, fallbacks_field, input_array, input_column, input_field, label_column};
pub use sink::ParquetSink;
pub use writer::{commit_part, writer_properties};

/// Name of the hour marker.
pub const MARKER: &str = "_SUCCESS";

/// Why the Parquet sink could not write.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Encoding the rows failed.
    #[error("encoding {path}: {source}")]
    Encode {
        /// The part being written.
        path: std::path::PathBuf,
        /// What the writer said.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building the columns failed (a sample not shaped like the part's schema).
    #[error("building columns: {0}")]
    Columns(#[from] arrow_schema::ArrowError),
}

impl From<crate::hourly::CommitError> for ParquetError {
    fn from(e: crate::hourly::CommitError) -> Self {
        ParquetError::Io { op: e.op, path: e.path, source: e.source }
    }
}
