//! Reading the changelog back in applied-time order: [`changes`].
//!
//! The hours in order; within an hour a k-way merge over its committed parts, each streamed one
//! record batch at a time. Memory: per part of the hour being read, one decoded batch of
//! `BATCH_ROWS` and the pages of the row group it comes from (augur's writer caps row groups at
//! 8192 rows), whatever the size of the hour or of the history. Ties in applied time go to the part whose name sorts
//! first, then to file order, so the same directory always reads the same way.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::columns::Decoded;
use super::{Change, HistoryError};
use crate::hourly::HOUR_MS;

/// Rows decoded at a time from each part.
const BATCH_ROWS: usize = 1024;

/// Every committed change with `applied_time_ms <= until_applied_ms`, in nondecreasing applied
/// time (see the module doc). Listing errors come now; a part that cannot be read comes as an
/// `Err` item naming the file, after which the iterator ends.
pub fn changes(dir: &Path, until_applied_ms: i64) -> Result<Changes, HistoryError> {
    let hours = crate::hourly::hours(dir)
        .map_err(|source| HistoryError::Io { op: "listing", path: dir.to_owned(), source })?
        .into_iter()
        .filter(|(hour, _)| *hour <= until_applied_ms)
        .collect();
    Ok(Changes { hours, until_applied_ms, merge: None, done: false })
}

/// The iterator of [`changes`].
#[derive(Debug)]
pub struct Changes {
    /// Hours not yet opened, in order.
    hours: VecDeque<(i64, PathBuf)>,
    until_applied_ms: i64,
    merge: Option<Merge>,
    /// After the end or an error.
    done: bool,
}

impl Iterator for Changes {
    type Item = Result<Change, HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = self.advance();
        if !matches!(result, Some(Ok(_))) {
            self.done = true;
        }
        result
    }
}

// === impl Changes ===

impl Changes {
    fn advance(&mut self) -> Option<Result<Change, HistoryError>> {
        loop {
            if let Some(merge) = &mut self.merge {
                match merge.next() {
                    // An hour's parts hold only its own applied times, so a change past `until`
                    // means every later one is too.
                    Some(Ok(change)) if change.applied_time_ms > self.until_applied_ms => return None,
                    Some(item) => return Some(item),
                    None => self.merge = None,
                }
            }
            let (hour, dir) = self.hours.pop_front()?;
            match Merge::open(hour, &dir) {
                Ok(merge) => self.merge = Some(merge),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// One hour's parts, merged.
#[derive(Debug)]
struct Merge {
    hour_ms: i64,
    parts: Vec<Part>,
    /// (applied time of the part's current row, part index): the smallest comes next.
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

/// A part being read.
struct Part {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
    batch: Option<Decoded>,
    row: usize,
    /// Applied time of the last row taken: a part must not go back in time.
    last_ms: i64,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part").field("path", &self.path).field("row", &self.row).finish_non_exhaustive()
    }
}

// === impl Merge ===

impl Merge {
    /// Opens every committed part of the hour (names `part-*.parquet`; hidden and temporary
    /// files are skipped) and reads its first batch.
    fn open(hour_ms: i64, dir: &Path) -> Result<Merge, HistoryError> {
        let listed = crate::hourly::parts_in(dir).map_err(|source| HistoryError::Io {
            op: "listing",
            path: dir.to_owned(),
            source,
        })?;
        let mut merge = Merge { hour_ms, parts: Vec::new(), heap: BinaryHeap::new() };
        for path in listed {
            let file =
                File::open(&path).map_err(|source| HistoryError::Io { op: "opening", path: path.clone(), source })?;
            let parquet = |source| HistoryError::Parquet { path: path.clone(), source };
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?.with_batch_size(BATCH_ROWS).build();
            let reader = reader.map_err(parquet)?;
            let mut part = Part { path, reader, batch: None, row: 0, last_ms: i64::MIN };
            let index = merge.parts.len();
            if let Some(at) = part.peek(hour_ms)? {
                merge.heap.push(Reverse((at, index)));
            }
            merge.parts.push(part);
        }
        Ok(merge)
    }

    fn next(&mut self) -> Option<Result<Change, HistoryError>> {
        let Reverse((_, index)) = self.heap.pop()?;
        let part = &mut self.parts[index];
        let batch = part.batch.as_ref().expect("peeked");
        let change = match batch.change(part.row) {
            Ok(change) => change,
            Err(detail) => return Some(Err(HistoryError::Corrupt { path: part.path.clone(), detail })),
        };
        part.row += 1;
        match part.peek(self.hour_ms) {
            Ok(Some(at)) => self.heap.push(Reverse((at, index))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(change))
    }
}

// === impl Part ===

impl Part {
    /// The applied time of the next row, reading the next batch when this one is done; `None`
    /// at the end. Checks that the part is in order and within its hour.
    fn peek(&mut self, hour_ms: i64) -> Result<Option<i64>, HistoryError> {
        while self.batch.as_ref().is_none_or(|b| self.row >= b.len()) {
            self.row = 0;
            self.batch = None;
            let Some(batch) = self.reader.next() else { return Ok(None) };
            let batch =
                batch.map_err(|source| HistoryError::Parquet { path: self.path.clone(), source: source.into() })?;
            let decoded = Decoded::new(&batch).map_err(|detail| self.corrupt(detail))?;
            self.batch = Some(decoded);
        }
        let at = self.batch.as_ref().expect("read above").applied_time_ms(self.row);
        if at < self.last_ms {
            return Err(self.corrupt(format!("applied_time_ms {at} after {}: not in applied-time order", self.last_ms)));
        }
        if at.div_euclid(HOUR_MS) * HOUR_MS != hour_ms {
            return Err(self.corrupt(format!("applied_time_ms {at} is outside the part's hour directory")));
        }
        self.last_ms = at;
        Ok(Some(at))
    }

    fn corrupt(&self, detail: String) -> HistoryError {
        HistoryError::Corrupt { path: self.path.clone(), detail }
    }
}
