//! The sample log's segment reader on arbitrary file contents: one or two segment files in a
//! fresh directory, read by `LogReader` (what `augur samples dump`, the join-journal replay and
//! the tail use), then opened by `SegmentLog::open` (truncates a torn tail, resumes the sequence)
//! and read with `read_after`, then appended to.
//!
//! Input: `flags | split: u16 le | bytes`. With bit 0 of `flags` set, `bytes` is cut at `split`
//! into two segments, the second named by first sequence `1 + flags >> 1`; else one segment.
//!
//! Asserts: nothing on disk makes a read or `open` fail (corrupt spots are skipped and counted);
//! sequences come out strictly increasing; after `open`, an append gets the next sequence and
//! reads back.
#![no_main]

use augur::sample_log::config::SampleLogConfig;
use augur::sample_log::file::{LogReader, SegmentLog};
use augur::sample_log::join::Event;
use augur::sample_log::metrics::SampleMetrics;
use augur::sample_log::snapshot;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// A fresh directory, in memory when the machine has /dev/shm: the log fsyncs, and on a disk
/// that caps the target at a few hundred runs a second.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new();
    if shm.is_dir() { builder.tempdir_in(shm) } else { builder.tempdir() }.expect("a temp dir")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((split, bytes)) = rest.split_first_chunk::<2>() else { return };
    let dir = scratch_dir();
    let write = |first: u64, bytes: &[u8]| std::fs::write(dir.path().join(segment_name(first)), bytes).expect("write");
    if flags & 1 == 1 {
        let at = usize::from(u16::from_le_bytes(*split)).min(bytes.len());
        write(1, &bytes[..at]);
        write(1 + u64::from(flags >> 1), &bytes[at..]);
    } else {
        write(1, bytes);
    }

    let mut reader = LogReader::open(dir.path(), 0).expect("listing the segments");
    let mut last = 0;
    while let Some((sequence, _)) = reader.next_raw().expect("nothing on disk makes a read fail") {
        assert!(sequence > last, "sequence {sequence} after {last}");
        last = sequence;
    }

    let config = SampleLogConfig {
        dir: dir.path().to_owned(),
        // Small segments: records over the bound and rotation on append are exercised too.
        segment_max_bytes: 4096,
        ..SampleLogConfig::default()
    };
    let (log, report) =
        SegmentLog::open(&config, &[], SampleMetrics::default()).expect("nothing on disk makes open fail");
    let records = log.read_after(0, usize::MAX).expect("nothing on disk makes a read fail");
    assert!(records.windows(2).all(|w| w[0].sequence < w[1].sequence), "read_after out of order");
    assert!(records.iter().all(|r| r.sequence <= report.last_sequence), "a record past the last sequence");
    let orphan = snapshot::orphan(&Event {
        request_id: "r1".to_owned(),
        item_id: "i1".to_owned(),
        kind: "click".to_owned(),
        timestamp_ms: 1,
        value: None,
    });
    let next = log.append(&[orphan.encode_to_vec()]).expect("append after open");
    assert_eq!(next, report.last_sequence + 1);
    let back = log.read_after(report.last_sequence, 1).expect("read the appended record");
    assert_eq!(back.len(), 1, "the appended record reads back");
    assert_eq!(back[0].sequence, next);
});
