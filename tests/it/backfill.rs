//! Point-in-time backfill against what augur served: augur logs samples to the Parquet sink,
//! the logged impressions are backfilled from a changelog of the store's contents, and both
//! Parquet outputs are read back — here with arrow (the backfilled inputs equal the served
//! snapshot's byte for byte) and with DuckDB from the venv (row counts, a join on
//! (request_id, item_id) and a few values, as data tools read them).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use augur::feature_history::write::HistoryWriter;
use augur::feature_history::{Change, ChangeKind};
use augur::fetch::Value;
use augur::proto::{ReportEventsRequest, Sample};

use crate::common;
use crate::common::parquet::batches;
use crate::common::samples::{EMITTED, events, read_log, request, samples_config, wait_for};

/// (request_id, item_id) → (timestamp, every input's values as bytes) of each backfilled row.
pub(crate) type Backfilled = HashMap<(String, String), (i64, Vec<Vec<u8>>)>;

pub(crate) fn backfilled(dir: &Path, inputs: &[&str]) -> Backfilled {
    let mut rows = HashMap::new();
    for b in batches(dir) {
        for i in 0..b.num_rows() {
            let col = |name: &str| b.column_by_name(name).unwrap_or_else(|| panic!("column {name}"));
            let key = (
                col("request_id").as_string::<i32>().value(i).to_owned(),
                col("item_id").as_string::<i32>().value(i).to_owned(),
            );
            let values = inputs
                .iter()
                .map(|name| {
                    let list = col(&augur::sample_log::parquet::input_column(name)).as_fixed_size_list().value(i);
                    match list.data_type() {
                        arrow_schema::DataType::Int64 => {
                            list.as_primitive::<Int64Type>().values().iter().flat_map(|v| v.to_le_bytes()).collect()
                        }
                        _ => list.as_primitive::<Float32Type>().values().iter().flat_map(|v| v.to_le_bytes()).collect(),
                    }
                })
                .collect();
            let time = col("timestamp_ms").as_primitive::<Int64Type>().value(i);
            assert!(rows.insert(key.clone(), (time, values)).is_none(), "{key:?} twice");
        }
    }
    rows
}

/// The served snapshot's inputs as bytes, in the order of `inputs`.
pub(crate) fn served(sample: &Sample, inputs: &[&str]) -> Vec<Vec<u8>> {
    inputs
        .iter()
        .map(|name| {
            let t = sample.inputs.iter().find(|t| &t.name == name).unwrap();
            if t.int64_values.is_empty() {
                t.float_values.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                t.int64_values.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
        })
        .collect()
}

/// The latest revision of every sample in the log.
pub(crate) fn logged_samples(log_dir: &Path) -> Vec<Sample> {
    common::samples::latest_samples(&read_log(log_dir)).into_values().collect()
}

/// Writes the impressions of `samples` as the backfill reads them: the request's context is
/// what the test sent (`context`), the label whether the sample has a click.
pub(crate) fn write_impressions(path: &Path, samples: &[Sample], context: impl Fn(&Sample) -> Vec<(String, String)>) {
    let names: Vec<String> =
        samples.first().map(|s| context(s).into_iter().map(|(k, _)| k).collect()).unwrap_or_default();
    let mut text = format!("timestamp_ms,request_id,user_id,item_id,label,{}\n", names.join(","));
    for s in samples {
        let clicked = s.labels.iter().any(|l| l.r#type == "click");
        let values: Vec<String> = context(s).into_iter().map(|(_, v)| v).collect();
        text.push_str(&format!(
            "{},{},{},{},{},{}\n",
            s.timestamp_ms,
            s.request_id,
            s.user_id,
            s.item_id,
            u8::from(clicked),
            values.join(",")
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// A bulk load of a CSV table as the changelog records one: every row, every cell as text.
fn load_changes(path: &Path, table: &str, at_ms: i64) -> Vec<Change> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            Change {
                table: table.into(),
                entity_id: r[0].to_owned(),
                event_time_ms: at_ms,
                applied_time_ms: at_ms,
                kind: ChangeKind::Load,
                features: headers
                    .iter()
                    .zip(r.iter())
                    .skip(1)
                    .map(|(h, v)| (h.to_owned(), (!v.is_empty()).then(|| Value::Str(v.to_owned()))))
                    .collect(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_equals_the_sample_sink_for_arrow_and_duckdb() {
    common::require!(Ort, Python);
    let dir = tempfile::tempdir().unwrap();
    let (log_dir, sink, out) = (dir.path().join("log"), dir.path().join("samples"), dir.path().join("backfill"));
    let sinks = format!("[[samples.sinks]]\nkind = \"parquet\"\ndir = \"{}\"\n", sink.display());
    let server = common::start(samples_config(&log_dir, &sinks)).await;
    let mut client = server.client().await;
    let n = 12;
    for k in 0..n {
        client.predict(request(k)).await.expect("predict");
    }
    wait_for(&server.metrics, "augur_samples_pending", n as f64).await;
    let (events, expected) = events(n);
    client.report_events(ReportEventsRequest { events }).await.expect("report");
    wait_for(&server.metrics, EMITTED, expected.len() as f64).await;
    let written = common::samples::metric(&server.metrics.render(), "augur_samples_log_sequence");
    wait_for(&server.metrics, "augur_samples_sink_delivered_total{sink=\"parquet\"}", written).await;
    server.stop().await;

    // The demo store is its two CSV tables, loaded before anything was served.
    let root = common::root();
    let mut changes = load_changes(&root.join("demo/users.csv"), "users", 0);
    changes.extend(load_changes(&root.join("demo/items.csv"), "items", 0));
    let samples = logged_samples(&log_dir);
    assert_eq!(samples.len(), expected.len());
    backfill_equals_served(dir.path(), &samples, History::Memory(changes), &out).await;

    // DuckDB: both directories as a data tool reads them.
    let query = format!(
        "import duckdb\n\
         c = duckdb.connect()\n\
         q = lambda s: c.execute(s).fetchall()\n\
         s = \"read_parquet('{}/**/*.parquet', hive_partitioning = true)\"\n\
         b = \"read_parquet('{}/**/*.parquet', hive_partitioning = true)\"\n\
         print(q(f'select count(*) from {{s}}')[0][0], q(f'select count(*) from {{b}}')[0][0])\n\
         print(q(f'select count(*) from {{s}} s join {{b}} b using (request_id, item_id) \
                  where s.input_ids = b.input_ids and s.input_dense = b.input_dense \
                  and s.timestamp_ms = b.timestamp_ms')[0][0])\n\
         print(q(f\"select sum(label)::int, count(distinct (dt, hour)) from {{b}}\")[0])\n\
         print(q(f\"select user_id, len(input_ids) from {{b}} where request_id = 'req-2' and item_id = 'i11'\")[0])\n",
        sink.display(),
        out.display()
    );
    let duck = Command::new(common::venv_python()).args(["-c", &query]).output().expect("run python");
    assert!(duck.status.success(), "{}", String::from_utf8_lossy(&duck.stderr));
    let duck = String::from_utf8(duck.stdout).unwrap();
    let lines: Vec<&str> = duck.lines().collect();
    let m = samples.len();
    let clicks = samples.iter().filter(|s| s.labels.iter().any(|l| l.r#type == "click")).count();
    let width = samples[0].inputs[0].int64_values.len();
    assert_eq!(lines[0], format!("{m} {m}"), "{duck}");
    assert_eq!(lines[1], format!("{m}"), "every row joins with equal inputs: {duck}");
    let hours: std::collections::BTreeSet<i64> = samples.iter().map(|s| s.timestamp_ms / 3_600_000).collect();
    assert_eq!(lines[2], format!("({clicks}, {})", hours.len()), "{duck}");
    assert_eq!(lines[3], format!("('u2', {width})"), "{duck}");
}

/// Where the backfill reads the changelog.
enum History {
    /// Handed to the library call as an iterator.
    Memory(Vec<Change>),
    /// A changelog directory, read by `augur features backfill` (the binary).
    Dir(PathBuf),
}

/// Backfills `samples` (the ranking scene's, sent with hour = 20 and device = ios) from
/// `history` into `out` by applied time, and checks every logged candidate: the backfilled
/// inputs are the served snapshot's, byte for byte.
async fn backfill_equals_served(dir: &Path, samples: &[Sample], history: History, out: &Path) {
    let impressions = dir.join("impressions.csv");
    write_impressions(&impressions, samples, |_| vec![("hour".into(), "20".into()), ("device".into(), "ios".into())]);
    let rows = match history {
        History::Memory(changes) => {
            let spec = augur::assemble::Spec::load(&common::root().join("features/ranking.yaml")).unwrap();
            let history = move |until: i64| {
                Ok::<_, Infallible>(changes.into_iter().filter(move |c| c.applied_time_ms <= until).map(Ok))
            };
            let options = augur::cli::backfill::Options::default();
            let progress = indicatif::ProgressBar::hidden();
            let summary =
                augur::cli::backfill::backfill(&spec, &impressions, history, out, &options, &progress).await.unwrap();
            summary.rows
        }
        History::Dir(history) => {
            let run = common::process::cli()
                .args(["features", "backfill", "--scene", "ranking", "--json", "--impressions"])
                .arg(&impressions)
                .arg("--history")
                .arg(&history)
                .arg("--out")
                .arg(out)
                .output()
                .unwrap();
            assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
            let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
            summary["rows"].as_u64().unwrap()
        }
    };
    assert_eq!(rows as usize, samples.len());
    let inputs = ["ids", "dense"];
    let rows = backfilled(out, &inputs);
    assert_eq!(rows.len(), samples.len());
    for s in samples {
        let (time, values) = &rows[&(s.request_id.clone(), s.item_id.clone())];
        assert_eq!(*time, s.timestamp_ms);
        assert_eq!(values, &served(s, &inputs), "{}", s.sample_id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_between_predictions_backfill_to_every_served_snapshot() {
    common::require!(Ort);
    use augur::fetch::MemoryStore;
    use augur::sample_log::snapshot::now_ms;
    let dir = tempfile::tempdir().unwrap();
    let root = common::root();
    let (log_dir, out) = (dir.path().join("log"), dir.path().join("backfill"));
    let config = samples_config(&log_dir, "");
    // The store augur serves from, kept by the test to write updates into while it serves; the
    // test records each write as the changelog would (applied time stamped once it is done).
    let augur::config::StoreConfig::Memory { tables, .. } = &config.store else {
        panic!("the demo store is in memory")
    };
    let store = std::sync::Arc::new(MemoryStore::load(tables).unwrap());
    let mut changes = load_changes(&root.join("demo/users.csv"), "users", 0);
    changes.extend(load_changes(&root.join("demo/items.csv"), "items", 0));
    let parts = augur::app::Parts { store: Some(store.clone()), ..Default::default() };
    let server = common::start_with(config, parts).await;
    let mut client = server.client().await;
    let items = ["i1", "i2", "i3", "i4"];
    let rounds = 8;
    let mut upsert = |table: &str, id: &str, event: i64, field: &str, value: Value| {
        let done = store.upsert(table, id, event, vec![(field.to_owned(), value.clone())]);
        changes.push(Change {
            table: table.into(),
            entity_id: id.into(),
            event_time_ms: event,
            applied_time_ms: now_ms(),
            kind: ChangeKind::Upsert,
            features: vec![(field.to_owned(), Some(value))],
        });
        done
    };
    let mut reports = Vec::new();
    for round in 0..rounds {
        let mut r = common::ranking_request("u1", &items);
        r.request_id = format!("round-{round}");
        client.predict(r.clone()).await.expect("predict");
        reports.extend(r.candidates.iter().map(|c| common::samples::event(&r.request_id, &c.item_id, "impression")));
        // Times are in ms: a change applied within the prediction's own ms counts as seen
        // (inclusive), so the test keeps its writes out of the ms its predictions are stamped in.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        // Between two predictions: a new price for one item, a new activity for the user, and
        // (odd rounds) a late update that loses to the newer value held (event-time LWW).
        let now = now_ms();
        let price = Value::Float(10.0 + 7.0 * f64::from(round));
        assert_eq!(upsert("items", items[round as usize % 4], now, "price", price).applied, 1);
        assert_eq!(upsert("users", "u1", now, "activity", Value::Float(f64::from(round))).applied, 1);
        if round % 2 == 1 {
            assert_eq!(upsert("users", "u1", now - 60_000, "activity", Value::Float(99.0)).stale, 1);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    client.report_events(ReportEventsRequest { events: reports }).await.expect("report");
    wait_for(&server.metrics, EMITTED, (rounds * items.len() as i32) as f64).await;
    server.stop().await;

    let samples = logged_samples(&log_dir);
    assert_eq!(samples.len(), rounds as usize * items.len());
    // The updates reached the served inputs: the user's dense row changed every round.
    let dense: std::collections::BTreeSet<Vec<u8>> =
        samples.iter().filter(|s| s.item_id == "i2").map(|s| served(s, &["dense"]).remove(0)).collect();
    assert_eq!(dense.len(), rounds as usize, "a different served row per round");
    // The changelog on disk, as its writers commit it (a load's and a stream's writer sharing the
    // directory), read back by `augur features backfill`.
    let history = dir.path().join("history");
    let config = augur::feature_history::config::HistoryConfig::default();
    let metrics = augur::feature_history::metrics::HistoryMetrics::default();
    let mut load = HistoryWriter::open(&history, &config, "load", metrics.clone()).unwrap();
    let mut stream = HistoryWriter::open(&history, &config, "stream:test", metrics).unwrap();
    let (loads, upserts): (Vec<Change>, Vec<Change>) = changes.into_iter().partition(|c| c.kind == ChangeKind::Load);
    load.append(loads).unwrap();
    stream.append(upserts).unwrap();
    load.commit().unwrap();
    stream.commit().unwrap();
    backfill_equals_served(dir.path(), &samples, History::Dir(history), &out).await;
}

/// The whole path with augur writing the changelog itself: a bulk load into Redis recorded by
/// `augur features load`'s library call, then Kafka updates (librdkafka's mock cluster) applied by
/// augur's own stream consumer and recorded by it between Predict calls; the logged impressions
/// backfilled from that directory by the binary equal every served snapshot byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stream_changelog_written_by_augur_backfills_to_every_served_snapshot() {
    use augur::cli::load::{LoadOptions, OnError, load_file_with_history};
    use augur::feature_stream::publish::publish;
    use augur::feature_stream::{EntityKind, Update, UpdateFormat};
    use augur::sample_log::kafka::mock::MockKafka;

    use crate::common::redis_server::{RedisServer, redis_config, redis_demo_config};
    use crate::feature_streams::{TOPIC, bounded, item_update, now_ms};

    bounded(async {
        common::require!(Redis, Ort);
        let (redis, kafka, dir) = (RedisServer::start(), MockKafka::start(TOPIC, 3), tempfile::tempdir().unwrap());
        let (log_dir, history, out) = (dir.path().join("log"), dir.path().join("history"), dir.path().join("backfill"));
        let config = redis_demo_config(
            &[redis.url()],
            false,
            &format!(
                "[[feature_streams]]\nname = \"features\"\nbrokers = \"{}\"\ntopic = \"{TOPIC}\"\n\
                 dead_letter_path = \"{}\"\n[feature_history]\ndir = \"{}\"\nroll_interval_ms = 200\n\
                 [samples]\nenabled = true\n[samples.log]\ndir = \"{}\"\nfsync_interval_ms = 50\n\
                 [samples.join]\ntick_ms = 50\npositive_wait_s = {{ click = 1 }}\n",
                kafka.bootstrap,
                dir.path().join("dead.jsonl").display(),
                history.display(),
                log_dir.display()
            ),
        );
        // The demo tables, loaded as `augur features load --history` does.
        let store = augur::cli::load::connect(redis_config(&config)).await.unwrap();
        let mut writer = HistoryWriter::open(&history, &config.feature_history, "load", Default::default()).unwrap();
        for (table, key) in [("users", "user_id"), ("items", "item_id")] {
            let options =
                LoadOptions { table: table.into(), key_column: Some(key.into()), batch: 1000, on_error: OnError::Stop };
            let file = common::root().join(format!("demo/{table}.csv"));
            let progress = indicatif::ProgressBar::hidden();
            load_file_with_history(&store, &file, &options, &progress, Some(&mut writer)).await.expect("load");
        }
        assert_eq!(writer.pending_rows(), 0, "the load committed its changes");

        let server = common::start(config).await;
        let mut client = server.client().await;
        let applied = async |server: &common::TestServer| {
            let text = crate::common::http::scrape(server).await;
            crate::common::http::sample(
                &text,
                "augur_feature_stream_updates_total{stream=\"features\",result=\"applied\"}",
            )
            .unwrap_or(0.0)
        };
        let items = ["i1", "i2", "i3", "i4"];
        let rounds = 6;
        let mut published = 0.0;
        let mut reports = Vec::new();
        for round in 0..rounds {
            let mut r = common::ranking_request("u1", &items);
            r.request_id = format!("round-{round}");
            client.predict(r.clone()).await.expect("predict");
            reports
                .extend(r.candidates.iter().map(|c| common::samples::event(&r.request_id, &c.item_id, "impression")));
            // Keep the next write out of the prediction's own ms (the backfill is inclusive).
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            let now = now_ms();
            let mut updates = vec![
                item_update(items[round % items.len()], now, 10.0 + 7.0 * round as f64, &format!("c{round}")),
                Update {
                    entity: EntityKind::User,
                    entity_id: "u1".into(),
                    event_time_ms: now,
                    features: vec![("activity".into(), Value::Float(round as f64))],
                },
            ];
            if round % 2 == 1 {
                // Late: loses to the newer value held, in the store and in the replay alike.
                let mut late = updates[1].clone();
                late.event_time_ms = now - 60_000;
                late.features = vec![("activity".into(), Value::Float(99.0))];
                updates.push(late);
            }
            publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &updates).await.expect("publish");
            published += 2.0;
            common::wait_for("the round's updates applied", async || applied(&server).await >= published).await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        client.report_events(ReportEventsRequest { events: reports }).await.expect("report");
        wait_for(&server.metrics, EMITTED, (rounds * items.len()) as f64).await;
        // Stopping drains the consumer, which commits its open changelog part.
        server.stop().await;

        let samples = logged_samples(&log_dir);
        assert_eq!(samples.len(), rounds * items.len());
        let dense: std::collections::BTreeSet<Vec<u8>> =
            samples.iter().filter(|s| s.item_id == "i2").map(|s| served(s, &["dense"]).remove(0)).collect();
        assert_eq!(dense.len(), rounds, "the user's updates reached the served inputs every round");
        backfill_equals_served(dir.path(), &samples, History::Dir(history), &out).await;
    })
    .await;
}
