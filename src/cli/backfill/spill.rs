//! An external sort of byte records: records are buffered up to a byte bound, sorted, and
//! written as sorted runs, one file per partition (the impression hour) per flush; a partition is
//! read back by merging its runs. Records compare as bytes, so the encoding decides the order
//! (see [`super::record`]: the time first, then every other field, so equal times still sort
//! the same whatever the input order).
//!
//! Memory: at most `max_bytes` of records (plus 16 bytes of index each) while sorting; while
//! merging, one record and a 64 KiB read buffer per run, at most [`FAN_IN`] runs at once (a
//! partition with more runs is merged in passes first).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Runs merged at once (open files and read buffers).
pub(super) const FAN_IN: usize = 64;
const READ_BUFFER: usize = 64 * 1024;
const WRITE_BUFFER: usize = 256 * 1024;

/// What spilling wrote.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SpillStats {
    /// Records pushed.
    pub records: u64,
    /// Run files written (merge passes included).
    pub runs: u64,
    /// Bytes written to runs.
    pub bytes: u64,
}

/// Collects records and writes sorted runs.
#[derive(Debug)]
pub(super) struct Sorter {
    dir: PathBuf,
    arena: Vec<u8>,
    spans: Vec<(usize, usize)>,
    max_bytes: usize,
    partition: fn(&[u8]) -> i64,
    runs: BTreeMap<i64, Vec<PathBuf>>,
    stats: SpillStats,
}

/// The sorted runs, by partition.
#[derive(Debug)]
pub(super) struct Sorted {
    dir: PathBuf,
    runs: BTreeMap<i64, Vec<PathBuf>>,
    stats: SpillStats,
}

/// A partition's records in order.
#[derive(Debug)]
pub(super) struct Merge {
    runs: Vec<(BufReader<File>, PathBuf)>,
    heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
}

// === impl Sorter ===

impl Sorter {
    /// Runs go to `dir` (created); `partition` reads a record's partition.
    pub(super) fn new(dir: &Path, max_bytes: usize, partition: fn(&[u8]) -> i64) -> io::Result<Sorter> {
        std::fs::create_dir_all(dir)?;
        Ok(Sorter {
            dir: dir.to_owned(),
            arena: Vec::new(),
            spans: Vec::new(),
            max_bytes: max_bytes.max(1),
            partition,
            runs: BTreeMap::new(),
            stats: SpillStats::default(),
        })
    }

    pub(super) fn push(&mut self, record: &[u8]) -> io::Result<()> {
        if !self.spans.is_empty() && self.arena.len() + record.len() > self.max_bytes {
            self.flush()?;
        }
        self.spans.push((self.arena.len(), record.len()));
        self.arena.extend_from_slice(record);
        self.stats.records += 1;
        Ok(())
    }

    /// Sorts what is buffered and writes one run per partition in it.
    fn flush(&mut self) -> io::Result<()> {
        let arena = &self.arena;
        self.spans.sort_unstable_by(|a, b| arena[a.0..a.0 + a.1].cmp(&arena[b.0..b.0 + b.1]));
        let mut rest = self.spans.as_slice();
        while let Some(first) = rest.first() {
            let partition = (self.partition)(&arena[first.0..first.0 + first.1]);
            let n = rest.iter().take_while(|s| (self.partition)(&arena[s.0..s.0 + s.1]) == partition).count();
            let (now, later) = rest.split_at(n);
            let path = next_run(&self.dir, &mut self.stats);
            self.stats.bytes += write_run(&path, now.iter().map(|s| Ok(&arena[s.0..s.0 + s.1])))?;
            self.runs.entry(partition).or_default().push(path);
            rest = later;
        }
        self.arena.clear();
        self.spans.clear();
        Ok(())
    }

    pub(super) fn finish(mut self) -> io::Result<Sorted> {
        if !self.spans.is_empty() {
            self.flush()?;
        }
        // The buffer's memory goes back before the merge needs its own.
        Ok(Sorted { dir: self.dir, runs: self.runs, stats: self.stats })
    }
}

// === impl Sorted ===

impl Sorted {
    /// Partitions that hold records, in order.
    pub(super) fn partitions(&self) -> Vec<i64> {
        self.runs.keys().copied().collect()
    }

    pub(super) fn stats(&self) -> SpillStats {
        self.stats
    }

    /// The records of `partition` in order; its run files are deleted as the merge ends.
    pub(super) fn merge(&mut self, partition: i64) -> io::Result<Merge> {
        let mut runs = self.runs.remove(&partition).unwrap_or_default();
        // Too many runs to open at once: merge the oldest FAN_IN into one, until few enough.
        while runs.len() > FAN_IN {
            let group: Vec<PathBuf> = runs.drain(..FAN_IN).collect();
            let path = next_run(&self.dir, &mut self.stats);
            self.stats.bytes += write_run(&path, Merge::open(group)?)?;
            runs.push(path);
        }
        Merge::open(runs)
    }
}

// === impl Merge ===

impl Merge {
    fn open(paths: Vec<PathBuf>) -> io::Result<Merge> {
        let mut merge = Merge { runs: Vec::with_capacity(paths.len()), heap: BinaryHeap::new() };
        for (i, path) in paths.into_iter().enumerate() {
            let mut reader = BufReader::with_capacity(READ_BUFFER, File::open(&path)?);
            if let Some(record) = read_record(&mut reader)? {
                merge.heap.push(Reverse((record, i)));
            }
            merge.runs.push((reader, path));
        }
        Ok(merge)
    }
}

impl Iterator for Merge {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let Reverse((record, i)) = self.heap.pop()?;
        match read_record(&mut self.runs[i].0) {
            Ok(Some(next)) => self.heap.push(Reverse((next, i))),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        Some(Ok(record))
    }
}

impl Drop for Merge {
    fn drop(&mut self) {
        for (_, path) in &self.runs {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn next_run(dir: &Path, stats: &mut SpillStats) -> PathBuf {
    stats.runs += 1;
    dir.join(format!("run-{:06}", stats.runs))
}

/// Writes `records` as `u32 length | bytes` each; returns the bytes written.
fn write_run<R: AsRef<[u8]>>(path: &Path, records: impl Iterator<Item = io::Result<R>>) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, File::create(path)?);
    let mut written = 0;
    for record in records {
        let record = record?;
        let record = record.as_ref();
        out.write_all(&(record.len() as u32).to_le_bytes())?;
        out.write_all(record)?;
        written += 4 + record.len() as u64;
    }
    out.flush()?;
    Ok(written)
}

fn read_record(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut record = vec![0; u32::from_le_bytes(len) as usize];
    reader.read_exact(&mut record)?;
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_in_order_per_partition_with_passes_past_the_fan_in() {
        let dir = tempfile::tempdir().unwrap();
        // Partition = first byte; tiny buffer: one run per few records, more than FAN_IN runs.
        let mut sorter = Sorter::new(dir.path(), 8, |r| i64::from(r[0])).unwrap();
        let mut want: Vec<Vec<u8>> = Vec::new();
        for k in 0..500u32 {
            let record = vec![(k % 2) as u8, (k * 7919 % 251) as u8, (k % 3) as u8];
            sorter.push(&record).unwrap();
            want.push(record);
        }
        let mut sorted = sorter.finish().unwrap();
        assert_eq!(sorted.partitions(), vec![0, 1]);
        assert!(sorted.stats().runs as usize > 2 * FAN_IN);
        want.sort();
        let mut got = Vec::new();
        for p in sorted.partitions() {
            got.extend(sorted.merge(p).unwrap().map(Result::unwrap));
        }
        assert_eq!(got, want);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "runs are deleted once merged: {left:?}");
    }
}
