//! The changelog on disk: writers and the reader, round trip (no Kafka, no Redis: the stream's
//! and the load's changelogs are tested against real Redis in tests/it/feature_history.rs).

use std::path::{Path, PathBuf};

use super::config::HistoryConfig;
use super::read::changes;
use super::write::HistoryWriter;
use super::{Change, ChangeKind, HistoryError, HistoryMetrics};
use crate::fetch::Value;
use crate::hourly::HOUR_MS;

/// 2026-12-06T05:00Z.
const T0: i64 = 20_793 * 24 * HOUR_MS + 5 * HOUR_MS;

fn change(entity: &str, applied: i64, kind: ChangeKind, features: Vec<(String, Option<Value>)>) -> Change {
    Change {
        table: "items".into(),
        entity_id: entity.into(),
        event_time_ms: applied - 7,
        applied_time_ms: applied,
        kind,
        features,
    }
}

fn config(max_rows_per_part: usize) -> HistoryConfig {
    HistoryConfig { max_rows_per_part, max_uncommitted_rows: 1000, ..HistoryConfig::default() }
}

fn parts(dir: &Path) -> Vec<PathBuf> {
    crate::hourly::parts(dir).unwrap()
}

/// One part of `rows` changes to entity `a`, committed by a writer for `source`.
fn commit_one_part(dir: &Path, source: &str, rows: i64) {
    let mut w = HistoryWriter::open(dir, &config(10), source, HistoryMetrics::default()).unwrap();
    w.append((0..rows).map(|i| change("a", T0 + i, ChangeKind::Upsert, features(i)))).unwrap();
    w.commit().unwrap();
}

fn read_all(dir: &Path, until: i64) -> Vec<Change> {
    changes(dir, until).unwrap().collect::<Result<Vec<_>, _>>().unwrap()
}

/// Every value type, a deletion, and a value with the list separator's neighbours survive.
fn features(i: i64) -> Vec<(String, Option<Value>)> {
    vec![
        ("price".into(), Some(Value::Float(i as f64 / 3.0))),
        ("clicks".into(), Some(Value::Int(-i))),
        ("title".into(), Some(Value::Str(format!("t {i}, ü")))),
        ("tags".into(), Some(Value::StrList(vec!["a".into(), format!("b{i}")]))),
        ("ids".into(), Some(Value::IntList(vec![i, i + 1]))),
        ("emb".into(), Some(Value::FloatList(vec![0.1, 1e-300, -2.5]))),
        ("gone".into(), None),
    ]
}

#[test]
fn writers_interleaved_over_hours_read_back_merged_in_applied_order() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = HistoryMetrics::default();
    // Two replicas' writers and a load, 3 rows per part: many parts per hour.
    let mut writers: Vec<HistoryWriter> = ["stream:a", "stream:a", "load"]
        .iter()
        .map(|s| HistoryWriter::open(dir.path(), &config(3), s, metrics.clone()).unwrap())
        .collect();
    let ids: Vec<&str> = writers.iter().map(HistoryWriter::id).collect();
    assert!(ids[0] != ids[1] && ids[0].starts_with("stream_a-") && ids[2].starts_with("load-"), "{ids:?}");
    let mut written = Vec::new();
    // 40 changes spread over three hours (the middle one crossed), round-robin over the writers,
    // several at the same millisecond across writers.
    for i in 0..40i64 {
        let applied = T0 + (i / 2) * (HOUR_MS / 9);
        let kind = if i % 3 == 2 { ChangeKind::Load } else { ChangeKind::Upsert };
        let c = change(&format!("i{}", i % 5), applied, kind, features(i));
        writers[(i % 3) as usize].append([c.clone()]).unwrap();
        written.push(c);
        if i % 7 == 0 {
            writers[(i % 3) as usize].commit().unwrap();
        }
    }
    for w in &mut writers {
        w.commit().unwrap();
        assert_eq!(w.pending_rows(), 0);
    }
    let hours = crate::hourly::hours(dir.path()).unwrap();
    assert_eq!(hours.len(), 3, "{hours:?}");
    assert!(hours[0].1.ends_with("dt=2026-12-06/hour=05"), "{hours:?}");
    assert!(parts(dir.path()).len() >= 12, "{:?}", parts(dir.path()));
    // A temporary file and other files beside the parts are never read.
    std::fs::write(hours[1].1.join(".part-x-00000000.parquet.tmp"), b"half a part").unwrap();
    std::fs::write(hours[1].1.join("_SUCCESS"), b"{}").unwrap();

    let read = read_all(dir.path(), i64::MAX);
    assert_eq!(read.len(), written.len());
    assert!(read.windows(2).all(|w| w[0].applied_time_ms <= w[1].applied_time_ms), "nondecreasing applied time");
    let mut expected = written.clone();
    let key = |c: &Change| (c.applied_time_ms, c.entity_id.clone(), format!("{:?}", c.features));
    expected.sort_by_key(key);
    let mut got = read.clone();
    got.sort_by_key(key);
    assert_eq!(got, expected, "every change comes back exactly, values typed");
    // `until` cuts at an applied time, inclusive, in the middle of an hour.
    let until = T0 + 13 * (HOUR_MS / 9);
    let cut = read_all(dir.path(), until);
    assert_eq!(cut.len(), written.iter().filter(|c| c.applied_time_ms <= until).count());
    assert_eq!(cut[..], read[..cut.len()]);
    assert!(read_all(dir.path(), T0 - 1).is_empty());
    assert!(read_all(&dir.path().join("none"), i64::MAX).is_empty(), "no history yet: no changes");

    let label = super::metrics::SourceLabels { source: "stream:a".into() };
    assert_eq!(metrics.rows.get_or_create(&label).get(), 27, "rows of both stream writers");
    assert!(metrics.bytes.get_or_create(&label).get() > 0);
}

#[test]
fn a_writer_keeps_its_order_when_the_clock_steps_back_and_bounds_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = HistoryMetrics::default();
    let bounded = HistoryConfig { max_rows_per_part: 2, max_uncommitted_rows: 3, ..HistoryConfig::default() };
    let mut w = HistoryWriter::open(dir.path(), &bounded, "load", metrics.clone()).unwrap();
    w.append([change("a", T0 + 500, ChangeKind::Load, vec![]), change("b", T0 + 100, ChangeKind::Load, vec![])])
        .unwrap();
    assert!(w.due(), "a part's worth is pending");
    let refused =
        w.append([change("c", T0 + 600, ChangeKind::Load, vec![]), change("d", T0 + 700, ChangeKind::Load, vec![])]);
    assert!(matches!(refused, Err(HistoryError::Full { pending: 2, adding: 2, limit: 3 })), "{refused:?}");
    let label = super::metrics::SourceLabels { source: "load".into() };
    assert_eq!(metrics.refused_rows.get_or_create(&label).get(), 2);
    assert_eq!(w.commit().unwrap(), 2);
    let read = read_all(dir.path(), i64::MAX);
    assert_eq!(read.iter().map(|c| c.applied_time_ms).collect::<Vec<_>>(), [T0 + 500, T0 + 500]);
}

#[test]
fn a_corrupt_part_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    commit_one_part(dir.path(), "stream:a", 5);
    let good = parts(dir.path()).remove(0);
    // A second part, its footer cut off.
    let bytes = std::fs::read(&good).unwrap();
    let bad = good.with_file_name("part-zz-00000000.parquet");
    std::fs::write(&bad, &bytes[..bytes.len() - 20]).unwrap();
    let err = match changes(dir.path(), i64::MAX).unwrap().find_map(Result::err) {
        Some(e) => e.to_string(),
        None => panic!("the corrupt part went unnoticed"),
    };
    assert!(err.contains("part-zz-00000000.parquet"), "{err}");
    // A readable file that is not a changelog part is named too.
    std::fs::remove_file(&bad).unwrap();
    std::fs::write(&bad, b"PAR1 not parquet at all PAR1").unwrap();
    let err = changes(dir.path(), i64::MAX).unwrap().find_map(Result::err).unwrap().to_string();
    assert!(err.contains("part-zz-00000000.parquet"), "{err}");
}

#[test]
fn large_parts_are_merged_across_batches_and_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let big = HistoryConfig { max_rows_per_part: 50_000, max_uncommitted_rows: 50_000, ..HistoryConfig::default() };
    let (a_rows, b_rows) = (20_000i64, 9_000i64);
    let mut a = HistoryWriter::open(dir.path(), &big, "stream:a", HistoryMetrics::default()).unwrap();
    let mut b = HistoryWriter::open(dir.path(), &big, "stream:b", HistoryMetrics::default()).unwrap();
    // One part each, many record batches (1024 rows) and row groups (8192) long, interleaved in
    // applied time: a on even milliseconds, b on every second odd one.
    let one = |i: i64| vec![("n".to_owned(), Some(Value::Int(i)))];
    a.append((0..a_rows).map(|i| change("a", T0 + 2 * i, ChangeKind::Upsert, one(i)))).unwrap();
    b.append((0..b_rows).map(|i| change("b", T0 + 4 * i + 1, ChangeKind::Upsert, one(i)))).unwrap();
    a.commit().unwrap();
    b.commit().unwrap();
    let row_groups: Vec<usize> = parts(dir.path())
        .iter()
        .map(|p| {
            let file = std::fs::File::open(p).unwrap();
            let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            builder.metadata().num_row_groups()
        })
        .collect();
    assert_eq!(row_groups, [3, 2], "row groups of 8192 rows (a's part lists first)");
    let read = read_all(dir.path(), i64::MAX);
    assert_eq!(read.len() as i64, a_rows + b_rows);
    assert!(read.windows(2).all(|w| w[0].applied_time_ms < w[1].applied_time_ms), "strictly interleaved");
    for entity in ["a", "b"] {
        let ns: Vec<&Option<Value>> = read.iter().filter(|c| c.entity_id == entity).map(|c| &c.features[0].1).collect();
        assert!(ns.iter().enumerate().all(|(i, v)| **v == Some(Value::Int(i as i64))), "{entity}: file order kept");
    }
}

#[test]
fn a_starting_writer_removes_only_temporary_parts_too_old_to_be_a_live_writers() {
    let dir = tempfile::tempdir().unwrap();
    commit_one_part(dir.path(), "load", 3);
    let hour = crate::hourly::hours(dir.path()).unwrap().remove(0).1;
    // A writer killed mid-commit two hours ago, and one committing right now.
    let killed = hour.join(".part-load-0123456789abcdef-00000004.parquet.tmp");
    let live = hour.join(".part-stream_items-fedcba9876543210-00000000.parquet.tmp");
    for path in [&killed, &live] {
        std::fs::write(path, b"half a part").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options().write(true).open(&killed).unwrap().set_modified(two_hours_ago).unwrap();

    let metrics = HistoryMetrics::default();
    let _next = HistoryWriter::open(dir.path(), &config(10), "load", metrics.clone()).unwrap();
    assert!(!killed.exists(), "the killed writer's temporary part is removed");
    assert!(live.exists(), "a fresh temporary part may be a live writer's: kept");
    let labels = super::metrics::SourceLabels { source: "load".into() };
    assert_eq!(metrics.stale_temps_removed.get_or_create(&labels).get(), 1);
    assert_eq!(parts(dir.path()).len(), 1, "committed parts are untouched");
    assert_eq!(read_all(dir.path(), i64::MAX).len(), 3);
}

#[test]
fn the_alert_rules_query_only_changelog_metrics_the_writer_exports() {
    use crate::telemetry::ModuleMetrics;
    // tests/it/metric_names.rs checks every other family against a running augur; these are only
    // registered with a feature stream writing the changelog, so they are checked here.
    let mut registry = prometheus_client::registry::Registry::with_prefix("augur");
    let metrics = HistoryMetrics::default();
    metrics.register(&mut registry);
    // An empty family is not encoded at all: one series in each.
    let source = super::metrics::SourceLabels { source: "load".into() };
    for counter in [&metrics.parts, &metrics.rows, &metrics.bytes, &metrics.refused_rows, &metrics.stale_temps_removed]
    {
        counter.get_or_create(&source).inc();
    }
    metrics.failures.get_or_create(&super::metrics::FailureLabels { source: "load".into(), op: "write".into() }).inc();
    metrics.pending_rows.get_or_create(&source).set(1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let exported: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
    let rules = include_str!("../../deploy/prometheus/alerts.yml");
    let queried: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("augur_feature_history_"))
        .collect();
    assert!(queried.len() >= 4, "the rules query the changelog: {queried:?}");
    for name in queried {
        let family = name.strip_suffix("_total").unwrap_or(name);
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        assert!(exported.contains(&format!("{family} {kind}").as_str()), "{name} is not exported: {text}");
    }
}
