//! The Parquet sink's files: open parts per (hour, scene), their commits and the hour markers.
//! Blocking file I/O and encoding; the sink runs it on a blocking thread.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::schema::{Signature, batch, schema};
use super::{MARKER, ParquetError};
use crate::proto::{Sample, log_record};
use crate::sample_log::config::ParquetSinkConfig;
use crate::sample_log::metrics::{DeadLetterLabels, SampleMetrics, SinkLabels};
use crate::sample_log::record::Record;
use crate::sample_log::sink::Tick;

use crate::hourly::HOUR_MS;
pub(super) use crate::hourly::hour_dir;
#[cfg(test)]
pub(super) use crate::hourly::{civil_from_days, days_from_civil};

/// (hour start in ms, scene): one `dt=/hour=/scene=` directory.
type Key = (i64, String);
/// When the driver is caught up with the log, the clock minus this counts as the emission
/// watermark: slack between a sample's emission stamp and its append to the log.
const CLOCK_SLACK_MS: i64 = 5_000;

/// What the writer needs besides the sink's own section.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// Event types, one `label_<type>` column each.
    pub(super) label_types: Vec<String>,
    /// `samples.join.window_s`: the last correction of a sample comes this long after it.
    pub(super) window_s: u64,
}

/// See the module doc of `parquet`.
pub(super) struct Writer {
    dir: PathBuf,
    label_types: Vec<String>,
    properties: WriterProperties,
    max_file_rows: usize,
    commit_interval: Duration,
    max_open_files: usize,
    /// An hour closes once the watermark is this far past its end.
    close_after_ms: i64,
    partitions: HashMap<Key, Partition>,
    /// Hours seen (or found unclosed at start) -> closed.
    hours: BTreeMap<i64, bool>,
    /// Latest emission time seen (or the clock, when caught up).
    watermark_ms: i64,
    metrics: SampleMetrics,
    labels: SinkLabels,
}

/// One `dt=/hour=/scene=` directory.
struct Partition {
    dir: PathBuf,
    /// Last sequence of its newest committed part: every record of the partition up to it is in
    /// a committed part (records reach a partition in log order, a part is committed whole).
    committed_through: u64,
    open: Option<Part>,
}

/// A part being written.
struct Part {
    first: u64,
    last: u64,
    rows: usize,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    signature: Signature,
    schema: SchemaRef,
    opened: Instant,
}

// === impl Writer ===

impl Writer {
    /// Creates `dir` and finds the hours a previous run left without a marker.
    pub(super) fn open(
        config: &ParquetSinkConfig,
        settings: Settings,
        metrics: SampleMetrics,
    ) -> Result<Writer, ParquetError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let properties = writer_properties(config.row_group_rows);
        let mut writer = Writer {
            dir,
            label_types: settings.label_types,
            properties,
            max_file_rows: config.max_file_rows,
            commit_interval: Duration::from_secs(config.commit_interval_s),
            max_open_files: config.max_open_files.max(1),
            close_after_ms: ((settings.window_s + config.close_grace_s) as i64).saturating_mul(1000),
            partitions: HashMap::new(),
            hours: BTreeMap::new(),
            watermark_ms: 0,
            metrics,
            labels: SinkLabels { sink: config.name.clone() },
        };
        for hour in writer.unclosed_hours()? {
            writer.hours.insert(hour, false);
        }
        Ok(writer)
    }

    /// The first sequence staged in an open part.
    pub(super) fn staged_from(&self) -> Option<u64> {
        self.partitions.values().filter_map(|p| p.open.as_ref().map(|o| o.first)).min()
    }

    /// Writes `records` to their parts. On error every open part is dropped (the driver reads
    /// again from its cursor, which is before all of them).
    pub(super) fn deliver(&mut self, records: &[Record]) -> Result<(), ParquetError> {
        let result = self.deliver_inner(records);
        self.after(result)
    }

    /// Closes due hours, commits parts open too long, and everything when `closing`.
    pub(super) fn tick(&mut self, tick: Tick, now_ms: i64) -> Result<(), ParquetError> {
        let result = self.tick_inner(tick, now_ms);
        self.after(result)
    }

    fn after(&mut self, result: Result<(), ParquetError>) -> Result<(), ParquetError> {
        if result.is_err() {
            self.reset();
        }
        let open = self.partitions.values().filter(|p| p.open.is_some()).count();
        self.metrics.parquet_open_files.get_or_create(&self.labels).set(open as i64);
        result
    }

    fn deliver_inner(&mut self, records: &[Record]) -> Result<(), ParquetError> {
        // Grouped per partition, in log order within each; partitions in order of first record.
        let mut groups: Vec<(Key, Vec<(u64, Sample)>)> = Vec::new();
        for record in records {
            let sample = match record.decode().ok().and_then(|r| r.record) {
                Some(log_record::Record::Sample(s)) => s,
                Some(log_record::Record::Orphan(_)) => {
                    self.skip("orphan", 1);
                    continue;
                }
                // Read back from the log, so it decoded once already.
                None => {
                    self.skip("invalid", 1);
                    continue;
                }
            };
            self.watermark_ms = self.watermark_ms.max(sample.emitted_ms);
            let key = (sample.timestamp_ms.div_euclid(HOUR_MS) * HOUR_MS, sample.scene.clone());
            let partition = self.partition(&key)?;
            let staged = partition.open.as_ref().is_some_and(|p| record.sequence <= p.last);
            if record.sequence <= partition.committed_through || staged {
                self.skip("committed", 1);
                continue;
            }
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, rows)) => rows.push((record.sequence, sample)),
                None => groups.push((key, vec![(record.sequence, sample)])),
            }
        }
        for (key, rows) in groups {
            let closed = *self.hours.entry(key.0).or_insert_with(|| marker_path(&self.dir, key.0).exists());
            if closed {
                self.metrics.parquet_late_rows.get_or_create(&self.labels).inc_by(rows.len() as u64);
            }
            // Runs of one input shape: a shape change starts a new part.
            let mut rest = rows.as_slice();
            while let Some((_, first)) = rest.first() {
                let signature = Signature::of(first);
                let run = rest.iter().take_while(|(_, s)| Signature::of(s) == signature).count();
                let (now, later) = rest.split_at(run);
                self.write_run(&key, signature, now)?;
                rest = later;
            }
        }
        Ok(())
    }

    fn write_run(&mut self, key: &Key, signature: Signature, rows: &[(u64, Sample)]) -> Result<(), ParquetError> {
        let reopen = self.partitions[key].open.as_ref().is_some_and(|p| p.signature != signature);
        if reopen {
            self.commit(key)?;
        }
        if self.partitions[key].open.is_none() {
            let open = self.partitions.values().filter(|p| p.open.is_some()).count();
            if open >= self.max_open_files {
                let oldest = self
                    .partitions
                    .iter()
                    .filter_map(|(k, p)| p.open.as_ref().map(|o| (o.opened, k.clone())))
                    .min()
                    .map(|(_, k)| k);
                if let Some(oldest) = oldest {
                    self.commit(&oldest)?;
                }
            }
            let partition = self.partitions.get_mut(key).expect("loaded by deliver");
            fs::create_dir_all(&partition.dir).map_err(io("creating", &partition.dir))?;
            let first = rows[0].0;
            let tmp = partition.dir.join(format!(".part-{first:020}.tmp"));
            let file = File::create(&tmp).map_err(io("creating", &tmp))?;
            let schema = schema(&self.label_types, &signature);
            let writer = ArrowWriter::try_new(file, schema.clone(), Some(self.properties.clone()))
                .map_err(|source| ParquetError::Encode { path: tmp.clone(), source })?;
            partition.open =
                Some(Part { first, last: first, rows: 0, tmp, writer, signature, schema, opened: Instant::now() });
        }
        let part = self.partitions.get_mut(key).and_then(|p| p.open.as_mut()).expect("opened above");
        let batch = batch(&part.schema, &self.label_types, &part.signature, rows)?;
        part.writer.write(&batch).map_err(|source| ParquetError::Encode { path: part.tmp.clone(), source })?;
        part.rows += rows.len();
        part.last = rows[rows.len() - 1].0;
        if part.rows >= self.max_file_rows {
            self.commit(key)?;
        }
        Ok(())
    }

    fn tick_inner(&mut self, tick: Tick, now_ms: i64) -> Result<(), ParquetError> {
        if tick.caught_up {
            self.watermark_ms = self.watermark_ms.max(now_ms - CLOCK_SLACK_MS);
        }
        let due: Vec<i64> = self
            .hours
            .iter()
            .filter(|(hour, closed)| !**closed && **hour + HOUR_MS + self.close_after_ms <= self.watermark_ms)
            .map(|(hour, _)| *hour)
            .collect();
        for hour in due {
            self.close_hour(hour, now_ms)?;
        }
        let stale: Vec<Key> = self
            .partitions
            .iter()
            .filter(|(_, p)| {
                p.open.as_ref().is_some_and(|o| tick.closing || o.opened.elapsed() >= self.commit_interval)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.commit(&key)?;
        }
        // Nothing of a closed hour is kept in memory (a late sample lists its directory again).
        let hours = &self.hours;
        self.partitions.retain(|(hour, _), p| p.open.is_some() || hours.get(hour) == Some(&false));
        Ok(())
    }

    /// Commits the hour's open parts and writes its marker, listing every part of the hour.
    fn close_hour(&mut self, hour: i64, now_ms: i64) -> Result<(), ParquetError> {
        let keys: Vec<_> = self.partitions.keys().filter(|(h, _)| *h == hour).cloned().collect();
        for key in keys {
            self.commit(&key)?;
        }
        let dir = hour_dir(&self.dir, hour);
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let mut parts = Vec::new();
        for scene in read_dir(&dir)? {
            if scene.is_dir() {
                for part in read_dir(&scene)? {
                    if part_range(&part).is_some() {
                        parts.push(part.strip_prefix(&dir).unwrap_or(&part).display().to_string());
                    }
                }
            }
        }
        parts.sort();
        let marker = serde_json::json!({
            "hour_start_ms": hour,
            "closed_at_ms": now_ms,
            "watermark_ms": self.watermark_ms,
            "parts": parts,
        });
        let tmp = dir.join(format!(".{MARKER}.tmp"));
        write_synced(&tmp, marker.to_string().as_bytes())?;
        let path = dir.join(MARKER);
        fs::rename(&tmp, &path).map_err(io("renaming to", &path))?;
        sync_dir(&dir)?;
        self.hours.insert(hour, true);
        self.metrics.parquet_hours_closed.get_or_create(&self.labels).inc();
        tracing::info!(sink = %self.labels.sink, hour = %dir.display(), parts = parts.len(), "parquet hour closed");
        Ok(())
    }

    /// Finishes the partition's open part: footer, fsync, rename to its sequence range, fsync
    /// of the directory. A no-op without one.
    fn commit(&mut self, key: &Key) -> Result<(), ParquetError> {
        let Some(partition) = self.partitions.get_mut(key) else { return Ok(()) };
        let Some(part) = partition.open.take() else { return Ok(()) };
        let Part { first, last, rows, tmp, writer, .. } = part;
        let path = partition.dir.join(part_name(first, last));
        let bytes = commit_part(writer, &tmp, &path)?;
        partition.committed_through = last;
        self.metrics.parquet_files.get_or_create(&self.labels).inc();
        self.metrics.parquet_rows.get_or_create(&self.labels).inc_by(rows as u64);
        self.metrics.parquet_bytes.get_or_create(&self.labels).inc_by(bytes);
        tracing::debug!(sink = %self.labels.sink, part = %path.display(), rows, bytes, "parquet part committed");
        Ok(())
    }

    /// The partition of `key`, listed from disk the first time: its committed range and no
    /// leftover temporary file of a crashed run.
    fn partition(&mut self, key: &Key) -> Result<&mut Partition, ParquetError> {
        if !self.partitions.contains_key(key) {
            let dir = hour_dir(&self.dir, key.0).join(format!("scene={}", escape(&key.1)));
            let mut committed_through = 0;
            if dir.is_dir() {
                for path in read_dir(&dir)? {
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    if name.starts_with(".part-") && name.ends_with(".tmp") {
                        fs::remove_file(&path).map_err(io("removing", &path))?;
                    } else if let Some((_, last)) = part_range(&path) {
                        committed_through = committed_through.max(last);
                    }
                }
            }
            self.partitions.insert(key.clone(), Partition { dir, committed_through, open: None });
        }
        Ok(self.partitions.get_mut(key).expect("inserted above"))
    }

    /// Drops every open part and forgets what is known of the partitions (read again from disk).
    fn reset(&mut self) {
        for partition in self.partitions.values_mut() {
            if let Some(part) = partition.open.take() {
                drop(part.writer);
                let _ = fs::remove_file(&part.tmp);
            }
        }
        self.partitions.clear();
    }

    fn skip(&self, reason: &str, n: u64) {
        let labels = DeadLetterLabels { sink: self.labels.sink.clone(), reason: reason.to_owned() };
        self.metrics.parquet_skipped.get_or_create(&labels).inc_by(n);
    }

    /// Hours with a directory and no marker (`dt=*/hour=*`).
    fn unclosed_hours(&self) -> Result<Vec<i64>, ParquetError> {
        let hours = crate::hourly::hours(&self.dir).map_err(io("listing", &self.dir))?;
        Ok(hours.into_iter().filter(|(_, dir)| !dir.join(MARKER).exists()).map(|(hour, _)| hour).collect())
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dir", &self.dir)
            .field("partitions", &self.partitions.len())
            .field("watermark_ms", &self.watermark_ms)
            .finish_non_exhaustive()
    }
}

/// `part-<first>-<last>.parquet`, zero-padded so names sort by sequence.
pub(super) fn part_name(first: u64, last: u64) -> String {
    format!("part-{first:020}-{last:020}.parquet")
}

/// The sequence range a part's name holds.
pub(super) fn part_range(path: &Path) -> Option<(u64, u64)> {
    let name = path.file_name()?.to_str()?;
    let (first, last) = name.strip_prefix("part-")?.strip_suffix(".parquet")?.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// How augur writes every Parquet file: snappy, `row_group_rows` rows per row group (the rows a
/// writer holds unencoded), stamped with augur's version.
pub fn writer_properties(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_created_by(format!("augur {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Finishes a part written to the hidden `tmp` (footer) and commits it as `path`
/// ([`crate::hourly::commit`]); returns its size in bytes.
pub fn commit_part(writer: ArrowWriter<File>, tmp: &Path, path: &Path) -> Result<u64, ParquetError> {
    let file = writer.into_inner().map_err(|source| ParquetError::Encode { path: tmp.to_owned(), source })?;
    Ok(crate::hourly::commit(file, tmp, path)?)
}

fn marker_path(dir: &Path, hour_ms: i64) -> PathBuf {
    hour_dir(dir, hour_ms).join(MARKER)
}

/// A scene name as a directory name: bytes outside `[A-Za-z0-9_.-]` percent-encoded (as Hive
/// partition readers decode them).
fn escape(scene: &str) -> String {
    let mut out = String::with_capacity(scene.len());
    for b in scene.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ParquetError {
    let path = path.to_owned();
    move |source| ParquetError::Io { op, path, source }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, ParquetError> {
    let entries = fs::read_dir(dir).map_err(io("listing", dir))?;
    let mut out = Vec::new();
    for entry in entries {
        out.push(entry.map_err(io("listing", dir))?.path());
    }
    out.sort();
    Ok(out)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ParquetError> {
    use std::io::Write;
    let mut file = File::create(path).map_err(io("creating", path))?;
    file.write_all(bytes).map_err(io("writing", path))?;
    file.sync_all().map_err(io("fsyncing", path))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ParquetError> {
    crate::hourly::sync_dir(dir).map_err(io("fsyncing", dir))
}
