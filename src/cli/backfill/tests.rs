use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::assemble::encode::RequestView;
use crate::assemble::{Spec, TensorData, assemble};
use crate::feature_history::ChangeKind;
use crate::fetch::{FeatureStore, MemoryStore, Row, Value};

/// 2026-12-06T00:00:00Z.
const DAY: i64 = 20_793 * 86_400_000;

fn spec() -> Spec {
    Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("features/ranking.yaml")).unwrap()
}

fn change(kind: ChangeKind, table: &str, id: &str, event: i64, applied: i64, fields: &[(&str, &str)]) -> Change {
    Change {
        table: table.into(),
        entity_id: id.into(),
        event_time_ms: event,
        applied_time_ms: applied,
        kind,
        features: fields.iter().map(|(f, v)| (f.to_string(), Some(Value::Str(v.to_string())))).collect(),
    }
}

/// A bulk load of user u1 and item i1 at `t`, price `price`.
fn loads(t: i64, price: &str) -> Vec<Change> {
    vec![
        change(
            ChangeKind::Load,
            "users",
            "u1",
            t,
            t,
            &[("age", "30"), ("gender", "f"), ("segment", "s1"), ("activity", "5")],
        ),
        change(
            ChangeKind::Load,
            "items",
            "i1",
            t,
            t,
            &[("category", "c1"), ("brand", "b1"), ("price", price), ("tags", "t1|t2")],
        ),
    ]
}

fn price(event: i64, applied: i64, price: &str) -> Change {
    change(ChangeKind::Upsert, "items", "i1", event, applied, &[("price", price)])
}

/// (timestamp, request id, user, item, label, hour context)
type Imp = (i64, &'static str, &'static str, &'static str, u8, i64);

fn write_csv(path: &Path, rows: &[Imp]) {
    let mut text = String::from("timestamp_ms,request_id,user_id,item_id,label,hour\n");
    for (t, r, u, i, l, h) in rows {
        text.push_str(&format!("{t},{r},{u},{i},{l},{h}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn write_parquet(path: &Path, rows: &[Imp]) {
    let strings =
        |f: fn(&Imp) -> &str| -> ArrayRef { Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>()) };
    let batch = RecordBatch::try_from_iter([
        ("timestamp_ms", Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()) as ArrayRef),
        ("request_id", strings(|r| r.1)),
        ("user_id", strings(|r| r.2)),
        ("item_id", strings(|r| r.3)),
        ("label", Arc::new(rows.iter().map(|r| i64::from(r.4)).collect::<Int64Array>()) as ArrayRef),
        ("hour", Arc::new(rows.iter().map(|r| r.5).collect::<Int64Array>()) as ArrayRef),
    ])
    .unwrap();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

async fn run(impressions: &Path, out: &Path, changes: Vec<Change>, options: &Options) -> Summary {
    let history =
        move |until: i64| Ok::<_, Infallible>(changes.into_iter().filter(move |c| c.applied_time_ms <= until).map(Ok));
    backfill(&spec(), impressions, history, out, options, &ProgressBar::hidden()).await.unwrap()
}

/// One output row as read back.
#[derive(Debug, Clone, PartialEq)]
struct Out {
    request_id: Option<String>,
    user_id: String,
    item_id: String,
    timestamp_ms: i64,
    label: f32,
    fallbacks: Vec<String>,
    ids: Vec<i64>,
    /// Float bits: compared byte for byte.
    dense: Vec<u32>,
}

fn parts(dir: &Path) -> Vec<PathBuf> {
    crate::hourly::parts(dir).unwrap()
}

fn read(dir: &Path) -> Vec<Out> {
    let mut rows = Vec::new();
    for part in parts(dir) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(part).unwrap()).unwrap().build().unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let col = |name: &str| b.column_by_name(name).unwrap().clone();
            let (ids, dense) = (col("input_ids"), col("input_dense"));
            for i in 0..b.num_rows() {
                let request = col("request_id");
                let fallbacks = col("fallbacks").as_list::<i32>().value(i);
                rows.push(Out {
                    request_id: (!request.is_null(i)).then(|| request.as_string::<i32>().value(i).to_owned()),
                    user_id: col("user_id").as_string::<i32>().value(i).to_owned(),
                    item_id: col("item_id").as_string::<i32>().value(i).to_owned(),
                    timestamp_ms: col("timestamp_ms").as_primitive::<Int64Type>().value(i),
                    label: col("label").as_primitive::<Float32Type>().value(i),
                    fallbacks: fallbacks.as_string::<i32>().iter().map(|s| s.unwrap().to_owned()).collect(),
                    ids: ids.as_fixed_size_list().value(i).as_primitive::<Int64Type>().values().to_vec(),
                    dense: dense
                        .as_fixed_size_list()
                        .value(i)
                        .as_primitive::<Float32Type>()
                        .values()
                        .iter()
                        .map(|f| f.to_bits())
                        .collect(),
                });
            }
        }
    }
    rows
}

/// What assembly gives for `(user, item, hour)` on a store holding exactly `users` and `items`:
/// the reference each backfilled row must equal.
async fn direct(
    user: &str,
    item: &str,
    hour: i64,
    users: &[(&str, &[(&str, &str)])],
    items: &[(&str, &[(&str, &str)])],
) -> (Vec<i64>, Vec<u32>) {
    let spec = spec();
    let mut store = MemoryStore::default();
    for (table, rows) in [("users", users), ("items", items)] {
        for (id, fields) in rows {
            let row: Row = fields.iter().map(|(f, v)| (f.to_string(), Value::Str(v.to_string()))).collect();
            store.insert(table, id, row);
        }
    }
    store.create_table("users");
    store.create_table("items");
    let user_row = store.get_rows("users", &[user], &spec.user_fields).await.unwrap().remove(0);
    let item_rows = store.get_rows("items", &[item], &spec.item_fields).await.unwrap();
    let context: HashMap<String, Value> = [("hour".to_owned(), Value::Str(hour.to_string()))].into();
    let candidates = [(item.to_owned(), HashMap::new())];
    let assembled = assemble(&spec, RequestView::new(user, &context, &candidates), user_row.as_ref(), &item_rows);
    let assembled = assembled.into_stored(&spec);
    match (&assembled.tensors[0].data, &assembled.tensors[1].data) {
        (TensorData::I64(ids), TensorData::F32(dense)) => (ids.clone(), dense.iter().map(|f| f.to_bits()).collect()),
        other => panic!("ranking is ids + dense: {other:?}"),
    }
}

const USER: &[(&str, &str)] = &[("age", "30"), ("gender", "f"), ("segment", "s1"), ("activity", "5")];
fn item(price: &'static str) -> [(&'static str, &'static str); 4] {
    [("category", "c1"), ("brand", "b1"), ("price", price), ("tags", "t1|t2")]
}

#[tokio::test]
async fn a_value_changed_between_two_impressions_is_old_before_and_new_after() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, out) = (dir.path().join("imp.csv"), dir.path().join("out"));
    let t = DAY + 1_000;
    let mut changes = loads(t, "10");
    changes.push(price(t + 4_000, t + 5_000, "100"));
    // Unsorted on purpose; r0 comes before any change.
    write_csv(
        &csv,
        &[
            (t + 6_000, "r3", "u1", "i1", 0, 20),
            (t - 500, "r0", "u1", "i1", 0, 20),
            (t + 3_000, "r1", "u1", "i1", 1, 20),
        ],
    );
    let summary = run(&csv, &out, changes, &Options::default()).await;
    assert_eq!((summary.rows, summary.positives, summary.changes_applied), (3, 1, 3));
    assert_eq!(summary.partitions, vec!["dt=2026-12-06/hour=00/part-00000.parquet"]);
    let rows = read(&out);
    let ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["r0", "r1", "r3"], "in time order");

    let before = direct("u1", "i1", 20, &[], &[]).await;
    let old = direct("u1", "i1", 20, &[("u1", USER)], &[("i1", &item("10"))]).await;
    let new = direct("u1", "i1", 20, &[("u1", USER)], &[("i1", &item("100"))]).await;
    assert_ne!(old, new, "the price reaches the model inputs");
    assert_eq!((rows[0].ids.clone(), rows[0].dense.clone()), before);
    assert!(rows[0].fallbacks.contains(&"item_price".to_owned()), "{:?}", rows[0].fallbacks);
    assert_eq!((rows[1].ids.clone(), rows[1].dense.clone()), old, "the earlier impression: the old price");
    assert_eq!((rows[2].ids.clone(), rows[2].dense.clone()), new, "the later impression: the new price");
    assert_eq!(rows[1].fallbacks, ["device"], "only the context the log lacks");
    assert_eq!((rows[1].timestamp_ms, rows[1].label, rows[1].user_id.as_str()), (t + 3_000, 1.0, "u1"));
    assert!(out.join(MARKER).exists());
}

#[tokio::test]
async fn a_change_at_the_impression_time_is_in() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, out) = (dir.path().join("imp.csv"), dir.path().join("out"));
    let t = DAY + 1_000;
    let mut changes = loads(t, "10");
    changes.push(price(t + 5_000, t + 5_000, "100"));
    write_csv(&csv, &[(t + 4_999, "a", "u1", "i1", 0, 20), (t + 5_000, "b", "u1", "i1", 0, 20)]);
    run(&csv, &out, changes, &Options::default()).await;
    let rows = read(&out);
    let old = direct("u1", "i1", 20, &[("u1", USER)], &[("i1", &item("10"))]).await;
    let new = direct("u1", "i1", 20, &[("u1", USER)], &[("i1", &item("100"))]).await;
    assert_eq!((rows[0].ids.clone(), rows[0].dense.clone()), old, "1 ms before the change");
    assert_eq!((rows[1].ids.clone(), rows[1].dense.clone()), new, "at the change's own ms: inclusive");
}

#[tokio::test]
async fn a_late_correction_is_in_by_event_time_and_out_by_applied_time() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("imp.csv");
    let t = DAY + 1_000;
    let mut changes = loads(t, "10");
    // True from t+2000, but written to the store only at t+8000.
    changes.push(price(t + 2_000, t + 8_000, "100"));
    write_csv(&csv, &[(t + 3_000, "mid", "u1", "i1", 0, 20), (t + 9_000, "late", "u1", "i1", 0, 20)]);
    let old = direct("u1", "i1", 20, &[("u1", USER)], &[("i1", &item("10"))]).await;
    let new = direct("u1", "i1", 20, &[("u1", USER)], &[("i1", &item("100"))]).await;

    let applied = dir.path().join("applied");
    run(&csv, &applied, changes.clone(), &Options::default()).await;
    let rows = read(&applied);
    assert_eq!((rows[0].ids.clone(), rows[0].dense.clone()), old, "served at t+3000: the old price");
    assert_eq!((rows[1].ids.clone(), rows[1].dense.clone()), new);

    let event = dir.path().join("event");
    let options = Options { basis: TimeBasis::Event, ..Options::default() };
    let summary = run(&csv, &event, changes.clone(), &options).await;
    assert_eq!(summary.basis, TimeBasis::Event);
    let rows = read(&event);
    assert_eq!((rows[0].ids.clone(), rows[0].dense.clone()), new, "true at t+3000: the corrected price");
    assert_eq!((rows[1].ids.clone(), rows[1].dense.clone()), new);

    // The same by event time, as a run before the correction arrived would have seen it.
    let before = dir.path().join("before");
    let options = Options { basis: TimeBasis::Event, until_applied_ms: Some(t + 7_999), ..Options::default() };
    run(&csv, &before, changes, &options).await;
    let rows = read(&before);
    assert_eq!((rows[0].ids.clone(), rows[0].dense.clone()), old);
    assert_eq!((rows[1].ids.clone(), rows[1].dense.clone()), old);
}

#[tokio::test]
async fn unsorted_input_across_hours_gives_the_sorted_input_output_in_hour_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let users = ["u1", "u2"];
    let items = ["i1", "i2", "i3"];
    let mut rows: Vec<Imp> = Vec::new();
    for k in 0..90i64 {
        let t = DAY + k * 120_000 + (k % 7); // 3 hours, some on the same ms as others
        let request: &'static str = Box::leak(format!("r{}", k % 40).into_boxed_str());
        rows.push((t, request, users[k as usize % 2], items[k as usize % 3], (k % 4 == 0) as u8, k % 24));
        rows.push((t, request, users[(k as usize + 1) % 2], items[k as usize % 3], 0, k % 24));
    }
    let mut changes = Vec::new();
    for (n, id) in items.iter().enumerate() {
        let t = DAY - 10_000 + n as i64;
        changes.push(change(ChangeKind::Load, "items", id, t, t, &[("category", "c1"), ("price", "5")]));
    }
    changes.push(change(ChangeKind::Load, "users", "u1", DAY - 1, DAY - 1, USER));
    for k in 0..60i64 {
        let t = DAY + k * 180_000 + 3; // between and on impression times
        changes.push(price(t, t, Box::leak(format!("{}", k * 3).into_boxed_str())));
        changes.push(change(ChangeKind::Upsert, "others", "x", t, t, &[("a", "1")]));
    }
    let sorted = dir.path().join("sorted.csv");
    let mut in_order = rows.clone();
    in_order.sort();
    write_csv(&sorted, &in_order);
    // Shuffled deterministically, once as CSV and once as Parquet.
    let mut shuffled = rows.clone();
    for i in 0..shuffled.len() {
        shuffled.swap(i, (i * 7919 + 13) % rows.len());
    }
    let (csv, parquet) = (dir.path().join("shuffled.csv"), dir.path().join("shuffled.parquet"));
    write_csv(&csv, &shuffled);
    write_parquet(&parquet, &shuffled);

    // A small spill bound and small parts: many runs per hour, several parts per hour.
    let options = Options { spill_bytes: 500, max_file_rows: 25, row_group_rows: 7, ..Options::default() };
    let mut outputs = Vec::new();
    for (name, input) in [("a", &sorted), ("b", &csv), ("c", &parquet)] {
        let out = dir.path().join(name);
        let summary = run(input, &out, changes.clone(), &options).await;
        assert_eq!(summary.rows, 180);
        assert!(summary.spill.runs >= 10, "{:?}", summary.spill);
        assert_eq!(summary.changes_other_tables, 60);
        outputs.push((summary.partitions, read(&out)));
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!out.join(SPILL_DIR).exists(), "spill removed: {left:?}");
    }
    let (partitions, first) = &outputs[0];
    let hours: std::collections::BTreeSet<&str> = partitions.iter().map(|p| &p[..22]).collect();
    assert_eq!(
        hours.into_iter().collect::<Vec<_>>(),
        ["dt=2026-12-06/hour=00/", "dt=2026-12-06/hour=01/", "dt=2026-12-06/hour=02/"]
    );
    assert!(partitions.iter().any(|p| p.ends_with("part-00001.parquet")), "{partitions:?}");
    for (other_partitions, rows) in &outputs[1..] {
        assert_eq!(other_partitions, partitions);
        assert_eq!(rows, first, "byte for byte the same rows in the same order");
    }
    let times: Vec<i64> = first.iter().map(|r| r.timestamp_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order");
    // Every row against direct assembly of the state it was served from.
    for row in first {
        let latest = changes
            .iter()
            .rev()
            .find(|c| {
                c.entity_id == row.item_id && c.kind == ChangeKind::Upsert && c.applied_time_ms <= row.timestamp_ms
            })
            .map(|c| match &c.features[0].1 {
                Some(Value::Str(p)) => p.as_str(),
                _ => unreachable!(),
            })
            .unwrap_or("5");
        let item_row = [("category", "c1"), ("price", latest)];
        let items: Vec<(&str, &[(&str, &str)])> = vec![(row.item_id.as_str(), &item_row)];
        let users: Vec<(&str, &[(&str, &str)])> = if row.user_id == "u1" { vec![("u1", USER)] } else { vec![] };
        let h = rows.iter().find(|r| r.0 == row.timestamp_ms && r.2 == row.user_id && r.3 == row.item_id).unwrap().5;
        let want = direct(&row.user_id, &row.item_id, h, &users, &items).await;
        assert_eq!((row.ids.clone(), row.dense.clone()), want, "{row:?}");
    }
}

#[tokio::test]
async fn an_output_directory_with_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("imp.csv");
    write_csv(&csv, &[(DAY, "r", "u1", "i1", 0, 1)]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("old"), "x").unwrap();
    let history = |_| Ok::<_, Infallible>(Vec::<Result<Change, Infallible>>::new().into_iter());
    let err = backfill(&spec(), &csv, history, &out, &Options::default(), &ProgressBar::hidden()).await.unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
}
