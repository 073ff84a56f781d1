//! SIGKILL during sample logging: a child process appends and fsyncs in a loop, printing each
//! durable sequence; the test kills it mid-run (twice, so the second run starts from a crashed
//! log) and reopens the log. Every record up to the last sequence printed as durable must read
//! back, intact and in order, and the sequence must continue after the crash.
//!
//! The child is this test binary itself, re-run on its ignored `writer` test with the log
//! directory in an environment variable: `cargo test --test it` builds no examples, and a
//! `[[bin]]` would ship a test helper with the package.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use augur::config::SampleLogConfig;
use augur::proto::{LogRecord, Sample, log_record};
use augur::sample_log::file::SegmentLog;
use augur::sample_log::metrics::SampleMetrics;

const CHILD_DIR: &str = "AUGUR_SAMPLELOG_CRASH_DIR";

fn config(dir: &Path) -> SampleLogConfig {
    SampleLogConfig {
        dir: dir.to_owned(),
        // Small segments, so the kill also lands around rotations.
        segment_max_bytes: 16 << 10,
        segment_max_age_s: 3600,
        fsync_interval_ms: 1,
        max_disk_bytes: 1 << 30,
    }
}

/// What record `sequence` holds: the reader checks every byte came back.
fn record(sequence: u64) -> LogRecord {
    LogRecord {
        record: Some(log_record::Record::Sample(Sample {
            sample_id: format!("req-{sequence}:0"),
            request_id: format!("req-{sequence}"),
            item_id: format!("item-{}", sequence % 97),
            score: sequence as f32 / 7.0,
            ..Default::default()
        })),
    }
}

#[test]
#[ignore = "the crash test's child process: runs only when that test starts it"]
fn writer() {
    let dir = std::env::var(CHILD_DIR).expect("started by sigkill_loses_nothing_acknowledged_as_durable");
    let (log, report) = SegmentLog::open(&config(Path::new(&dir)), &[], SampleMetrics::default()).unwrap();
    println!("opened last={} truncated={}", report.last_sequence, report.truncated_bytes);
    loop {
        let next = log.last_sequence() + 1;
        let batch: Vec<Vec<u8>> = (next..next + 20).map(|s| augur::sample_log::record::encode(&record(s))).collect();
        log.append(&batch).unwrap();
        let durable = log.sync().unwrap();
        println!("durable {durable}");
        // Written but never synced: what the kill may find half-done.
        let next = log.last_sequence() + 1;
        log.append(&[augur::sample_log::record::encode(&record(next))]).unwrap();
    }
}

/// Runs the writer until it has reported `at_least` durable, SIGKILLs it, and returns the last
/// durable sequence it printed.
fn run_writer_and_kill(dir: &Path, at_least: u64) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "samplelog_crash::writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the writer");
    let (tx, rx) = mpsc::channel::<u64>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may put its "test writer ... " on the same line.
            if let Some(n) = line.split("durable ").nth(1).and_then(|n| n.trim().parse().ok()) {
                let _ = tx.send(n);
            }
        }
    });
    let mut last = 0;
    while last < at_least {
        last = rx.recv_timeout(Duration::from_secs(120)).expect("the writer reports durable sequences");
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    reader.join().unwrap();
    // A line printed between our last read and the kill counts too.
    rx.try_iter().fold(last, u64::max)
}

#[test]
fn sigkill_loses_nothing_acknowledged_as_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut durable = 0;
    for round in 1..=2 {
        durable = run_writer_and_kill(dir.path(), durable + 3000);
        let metrics = SampleMetrics::default();
        let (log, report) = SegmentLog::open(&config(dir.path()), &[], metrics.clone()).unwrap();
        eprintln!("round {round}: durable {durable}, reopened: {report:?}");
        assert!(report.last_sequence >= durable, "{report:?} lost durable records (durable {durable})");
        assert!(report.segments > 1, "{report:?}: the run crossed rotations");
        assert_eq!(metrics.log_truncated_bytes.get(), report.truncated_bytes, "the report and the metric agree");
        let records = log.read_after(0, usize::MAX).unwrap();
        let sequences: Vec<u64> = records.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, (1..=report.last_sequence).collect::<Vec<_>>(), "gap-free, in order");
        for r in &records {
            assert_eq!(r.decode().unwrap(), record(r.sequence), "record {} came back changed", r.sequence);
        }
        assert_eq!(metrics.log_corrupt.get(), u64::from(report.truncated_bytes > 0), "only a torn tail, if any");
        // The sequence continues after the crash.
        let next = log.append(&[augur::sample_log::record::encode(&record(report.last_sequence + 1))]).unwrap();
        assert_eq!(next, report.last_sequence + 1);
        log.sync().unwrap();
        durable = next;
    }
}
