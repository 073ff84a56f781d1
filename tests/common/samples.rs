//! Helpers of the sample-pipeline tests: a config with samples on, reading a log back as a
//! consumer would (highest revision per sample id), and reading one metric.

use std::collections::BTreeMap;
use std::path::Path;

use augur::config::{Config, SampleLogConfig};
use augur::proto::{LogRecord, Sample, log_record};
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
    let (log, _) = SegmentLog::open(&config, &[], augur::telemetry::Metrics::new().samples).expect("open log");
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
