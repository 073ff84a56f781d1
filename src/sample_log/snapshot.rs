//! What one prediction served, as Predict hands it over (`Served`: no copies of the tensors,
//! they are shared with the batcher by `Arc`), its stored form (`augur.v1.Snapshot`), and the
//! training samples cut from it, one per candidate row.

use std::sync::Arc;

use crate::assemble::{Fallback, Tensor};
use crate::proto::{self, Label, LogRecord, Sample, Snapshot, log_record};

use super::join::Event;

/// A logged prediction, on its way from Predict to the joiner.
#[derive(Debug, Clone)]
pub struct Served {
    /// The request id the caller will report events with.
    pub request_id: String,
    /// Prediction time, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Scene.
    pub scene: String,
    /// Model repository name.
    pub model_name: String,
    /// Model version that scored it.
    pub model_version: String,
    /// User id (may be empty).
    pub user_id: String,
    /// Candidates in request order.
    pub item_ids: Vec<String>,
    /// One score per candidate.
    pub scores: Vec<f32>,
    /// The model inputs, shared with the batcher.
    pub inputs: Arc<[Tensor]>,
    /// Features served from defaults.
    pub fallbacks: Vec<Fallback>,
}

// === impl Served ===

impl Served {
    /// The stored form (the tensors are copied here, on the joiner, not on the request path).
    pub fn to_proto(&self) -> Snapshot {
        let rows = self.item_ids.len();
        Snapshot {
            request_id: self.request_id.clone(),
            timestamp_ms: self.timestamp_ms,
            scene: self.scene.clone(),
            model_name: self.model_name.clone(),
            model_version: self.model_version.clone(),
            user_id: self.user_id.clone(),
            item_ids: self.item_ids.clone(),
            scores: self.scores.clone(),
            inputs: self.inputs.iter().map(|t| proto::Tensor::from_rows(t, 0..rows)).collect(),
            fallbacks: self.fallbacks.iter().cloned().map(proto::Fallback::from).collect(),
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The sample records of every position `item_id` holds in `snapshot`, with `labels`, at
/// `revision` (usually one position; a candidate list may repeat an item).
pub fn samples(snapshot: &Snapshot, item_id: &str, labels: &[Event], revision: u32, emitted_ms: i64) -> Vec<LogRecord> {
    let labels: Vec<Label> =
        labels.iter().map(|e| Label { r#type: e.kind.clone(), timestamp_ms: e.timestamp_ms, value: e.value }).collect();
    snapshot
        .item_ids
        .iter()
        .enumerate()
        .filter(|(_, id)| id.as_str() == item_id)
        .map(|(position, _)| {
            let inputs = snapshot.inputs.iter().map(|t| row_of(t, position)).collect();
            let fallbacks = snapshot
                .fallbacks
                .iter()
                .filter(|f| f.candidates.is_empty() || f.candidates.contains(&(position as u32)))
                .map(|f| proto::Fallback { feature: f.feature.clone(), reason: f.reason, candidates: Vec::new() })
                .collect();
            let sample = Sample {
                sample_id: format!("{}:{position}", snapshot.request_id),
                revision,
                request_id: snapshot.request_id.clone(),
                item_id: item_id.to_owned(),
                position: position as u32,
                timestamp_ms: snapshot.timestamp_ms,
                scene: snapshot.scene.clone(),
                model_name: snapshot.model_name.clone(),
                model_version: snapshot.model_version.clone(),
                user_id: snapshot.user_id.clone(),
                score: snapshot.scores.get(position).copied().unwrap_or(f32::NAN),
                inputs,
                fallbacks,
                labels: labels.clone(),
                emitted_ms,
            };
            LogRecord { record: Some(log_record::Record::Sample(sample)) }
        })
        .collect()
}

/// Row `row` of a stored `[rows, width]` tensor, as `[1, width]`.
fn row_of(t: &proto::Tensor, row: usize) -> proto::Tensor {
    let width = t.shape.get(1).copied().unwrap_or(0).max(0) as usize;
    let cols = row * width..(row + 1) * width;
    let pick = |v: &[i64]| v.get(cols.clone()).map(<[i64]>::to_vec).unwrap_or_default();
    let pick_f = |v: &[f32]| v.get(cols.clone()).map(<[f32]>::to_vec).unwrap_or_default();
    proto::Tensor {
        name: t.name.clone(),
        shape: vec![1, width as i64],
        int64_values: pick(&t.int64_values),
        float_values: pick_f(&t.float_values),
    }
}

/// An orphan record: an event with no held prediction.
pub fn orphan(event: &Event) -> LogRecord {
    LogRecord {
        record: Some(log_record::Record::Orphan(proto::Event {
            request_id: event.request_id.clone(),
            item_id: event.item_id.clone(),
            r#type: event.kind.clone(),
            timestamp_ms: event.timestamp_ms,
            value: event.value,
        })),
    }
}
