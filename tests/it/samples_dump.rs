//! From the sample log to the trainer's arrays, through the real tools: `augur samples dump`
//! prints a log's records as JSON lines, and `tools/train/samples.py` turns them into the
//! `features export` layout that `train.py` loads.

use std::io::Write;
use std::process::{Command, Stdio};

use augur::config::SampleLogConfig;
use augur::proto::{Event, Label, LogRecord, Sample, Tensor, log_record};
use augur::sample_log::file::SegmentLog;
use augur::sample_log::metrics::SampleMetrics;
use augur::sample_log::record::encode;

use crate::common;

fn sample(position: u32, revision: u32, labels: &[&str]) -> Vec<u8> {
    encode(&LogRecord {
        record: Some(log_record::Record::Sample(Sample {
            sample_id: format!("req-1:{position}"),
            revision,
            request_id: "req-1".into(),
            item_id: format!("item-{position}"),
            position,
            timestamp_ms: 1_000 + i64::from(position),
            scene: "ranking".into(),
            inputs: vec![
                Tensor {
                    name: "ids".into(),
                    shape: vec![1, 2],
                    int64_values: vec![1, i64::from(position)],
                    ..Default::default()
                },
                Tensor {
                    name: "dense".into(),
                    shape: vec![1, 1],
                    float_values: vec![0.1 * position as f32],
                    ..Default::default()
                },
            ],
            labels: labels.iter().map(|t| Label { r#type: (*t).into(), timestamp_ms: 2_000, value: None }).collect(),
            ..Default::default()
        })),
    })
}

#[test]
fn dumped_samples_become_trainer_arrays() {
    common::require!(Python);
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let config = SampleLogConfig { dir: log_dir.clone(), ..SampleLogConfig::default() };
    let (log, _) = SegmentLog::open(&config, &[], SampleMetrics::default()).unwrap();
    let orphan = encode(&LogRecord {
        record: Some(log_record::Record::Orphan(Event {
            request_id: "unknown".into(),
            item_id: "x".into(),
            r#type: "click".into(),
            ..Default::default()
        })),
    });
    log.append(&[
        sample(0, 0, &["impression"]),
        sample(1, 0, &["impression"]),
        orphan,
        // A click after emission: the correction carries every label so far.
        sample(1, 1, &["impression", "click"]),
    ])
    .unwrap();
    log.sync().unwrap();

    let dump = common::process::cli()
        .args(["samples", "dump", "--log"])
        .arg(&log_dir)
        .output()
        .expect("run augur samples dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let stdout = String::from_utf8(dump.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let first: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["sample_id"], "req-1:0");
    assert!(String::from_utf8_lossy(&dump.stderr).contains("4 records (last sequence 4)"));

    let meta = serde_json::json!({
        "scene": "ranking", "rows": 0, "output": "ctr", "label": "label",
        "inputs": [{"name": "ids", "dtype": "int64", "width": 2, "vocab": 16},
                   {"name": "dense", "dtype": "float32", "width": 1}],
    });
    std::fs::write(dir.path().join("meta.json"), meta.to_string()).unwrap();
    let out = dir.path().join("train");
    let mut convert = Command::new(common::venv_python())
        .arg(common::root().join("tools/train/samples.py"))
        .args(["--meta", dir.path().join("meta.json").to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run samples.py");
    convert.stdin.take().unwrap().write_all(stdout.as_bytes()).unwrap();
    let converted = convert.wait_with_output().unwrap();
    assert!(converted.status.success(), "{}", String::from_utf8_lossy(&converted.stderr));

    // The trainer's own loader reads it: one row per sample, the correction's click counted.
    let check = "import sys; sys.path.insert(0, sys.argv[1]); from train import load_export; \
                 d = load_export(sys.argv[2]); print(d['rows'], d['label'].tolist(), d['arrays']['ids'].tolist())";
    let loaded = Command::new(common::venv_python())
        .args(["-c", check])
        .arg(common::root().join("tools/train"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    assert_eq!(String::from_utf8(loaded.stdout).unwrap().trim(), "2 [0.0, 1.0] [[1, 0], [1, 1]]");
}
