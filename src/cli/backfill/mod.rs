//! `augur features backfill`: point-in-time training features. Each impression gets the feature
//! values **as of its timestamp, never later**, rebuilt from the feature changelog
//! ([`feature_history`](crate::feature_history)) and assembled by the serving code
//! ([`assemble_impressions`], the same fetch + assemble as `augur features export` and, through
//! [`assemble`](crate::assemble), as Predict), written as Parquet partitioned by impression hour
//! ([`output`]).
//!
//! **Time basis.** An impression at time `t` sees a change when the change's time is `<= t`
//! (inclusive: a change stamped the same millisecond as the impression is in; the test
//! `a_change_at_the_impression_time_is_in` pins it). Which time:
//! - [`TimeBasis::Applied`] (the default): when augur wrote the change to the store. That is
//!   what a replica could serve at `t`, so it reproduces the served snapshot: a sample's time is
//!   stamped just before Predict reads the store, which then holds every change applied before
//!   it. Times are whole ms, so two races remain: a change applied during the fetch itself, and
//!   one applied within the prediction's own ms but after its fetch (counted as seen). A
//!   replica's local cache can also serve a value the store no longer has until its entry is
//!   invalidated (stream updates) or expires (bulk loads).
//! - [`TimeBasis::Event`]: when the values became true (the update's event time). A correction
//!   that arrived late (event time before the impression, applied after it) is in: what was
//!   true, not what was served. Changes are ordered by event time (ties: by applied order) and
//!   replayed with the store's rules; `until_applied_ms` fixes which late corrections count, so a
//!   rerun gives the same output.
//!
//! **Bounded memory, streaming.** Impressions need not be sorted and are never all in memory:
//! they are encoded and spilled into sorted runs per hour on disk ([`spill`], `<out>/.spill`,
//! removed at the end), then each hour's runs are merged in time order. The changelog is
//! streamed once, in applied order, and the replay is rolled forward as impression time
//! advances. Resident memory is about
//! - `spill_bytes` of encoded impressions while spilling (then freed),
//! - the replay: every entity of the spec's user and item tables the changelog touched up to
//!   the current time, with its fields (bounded by the entity count, not the impression count),
//! - one output row group (`row_group_rows` rows) and a [`CHUNK`] of impressions being
//!   assembled, plus 64 KiB per merged run (at most [`spill::FAN_IN`] at once);
//! - with the event basis, the changelog is spilled and sorted the same way (another
//!   `spill_bytes` while it is read).
//!
//! A change for another table is skipped (counted). The changelog must begin with the state the
//! store had (a full load, as `augur features load` writes it): rows loaded before the
//! changelog began are unknown to the replay and served as missing.

mod output;
mod record;
mod spill;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use indicatif::ProgressBar;

use self::output::HourWriter;
pub use self::spill::SpillStats;
use self::spill::{Sorted, Sorter};
use super::export::assemble_impressions;
use super::impressions::{Impression, ImpressionError, Impressions, Needs};
use crate::assemble::Spec;
use crate::feature_history::Change;
use crate::feature_history::replay::{OutOfOrder, Replay};
use crate::fetch::FetchError;
use crate::sample_log::parquet::ParquetError;

/// Impressions assembled per store read (cut short where a change falls between two of them).
pub const CHUNK: usize = 1024;
/// The hidden spill directory under `--out` (readers skip names starting with `.`).
const SPILL_DIR: &str = ".spill";
/// The summary written last, when every part is committed.
pub const MARKER: &str = "_SUCCESS";

/// Which clock decides that an impression sees a change (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeBasis {
    /// Changes applied to the store by the impression's time: what Predict could serve.
    #[default]
    Applied,
    /// Changes whose event time is at or before the impression's: what was true.
    Event,
}

impl FromStr for TimeBasis {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "applied" => Ok(TimeBasis::Applied),
            "event" => Ok(TimeBasis::Event),
            other => Err(format!("`{other}`: expected `applied` or `event`")),
        }
    }
}

/// How to backfill.
#[derive(Debug, Clone)]
pub struct Options {
    /// The clock changes are matched on.
    pub basis: TimeBasis,
    /// Event basis: only changes applied up to this time count (default: the whole changelog).
    pub until_applied_ms: Option<i64>,
    /// Encoded records held in memory before a sorted run is spilled.
    pub spill_bytes: usize,
    /// Rows per Parquet row group (held in memory before they are encoded).
    pub row_group_rows: usize,
    /// Rows per part; an hour with more gets several.
    pub max_file_rows: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            basis: TimeBasis::Applied,
            until_applied_ms: None,
            spill_bytes: 256 << 20,
            row_group_rows: 65_536,
            max_file_rows: 4_000_000,
        }
    }
}

/// What a backfill wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// The clock used.
    pub basis: TimeBasis,
    /// Rows written (one per impression).
    pub rows: u64,
    /// Rows with label 1.
    pub positives: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Feature → rows on which it fell back.
    pub fallbacks: BTreeMap<String, u64>,
    /// Parts written, relative to the output directory.
    pub partitions: Vec<String>,
    /// Parquet bytes written.
    pub bytes: u64,
    /// Changes read from the changelog up to the last impression's time (by the basis' clock).
    pub changes_read: u64,
    /// Changes replayed.
    pub changes_applied: u64,
    /// Changes for tables the spec does not read (skipped).
    pub changes_other_tables: u64,
    /// Earliest and latest impression time.
    pub first_ms: Option<i64>,
    /// See `first_ms`.
    pub last_ms: Option<i64>,
    /// The impressions' spill.
    pub spill: SpillStats,
}

impl Summary {
    /// Rows per second of wall time.
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.seconds.max(1e-9)
    }
}

/// The report `augur features backfill` prints.
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "backfilled {} rows ({} positive) in {:.2} s ({:.0} rows/s), time basis: {:?}",
            self.rows,
            self.positives,
            self.seconds,
            self.rows_per_sec(),
            self.basis
        )?;
        writeln!(
            f,
            "changes: {} read, {} replayed, {} for other tables",
            self.changes_read, self.changes_applied, self.changes_other_tables
        )?;
        writeln!(f, "partitions written: {} ({} bytes)", self.partitions.len(), self.bytes)?;
        for p in &self.partitions {
            writeln!(f, "  {p}")?;
        }
        write!(f, "fallbacks (rows):")?;
        if self.fallbacks.is_empty() {
            write!(f, " none")?;
        }
        for (feature, rows) in &self.fallbacks {
            write!(f, "\n  {feature}: {rows}")?;
        }
        Ok(())
    }
}

/// Why a backfill failed.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The impression log is unreadable or a row unusable.
    #[error(transparent)]
    Impressions(#[from] ImpressionError),
    /// The changelog reader failed.
    #[error("reading the feature history: {0}")]
    History(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The changelog went back in applied time.
    #[error("feature history out of order: {0}")]
    OutOfOrder(#[from] OutOfOrder),
    /// The output directory holds files already.
    #[error("--out {path} is not empty: a backfill writes into a new or empty directory")]
    OutNotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// Spilling to or reading back from disk failed.
    #[error("spill in {dir}: {source}")]
    Spill {
        /// The spill directory.
        dir: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A spilled record did not decode.
    #[error(transparent)]
    Corrupt(#[from] record::Corrupt),
    /// Writing the output failed.
    #[error(transparent)]
    Output(#[from] ParquetError),
    /// The replayed store refused a read (never expected: it holds the spec's tables).
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Backfills the impressions at `impressions` for `spec` into `out`. `history(until_applied_ms)`
/// opens the changelog: every change applied up to that time, in nondecreasing applied time
/// (`crate::feature_history::read::changes`, or any iterator of changes in tests).
pub async fn backfill<I, E>(
    spec: &Spec,
    impressions: &Path,
    history: impl FnOnce(i64) -> Result<I, E>,
    out: &Path,
    options: &Options,
    progress: &ProgressBar,
) -> Result<Summary, BackfillError>
where
    I: Iterator<Item = Result<Change, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackfillError::OutNotEmpty { path: out.to_owned() });
    }
    let spill_dir = out.join(SPILL_DIR);
    let spill_err = |source| BackfillError::Spill { dir: spill_dir.clone(), source };
    let mut summary = Summary { basis: options.basis, ..Summary::default() };

    // 1. Impressions → sorted runs per hour.
    progress.set_message("spilling impressions");
    let log = Impressions::open(impressions, |f| spec.context_fields.contains_key(f), Needs::IdsAndTime)?;
    let mut sorter = Sorter::new(&spill_dir, options.spill_bytes, record::impression_hour).map_err(spill_err)?;
    let mut encoded = Vec::new();
    for impression in log {
        let impression = impression?;
        summary.first_ms = Some(summary.first_ms.map_or(impression.timestamp_ms, |t| t.min(impression.timestamp_ms)));
        summary.last_ms = Some(summary.last_ms.map_or(impression.timestamp_ms, |t| t.max(impression.timestamp_ms)));
        encoded.clear();
        record::encode_impression(&mut encoded, &impression);
        sorter.push(&encoded).map_err(spill_err)?;
        progress.inc(1);
    }
    let mut sorted = sorter.finish().map_err(spill_err)?;
    summary.spill = sorted.stats();
    let Some(last_ms) = summary.last_ms else {
        let _ = std::fs::remove_dir_all(&spill_dir);
        return Ok(finish(summary, started));
    };

    // 2. The changelog, in the order the basis replays it.
    let tables = [spec.user_table.as_str(), spec.item_table.as_str()];
    let until = match options.basis {
        TimeBasis::Applied => last_ms,
        TimeBasis::Event => options.until_applied_ms.unwrap_or(i64::MAX),
    };
    let changes = history(until).map_err(|e| BackfillError::History(Box::new(e)))?;
    let changes = changes.map(|c| c.map_err(|e| BackfillError::History(Box::new(e))));
    let mut changes: Box<dyn Iterator<Item = Result<Change, BackfillError>>> = match options.basis {
        TimeBasis::Applied => Box::new(changes),
        TimeBasis::Event => {
            let dir = spill_dir.join("changes");
            by_event_time(changes, &dir, options.spill_bytes, last_ms)?
        }
    };

    // 3. Hour by hour, in time order: roll the replay forward, assemble, write.
    progress.set_position(0);
    progress.set_length(summary.spill.records);
    progress.set_message("backfilling");
    let mut replay = Replay::with_tables(tables);
    let mut writer = HourWriter::new(out, spec, options.row_group_rows, options.max_file_rows);
    let mut pending: Option<Change> = None;
    let mut chunk: Vec<Impression> = Vec::with_capacity(CHUNK);
    for hour in sorted.partitions() {
        let merge = sorted.merge(hour).map_err(spill_err)?;
        for record in merge {
            let impression = record::decode_impression(&record.map_err(spill_err)?)?;
            // Changes up to this impression's time (inclusive): rows before it are assembled first.
            loop {
                if pending.is_none() {
                    pending = changes.next().transpose()?;
                    if let Some(c) = &pending {
                        summary.changes_read += 1;
                        if !tables.contains(&c.table.as_str()) {
                            summary.changes_other_tables += 1;
                            pending = None;
                            continue;
                        }
                    }
                }
                match pending.take_if(|c| c.applied_time_ms <= impression.timestamp_ms) {
                    Some(change) => {
                        flush(spec, &replay, &mut chunk, hour, &mut writer, &mut summary, progress).await?;
                        replay.apply(change)?;
                        summary.changes_applied += 1;
                    }
                    None => break,
                }
            }
            chunk.push(impression);
            if chunk.len() >= CHUNK {
                flush(spec, &replay, &mut chunk, hour, &mut writer, &mut summary, progress).await?;
            }
        }
        flush(spec, &replay, &mut chunk, hour, &mut writer, &mut summary, progress).await?;
        writer.commit()?;
    }
    summary.partitions = std::mem::take(&mut writer.committed);
    summary.bytes = writer.bytes;
    drop(changes);
    let _ = std::fs::remove_dir_all(&spill_dir);
    let summary = finish(summary, started);
    let marker = serde_json::json!({ "summary": &summary, "scene": spec.scene }).to_string();
    let tmp = out.join(format!(".{MARKER}.tmp"));
    let written = std::fs::write(&tmp, marker).and_then(|()| std::fs::rename(&tmp, out.join(MARKER)));
    written.map_err(|source| ParquetError::Io { op: "writing", path: out.join(MARKER), source })?;
    Ok(summary)
}

fn finish(mut summary: Summary, started: Instant) -> Summary {
    summary.seconds = started.elapsed().as_secs_f64();
    summary
}

/// Assembles `chunk` against the replay's store as it is now and writes it.
async fn flush(
    spec: &Spec,
    replay: &Replay,
    chunk: &mut Vec<Impression>,
    hour: i64,
    writer: &mut HourWriter,
    summary: &mut Summary,
    progress: &ProgressBar,
) -> Result<(), BackfillError> {
    if chunk.is_empty() {
        return Ok(());
    }
    let store = replay.store();
    let assembled = assemble_impressions(spec, store.as_ref(), chunk).await?;
    let n = chunk.len() as u64;
    for (impression, assembled) in chunk.drain(..).zip(assembled) {
        for fallback in &assembled.fallbacks {
            *summary.fallbacks.entry(fallback.feature.clone()).or_default() += 1;
        }
        summary.rows += 1;
        summary.positives += u64::from(impression.label > 0.5);
        writer.push(hour, impression, assembled)?;
    }
    progress.inc(n);
    Ok(())
}

/// The changes with an event time up to `last_ms`, sorted by event time (then applied order),
/// each stamped as applied at its event time so the replay applies it then.
fn by_event_time(
    changes: impl Iterator<Item = Result<Change, BackfillError>>,
    dir: &Path,
    spill_bytes: usize,
    last_ms: i64,
) -> Result<Box<dyn Iterator<Item = Result<Change, BackfillError>>>, BackfillError> {
    let spill_err = |source| BackfillError::Spill { dir: dir.to_owned(), source };
    let mut sorter = Sorter::new(dir, spill_bytes, |_| 0).map_err(spill_err)?;
    let mut encoded = Vec::new();
    for (sequence, change) in changes.enumerate() {
        let change = change?;
        if change.event_time_ms <= last_ms {
            encoded.clear();
            record::encode_change(&mut encoded, &change, sequence as u64);
            sorter.push(&encoded).map_err(spill_err)?;
        }
    }
    let mut sorted: Sorted = sorter.finish().map_err(spill_err)?;
    let merge = match sorted.partitions().first() {
        Some(&p) => Some(sorted.merge(p).map_err(spill_err)?),
        None => None,
    };
    let dir = dir.to_owned();
    Ok(Box::new(merge.into_iter().flatten().map(move |r| {
        let mut change =
            record::decode_change(&r.map_err(|source| BackfillError::Spill { dir: dir.clone(), source })?)?;
        change.applied_time_ms = change.event_time_ms;
        Ok(change)
    })))
}

#[cfg(test)]
mod tests;
