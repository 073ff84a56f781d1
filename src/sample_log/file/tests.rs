//! The segment log against its failure modes: torn and corrupt records the way vector's
//! `known_errors.rs` makes them (truncate mid-record, zero a length, flip checksum bits, append
//! garbage), rotation, cursors, deletion and the disk bound.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::proto::{LogRecord, Sample, log_record};
use crate::sample_log::record::encode;

fn config(dir: &Path) -> SampleLogConfig {
    SampleLogConfig {
        dir: dir.to_owned(),
        segment_max_bytes: 4096,
        segment_max_age_s: 3600,
        fsync_interval_ms: 10,
        max_disk_bytes: 1 << 20,
    }
}

fn payload(i: u64) -> Vec<u8> {
    encode(&LogRecord {
        record: Some(log_record::Record::Sample(Sample {
            sample_id: format!("r{i}:0"),
            request_id: format!("r{i}"),
            item_id: format!("item-{i}"),
            ..Default::default()
        })),
    })
}

fn payloads(range: std::ops::RangeInclusive<u64>) -> Vec<Vec<u8>> {
    range.map(payload).collect()
}

fn open(config: &SampleLogConfig, sinks: &[&str]) -> (SegmentLog, OpenReport, SampleMetrics) {
    let metrics = SampleMetrics::default();
    let sinks: Vec<String> = sinks.iter().map(|s| (*s).to_owned()).collect();
    let (log, report) = SegmentLog::open(config, &sinks, metrics.clone()).expect("open");
    (log, report, metrics)
}

fn sequences(log: &SegmentLog, after: u64) -> Vec<u64> {
    log.read_after(after, usize::MAX).expect("read").iter().map(|r| r.sequence).collect()
}

/// Offset of record `n` (1-based) in a single segment written with `payload(1..)`.
fn offset_of(n: u64) -> u64 {
    (1..n).map(|i| HEADER + payload(i).len() as u64).sum()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).and_then(segment::parse_name).is_some())
        .collect();
    files.sort();
    files
}

/// Writes records 1..=n into a fresh log and syncs; returns the (only) segment file.
fn written(dir: &Path, n: u64) -> PathBuf {
    let (log, _, _) = open(&config(dir), &[]);
    assert_eq!(log.append(&payloads(1..=n)).unwrap(), n);
    assert_eq!(log.sync().unwrap(), n);
    let files = segment_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn patch(path: &Path, offset: u64, f: impl FnOnce(&mut [u8])) {
    let mut bytes = fs::read(path).unwrap();
    f(&mut bytes[offset as usize..]);
    fs::write(path, bytes).unwrap();
}

#[test]
fn the_log_is_shared_across_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<SegmentLog>();
    send_sync::<Arc<SegmentLog>>();
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(&config(dir.path()), &[]);
    let log = Arc::new(log);
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    log.append(&payloads(i..=i)).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(sequences(&log, 0), (1..=200).collect::<Vec<_>>(), "concurrent appends stay gap-free");
}

#[test]
fn appends_read_back_in_order_and_resume_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    {
        let (log, report, metrics) = open(&cfg, &[]);
        assert_eq!(report, OpenReport { last_sequence: 0, truncated_bytes: 0, segments: 0, lost_after_ack: 0 });
        assert_eq!(log.append(&payloads(1..=1)).unwrap(), 1);
        assert_eq!(log.append(&payloads(2..=6)).unwrap(), 6);
        assert_eq!(log.append(&[]).unwrap(), 6, "an empty batch writes nothing");
        assert_eq!(log.last_sequence(), 6);
        assert_eq!(sequences(&log, 0), (1..=6).collect::<Vec<_>>());
        let page: Vec<u64> = log.read_after(2, 3).unwrap().iter().map(|r| r.sequence).collect();
        assert_eq!(page, [3, 4, 5]);
        // The next page starts from the remembered position.
        let next = log.read_after(5, 3).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].sequence, next[0].key.as_str(), next[0].id.as_str()), (6, "r6", "r6:0#0"));
        assert!(sequences(&log, 6).is_empty());
        assert!(sequences(&log, u64::MAX).is_empty(), "no overflow at the top");
        assert_eq!(metrics.log_sequence.get(), 6);
        assert_eq!(metrics.log_disk_bytes.get() as u64, log.disk_bytes());
    }
    let (log, report, _) = open(&cfg, &[]);
    assert_eq!((report.last_sequence, report.truncated_bytes, report.segments), (6, 0, 1));
    assert_eq!(log.durable_sequence(), 6);
    assert_eq!(log.append(&payloads(7..=7)).unwrap(), 7);
    assert_eq!(sequences(&log, 0), (1..=7).collect::<Vec<_>>());
    assert_eq!(segment_files(dir.path()).len(), 2, "a reopened log starts a new segment");
}

#[test]
fn rotates_by_size_and_names_segments_by_first_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, metrics) = open(&config(dir.path()), &[]);
    for chunk in 0..40 {
        log.append(&payloads(chunk * 10 + 1..=chunk * 10 + 10)).unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 2, "{files:?}");
    let mut on_disk = 0;
    for file in &files {
        let size = fs::metadata(file).unwrap().len();
        assert!(size <= 4096, "{} is {size} bytes", file.display());
        on_disk += size;
        let first = segment::parse_name(file.file_name().unwrap().to_str().unwrap()).unwrap();
        assert_eq!(log.read_after(first - 1, 1).unwrap()[0].sequence, first);
    }
    assert_eq!(on_disk, log.disk_bytes());
    assert_eq!(metrics.log_disk_bytes.get() as u64, on_disk);
    assert_eq!(sequences(&log, 0), (1..=400).collect::<Vec<_>>());
}

#[test]
fn torn_tail_is_truncated_counted_and_the_sequence_continues() {
    let dir = tempfile::tempdir().unwrap();
    let file = written(dir.path(), 10);
    let size = fs::metadata(&file).unwrap().len();
    // Cut record 10 in the middle of its payload.
    let cut = offset_of(10) + HEADER + 3;
    fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(cut).unwrap();
    let (log, report, metrics) = open(&config(dir.path()), &[]);
    assert_eq!(report.last_sequence, 9);
    assert_eq!(report.truncated_bytes, cut - offset_of(10));
    assert!(report.truncated_bytes < size);
    assert_eq!(metrics.log_truncated_bytes.get(), report.truncated_bytes);
    assert_eq!(metrics.log_corrupt.get(), 1);
    assert_eq!(fs::metadata(&file).unwrap().len(), offset_of(10), "the torn record is gone from disk");
    assert_eq!(sequences(&log, 0), (1..=9).collect::<Vec<_>>());
    assert_eq!(log.append(&payloads(10..=10)).unwrap(), 10);
}

#[test]
fn zeroed_length_cuts_the_tail_from_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let file = written(dir.path(), 10);
    let size = fs::metadata(&file).unwrap().len();
    patch(&file, offset_of(5), |b| b[..4].fill(0));
    let (log, report, metrics) = open(&config(dir.path()), &[]);
    assert_eq!(report.last_sequence, 4);
    assert_eq!(report.truncated_bytes, size - offset_of(5));
    assert_eq!(metrics.log_corrupt.get(), 1);
    assert_eq!(sequences(&log, 0), [1, 2, 3, 4]);
    assert_eq!(log.append(&payloads(5..=5)).unwrap(), 5);
    assert_eq!(sequences(&log, 0), [1, 2, 3, 4, 5]);
}

#[test]
fn flipped_checksum_bits_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    let file = written(dir.path(), 10);
    patch(&file, offset_of(7) + 4, |b| b[1] ^= 0b1010_0101);
    let (log, report, metrics) = open(&config(dir.path()), &[]);
    assert_eq!(report.last_sequence, 6);
    assert!(report.truncated_bytes > 0);
    assert_eq!(metrics.log_corrupt.get(), 1);
    assert_eq!(sequences(&log, 0), (1..=6).collect::<Vec<_>>());
}

#[test]
fn garbage_after_the_last_record_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let file = written(dir.path(), 10);
    let mut bytes = fs::read(&file).unwrap();
    bytes.extend(std::iter::repeat_n(0xAB, 100));
    fs::write(&file, bytes).unwrap();
    let (log, report, metrics) = open(&config(dir.path()), &[]);
    assert_eq!((report.last_sequence, report.truncated_bytes), (10, 100));
    assert_eq!(metrics.log_truncated_bytes.get(), 100);
    assert_eq!(sequences(&log, 0), (1..=10).collect::<Vec<_>>());
    assert_eq!(log.append(&payloads(11..=11)).unwrap(), 11);
}

#[test]
fn a_segment_with_no_good_record_goes_and_the_one_before_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    written(dir.path(), 3);
    // A crash right after a rotation: the new segment holds half a header.
    fs::write(dir.path().join(segment::file_name(4)), [1u8, 2, 3]).unwrap();
    let (log, report, _) = open(&config(dir.path()), &[]);
    assert_eq!((report.last_sequence, report.truncated_bytes, report.segments), (3, 3, 1));
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(log.append(&payloads(4..=4)).unwrap(), 4);
    assert_eq!(sequences(&log, 0), [1, 2, 3, 4]);
}

#[test]
fn corruption_in_an_older_segment_skips_its_rest_once_and_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    {
        let (log, _, _) = open(&cfg, &[]);
        log.append(&payloads(1..=400)).unwrap();
        log.sync().unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 2);
    let second = segment::parse_name(files[1].file_name().unwrap().to_str().unwrap()).unwrap();
    // Flip the checksum of record 5 of the first segment.
    patch(&files[0], offset_of(5) + 4, |b| b[0] ^= 0xFF);
    let (log, report, metrics) = open(&cfg, &[]);
    assert_eq!((report.last_sequence, report.truncated_bytes), (400, 0), "only the last segment is checked at open");
    let expected: Vec<u64> = (1..=4).chain(second..=400).collect();
    assert_eq!(sequences(&log, 0), expected);
    assert_eq!(metrics.log_corrupt.get(), 1);
    // Every sink reads past the same spot: it is counted once.
    assert_eq!(sequences(&log, 2), expected[2..]);
    assert_eq!(metrics.log_corrupt.get(), 1);
}

#[test]
fn a_payload_that_is_not_a_log_record_is_skipped_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, metrics) = open(&config(dir.path()), &[]);
    // 0xFF starts a varint that never ends: not protobuf.
    log.append(&[payload(1), vec![0xFF], payload(3)]).unwrap();
    assert_eq!(sequences(&log, 0), [1, 3]);
    assert_eq!(metrics.log_corrupt.get(), 1);
}

#[test]
fn files_other_than_segments_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    for other in ["pending.bin", "42.log", "00000000000000000001.log.tmp"] {
        fs::write(dir.path().join(other), b"not a segment").unwrap();
    }
    fs::create_dir(dir.path().join("00000000000000000009.log.d")).unwrap();
    let (log, report, metrics) = open(&config(dir.path()), &["kafka"]);
    assert_eq!((report.segments, report.truncated_bytes), (0, 0));
    assert_eq!(metrics.log_corrupt.get(), 0);
    log.append(&payloads(1..=3)).unwrap();
    log.set_cursor("kafka", 3).unwrap();
    assert_eq!(fs::read(dir.path().join("pending.bin")).unwrap(), b"not a segment");
    assert!(dir.path().join("42.log").exists());
}

#[test]
fn cursors_persist_and_segments_go_only_when_every_sink_is_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    {
        let (log, _, metrics) = open(&cfg, &["a", "b"]);
        log.append(&payloads(1..=400)).unwrap();
        let (segments, bytes) = (log.segment_count(), log.disk_bytes());
        assert!(segments > 2);
        log.set_cursor("a", 400).unwrap();
        assert_eq!((log.segment_count(), log.disk_bytes()), (segments, bytes), "b has not read anything yet");
        log.set_cursor("b", 150).unwrap();
        assert!(log.segment_count() < segments);
        assert!(log.disk_bytes() < bytes);
        assert_eq!(metrics.log_disk_bytes.get() as u64, log.disk_bytes());
        // What b has not acknowledged is all still there.
        assert_eq!(sequences(&log, 150), (151..=400).collect::<Vec<_>>());
        assert!(matches!(log.set_cursor("c", 1), Err(LogError::UnknownSink { .. })));
        assert!(matches!(log.set_cursor("a", 401), Err(LogError::CursorAhead { last: 400, .. })));
    }
    let (log, _, _) = open(&cfg, &["a", "b"]);
    assert_eq!((log.cursor("a"), log.cursor("b"), log.cursor("c")), (400, 150, 0));
    assert_eq!(fs::read_to_string(dir.path().join("cursors/b")).unwrap().trim(), "150");
    assert_eq!(sequences(&log, 150), (151..=400).collect::<Vec<_>>());
    // The active segment is kept even when everyone is past it; a closed one is not.
    log.set_cursor("b", 400).unwrap();
    assert_eq!(log.segment_count(), 0, "no segment is active after a reopen, so all are closed and consumed");
    assert_eq!(log.append(&payloads(401..=401)).unwrap(), 401);
    log.set_cursor("a", 401).unwrap();
    log.set_cursor("b", 401).unwrap();
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn without_sinks_the_log_keeps_everything_and_refuses_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SampleLogConfig { max_disk_bytes: 8192, ..config(dir.path()) };
    let (log, _, metrics) = open(&cfg, &[]);
    let mut written = 0;
    let refused = loop {
        match log.append(&payloads(written + 1..=written + 10)) {
            Ok(last) => written = last,
            Err(LogError::Full { used, max, .. }) => {
                assert!(used <= max);
                break 10;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(written > 100);
    assert!(log.disk_bytes() <= 8192);
    let full = metrics.dropped.get_or_create(&ReasonLabels { reason: "log_full".into() }).get();
    assert_eq!(full, refused);
    // A refused batch left nothing behind, and everything accepted is still readable.
    assert_eq!(log.last_sequence(), written);
    assert_eq!(sequences(&log, 0), (1..=written).collect::<Vec<_>>());
}

#[test]
fn a_record_larger_than_a_segment_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, metrics) = open(&config(dir.path()), &[]);
    let err = log.append(&[payload(1), vec![0u8; 4096]]).unwrap_err();
    assert!(matches!(err, LogError::TooLarge { max: 4096, .. }), "{err}");
    assert_eq!(metrics.dropped.get_or_create(&ReasonLabels { reason: "log_record_too_large".into() }).get(), 2);
    assert_eq!(log.last_sequence(), 0);
}

#[test]
fn a_lost_acknowledged_tail_never_reuses_a_sequence() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("cursors")).unwrap();
    fs::write(dir.path().join("cursors/a"), "50\n").unwrap();
    let (log, report, _) = open(&config(dir.path()), &["a"]);
    assert_eq!((report.last_sequence, report.lost_after_ack), (50, 50));
    assert_eq!(log.append(&payloads(1..=1)).unwrap(), 51);
    assert_eq!(sequences(&log, 50), [51]);
}

#[test]
fn a_quiet_segment_is_closed_by_age_and_then_deletable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SampleLogConfig { segment_max_age_s: 1, ..config(dir.path()) };
    let (log, _, _) = open(&cfg, &["a"]);
    log.append(&payloads(1..=3)).unwrap();
    log.set_cursor("a", 3).unwrap();
    assert_eq!(log.segment_count(), 1, "the active segment stays while it is young");
    // Not an assertion on timing: the segment is at least this old afterwards, whatever the load.
    std::thread::sleep(Duration::from_millis(1100));
    log.sync().unwrap();
    assert_eq!(log.segment_count(), 0);
    assert_eq!(log.append(&payloads(4..=4)).unwrap(), 4);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[tokio::test]
async fn syncer_makes_appends_durable_and_syncs_once_more_on_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, metrics) = open(&config(dir.path()), &[]);
    let log = Arc::new(log);
    log.append(&payloads(1..=5)).unwrap();
    assert_eq!(log.durable_sequence(), 0);
    let cancel = CancellationToken::new();
    // An interval no test run reaches: only the final sync can make these durable.
    let syncer = spawn_syncer(log.clone(), Duration::from_secs(3600), cancel.clone());
    log.append(&payloads(6..=8)).unwrap();
    cancel.cancel();
    syncer.await.unwrap();
    assert_eq!(log.durable_sequence(), 8);
    assert_eq!(metrics.log_durable_sequence.get(), 8);
}

#[tokio::test]
async fn subscribers_see_new_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(&config(dir.path()), &[]);
    let mut rx = log.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);
    log.append(&payloads(1..=2)).unwrap();
    tokio::time::timeout(Duration::from_secs(30), rx.changed()).await.unwrap().unwrap();
    assert_eq!(*rx.borrow(), 2);
}

#[test]
fn the_reader_reads_a_live_log_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(&config(dir.path()), &[]);
    log.append(&payloads(1..=400)).unwrap();
    let files = segment_files(dir.path());
    // A record being written at the live end, and a corrupt record in the first segment.
    let last = files.last().unwrap();
    let live_size = {
        let mut bytes = fs::read(last).unwrap();
        bytes.extend_from_slice(&[9, 0, 0]);
        fs::write(last, &bytes).unwrap();
        bytes.len() as u64
    };
    patch(&files[0], offset_of(3) + 4, |b| b[2] ^= 0x10);
    let second = segment::parse_name(files[1].file_name().unwrap().to_str().unwrap()).unwrap();

    let mut reader = LogReader::open(dir.path(), 0).unwrap();
    let read: Vec<u64> = reader.by_ref().map(|r| r.unwrap().sequence).collect();
    assert_eq!(read, (1..=2).chain(second..=400).collect::<Vec<_>>());
    assert_eq!(reader.corrupt(), 1, "the half-written record at the live end is not corruption");
    assert_eq!(fs::metadata(last).unwrap().len(), live_size, "nothing truncated");
    let from_middle: Vec<u64> = LogReader::open(dir.path(), 398).unwrap().map(|r| r.unwrap().sequence).collect();
    assert_eq!(from_middle, [399, 400]);
}

#[test]
fn a_damaged_cursor_restarts_the_sink_from_the_oldest_record() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("cursors")).unwrap();
    fs::write(dir.path().join("cursors/a"), "18446744073709551615\n").unwrap();
    fs::write(dir.path().join("cursors/b"), "not a number").unwrap();
    let (log, report, _) = open(&config(dir.path()), &["a", "b"]);
    assert_eq!((log.cursor("a"), log.cursor("b"), report.last_sequence), (0, 0, 0));
    assert_eq!(log.append(&payloads(1..=2)).unwrap(), 2);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever bytes a segment holds (behind a valid prefix or alone), opening and reading never
    /// fail or panic, the valid prefix survives, and appends continue after it.
    #[test]
    fn any_bytes_in_a_segment_are_survived(good in 0u64..5, junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for i in 1..=good {
            segment::encode(&mut bytes, i, &payload(i));
        }
        bytes.extend_from_slice(&junk);
        fs::write(dir.path().join(segment::file_name(1)), &bytes).unwrap();
        let (log, report, _) = open(&config(dir.path()), &[]);
        proptest::prop_assert!(report.last_sequence >= good);
        let read = sequences(&log, 0);
        proptest::prop_assert_eq!(&read[..good as usize], &(1..=good).collect::<Vec<_>>()[..]);
        let next = log.append(&payloads(1..=1)).unwrap();
        proptest::prop_assert_eq!(next, report.last_sequence + 1);
    }
}

#[tokio::test]
async fn syncer_fsyncs_on_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(&config(dir.path()), &[]);
    let log = Arc::new(log);
    let cancel = CancellationToken::new();
    let syncer = spawn_syncer(log.clone(), Duration::from_millis(5), cancel.clone());
    log.append(&payloads(1..=3)).unwrap();
    let start = std::time::Instant::now();
    // Polled with a bound only a hung syncer reaches.
    while log.durable_sequence() < 3 {
        assert!(start.elapsed() < Duration::from_secs(60), "no fsync within a minute");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!syncer.is_finished(), "it keeps running until cancelled");
    cancel.cancel();
    syncer.await.unwrap();
}
