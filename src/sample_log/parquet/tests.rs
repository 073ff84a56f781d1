use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::writer::{Settings, Writer, civil_from_days, days_from_civil, hour_dir, part_range};
use super::{MARKER, input_column};
use crate::proto::{Event, Label, LogRecord, Sample, Tensor, log_record};
use crate::sample_log::config::ParquetSinkConfig;
use crate::sample_log::metrics::SampleMetrics;
use crate::sample_log::record::{Record, encode};
use crate::sample_log::sink::Tick;
use crate::sample_log::snapshot::now_ms;

const HOUR: i64 = 3_600_000;

fn config(dir: &Path, max_file_rows: usize) -> ParquetSinkConfig {
    ParquetSinkConfig {
        name: "parquet".into(),
        dir: dir.to_owned(),
        row_group_rows: 2,
        max_file_rows,
        commit_interval_s: 3600,
        close_grace_s: 0,
        max_open_files: 16,
        tail: Default::default(),
    }
}

fn writer(dir: &Path, max_file_rows: usize) -> Writer {
    let settings = Settings { label_types: vec!["impression".into(), "click".into()], window_s: 60 };
    Writer::open(&config(dir, max_file_rows), settings, SampleMetrics::default()).expect("open")
}

fn sample(seq: u64, ts: i64, scene: &str, revision: u32) -> Record {
    let sample = Sample {
        sample_id: format!("r{seq}:0"),
        revision,
        request_id: format!("r{seq}"),
        item_id: format!("i{seq}"),
        timestamp_ms: ts,
        emitted_ms: ts + 1000,
        scene: scene.into(),
        model_name: "m".into(),
        model_version: "1".into(),
        score: seq as f32 / 100.0,
        inputs: vec![
            Tensor { name: "ids".into(), shape: vec![1, 2], int64_values: vec![seq as i64, 7], float_values: vec![] },
            Tensor { name: "dense".into(), shape: vec![1, 1], int64_values: vec![], float_values: vec![0.5] },
        ],
        labels: vec![Label { r#type: "click".into(), timestamp_ms: ts + 5, value: Some(2.0) }],
        ..Default::default()
    };
    let record = LogRecord { record: Some(log_record::Record::Sample(sample)) };
    Record::new(seq, encode(&record).into()).expect("record")
}

fn orphan(seq: u64) -> Record {
    let event = Event { request_id: "gone".into(), item_id: "x".into(), r#type: "click".into(), ..Default::default() };
    Record::new(seq, encode(&LogRecord { record: Some(log_record::Record::Orphan(event)) }).into()).unwrap()
}

fn parts(dir: &Path) -> Vec<PathBuf> {
    crate::hourly::parts(dir).unwrap()
}

/// Every row's (sequence, first id input, dense, click label) across all parts.
fn rows(dir: &Path) -> Vec<(u64, i64, f32, bool)> {
    let mut out = Vec::new();
    for part in parts(dir) {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(part).unwrap()).unwrap().build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let seq = batch.column_by_name("sequence").unwrap().as_primitive::<UInt64Type>().clone();
            let ids = batch.column_by_name(&input_column("ids")).unwrap().as_fixed_size_list().clone();
            let dense = batch.column_by_name(&input_column("dense")).unwrap().as_fixed_size_list().clone();
            let click = batch.column_by_name("label_click").unwrap().as_boolean().clone();
            for i in 0..batch.num_rows() {
                let id = ids.value(i).as_primitive::<Int64Type>().value(0);
                let d = dense.value(i).as_primitive::<Float32Type>().value(0);
                out.push((seq.value(i), id, d, click.value(i)));
            }
        }
    }
    out.sort_by_key(|r| r.0);
    out
}

#[test]
fn dates_round_trip() {
    for days in [-1, 0, 59, 365, 11_016, 20_000, 20_793] {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
    }
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(hour_dir(Path::new("x"), 20_793 * 24 * HOUR + 5 * HOUR), Path::new("x/dt=2026-12-06/hour=05"));
}

#[test]
fn an_hour_past_its_window_is_committed_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(dir.path(), 1000);
    let old = (now_ms() / HOUR - 3) * HOUR;
    let now = now_ms() / HOUR * HOUR + 10;
    w.deliver(&[
        sample(1, old + 5, "ranking", 0),
        orphan(2),
        sample(3, old + 6, "search", 0),
        sample(4, now, "ranking", 0),
    ])
    .unwrap();
    assert_eq!(w.staged_from(), Some(1));
    assert!(parts(dir.path()).is_empty(), "nothing committed before the hour closes");
    w.tick(Tick { caught_up: true, closing: false }, now_ms()).unwrap();
    // The old hour: a part per scene and the marker listing both; the current hour stays open.
    let marker = hour_dir(dir.path(), old).join(MARKER);
    let listed: serde_json::Value = serde_json::from_slice(&std::fs::read(&marker).expect("marker")).unwrap();
    assert_eq!(listed["parts"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(parts(dir.path()).len(), 2);
    assert_eq!(w.staged_from(), Some(4));
    w.tick(Tick { caught_up: false, closing: true }, now_ms()).unwrap();
    assert_eq!(w.staged_from(), None);
    assert!(!hour_dir(dir.path(), now).join(MARKER).exists(), "shutdown commits without closing");
    assert_eq!(rows(dir.path()), vec![(1, 1, 0.5, true), (3, 3, 0.5, true), (4, 4, 0.5, true)]);
    // A late sample for the closed hour: written in a new part, the marker untouched.
    let before = std::fs::read(&marker).unwrap();
    w.deliver(&[sample(5, old + 7, "ranking", 1)]).unwrap();
    w.tick(Tick { caught_up: true, closing: true }, now_ms()).unwrap();
    assert_eq!(std::fs::read(&marker).unwrap(), before);
    assert_eq!(rows(dir.path()).len(), 4);
}

#[test]
fn a_crash_and_redelivery_write_no_row_twice_and_lose_none() {
    let dir = tempfile::tempdir().unwrap();
    let ts = now_ms();
    let records: Vec<Record> = (1..=10).map(|s| sample(s, ts, "ranking", 0)).collect();
    let mut w = writer(dir.path(), 4);
    for batch in records.chunks(4) {
        w.deliver(batch).unwrap();
    }
    // 1-4 and 5-8 committed at 4 rows each; 9-10 staged: the cursor may be 8.
    assert_eq!(parts(dir.path()).len(), 2);
    assert_eq!(w.staged_from(), Some(9));
    drop(w); // the crash: the temporary part stays behind
    // The restart re-delivers from an older cursor (say the cursor write was lost too).
    let mut w = writer(dir.path(), 4);
    w.deliver(&records[2..]).unwrap();
    w.tick(Tick { caught_up: true, closing: true }, now_ms()).unwrap();
    let seqs: Vec<u64> = rows(dir.path()).iter().map(|r| r.0).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    let leftovers: Vec<_> = std::fs::read_dir(parts(dir.path())[0].parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_shape_change_starts_a_new_part() {
    let dir = tempfile::tempdir().unwrap();
    let ts = now_ms();
    let mut wide = sample(2, ts, "ranking", 0).decode().unwrap();
    if let Some(log_record::Record::Sample(s)) = &mut wide.record {
        s.inputs[0].int64_values.push(9);
    }
    let wide = Record::new(2, encode(&wide).into()).unwrap();
    let mut w = writer(dir.path(), 1000);
    w.deliver(&[sample(1, ts, "ranking", 0), wide, sample(3, ts, "ranking", 0)]).unwrap();
    w.tick(Tick { caught_up: true, closing: true }, now_ms()).unwrap();
    let ranges: Vec<_> = parts(dir.path()).iter().map(|p| part_range(p).unwrap()).collect();
    assert_eq!(ranges, vec![(1, 1), (2, 2), (3, 3)]);
}
