//! Helpers of the sample-pipeline tests: a config with samples on, reading a log back as a
//! consumer would (highest revision per sample id), and reading one metric.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use augur::config::{Config, SampleLogConfig};
use augur::proto::{GetFeaturesRequest, GetFeaturesResponse, LogRecord, PredictRequest, Sample, log_record};
use augur::sample_log::file::SegmentLog;
use prost::Message;

/// The demo config with samples on: log in `dir`, a 1 s positive wait for clicks, 50 ms ticks,
/// plus `extra` TOML (which may set more `[samples]` keys, not repeat these).
pub fn samples_config(dir: &Path, extra: &str) -> Config {
    let toml = format!(
        "[samples]\nenabled = true\n[samples.log]\ndir = \"{}\"\nfsync_interval_ms = 50\n[samples.join]\ntick_ms = 50\npositive_wait_s = {{ click = 1 }}\n{extra}",
        dir.display()
    );
    super::demo_config(&toml)
}

/// Every record of the log in `dir`, in order (opens it as a restart would).
pub fn read_log(dir: &Path) -> Vec<LogRecord> {
    let config = SampleLogConfig { dir: dir.to_owned(), ..SampleLogConfig::default() };
    let (log, _) = SegmentLog::open(
        &config,
        &[],
        augur::telemetry::Metrics::new().of::<augur::sample_log::metrics::SampleMetrics>(),
    )
    .expect("open log");
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let batch = log.read_after(after, 1000).expect("read log");
        let Some(last) = batch.last() else { break };
        after = last.sequence;
        out.extend(batch.iter().map(|r| LogRecord::decode(r.payload.clone()).expect("decodes")));
    }
    out
}

/// What a consumer keeps: the highest revision of each sample id.
pub fn latest_samples(records: &[LogRecord]) -> BTreeMap<String, Sample> {
    let mut out: BTreeMap<String, Sample> = BTreeMap::new();
    for r in records {
        if let Some(log_record::Record::Sample(s)) = &r.record
            && out.get(&s.sample_id).is_none_or(|old| old.revision < s.revision)
        {
            out.insert(s.sample_id.clone(), s.clone());
        }
    }
    out
}

/// The value of the exposition line starting with `series` (full name and labels), 0 if absent.
pub fn metric(exposition: &str, series: &str) -> f64 {
    exposition.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// Polls `metrics` until `series` reaches `at_least` (generous bound: a busy machine is slow,
/// never wrong); returns the last value.
pub async fn wait_for(metrics: &augur::telemetry::Metrics, series: &str, at_least: f64) -> f64 {
    let mut value = 0.0;
    for _ in 0..600 {
        value = metric(&metrics.render(), series);
        if value >= at_least {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{series} stayed at {value}, expected {at_least}");
}

// === the workload of the end-to-end tests ===

/// The series counting emitted samples.
pub const EMITTED: &str = "augur_samples_emitted_total{kind=\"sample\"}";

/// Request `k`: user `u{k}`, five items of its own, request id `req-{k}`.
pub fn request(k: usize) -> PredictRequest {
    let items: Vec<String> = (0..5).map(|i| format!("i{}", k * 5 + i)).collect();
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    let mut r = super::ranking_request(&format!("u{k}"), &items);
    r.request_id = format!("req-{k}");
    r
}

pub fn event(request_id: &str, item_id: &str, kind: &str) -> augur::proto::Event {
    augur::proto::Event {
        request_id: request_id.into(),
        item_id: item_id.into(),
        r#type: kind.into(),
        timestamp_ms: 0,
        value: None,
    }
}

/// Impressions of positions 0..3 of every even request, a click on position 1 of each.
pub fn events(n: usize) -> (Vec<augur::proto::Event>, BTreeMap<String, bool>) {
    let mut events = Vec::new();
    let mut expected = BTreeMap::new();
    for k in (0..n).step_by(2) {
        let r = request(k);
        for (position, c) in r.candidates.iter().take(3).enumerate() {
            events.push(event(&r.request_id, &c.item_id, "impression"));
            expected.insert(format!("{}:{position}", r.request_id), position == 1);
        }
        events.push(event(&r.request_id, &r.candidates[1].item_id, "click"));
    }
    (events, expected)
}

pub fn features_request(r: &PredictRequest) -> GetFeaturesRequest {
    GetFeaturesRequest {
        scene: r.scene.clone(),
        user_id: r.user_id.clone(),
        context: r.context.clone(),
        candidates: r.candidates.clone(),
    }
}

/// Every expected sample is there, no other, labelled right, with GetFeatures' row.
pub fn check_samples(
    samples: &BTreeMap<String, augur::proto::Sample>,
    expected: &BTreeMap<String, bool>,
    features: &BTreeMap<String, GetFeaturesResponse>,
) {
    let got: BTreeSet<&String> = samples.keys().collect();
    let want: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(got, want, "exactly the impressed candidates");
    for (id, sample) in samples {
        let clicked = sample.labels.iter().any(|l| l.r#type == "click");
        assert_eq!(clicked, expected[id], "{id}: click label");
        assert!(sample.labels.iter().any(|l| l.r#type == "impression"), "{id}");
        let f = &features[&sample.request_id];
        let row = sample.position as usize;
        assert_eq!(sample.inputs.len(), f.inputs.len(), "{id}");
        for (got, full) in sample.inputs.iter().zip(&f.inputs) {
            let width = full.shape[1] as usize;
            assert_eq!(got.name, full.name);
            assert_eq!(got.shape, vec![1, width as i64]);
            let cols = row * width..(row + 1) * width;
            if full.int64_values.is_empty() {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got.float_values), bits(&full.float_values[cols]), "{id} {}", got.name);
            } else {
                assert_eq!(got.int64_values, full.int64_values[cols], "{id} {}", got.name);
            }
        }
        assert_eq!(sample.model_name, "ranking");
        assert_eq!(sample.scene, "ranking");
    }
}
