//! Feature history: every change made to the feature store (stream updates and bulk loads), kept
//! as an append-only changelog so the values as of any past instant can be recomputed. Beside the
//! path: [`feature_stream`](crate::feature_stream) and `augur features load` write it; `augur
//! features backfill` replays it to give each impression the features serving would have had.
//!
//! A [`Change`] records both clocks: `event_time_ms` (when the values became true, the
//! last-writer-wins key the store applies) and `applied_time_ms` (when augur wrote them to the
//! store, so from when Predict could serve them). Replaying changes in applied order with the
//! store's own rule (per field, a change wins only over an older event time) rebuilds the store
//! exactly as Predict saw it at any instant ([`replay::Replay`]).
//!
//! # On disk
//!
//! ```text
//! <dir>/dt=YYYY-MM-DD/hour=HH/part-<writer id>-<seq>.parquet
//! <dir>/dt=YYYY-MM-DD/hour=HH/.part-<writer id>-<seq>.parquet.tmp   (being written; never read)
//! ```
//!
//! - **Partitioned by applied hour** (UTC), because replay order is applied order: reading the
//!   hours in order and merging each hour's parts by applied time ([`read::changes`]) yields the
//!   whole history in order with memory bounded by one record batch per part of one hour.
//! - **Each part in applied-time order**, written by one writer ([`write::HistoryWriter`]). The
//!   writer id is `<source>-<random 128-bit id>`, new at every start: replicas, several streams
//!   and a bulk load share one directory without a name ever colliding (no coordination, no
//!   listing to pick a number). A writer's applied times never go back: if the wall clock does,
//!   a change is stamped with the writer's latest applied time instead (a clock step back is
//!   rare and small; order matters more to the replay than the exact millisecond).
//! - **Committed by rename** ([`crate::hourly::commit`]): written under a hidden temporary name,
//!   fsynced, renamed, the directory fsynced. Readers skip names starting with `.` or `_`, so a
//!   part is seen whole or not at all. A killed writer's temporary file is removed by the next
//!   writer to start on the directory once it is older than `stale_temp_after_s` (counted): its
//!   id names a writer that no longer runs, but a restarted writer has a new id and a live
//!   writer's temporary files look the same, so age decides, not the name.
//! - **Columns**: `table`, `entity_id` (utf8), `event_time_ms`, `applied_time_ms` (int64, ms
//!   since the Unix epoch), `kind` (utf8: `upsert` | `load`), `features`
//!   (list<struct<name: utf8, type: utf8?, value: utf8?>>). A feature's `value` is the text the
//!   store holds ([`Value::store_text`](crate::fetch::Value::store_text): what Redis serves and
//!   assembly parses), and `type` the [`Value`] variant it came from
//!   ([`Value::type_name`](crate::fetch::Value::type_name)), so the replay restores the typed
//!   value the in-memory store held. Text and not a typed union: a reader (DuckDB, pyarrow, a
//!   person) sees exactly what Predict was served, in one column, and one struct shape fits every
//!   feature instead of six mostly-null typed columns. `type` and `value` null = the field was
//!   deleted (a load's empty cell). The one loss is shared with Redis: a string list whose
//!   elements contain `|`, or a list of one empty string, comes back as Redis would serve it.
//!
//! # The invariant the stream keeps
//!
//! A feature stream commits its Kafka offsets only after both the store write and the committed
//! part holding those updates (see `feature_stream::consumer`). So every update whose offset was
//! committed is in the changelog; a crash before the part commits re-delivers the updates, which
//! are written again (upserts are last-writer-wins by event time, so the store is unchanged) and
//! recorded again. Replaying a changelog that holds an update twice gives the same store as once
//! (the second is stale by event time, exactly as it was in the store): replay is idempotent.

#[cfg(feature = "parquet")]
mod columns;
pub mod config;
pub mod metrics;
#[cfg(feature = "parquet")]
pub mod read;
pub mod replay;
#[cfg(all(test, feature = "parquet"))]
mod tests;
#[cfg(feature = "parquet")]
pub mod write;
/// Without the `parquet` feature: the writer's interface, refusing to open (the config's
/// validation already refuses a history directory in such a build).
#[cfg(not(feature = "parquet"))]
pub mod write {
    use std::path::Path;
    use std::time::Instant;

    use super::{Change, HistoryConfig, HistoryError, HistoryMetrics};

    /// Never built: [`HistoryWriter::open`] fails.
    #[derive(Debug)]
    pub struct HistoryWriter(());

    #[allow(missing_docs)]
    impl HistoryWriter {
        pub fn open(dir: &Path, _: &HistoryConfig, _: &str, _: HistoryMetrics) -> Result<Self, HistoryError> {
            Err(HistoryError::Unsupported { path: dir.to_owned() })
        }
        pub fn id(&self) -> &str {
            ""
        }
        pub fn append(&mut self, _: impl IntoIterator<Item = Change>) -> Result<(), HistoryError> {
            Ok(())
        }
        pub fn pending_rows(&self) -> usize {
            0
        }
        pub fn roll_at(&self) -> Option<Instant> {
            None
        }
        pub fn due(&self) -> bool {
            false
        }
        pub fn commit(&mut self) -> Result<usize, HistoryError> {
            Ok(0)
        }
    }
}

use std::path::PathBuf;

pub use config::HistoryConfig;
pub use metrics::HistoryMetrics;

use crate::fetch::Value;

/// Why the changelog could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A file or directory operation failed.
    #[error("feature history: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Encoding or decoding a part failed (a corrupt or truncated file when reading).
    #[cfg(feature = "parquet")]
    #[error("feature history: {path}: {source}")]
    Parquet {
        /// The part.
        path: PathBuf,
        /// What the Parquet reader or writer said.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A part that decodes but is not a changelog part as written by augur.
    #[error("feature history: {path}: {detail}")]
    Corrupt {
        /// The part.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// This build has no Parquet support (cargo feature `parquet`).
    #[error("feature history: {path}: this build has no Parquet support (cargo feature `parquet`)")]
    Unsupported {
        /// The changelog directory asked for.
        path: PathBuf,
    },
    /// The writer already holds `limit` uncommitted changes: nothing of the append was taken.
    #[error(
        "feature history: {pending} changes wait to be committed; {adding} more would pass max_uncommitted_rows = {limit}"
    )]
    Full {
        /// Changes held.
        pending: usize,
        /// Changes refused.
        adding: usize,
        /// `feature_history.max_uncommitted_rows`.
        limit: usize,
    },
}

impl From<crate::hourly::CommitError> for HistoryError {
    fn from(e: crate::hourly::CommitError) -> Self {
        HistoryError::Io { op: e.op, path: e.path, source: e.source }
    }
}

/// How the store applied a change: the replay must apply it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A stream update: per field, written only when strictly newer (by event time) than the
    /// value held; the field's event time is kept.
    Upsert,
    /// A bulk load row: `HSET` of the present cells and `HDEL` of the empty ones, unconditional;
    /// the fields' event times are left as they were.
    Load,
}

/// One change to one entity's row, as the changelog stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The store table (`users`, `items`, ...), as `[redis.tables]` and the feature spec name it.
    pub table: String,
    /// The entity's id (the row key within the table).
    pub entity_id: String,
    /// When the values became true, ms since the Unix epoch: the last-writer-wins key.
    pub event_time_ms: i64,
    /// When augur wrote the change to the store, ms since the Unix epoch.
    pub applied_time_ms: i64,
    /// How the store applied it.
    pub kind: ChangeKind,
    /// Feature name → new value; `None` = the field was deleted (a load's empty cell).
    pub features: Vec<(String, Option<Value>)>,
}

// === impl ChangeKind ===

impl ChangeKind {
    /// The `kind` column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Upsert => "upsert",
            ChangeKind::Load => "load",
        }
    }

    /// The inverse of [`ChangeKind::as_str`].
    pub fn parse(text: &str) -> Option<ChangeKind> {
        match text {
            "upsert" => Some(ChangeKind::Upsert),
            "load" => Some(ChangeKind::Load),
            _ => None,
        }
    }
}
