//! The sample log's one durable step: an append-only log of segment files that every joined
//! sample, correction and orphan goes through before any network sink sees it. Vector's disk
//! buffer (`lib/vector-buffers/src/variants/disk_v2/`) is the anchor.
//!
//! ```text
//! <dir>/00000000000000000001.log   records 1..=k      (named by the first sequence it holds)
//! <dir>/0000000000000000000k+1.log records k+1..      (the active one: appended to)
//! <dir>/cursors/<sink>             last sequence <sink> acknowledged (tmp + fsync + rename)
//! ```
//!
//! - **Records** are `u32 length | u32 crc32c(sequence ++ payload) | u64 sequence | payload`
//!   (see `segment.rs`); sequences are consecutive from 1 across segments.
//! - **Durability.** `append` writes to the file (the page cache: a SIGKILL loses nothing written);
//!   `sync` fsyncs, on an interval ([`spawn_syncer`]) and at shutdown, so a power loss costs at
//!   most one interval. `durable_sequence` is what a power loss cannot take.
//! - **Open** truncates a torn or corrupt tail of the last segment (counted in
//!   `log_truncated_bytes` and `log_corrupt`) and resumes after the last good record. Older
//!   segments are checked when read: records carry no sync markers, so after a bad record the rest
//!   of that segment cannot be resynchronised; it is skipped and counted once, and reading goes on
//!   with the next segment. A payload whose checksum holds but which is not a `LogRecord` is
//!   skipped alone and counted the same way. Nothing on disk makes `open` or a read fail.
//! - **Cursors and deletion.** Each configured sink has a persisted cursor; a closed segment is
//!   deleted when every configured sink's cursor is past its last record. Cursor files of sinks no
//!   longer configured are ignored and hold nothing back.
//! - **Disk bound.** Segment bytes never exceed `max_disk_bytes`: a batch that would is refused
//!   whole and counted in `dropped{reason="log_full"}`. A sink outage fills the log up to the bound,
//!   then costs samples, counted. **With no sinks configured the file log is the sink**: segments
//!   are kept for `augur samples dump` or an external shipper, and once the bound is reached new
//!   records are refused and counted; removing old segments is the operator's call.
//! - Only names of 20 digits + `.log` are segments; other files in the directory (the joiner's
//!   `pending.bin`, the `cursors/` and `dead_letter/` folders) are left alone.
//!
//! All methods do blocking file I/O (appends hit the page cache; `sync` and `set_cursor` fsync):
//! call them from `spawn_blocking` or a thread of their own, not from an async worker.

mod reader;
mod segment;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::record::Record;
use crate::sample_log::config::SampleLogConfig;
use crate::sample_log::metrics::{ReasonLabels, SampleMetrics};
pub use reader::LogReader;
use segment::{HEADER, Scanned, Scanner};

/// Read positions remembered so a tailer's next batch starts where its last ended instead of
/// rescanning the segment from the top; a handful covers every sink.
const READ_HINTS: usize = 16;
/// Corrupt spots remembered so that re-reading one (every sink reads every segment) counts it once.
const CORRUPT_SEEN: usize = 1024;
/// Sub-directory of the dead-letter logs, one per sink ([`SegmentLog::open_dead_letter`]).
pub const DEAD_LETTER_DIR: &str = "dead_letter";

/// Why a log operation failed. Bad bytes on disk are not errors (they are skipped and counted).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("sample log: {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The batch would take the log past `max_disk_bytes`; nothing of it was written.
    #[error("sample log full: {used} + {needed} bytes would exceed max_disk_bytes = {max}")]
    Full {
        /// Bytes the batch needs.
        needed: u64,
        /// Bytes the segments use now.
        used: u64,
        /// The bound.
        max: u64,
    },
    /// One record is larger than a segment may be; nothing of the batch was written.
    #[error("sample log record of {bytes} bytes exceeds segment_max_bytes = {max}")]
    TooLarge {
        /// Encoded record size.
        bytes: u64,
        /// The bound.
        max: u64,
    },
    /// The sink is not among those the log was opened with (or its name cannot name a file).
    #[error("sample log: no sink named `{sink}`")]
    UnknownSink {
        /// The name asked for.
        sink: String,
    },
    /// A cursor past the last record written.
    #[error("sample log: cursor {sequence} of `{sink}` is past the last sequence {last}")]
    CursorAhead {
        /// The sink.
        sink: String,
        /// The cursor asked for.
        sequence: u64,
        /// The last sequence written.
        last: u64,
    },
}

/// What `open` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The last good record's sequence (appends continue after it); 0 for an empty log.
    pub last_sequence: u64,
    /// Torn or corrupt tail bytes cut off the last segment (also in `log_truncated_bytes`).
    pub truncated_bytes: u64,
    /// Segments kept.
    pub segments: usize,
    /// Sequences a sink had acknowledged but the log no longer holds (lost with a power loss
    /// inside the fsync window, or truncated): appends continue after them, so no sink skips a
    /// new record. 0 normally.
    pub lost_after_ack: u64,
}

/// The segment log. Cheap to share (`Arc<SegmentLog>`); one writer at a time behind a std
/// mutex, which is right here because every critical section is short blocking file I/O.
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    cursors_dir: PathBuf,
    segment_max_bytes: u64,
    segment_max_age: Duration,
    max_disk_bytes: u64,
    sinks: Vec<String>,
    metrics: SampleMetrics,
    inner: Mutex<Inner>,
    /// Mirrors of `Inner::last` and the fsynced sequence, readable without the lock.
    last: AtomicU64,
    durable: AtomicU64,
    notify: watch::Sender<u64>,
}

#[derive(Debug)]
struct Inner {
    /// Oldest first; the last is the active one when `active` is set.
    segments: VecDeque<Segment>,
    active: Option<Active>,
    last: u64,
    disk_bytes: u64,
    /// Files written since the last fsync (the active one, and any closed since).
    unsynced: Vec<Arc<File>>,
    /// A segment was created since the last fsync: its directory entry needs one too.
    dir_dirty: bool,
    cursors: HashMap<String, u64>,
    hints: VecDeque<Hint>,
    corrupt_seen: HashSet<(u64, u64)>,
}

#[derive(Debug, Clone)]
struct Segment {
    first: u64,
    path: PathBuf,
    /// Bytes of whole records: readers never look past it, so they never see a half-written one.
    bytes: u64,
}

#[derive(Debug)]
struct Active {
    file: Arc<File>,
    created: Instant,
}

/// "The record with `sequence` starts at `offset` of the segment starting at `first`."
#[derive(Debug, Clone, Copy)]
struct Hint {
    first: u64,
    sequence: u64,
    offset: u64,
}

// === impl SegmentLog ===

impl SegmentLog {
    /// Opens (creating) `config.dir`: scans the segments, truncates a torn tail of the last one,
    /// loads the cursors of `sinks`, deletes segments every sink is past, and resumes the
    /// sequence after the last good record.
    pub fn open(
        config: &SampleLogConfig,
        sinks: &[String],
        metrics: SampleMetrics,
    ) -> Result<(SegmentLog, OpenReport), LogError> {
        let dir = config.dir.clone();
        let cursors_dir = dir.join("cursors");
        fs::create_dir_all(&cursors_dir).map_err(io_err("create", &cursors_dir))?;
        if let Some(bad) = sinks.iter().find(|s| !valid_sink_name(s)) {
            return Err(LogError::UnknownSink { sink: bad.clone() });
        }
        let mut cursors = HashMap::new();
        for sink in sinks {
            cursors.insert(sink.clone(), read_cursor(&cursors_dir, sink));
        }

        let mut segments = VecDeque::new();
        for (first, path) in list_segments(&dir)? {
            let bytes = fs::metadata(&path).map_err(io_err("stat", &path))?.len();
            segments.push_back(Segment { first, path, bytes });
        }

        // The last segment is the one a crash can leave torn: check it whole, cut what is not a
        // record. A segment left with no record at all goes, and the one before is checked.
        let mut truncated_bytes = 0;
        let mut corrupt = 0;
        let mut last = 0;
        while let Some(tail) = segments.back_mut() {
            let (good_end, last_good, bad) = scan_tail(tail, config.segment_max_bytes)?;
            if good_end < tail.bytes {
                truncated_bytes += tail.bytes - good_end;
                corrupt += 1;
                tracing::warn!(
                    segment = %tail.path.display(), offset = good_end, bytes = tail.bytes - good_end,
                    reason = bad.unwrap_or("short file"), "sample log: truncating a torn or corrupt tail"
                );
                let file = OpenOptions::new().write(true).open(&tail.path).map_err(io_err("open", &tail.path))?;
                file.set_len(good_end).map_err(io_err("truncate", &tail.path))?;
                file.sync_all().map_err(io_err("fsync", &tail.path))?;
                tail.bytes = good_end;
            }
            match last_good {
                Some(sequence) => {
                    last = sequence;
                    break;
                }
                None => {
                    let path = tail.path.clone();
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    segments.pop_back();
                }
            }
        }
        // A SIGKILL may have left the last run's writes in the page cache only: make them as
        // durable as `durable_sequence` is about to claim (cheap for files already clean).
        for segment in &segments {
            File::open(&segment.path).and_then(|f| f.sync_all()).map_err(io_err("fsync", &segment.path))?;
        }
        // Appends continue after anything a sink has seen, even if the log lost it: a reused
        // sequence would sit behind that sink's cursor and never reach it.
        let max_cursor = cursors.values().copied().max().unwrap_or(0);
        let lost_after_ack = max_cursor.saturating_sub(last);
        if lost_after_ack > 0 {
            tracing::warn!(
                last_sequence = last,
                max_cursor,
                lost = lost_after_ack,
                "sample log: sinks acknowledged records the log no longer holds (power loss within the fsync window?)"
            );
            last = max_cursor;
        }
        metrics.log_truncated_bytes.inc_by(truncated_bytes);
        metrics.log_corrupt.inc_by(corrupt);

        let disk_bytes = segments.iter().map(|s| s.bytes).sum();
        let (notify, _) = watch::channel(last);
        let log = SegmentLog {
            dir,
            cursors_dir,
            segment_max_bytes: config.segment_max_bytes,
            segment_max_age: Duration::from_secs(config.segment_max_age_s),
            max_disk_bytes: config.max_disk_bytes,
            sinks: sinks.to_vec(),
            metrics,
            inner: Mutex::new(Inner {
                segments,
                active: None,
                last,
                disk_bytes,
                unsynced: Vec::new(),
                dir_dirty: false,
                cursors,
                hints: VecDeque::new(),
                corrupt_seen: HashSet::new(),
            }),
            last: AtomicU64::new(last),
            // Every segment was fsynced above.
            durable: AtomicU64::new(last),
            notify,
        };
        {
            let mut inner = log.lock();
            log.delete_consumed(&mut inner);
            log.metrics.log_disk_bytes.set(gauge(inner.disk_bytes));
        }
        log.metrics.log_sequence.set(gauge(last));
        log.metrics.log_durable_sequence.set(gauge(last));
        let report =
            OpenReport { last_sequence: last, truncated_bytes, segments: log.lock().segments.len(), lost_after_ack };
        Ok((log, report))
    }

    /// Appends `payloads` as consecutive records and writes them to the file (not fsynced: see
    /// [`SegmentLog::sync`]); returns the last one's sequence. Rotates to a new segment when the
    /// active one would outgrow `segment_max_bytes` or is older than `segment_max_age_s`.
    ///
    /// A batch that would exceed `max_disk_bytes`, or holds a record larger than a segment, is
    /// refused whole and counted in `dropped`. On `Err(Io)` a prefix of the batch may be in the log.
    pub fn append(&self, payloads: &[Vec<u8>]) -> Result<u64, LogError> {
        let mut inner = self.lock();
        if payloads.is_empty() {
            return Ok(inner.last);
        }
        let refuse = |reason: &str| {
            let labels = ReasonLabels { reason: reason.to_owned() };
            self.metrics.dropped.get_or_create(&labels).inc_by(payloads.len() as u64);
        };
        let mut needed = 0;
        for payload in payloads {
            let bytes = HEADER + payload.len() as u64;
            if bytes > self.segment_max_bytes {
                refuse("log_record_too_large");
                return Err(LogError::TooLarge { bytes, max: self.segment_max_bytes });
            }
            needed += bytes;
        }
        if inner.disk_bytes + needed > self.max_disk_bytes {
            refuse("log_full");
            return Err(LogError::Full { needed, used: inner.disk_bytes, max: self.max_disk_bytes });
        }
        if inner.active.as_ref().is_some_and(|a| a.created.elapsed() >= self.segment_max_age) {
            close_active(&mut inner);
        }
        let mut buf = Vec::with_capacity(needed.min(self.segment_max_bytes) as usize);
        let mut next = inner.last + 1;
        for payload in payloads {
            let bytes = HEADER + payload.len() as u64;
            let in_segment = inner.active.as_ref().and_then(|_| inner.segments.back()).map(|s| s.bytes);
            let fits = in_segment.is_some_and(|b| b + buf.len() as u64 + bytes <= self.segment_max_bytes);
            if !fits {
                self.flush(&mut inner, &mut buf, next - 1)?;
                close_active(&mut inner);
                self.create_segment(&mut inner, next)?;
            }
            segment::encode(&mut buf, next, payload);
            next += 1;
        }
        self.flush(&mut inner, &mut buf, next - 1)?;
        Ok(inner.last)
    }

    /// fsyncs what was written (and the directory when a segment was created); returns the
    /// durable sequence. Also closes an active segment older than `segment_max_age_s`, so a quiet
    /// log does not hold a segment open (and undeletable) forever.
    pub fn sync(&self) -> Result<u64, LogError> {
        let (files, dir_dirty, last) = {
            let mut inner = self.lock();
            if inner.active.as_ref().is_some_and(|a| a.created.elapsed() >= self.segment_max_age) {
                close_active(&mut inner);
                self.delete_consumed(&mut inner);
            }
            let mut files = std::mem::take(&mut inner.unsynced);
            if let Some(active) = &inner.active {
                files.push(active.file.clone());
            }
            (files, std::mem::take(&mut inner.dir_dirty), inner.last)
        };
        // fsync outside the lock: appends go on meanwhile, and only what was written before
        // the snapshot above is claimed durable.
        let result = (|| {
            for file in &files {
                file.sync_data().map_err(io_err("fsync", &self.dir))?;
            }
            if dir_dirty {
                sync_dir(&self.dir)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let mut inner = self.lock();
            inner.unsynced.extend(files);
            inner.dir_dirty |= dir_dirty;
            return Err(e);
        }
        let durable = self.durable.fetch_max(last, Ordering::AcqRel).max(last);
        self.metrics.log_durable_sequence.set(gauge(durable));
        Ok(durable)
    }

    /// The last sequence written; 0 for an empty log.
    pub fn last_sequence(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// The last sequence fsynced.
    pub fn durable_sequence(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Changes to the last sequence: tailers wait on it when caught up.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Records with a sequence above `after`, at most `max`, in order. Corrupt records are skipped
    /// and counted (see the module doc); the result may have gaps, never disorder.
    pub fn read_after(&self, after: u64, max: usize) -> Result<Vec<Record>, LogError> {
        let from = after.saturating_add(1);
        let (segments, hint) = {
            let inner = self.lock();
            let hint = inner.hints.iter().find(|h| h.sequence == from).copied();
            // Segments from the one holding `from` on (or the oldest, if it is gone).
            let start = inner.segments.iter().rposition(|s| s.first <= from).unwrap_or(0);
            (inner.segments.iter().skip(start).cloned().collect::<Vec<_>>(), hint)
        };
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        for segment in &segments {
            let (offset, expected) = match hint {
                Some(h) if h.first == segment.first => (h.offset, h.sequence),
                _ => (0, segment.first),
            };
            let mut scanner =
                match Scanner::open(&segment.path, offset, segment.bytes, expected, self.segment_max_bytes) {
                    Ok(s) => s,
                    // Deleted under us: every sink was past it.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(LogError::Io { op: "open", path: segment.path.clone(), source: e }),
                };
            loop {
                match scanner.next_record().map_err(io_err("read", &segment.path))? {
                    Scanned::Record { sequence, payload, next } => {
                        if sequence <= after {
                            continue;
                        }
                        match Record::new(sequence, Bytes::from(payload)) {
                            Ok(record) => out.push(record),
                            Err(e) => self.corrupt(segment, next, "not a LogRecord", &e),
                        }
                        if out.len() == max {
                            self.remember(Hint { first: segment.first, sequence: sequence + 1, offset: next });
                            return Ok(out);
                        }
                    }
                    Scanned::End => break,
                    Scanned::Bad { offset, reason } => {
                        self.corrupt(segment, offset, reason, &"rest of the segment skipped");
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// The persisted cursor of `sink`: the last sequence it acknowledged; 0 when none.
    pub fn cursor(&self, sink: &str) -> u64 {
        self.lock().cursors.get(sink).copied().unwrap_or(0)
    }

    /// Persists `sink`'s cursor (tmp file, fsync, rename, fsync the directory), then deletes the
    /// segments every sink is past.
    pub fn set_cursor(&self, sink: &str, sequence: u64) -> Result<(), LogError> {
        if !self.sinks.iter().any(|s| s == sink) {
            return Err(LogError::UnknownSink { sink: sink.to_owned() });
        }
        let last = self.last_sequence();
        if sequence > last {
            return Err(LogError::CursorAhead { sink: sink.to_owned(), sequence, last });
        }
        let tmp = self.cursors_dir.join(format!("{sink}.tmp"));
        let path = self.cursors_dir.join(sink);
        let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all(format!("{sequence}\n").as_bytes()).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
        sync_dir(&self.cursors_dir)?;
        let mut inner = self.lock();
        inner.cursors.insert(sink.to_owned(), sequence);
        self.delete_consumed(&mut inner);
        Ok(())
    }

    /// Segment files on disk now.
    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Bytes of segment files on disk now.
    pub fn disk_bytes(&self) -> u64 {
        self.lock().disk_bytes
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (creating) `<dir>/dead_letter/<sink>/`: where the tail driver keeps the records
    /// `sink` refuses for good. A log of its own rather than a special file, so `augur samples
    /// dump --log` reads it and a torn tail is cut at open like here. It has this log's bounds,
    /// no sinks (nothing is deleted: it is kept for the operator) and metrics of its own, so its
    /// sequence and disk gauges never overwrite this log's.
    pub fn open_dead_letter(&self, sink: &str) -> Result<SegmentLog, LogError> {
        if !valid_sink_name(sink) {
            return Err(LogError::UnknownSink { sink: sink.to_owned() });
        }
        let config = SampleLogConfig {
            dir: self.dir.join(DEAD_LETTER_DIR).join(sink),
            segment_max_bytes: self.segment_max_bytes,
            segment_max_age_s: self.segment_max_age.as_secs(),
            // Unused: the caller fsyncs each append (dead letters are rare, and a cursor must not
            // move past a record before its dead letter is durable).
            fsync_interval_ms: 1_000,
            max_disk_bytes: self.max_disk_bytes,
        };
        let (log, _) = SegmentLog::open(&config, &[], SampleMetrics::default())?;
        Ok(log)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; if something ever did, the state is still the
        // last consistent one (each update is a single assignment), so keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `buf` to the active segment; on failure cuts the file back so no half record stays.
    fn flush(&self, inner: &mut Inner, buf: &mut Vec<u8>, last: u64) -> Result<(), LogError> {
        if buf.is_empty() {
            return Ok(());
        }
        let (Some(active), Some(segment)) = (&inner.active, inner.segments.back_mut()) else {
            return Ok(());
        };
        if let Err(e) = (&*active.file).write_all(buf) {
            // Best effort: a failed write may have left part of a record; the next open would
            // truncate it anyway.
            let _ = active.file.set_len(segment.bytes);
            buf.clear();
            return Err(LogError::Io { op: "write", path: segment.path.clone(), source: e });
        }
        segment.bytes += buf.len() as u64;
        inner.disk_bytes += buf.len() as u64;
        buf.clear();
        inner.last = last;
        self.last.store(last, Ordering::Release);
        self.metrics.log_sequence.set(gauge(last));
        self.metrics.log_disk_bytes.set(gauge(inner.disk_bytes));
        self.notify.send_replace(last);
        Ok(())
    }

    fn create_segment(&self, inner: &mut Inner, first: u64) -> Result<(), LogError> {
        let path = self.dir.join(segment::file_name(first));
        let file = OpenOptions::new().append(true).create_new(true).open(&path).map_err(io_err("create", &path))?;
        inner.segments.push_back(Segment { first, path, bytes: 0 });
        inner.active = Some(Active { file: Arc::new(file), created: Instant::now() });
        inner.dir_dirty = true;
        Ok(())
    }

    /// Deletes closed segments, oldest first, whose last record every configured sink has
    /// acknowledged. With no sinks nothing is deleted: the log is the sink.
    fn delete_consumed(&self, inner: &mut Inner) {
        let Some(min_cursor) = self.sinks.iter().map(|s| inner.cursors.get(s).copied().unwrap_or(0)).min() else {
            return;
        };
        loop {
            let closed = inner.segments.len() - usize::from(inner.active.is_some());
            if closed == 0 {
                break;
            }
            let last_in_front = inner.segments.get(1).map(|s| s.first - 1).unwrap_or(inner.last);
            if last_in_front > min_cursor {
                break;
            }
            let Some(front) = inner.segments.pop_front() else { break };
            if let Err(e) = fs::remove_file(&front.path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(segment = %front.path.display(), error = %e, "sample log: could not delete a consumed segment");
                inner.segments.push_front(front);
                break;
            }
            inner.disk_bytes -= front.bytes;
            inner.hints.retain(|h| h.first != front.first);
        }
        self.metrics.log_disk_bytes.set(gauge(inner.disk_bytes));
    }

    fn remember(&self, hint: Hint) {
        let mut inner = self.lock();
        inner.hints.retain(|h| h.sequence != hint.sequence);
        if inner.hints.len() == READ_HINTS {
            inner.hints.pop_front();
        }
        inner.hints.push_back(hint);
    }

    /// Counts a corrupt spot once however many readers trip over it.
    fn corrupt(&self, segment: &Segment, offset: u64, reason: &str, detail: &dyn std::fmt::Display) {
        let mut inner = self.lock();
        if inner.corrupt_seen.len() >= CORRUPT_SEEN {
            inner.corrupt_seen.clear();
        }
        if inner.corrupt_seen.insert((segment.first, offset)) {
            self.metrics.log_corrupt.inc();
            tracing::warn!(segment = %segment.path.display(), offset, reason, %detail, "sample log: corrupt record skipped");
        }
    }
}

/// Scans a whole segment: (end of the good part, last good sequence, why the rest is bad).
fn scan_tail(segment: &Segment, max_record: u64) -> Result<(u64, Option<u64>, Option<&'static str>), LogError> {
    let mut scanner = Scanner::open(&segment.path, 0, segment.bytes, segment.first, max_record)
        .map_err(io_err("open", &segment.path))?;
    let (mut end, mut last) = (0, None);
    loop {
        match scanner.next_record().map_err(io_err("read", &segment.path))? {
            Scanned::Record { sequence, next, .. } => {
                end = next;
                last = Some(sequence);
            }
            Scanned::End => return Ok((end, last, None)),
            Scanned::Bad { reason, .. } => return Ok((end, last, Some(reason))),
        }
    }
}

/// The segment files of `dir` as (first sequence, path), oldest first.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        if let Some(first) = entry.file_name().to_str().and_then(segment::parse_name) {
            segments.push((first, entry.path()));
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

fn close_active(inner: &mut Inner) {
    if let Some(active) = inner.active.take() {
        inner.unsynced.push(active.file);
    }
}

/// A sink name is a file name under `cursors/`: the config allows `[A-Za-z0-9_-]`.
fn valid_sink_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A missing cursor is 0; an unreadable one is 0 too (and said): re-delivering costs duplicates,
/// which consumers drop by id, while skipping would cost samples.
fn read_cursor(dir: &Path, sink: &str) -> u64 {
    let path = dir.join(sink);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().ok().filter(|&c| c <= segment::MAX_SEQUENCE).unwrap_or_else(|| {
            tracing::warn!(path = %path.display(), "sample log: unreadable cursor, starting the sink from the oldest record");
            0
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "sample log: unreadable cursor, starting the sink from the oldest record");
            0
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync", dir))
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io { op, path: path.to_owned(), source }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// fsyncs `log` every `interval` until `cancel`, then once more: the interval is the most a power
/// loss can cost, and shutdown loses nothing.
pub fn spawn_syncer(
    log: Arc<SegmentLog>,
    interval: Duration,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let warn = crate::telemetry::LogEvery::new(Duration::from_secs(10));
        loop {
            let stop = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tokio::time::sleep(interval) => false,
            };
            let log = log.clone();
            let result = tokio::task::spawn_blocking(move || log.sync()).await;
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    if let Some(suppressed) = warn.ready() {
                        tracing::warn!(error = %e, suppressed, "sample log: fsync failed; retrying next interval");
                    }
                }
                Err(e) => tracing::error!(error = %e, "sample log: fsync task failed"),
            }
            if stop {
                return;
            }
        }
    })
}
