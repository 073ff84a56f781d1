//! The Parquet sample sink end to end: augur with samples on and a `parquet` sink, Predict +
//! ReportEvents, then the files read back three ways — the arrow reader here (every row equal to
//! the sample log's record: ids, score, inputs, labels), DuckDB from the venv (row counts and a
//! few values, as data tools read them) and the trainer (`samples.py --parquet` gives the same
//! arrays as from `augur samples dump`). And a SIGKILL while parts are being written: after the
//! restart every sample record of the log is in the files exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type, UInt32Type, UInt64Type};
use augur::proto::{LogRecord, ReportEventsRequest, Sample, log_record};

use crate::common;
use crate::common::parquet::{batches, parts};
use crate::common::process::AugurProcess as Augur;
use crate::common::samples::{EMITTED, events, metric, read_log, request, samples_config, wait_for};

/// (sample_id, revision) of every row, in file order.
fn row_ids(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for b in batches(dir) {
        let ids = b.column_by_name("sample_id").unwrap().as_string::<i32>().clone();
        let revs = b.column_by_name("revision").unwrap().as_primitive::<UInt32Type>().clone();
        out.extend((0..b.num_rows()).map(|i| (ids.value(i).to_owned(), revs.value(i))));
    }
    out
}

fn samples(records: &[LogRecord]) -> Vec<Sample> {
    records
        .iter()
        .filter_map(|r| match &r.record {
            Some(log_record::Record::Sample(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn sinks(dir: &Path, extra: &str) -> String {
    format!("[[samples.sinks]]\nkind = \"parquet\"\ndir = \"{}\"\n{extra}", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_files_hold_the_logged_samples_for_arrow_duckdb_and_the_trainer() {
    common::require!(Ort, Python);
    let dir = tempfile::tempdir().unwrap();
    let (log_dir, out) = (dir.path().join("log"), dir.path().join("parquet"));
    let server = common::start(samples_config(&log_dir, &sinks(&out, "row_group_rows = 4\nmax_file_rows = 8\n"))).await;
    let mut client = server.client().await;
    let n = 10;
    for k in 0..n {
        client.predict(request(k)).await.expect("predict");
    }
    wait_for(&server.metrics, "augur_samples_pending", n as f64).await;
    let (events, expected) = events(n);
    client.report_events(ReportEventsRequest { events }).await.expect("report");
    wait_for(&server.metrics, EMITTED, expected.len() as f64).await;
    // A late click: a correction (revision 1) of a sample already emitted.
    let late = common::samples::event("req-0", &request(0).candidates[0].item_id, "click");
    client.report_events(ReportEventsRequest { events: vec![late] }).await.expect("report");
    wait_for(&server.metrics, "augur_samples_emitted_total{kind=\"correction\"}", 1.0).await;
    let written = metric(&server.metrics.render(), "augur_samples_log_sequence");
    wait_for(&server.metrics, "augur_samples_sink_delivered_total{sink=\"parquet\"}", written).await;
    server.stop().await; // shutdown commits the open parts (no hour closes within the test)

    // Arrow: one row per sample record of the log, equal field by field.
    let logged = samples(&read_log(&log_dir));
    assert_eq!(logged.len(), expected.len() + 1);
    let mut rows = BTreeMap::new();
    for b in batches(&out) {
        for i in 0..b.num_rows() {
            let id = b.column_by_name("sample_id").unwrap().as_string::<i32>().value(i).to_owned();
            let rev = b.column_by_name("revision").unwrap().as_primitive::<UInt32Type>().value(i);
            assert!(rows.insert((id, rev), (b.clone(), i)).is_none(), "a row twice");
        }
    }
    assert_eq!(rows.len(), logged.len(), "one row per sample record");
    assert!(parts(&out).len() >= 2, "max_file_rows = 8 splits {} rows", rows.len());
    for s in &logged {
        let (b, i) = &rows[&(s.sample_id.clone(), s.revision)];
        let col = |name: &str| b.column_by_name(name).unwrap_or_else(|| panic!("column {name}"));
        assert_eq!(col("score").as_primitive::<Float32Type>().value(*i).to_bits(), s.score.to_bits());
        assert_eq!(col("timestamp_ms").as_primitive::<Int64Type>().value(*i), s.timestamp_ms);
        assert_eq!(col("item_id").as_string::<i32>().value(*i), s.item_id);
        assert_eq!(col("model_version").as_string::<i32>().value(*i), s.model_version);
        for t in ["impression", "click", "conversion"] {
            let want = s.labels.iter().any(|l| l.r#type == t);
            assert_eq!(col(&format!("label_{t}")).as_boolean().value(*i), want, "{} {t}", s.sample_id);
        }
        assert_eq!(col("labels").as_list::<i32>().value(*i).len(), s.labels.len());
        for t in &s.inputs {
            let list = col(&augur::sample_log::parquet::input_column(&t.name)).as_fixed_size_list().value(*i);
            if t.int64_values.is_empty() {
                let got: Vec<u32> = list.as_primitive::<Float32Type>().values().iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, t.float_values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{}", t.name);
            } else {
                assert_eq!(list.as_primitive::<Int64Type>().values().to_vec(), t.int64_values, "{}", t.name);
            }
        }
    }

    // DuckDB, as a data tool reads the directory.
    let glob = format!("{}/**/*.parquet", out.display());
    let s0 = logged.iter().find(|s| s.sample_id == "req-2:1").expect("req-2:1 logged");
    let query = format!(
        "import duckdb, sys\n\
         c = duckdb.connect()\n\
         q = lambda s: c.execute(s).fetchall()\n\
         src = \"read_parquet('{glob}', hive_partitioning = true)\"\n\
         print(q(f'select count(*), count(distinct sample_id), sum(label_click::int) from {{src}}')[0])\n\
         print(q(f\"select score, len(labels), scene from {{src}} where sample_id = 'req-2:1'\")[0])\n\
         print(q(f\"select max(revision) from {{src}} where sample_id = 'req-0:0'\")[0])\n"
    );
    let duck = Command::new(common::venv_python()).args(["-c", &query]).output().expect("run python");
    assert!(duck.status.success(), "{}", String::from_utf8_lossy(&duck.stderr));
    let duck = String::from_utf8(duck.stdout).unwrap();
    let lines: Vec<&str> = duck.lines().collect();
    let clicks = logged.iter().filter(|s| s.labels.iter().any(|l| l.r#type == "click")).count();
    assert_eq!(lines[0], format!("({}, {}, {clicks})", logged.len(), expected.len()), "{duck}");
    assert_eq!(lines[1], format!("({}, {}, 'ranking')", f64::from(s0.score), s0.labels.len()), "{duck}");
    assert_eq!(lines[2], "(1,)", "{duck}");

    // The trainer: the same arrays from the Parquet directory as from the dump of the log.
    let dump = common::process::cli().args(["samples", "dump", "--log"]).arg(&log_dir).output().unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump_path = dir.path().join("dump.jsonl");
    std::fs::write(&dump_path, &dump.stdout).unwrap();
    let first = logged.iter().find(|s| s.scene == "ranking").unwrap();
    let inputs: Vec<serde_json::Value> = first
        .inputs
        .iter()
        .map(|t| {
            let int = !t.int64_values.is_empty();
            let width = if int { t.int64_values.len() } else { t.float_values.len() };
            let mut spec =
                serde_json::json!({"name": t.name, "dtype": if int { "int64" } else { "float32" }, "width": width});
            if int {
                spec["vocab"] = serde_json::json!(1i64 << 40);
            }
            spec
        })
        .collect();
    let meta = serde_json::json!({"scene": "ranking", "rows": 0, "output": "ctr", "label": "label", "inputs": inputs});
    std::fs::write(dir.path().join("meta.json"), meta.to_string()).unwrap();
    let script = common::root().join("tools/train/samples.py");
    let convert = |args: &[&str], to: &str| {
        let out = Command::new(common::venv_python())
            .arg(&script)
            .args(args)
            .args(["--meta", dir.path().join("meta.json").to_str().unwrap(), "--out", to, "--holdout", "0.25"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let (from_dump, from_parquet) = (dir.path().join("t-dump"), dir.path().join("t-parquet"));
    convert(&[dump_path.to_str().unwrap()], from_dump.to_str().unwrap());
    convert(&["--parquet", out.to_str().unwrap()], from_parquet.to_str().unwrap());
    let compare = "import sys, json, numpy as np\n\
                   a, b = (np.load(f'{d}/features.npz') for d in sys.argv[1:3])\n\
                   assert sorted(a.files) == sorted(b.files), (a.files, b.files)\n\
                   for k in a.files:\n    assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k\n\
                   ma, mb = (json.load(open(f'{d}/meta.json')) for d in sys.argv[1:3])\n\
                   assert ma['window'] == mb['window'], (ma['window'], mb['window'])\n\
                   print(len(a['label']), int(a['label'].sum()))\n";
    let same =
        Command::new(common::venv_python()).args(["-c", compare]).arg(&from_dump).arg(&from_parquet).output().unwrap();
    assert!(same.status.success(), "{}", String::from_utf8_lossy(&same.stderr));
    let printed = String::from_utf8(same.stdout).unwrap();
    assert!(!printed.starts_with("0 "), "rows were compared: {printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_writing_parts_neither_duplicates_nor_loses_a_row() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let (log_dir, out) = (dir.path().join("log"), dir.path().join("parquet"));
    let config = dir.path().join("augur.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n\
             [samples]\nenabled = true\n[samples.log]\ndir = \"{}\"\nfsync_interval_ms = 50\n\
             [samples.join]\ntick_ms = 20\npositive_wait_s = {{ click = 0, conversion = 0 }}\n{}",
            log_dir.display(),
            sinks(
                &out,
                "row_group_rows = 8\nmax_file_rows = 24\ncommit_interval_s = 1\n[samples.sinks.tail]\nbatch_max = 16\n"
            )
        ),
    )
    .unwrap();
    let augur = Augur::start(&config).await;
    let running = spawn_load(augur.client().await, 0);
    let mut files = 0.0;
    for _ in 0..1200 {
        files = metric(&augur.metrics().await, "augur_samples_parquet_files_total{sink=\"parquet\"}");
        if files >= 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(files >= 4.0, "only {files} parts committed");
    // Killed while the load runs: parts are open, rows staged, the cursor behind them.
    augur.kill();
    let _ = running.await;

    // The restart re-delivers from the cursor; a little more load, then a clean stop.
    let augur = Augur::start(&config).await;
    let running = spawn_load(augur.client().await, 1_000_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.abort();
    augur.signal(libc::SIGTERM);
    let (status, _) = augur.wait_status();
    assert!(status.success(), "{status:?}");

    // The log deletes segments once the sink committed past them: what it still has must be in
    // the files, and the files must hold every sequence it ever wrote (the load writes only
    // samples), each once.
    let config = augur::config::SampleLogConfig { dir: log_dir.clone(), ..Default::default() };
    let (log, _) = augur::sample_log::file::SegmentLog::open(&config, &[], Default::default()).unwrap();
    let last = log.last_sequence();
    let mut sequences: Vec<u64> = Vec::new();
    for b in batches(&out) {
        sequences.extend(b.column_by_name("sequence").unwrap().as_primitive::<UInt64Type>().values().iter());
    }
    let total = sequences.len();
    sequences.sort_unstable();
    sequences.dedup();
    assert_eq!(sequences.len(), total, "a log record written twice");
    assert_eq!(sequences, (1..=last).collect::<Vec<_>>(), "every record of the log, none other");
    assert!(last > 100, "the load wrote {last} records");
    let mut rows = row_ids(&out);
    let total = rows.len();
    rows.sort();
    rows.dedup();
    assert_eq!(rows.len(), total, "no (sample_id, revision) twice");
    let kept: Vec<(String, u32)> =
        samples(&read_log(&log_dir)).into_iter().map(|s| (s.sample_id, s.revision)).collect();
    assert!(kept.iter().all(|k| rows.binary_search(k).is_ok()), "the log's records are in the files");
}

/// Predictions and their impressions, request ids from `from` on, until the server goes away.
fn spawn_load(
    mut client: augur::proto::prediction_client::PredictionClient<tonic::transport::Channel>,
    from: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for k in from.. {
            let mut r = common::ranking_request(&format!("u{}", k % 50), &["i1", "i2", "i3"]);
            r.request_id = format!("crash-{k}");
            if client.predict(r.clone()).await.is_err() {
                return;
            }
            let events =
                r.candidates.iter().map(|c| common::samples::event(&r.request_id, &c.item_id, "impression")).collect();
            if client.report_events(ReportEventsRequest { events }).await.is_err() {
                return;
            }
        }
    })
}
