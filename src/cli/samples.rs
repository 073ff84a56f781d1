//! `augur samples dump`: training samples back out of where the sample log put them, as JSON
//! lines (one record per line), for eyes, `jq` and `tools/train/samples.py`, which turns them into
//! the trainer's arrays.
//!
//! Sources are variants of [`Source`]: the segment-log directory today (read in place, never
//! modified, safe beside a running server); a Kafka topic or a Redis stream yield the same
//! [`Record`]s and go through the same [`record_json`].

use std::io::{self, Write};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::proto::{Event, FallbackReason, Sample, Tensor, log_record};
use crate::sample_log::file::{LogError, LogReader};
use crate::sample_log::record::{DecodeError, Record};

/// Where the records are read from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A sample-log directory (`samples.log.dir`).
    File(PathBuf),
    /// A Kafka topic, every partition from the beginning to the end seen at start.
    Kafka {
        /// `bootstrap.servers`.
        brokers: String,
        /// The topic.
        topic: String,
    },
    /// A Redis stream, oldest entry first.
    RedisStream {
        /// `redis://` URL.
        url: String,
        /// Stream key.
        stream: String,
    },
}

/// Which records.
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpOptions {
    /// Only records with a sequence above this.
    pub after: u64,
    /// At most this many records (`None`: all).
    pub limit: Option<u64>,
}

/// What a dump wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpSummary {
    /// Records written.
    pub records: u64,
    /// Sequence of the last one (0: none); `--after` it to continue.
    pub last_sequence: u64,
    /// Corrupt records the source skipped.
    pub corrupt: u64,
}

/// Why a dump stopped.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A record is not a `LogRecord`.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A topic or stream could not be read.
    #[error("reading samples: {0}")]
    Source(String),
    /// Writing the output failed (a closed pipe, say).
    #[error("writing the dump: {0}")]
    Write(#[source] io::Error),
}

/// Writes the records of `source` picked by `options` to `out`, one JSON object per line. A
/// topic or stream is read whole (in memory) and delivered as stored, duplicates included
/// (consumers dedup by `id`).
pub async fn dump(source: &Source, options: DumpOptions, out: &mut impl Write) -> Result<DumpSummary, DumpError> {
    let mut summary = DumpSummary::default();
    let remote = match source {
        Source::File(_) => None,
        Source::Kafka { brokers, topic } => Some(
            crate::sample_log::kafka::read_topic(brokers, topic, std::time::Duration::from_secs(5))
                .await
                .map_err(|e| DumpError::Source(e.to_string()))?,
        ),
        Source::RedisStream { url, stream } => Some(
            crate::sample_log::redis_stream::read_stream(url, stream)
                .await
                .map_err(|e| DumpError::Source(e.to_string()))?,
        ),
    };
    if let Some(records) = remote {
        let picked = records.iter().filter(|r| r.sequence > options.after);
        for record in picked.take(options.limit.map_or(usize::MAX, |l| l as usize)) {
            write_record(record, out, &mut summary)?;
        }
        out.flush().map_err(DumpError::Write)?;
        return Ok(summary);
    }
    match source {
        Source::Kafka { .. } | Source::RedisStream { .. } => {}
        Source::File(dir) => {
            let mut reader = LogReader::open(dir, options.after)?;
            for record in reader.by_ref() {
                if options.limit.is_some_and(|l| summary.records >= l) {
                    break;
                }
                write_record(&record?, out, &mut summary)?;
            }
            summary.corrupt = reader.corrupt();
        }
    }
    out.flush().map_err(DumpError::Write)?;
    Ok(summary)
}

/// Writes one record as a JSON line and counts it: every source's records go through here.
pub fn write_record(record: &Record, out: &mut impl Write, summary: &mut DumpSummary) -> Result<(), DumpError> {
    let line = record_json(record)?;
    serde_json::to_writer(&mut *out, &line).map_err(|e| DumpError::Write(e.into()))?;
    out.write_all(b"\n").map_err(DumpError::Write)?;
    summary.records += 1;
    summary.last_sequence = record.sequence;
    Ok(())
}

/// One record as JSON: `sequence`, `id` (the dedup id), `kind` (`sample` | `orphan`), then the
/// record's fields; inputs as `{name, dtype, shape, values}`.
pub fn record_json(record: &Record) -> Result<Value, DecodeError> {
    let mut line = match record.decode()?.record {
        Some(log_record::Record::Sample(sample)) => sample_json(&sample),
        Some(log_record::Record::Orphan(event)) => orphan_json(&event),
        None => json!({"kind": "empty"}),
    };
    line["sequence"] = record.sequence.into();
    line["id"] = record.id.clone().into();
    Ok(line)
}

fn sample_json(s: &Sample) -> Value {
    json!({
        "kind": "sample",
        "sample_id": s.sample_id,
        "revision": s.revision,
        "request_id": s.request_id,
        "item_id": s.item_id,
        "position": s.position,
        "timestamp_ms": s.timestamp_ms,
        "scene": s.scene,
        "model_name": s.model_name,
        "model_version": s.model_version,
        "user_id": s.user_id,
        "score": s.score,
        "emitted_ms": s.emitted_ms,
        "inputs": s.inputs.iter().map(tensor_json).collect::<Vec<_>>(),
        "fallbacks": s.fallbacks.iter().map(|f| json!({
            "feature": f.feature,
            "reason": FallbackReason::try_from(f.reason).map_or("UNKNOWN", |r| r.as_str_name()),
            "candidates": f.candidates,
        })).collect::<Vec<_>>(),
        "labels": s.labels.iter().map(|l| json!({
            "type": l.r#type, "timestamp_ms": l.timestamp_ms, "value": l.value,
        })).collect::<Vec<_>>(),
    })
}

fn orphan_json(e: &Event) -> Value {
    json!({
        "kind": "orphan",
        "request_id": e.request_id,
        "item_id": e.item_id,
        "type": e.r#type,
        "timestamp_ms": e.timestamp_ms,
        "value": e.value,
    })
}

/// A tensor carries int64 or float values; which one says its dtype.
fn tensor_json(t: &Tensor) -> Value {
    let (dtype, values) = if t.float_values.is_empty() && !t.int64_values.is_empty() {
        ("int64", json!(t.int64_values))
    } else if t.int64_values.is_empty() && !t.float_values.is_empty() {
        ("float32", json!(t.float_values))
    } else if t.int64_values.is_empty() {
        ("float32", json!([]))
    } else {
        ("mixed", json!({"int64": t.int64_values, "float32": t.float_values}))
    };
    json!({"name": t.name, "dtype": dtype, "shape": t.shape, "values": values})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SampleLogConfig;
    use crate::proto::{Fallback, Label, LogRecord};
    use crate::sample_log::file::SegmentLog;
    use crate::sample_log::metrics::SampleMetrics;
    use crate::sample_log::record::encode;

    fn sample(i: u32, labels: &[&str]) -> LogRecord {
        LogRecord {
            record: Some(log_record::Record::Sample(Sample {
                sample_id: format!("req:{i}"),
                revision: 1,
                request_id: "req".into(),
                item_id: format!("item-{i}"),
                position: i,
                scene: "ranking".into(),
                score: 0.25,
                inputs: vec![
                    Tensor {
                        name: "ids".into(),
                        shape: vec![1, 2],
                        int64_values: vec![3, i64::from(i)],
                        float_values: vec![],
                    },
                    Tensor { name: "dense".into(), shape: vec![1, 1], int64_values: vec![], float_values: vec![0.5] },
                ],
                fallbacks: vec![Fallback {
                    feature: "age".into(),
                    reason: FallbackReason::MissingRow as i32,
                    candidates: vec![],
                }],
                labels: labels.iter().map(|t| Label { r#type: (*t).into(), timestamp_ms: 7, value: None }).collect(),
                ..Default::default()
            })),
        }
    }

    #[tokio::test]
    async fn dumps_samples_and_orphans_as_json_lines_from_a_log_directory() {
        let dir = tempfile::tempdir().unwrap();
        let config = SampleLogConfig { dir: dir.path().to_owned(), ..SampleLogConfig::default() };
        let (log, _) = SegmentLog::open(&config, &[], SampleMetrics::default()).unwrap();
        let orphan = LogRecord {
            record: Some(log_record::Record::Orphan(Event {
                request_id: "gone".into(),
                item_id: "x".into(),
                r#type: "click".into(),
                timestamp_ms: 9,
                value: Some(2.5),
            })),
        };
        log.append(&[encode(&sample(0, &["impression", "click"])), encode(&orphan), encode(&sample(1, &[]))]).unwrap();

        let mut out = Vec::new();
        let summary = dump(&Source::File(dir.path().to_owned()), DumpOptions::default(), &mut out).await.unwrap();
        assert_eq!(summary, DumpSummary { records: 3, last_sequence: 3, corrupt: 0 });
        let lines: Vec<Value> =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        let first = &lines[0];
        assert_eq!((first["sequence"].as_u64(), first["kind"].as_str()), (Some(1), Some("sample")));
        assert_eq!(first["id"], "req:0#1");
        assert_eq!(first["inputs"][0], json!({"name": "ids", "dtype": "int64", "shape": [1, 2], "values": [3, 0]}));
        assert_eq!(first["inputs"][1], json!({"name": "dense", "dtype": "float32", "shape": [1, 1], "values": [0.5]}));
        assert_eq!(first["labels"][1]["type"], "click");
        assert_eq!(first["fallbacks"][0]["reason"], "FALLBACK_REASON_MISSING_ROW");
        assert_eq!(lines[1]["kind"], "orphan");
        assert_eq!(lines[1]["value"], 2.5);
        assert_eq!(lines[2]["labels"], json!([]));

        // --after and --limit pick a window.
        let mut out = Vec::new();
        let options = DumpOptions { after: 1, limit: Some(1) };
        let summary = dump(&Source::File(dir.path().to_owned()), options, &mut out).await.unwrap();
        assert_eq!((summary.records, summary.last_sequence), (1, 2));
        assert!(String::from_utf8(out).unwrap().contains("\"orphan\""));
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            dump(&Source::File(dir.path().join("nope")), DumpOptions::default(), &mut Vec::new()).await.unwrap_err();
        assert!(matches!(err, DumpError::Log(LogError::Io { .. })), "{err}");
    }
}
