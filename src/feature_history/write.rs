//! [`HistoryWriter`]: appends changes in applied-time order and commits them as parts. Blocking
//! file I/O and encoding: async callers run [`HistoryWriter::commit`] on a blocking thread.
//!
//! Changes are held in memory (at most `max_uncommitted_rows`) until a commit writes them: a
//! commit that fails (disk full, I/O error) leaves them held and is retried by the next one, so
//! nothing appended is lost while the process lives, and the caller can tell exactly which
//! changes are durable (all of them, once [`HistoryWriter::pending_rows`] is 0).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::config::HistoryConfig;
use super::metrics::{FailureLabels, HistoryMetrics, SourceLabels};
use super::{Change, HistoryError, columns};
use crate::hourly::{HOUR_MS, hour_dir};

/// Rows per record batch handed to the Parquet writer.
const BATCH_ROWS: usize = 4096;
/// Rows per row group: a reader decodes a part a row group at a time, so this (not the part's
/// size) bounds what the merge holds per part.
const ROW_GROUP_ROWS: usize = 8192;

/// One writer of the changelog (see the module doc of [`super`]).
pub struct HistoryWriter {
    dir: PathBuf,
    /// `<source>-<uuid>`: unique to this writer, so its part names are too.
    id: String,
    /// Sequence of the next part.
    next_seq: u64,
    roll_interval: Duration,
    max_rows_per_part: usize,
    max_uncommitted_rows: usize,
    /// Appended, not yet in a committed part; in applied-time order.
    pending: Vec<Change>,
    /// When the oldest pending change was appended.
    pending_since: Option<Instant>,
    /// Latest applied time appended: a change never goes before it.
    last_applied_ms: i64,
    schema: SchemaRef,
    properties: WriterProperties,
    metrics: HistoryMetrics,
    labels: SourceLabels,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter")
            .field("dir", &self.dir)
            .field("id", &self.id)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// What killed writers left under `dir` (see [`crate::hourly::remove_stale_temps`]), removed and
/// counted. A failure only delays the clean-up to the next start: it is counted and logged, and
/// the writer opens anyway (the files are hidden from readers).
fn remove_stale_temps(dir: &Path, older_than: Duration, metrics: &HistoryMetrics, labels: &SourceLabels) {
    match crate::hourly::remove_stale_temps(dir, older_than) {
        Ok(removed) => {
            if !removed.is_empty() {
                metrics.stale_temps_removed.get_or_create(labels).inc_by(removed.len() as u64);
                tracing::info!(source = %labels.source, files = removed.len(), first = %removed[0].display(), "stale temporary changelog parts removed");
            }
        }
        Err(error) => {
            let failure = FailureLabels { source: labels.source.clone(), op: "clean".to_owned() };
            metrics.failures.get_or_create(&failure).inc();
            tracing::warn!(source = %labels.source, dir = %dir.display(), %error, "stale temporary changelog parts not removed");
        }
    }
}

// === impl HistoryWriter ===

impl HistoryWriter {
    /// A writer into `dir` (created) for `source` (`stream:<name>` or `load`: the metrics label
    /// and, made file-name safe, the first part of the writer id).
    pub fn open(
        dir: &Path,
        config: &HistoryConfig,
        source: &str,
        metrics: HistoryMetrics,
    ) -> Result<HistoryWriter, HistoryError> {
        fs::create_dir_all(dir).map_err(|source| HistoryError::Io { op: "creating", path: dir.to_owned(), source })?;
        let safe: String =
            source.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        let id = format!("{safe}-{}", uuid::Uuid::new_v4().simple());
        let labels = SourceLabels { source: source.to_owned() };
        remove_stale_temps(dir, Duration::from_secs(config.stale_temp_after_s), &metrics, &labels);
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("augur {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(HistoryWriter {
            dir: dir.to_owned(),
            id,
            next_seq: 0,
            roll_interval: Duration::from_millis(config.roll_interval_ms),
            max_rows_per_part: config.max_rows_per_part.max(1),
            max_uncommitted_rows: config.max_uncommitted_rows.max(1),
            pending: Vec::new(),
            pending_since: None,
            last_applied_ms: i64::MIN,
            schema: columns::schema(),
            properties,
            metrics,
            labels,
        })
    }

    /// This writer's id, as its part names hold it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Takes `changes` (in applied-time order) to be committed. All or nothing: `Full` when they
    /// would pass `max_uncommitted_rows` (counted; commit, then append again).
    pub fn append(&mut self, changes: impl IntoIterator<Item = Change>) -> Result<(), HistoryError> {
        let changes: Vec<Change> = changes.into_iter().collect();
        if self.pending.len() + changes.len() > self.max_uncommitted_rows {
            self.metrics.refused_rows.get_or_create(&self.labels).inc_by(changes.len() as u64);
            return Err(HistoryError::Full {
                pending: self.pending.len(),
                adding: changes.len(),
                limit: self.max_uncommitted_rows,
            });
        }
        if !changes.is_empty() && self.pending_since.is_none() {
            self.pending_since = Some(Instant::now());
        }
        for mut change in changes {
            change.applied_time_ms = change.applied_time_ms.max(self.last_applied_ms);
            self.last_applied_ms = change.applied_time_ms;
            self.pending.push(change);
        }
        self.metrics.pending_rows.get_or_create(&self.labels).set(self.pending.len() as i64);
        Ok(())
    }

    /// Changes appended and not yet in a committed part.
    pub fn pending_rows(&self) -> usize {
        self.pending.len()
    }

    /// When the pending changes are due for a commit (`roll_interval_ms` after the oldest was
    /// appended); `None` with nothing pending.
    pub fn roll_at(&self) -> Option<Instant> {
        self.pending_since.map(|since| since + self.roll_interval)
    }

    /// Whether a commit is due: a full part's worth pending, or the oldest past the interval.
    pub fn due(&self) -> bool {
        self.pending.len() >= self.max_rows_per_part || self.roll_at().is_some_and(|at| Instant::now() >= at)
    }

    /// Writes every pending change into committed parts (one or more per applied hour, at most
    /// `max_rows_per_part` each); returns how many. On error the changes of the part that failed
    /// and after stay pending (those before are committed) and the next commit retries them.
    pub fn commit(&mut self) -> Result<usize, HistoryError> {
        let mut committed = 0;
        let result = loop {
            let Some(first) = self.pending.first() else { break Ok(()) };
            let hour = first.applied_time_ms.div_euclid(HOUR_MS);
            let rows = self
                .pending
                .iter()
                .take(self.max_rows_per_part)
                .take_while(|c| c.applied_time_ms.div_euclid(HOUR_MS) == hour)
                .count();
            // A sequence number is used once even when its part fails: names never repeat.
            let seq = self.next_seq;
            self.next_seq += 1;
            match self.write_part(hour * HOUR_MS, seq, &self.pending[..rows]) {
                Ok(bytes) => {
                    self.pending.drain(..rows);
                    committed += rows;
                    self.metrics.parts.get_or_create(&self.labels).inc();
                    self.metrics.rows.get_or_create(&self.labels).inc_by(rows as u64);
                    self.metrics.bytes.get_or_create(&self.labels).inc_by(bytes);
                }
                Err(e) => {
                    let labels = FailureLabels { source: self.labels.source.clone(), op: "write".into() };
                    self.metrics.failures.get_or_create(&labels).inc();
                    break Err(e);
                }
            }
        };
        // After a failure the retry comes one interval later, not at once (a full disk stays
        // full for a while); a caller holding more than fits waits in `append` meanwhile.
        self.pending_since = if self.pending.is_empty() {
            None
        } else if result.is_err() {
            Some(Instant::now())
        } else {
            self.pending_since
        };
        self.metrics.pending_rows.get_or_create(&self.labels).set(self.pending.len() as i64);
        result.map(|()| committed)
    }

    /// One part: a hidden temporary file, then [`crate::hourly::commit`]. Returns its size.
    fn write_part(&self, hour_ms: i64, seq: u64, changes: &[Change]) -> Result<u64, HistoryError> {
        let dir = hour_dir(&self.dir, hour_ms);
        let io = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| HistoryError::Io { op, path, source }
        };
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let name = format!("part-{}-{seq:08}.parquet", self.id);
        let (tmp, path) = (dir.join(format!(".{name}.tmp")), dir.join(&name));
        let result = (|| {
            let file = File::create(&tmp).map_err(io("creating", &tmp))?;
            let parquet = |source| HistoryError::Parquet { path: tmp.clone(), source };
            let mut writer =
                ArrowWriter::try_new(file, self.schema.clone(), Some(self.properties.clone())).map_err(parquet)?;
            for chunk in changes.chunks(BATCH_ROWS) {
                let batch = columns::batch(&self.schema, chunk).map_err(|e| parquet(e.into()))?;
                writer.write(&batch).map_err(parquet)?;
            }
            let file = writer.into_inner().map_err(parquet)?;
            Ok(crate::hourly::commit(file, &tmp, &path)?)
        })();
        match result {
            Ok(bytes) => {
                tracing::debug!(part = %path.display(), rows = changes.len(), bytes, "feature history part committed");
                Ok(bytes)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}
