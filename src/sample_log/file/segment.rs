//! One segment file: the record codec and a scanner that tells a good record from a torn or
//! corrupt one. Knows nothing of the log around it (cursors, rotation, metrics).
//!
//! A record is `u32 length | u32 crc32c(sequence bytes ++ payload) | u64 sequence`, little-endian,
//! then `length` payload bytes. The checksum covers the sequence so a header spliced onto the wrong
//! payload, or a stale record surfacing where a newer one should be, fails it.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes before the payload.
pub(crate) const HEADER: u64 = 16;

/// Appends one encoded record to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, sequence: u64, payload: &[u8]) {
    // Callers refuse payloads over the segment size (at most 4 GiB by config) before encoding.
    let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&checksum(sequence, payload).to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(payload);
}

fn checksum(sequence: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&sequence.to_le_bytes()), payload)
}

/// `<first_sequence:020>.log`.
pub(crate) fn file_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// Sequences stay below 2^63: the gauges that show them are i64, and `+ 1` never overflows
/// whatever a damaged file name or cursor claims.
pub(crate) const MAX_SEQUENCE: u64 = i64::MAX as u64;

/// The first sequence a segment file name stands for; `None` for any other file (cursors,
/// `pending.bin`, editor leftovers), which the log leaves alone.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().filter(|&first| first <= MAX_SEQUENCE)
}

/// What the next bytes of a segment hold.
#[derive(Debug)]
pub(crate) enum Scanned {
    /// A whole record whose checksum and sequence check out; the next one starts at `next`.
    Record {
        /// Its sequence.
        sequence: u64,
        /// Its payload.
        payload: Vec<u8>,
        /// Offset just past it.
        next: u64,
    },
    /// Clean end: nothing left before the limit.
    End,
    /// From `offset` on the bytes are not a record. Without sync markers there is no telling
    /// where the next good record starts, so the scan stops here.
    Bad {
        /// Where the bad record starts.
        offset: u64,
        /// Why it is bad (log field).
        reason: &'static str,
    },
}

/// Reads records from `offset` up to `limit` bytes of a segment.
#[derive(Debug)]
pub(crate) struct Scanner {
    reader: BufReader<File>,
    offset: u64,
    limit: u64,
    /// The sequence the next record must carry: records of a segment are consecutive.
    expected: u64,
    /// Longest payload a record may claim: anything longer is a corrupt length field.
    max_payload: u64,
}

// === impl Scanner ===

impl Scanner {
    /// Scans `path` from `offset` (where a record with sequence `expected` starts) to `limit`.
    pub(crate) fn open(path: &Path, offset: u64, limit: u64, expected: u64, max_record: u64) -> io::Result<Self> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Scanner {
            reader: BufReader::with_capacity(64 << 10, file),
            offset,
            limit,
            expected,
            max_payload: max_record.saturating_sub(HEADER),
        })
    }

    /// The next record, the end, or where the good part ends.
    pub(crate) fn next_record(&mut self) -> io::Result<Scanned> {
        let start = self.offset;
        let left = self.limit.saturating_sub(start);
        if left == 0 {
            return Ok(Scanned::End);
        }
        let bad = |reason| Ok(Scanned::Bad { offset: start, reason });
        if left < HEADER {
            return bad("torn header");
        }
        let mut header = [0u8; HEADER as usize];
        if !read_full(&mut self.reader, &mut header)? {
            return bad("torn header");
        }
        let length = u64::from(u32::from_le_bytes([header[0], header[1], header[2], header[3]]));
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&header[8..]);
        let sequence = u64::from_le_bytes(seq);
        if length > self.max_payload {
            return bad("impossible length");
        }
        if left - HEADER < length {
            return bad("torn payload");
        }
        // `length` is bounded by the segment size, so this allocation is too.
        let mut payload = vec![0u8; length as usize];
        if !read_full(&mut self.reader, &mut payload)? {
            return bad("torn payload");
        }
        if checksum(sequence, &payload) != crc {
            return bad("checksum mismatch");
        }
        if sequence != self.expected || sequence > MAX_SEQUENCE {
            return bad("out-of-order sequence");
        }
        self.offset = start + HEADER + length;
        self.expected = sequence + 1;
        Ok(Scanned::Record { sequence, payload, next: self.offset })
    }
}

/// `read_exact` that reports a short file as `false` instead of an error: the file may be shorter
/// than the limit the caller believed (truncated under it).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_other_files_are_not_segments() {
        assert_eq!(file_name(42), "00000000000000000042.log");
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name(&file_name(MAX_SEQUENCE)), Some(MAX_SEQUENCE));
        assert_eq!(parse_name(&file_name(MAX_SEQUENCE + 1)), None, "past the sequence range");
        for other in ["pending.bin", "42.log", "0000000000000000004x.log", "00000000000000000042.log.tmp", "cursors"] {
            assert_eq!(parse_name(other), None, "{other}");
        }
        // 20 digits that overflow u64 are not a segment either.
        assert_eq!(parse_name("99999999999999999999.log"), None);
    }

    #[test]
    fn encoded_record_scans_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(7));
        let mut bytes = Vec::new();
        encode(&mut bytes, 7, b"hello");
        encode(&mut bytes, 8, b"");
        std::fs::write(&path, &bytes).unwrap();
        let mut scanner = Scanner::open(&path, 0, bytes.len() as u64, 7, 1 << 20).unwrap();
        match scanner.next_record().unwrap() {
            Scanned::Record { sequence: 7, payload, next: 21 } => assert_eq!(payload, b"hello"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(scanner.next_record().unwrap(), Scanned::Record { sequence: 8, next: 37, .. }));
        assert!(matches!(scanner.next_record().unwrap(), Scanned::End));
        // A record is checked against the sequence the segment expects.
        let mut wrong = Scanner::open(&path, 0, bytes.len() as u64, 6, 1 << 20).unwrap();
        assert!(matches!(wrong.next_record().unwrap(), Scanned::Bad { offset: 0, reason: "out-of-order sequence" }));
    }
}
