//! Reading a segment-log directory without owning it: `augur samples dump` and offline tools
//! read a log a running server may be appending to. Nothing here writes, truncates or deletes;
//! a half-written record at the live end reads as the end, a bad record in a closed segment skips
//! the rest of that segment (counted), exactly as the owning [`SegmentLog`](super::SegmentLog)
//! would.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::segment::{HEADER, Scanned, Scanner};
use super::{LogError, io_err, list_segments};
use crate::sample_log::record::Record;

/// Records of a log directory from a sequence on, streamed segment by segment.
#[derive(Debug)]
pub struct LogReader {
    /// (first sequence, path), oldest first, not yet opened.
    segments: VecDeque<(u64, PathBuf)>,
    current: Option<(Scanner, PathBuf)>,
    after: u64,
    corrupt: u64,
}

// === impl LogReader ===

impl LogReader {
    /// Lists the segments of `dir` holding records above `after`.
    pub fn open(dir: &Path, after: u64) -> Result<LogReader, LogError> {
        let segments = list_segments(dir)?;
        // Segments wholly at or below `after` are not opened at all.
        let from = after.saturating_add(1);
        let start = segments.iter().rposition(|(first, _)| *first <= from).unwrap_or(0);
        Ok(LogReader { segments: segments.into_iter().skip(start).collect(), current: None, after, corrupt: 0 })
    }

    /// Corrupt spots skipped so far (a record that is not a `LogRecord`, or the rest of a
    /// segment after a bad record).
    pub fn corrupt(&self) -> u64 {
        self.corrupt
    }

    /// The next record's sequence and payload, undecoded (logs whose payloads are not
    /// `LogRecord`s, like the join journal).
    pub fn next_raw(&mut self) -> Result<Option<(u64, Bytes)>, LogError> {
        loop {
            let Some((scanner, path)) = &mut self.current else {
                let Some((first, path)) = self.segments.pop_front() else { return Ok(None) };
                let limit = match fs::metadata(&path) {
                    Ok(m) => m.len(),
                    // Deleted since listed: every sink was past it.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(LogError::Io { op: "stat", path, source: e }),
                };
                // Any length the file can hold is plausible: this reader does not know the
                // writer's segment_max_bytes, and the file size bounds what a record can claim.
                let scanner = Scanner::open(&path, 0, limit, first, limit.saturating_add(HEADER))
                    .map_err(io_err("open", &path))?;
                self.current = Some((scanner, path));
                continue;
            };
            match scanner.next_record().map_err(io_err("read", path))? {
                Scanned::Record { sequence, payload, .. } if sequence > self.after => {
                    return Ok(Some((sequence, Bytes::from(payload))));
                }
                Scanned::Record { .. } => {}
                Scanned::End => self.current = None,
                Scanned::Bad { offset, reason } => {
                    // At the live end of the last segment this is a record still being written.
                    if !self.segments.is_empty() || reason != "torn header" && reason != "torn payload" {
                        self.corrupt += 1;
                        tracing::warn!(segment = %path.display(), offset, reason, "sample log: rest of a segment skipped");
                    }
                    self.current = None;
                }
            }
        }
    }
}

impl LogReader {
    fn next_record(&mut self) -> Result<Option<Record>, LogError> {
        while let Some((sequence, payload)) = self.next_raw()? {
            match Record::new(sequence, payload) {
                Ok(record) => return Ok(Some(record)),
                Err(e) => {
                    self.corrupt += 1;
                    tracing::warn!(sequence, error = %e, "sample log: corrupt record skipped");
                }
            }
        }
        Ok(None)
    }
}

impl Iterator for LogReader {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}
