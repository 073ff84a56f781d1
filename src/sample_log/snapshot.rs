//! What one prediction served, as Predict hands it over (`Served`: no copies of the tensors,
//! they are shared with the batcher by `Arc`), its stored form (`augur.v1.Snapshot`), and the
//! training samples cut from it, one per candidate row.

use std::sync::Arc;

use crate::assemble::{Fallback, Tensor, TensorData};
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
    /// The inputs as stored: each without its shared columns, and those columns once.
    fn stored_inputs(&self) -> (Vec<proto::Tensor>, Vec<proto::SharedColumns>) {
        let rows = self.item_ids.len();
        let mut inputs = Vec::with_capacity(self.inputs.len());
        let mut shared = Vec::new();
        for (index, t) in self.inputs.iter().enumerate() {
            let (tensor, columns) = split_shared(t, rows, index as u32);
            inputs.push(tensor);
            shared.extend(columns);
        }
        (inputs, shared)
    }

    /// The stored form (the tensors are copied here, on the joiner, not on the request path).
    /// Columns equal in every row (the user and context part of a CTR request) are stored once.
    pub fn to_proto(&self) -> Snapshot {
        let (inputs, shared) = self.stored_inputs();
        Snapshot {
            request_id: self.request_id.clone(),
            timestamp_ms: self.timestamp_ms,
            scene: self.scene.clone(),
            model_name: self.model_name.clone(),
            model_version: self.model_version.clone(),
            user_id: self.user_id.clone(),
            item_ids: self.item_ids.clone(),
            scores: self.scores.clone(),
            inputs,
            fallbacks: self.fallbacks.iter().cloned().map(proto::Fallback::from).collect(),
            shared,
        }
    }

    /// [`to_proto`](Self::to_proto)`().encode_to_vec()`, the same bytes (test
    /// `encode_is_to_proto_encoded`), without cloning the ids and strings into a message first:
    /// the joiner runs this for every logged prediction, and at rate 1.0 the clones were most
    /// of the sample pipeline's cost (a hundred small allocations per prediction).
    pub fn encode(&self) -> Vec<u8> {
        use prost::encoding::{float, int64, message, string};
        let (inputs, shared) = self.stored_inputs();
        let fallbacks: Vec<proto::Fallback> = self.fallbacks.iter().cloned().map(proto::Fallback::from).collect();
        let strings = [
            (1, &self.request_id),
            (3, &self.scene),
            (4, &self.model_name),
            (5, &self.model_version),
            (6, &self.user_id),
        ];
        // proto3: a field at its default is not written.
        let len =
            strings.iter().filter(|(_, v)| !v.is_empty()).map(|(tag, v)| string::encoded_len(*tag, v)).sum::<usize>()
                + if self.timestamp_ms == 0 { 0 } else { int64::encoded_len(2, &self.timestamp_ms) }
                + string::encoded_len_repeated(7, &self.item_ids)
                + float::encoded_len_packed(8, &self.scores)
                + message::encoded_len_repeated(9, &inputs)
                + message::encoded_len_repeated(10, &fallbacks)
                + message::encoded_len_repeated(11, &shared);
        let mut buf = Vec::with_capacity(len);
        // In field order, as prost writes them.
        for (tag, value) in &strings[..1] {
            if !value.is_empty() {
                string::encode(*tag, value, &mut buf);
            }
        }
        if self.timestamp_ms != 0 {
            int64::encode(2, &self.timestamp_ms, &mut buf);
        }
        for (tag, value) in &strings[1..] {
            if !value.is_empty() {
                string::encode(*tag, value, &mut buf);
            }
        }
        string::encode_repeated(7, &self.item_ids, &mut buf);
        float::encode_packed(8, &self.scores, &mut buf);
        message::encode_repeated(9, &inputs, &mut buf);
        message::encode_repeated(10, &fallbacks, &mut buf);
        message::encode_repeated(11, &shared, &mut buf);
        buf
    }
}

/// `t`'s rows without the columns that are equal in every row, and those columns once.
fn split_shared(t: &Tensor, rows: usize, index: u32) -> (proto::Tensor, Option<proto::SharedColumns>) {
    let width = t.width;
    let whole = || (proto::Tensor::from_rows(t, 0..rows), None);
    if rows < 2 || width == 0 || t.rows() < rows {
        return whole();
    }
    let same = |c: usize| match &t.data {
        TensorData::I64(v) => (1..rows).all(|r| v[r * width + c] == v[c]),
        TensorData::F32(v) => (1..rows).all(|r| v[r * width + c].to_bits() == v[c].to_bits()),
    };
    let columns: Vec<usize> = (0..width).filter(|&c| same(c)).collect();
    if columns.is_empty() {
        return whole();
    }
    let kept: Vec<usize> = (0..width).filter(|c| !columns.contains(c)).collect();
    let mut tensor = proto::Tensor {
        name: t.name.clone(),
        shape: vec![rows as i64, kept.len() as i64],
        int64_values: Vec::new(),
        float_values: Vec::new(),
    };
    let mut shared = proto::SharedColumns {
        input: index,
        columns: columns.iter().map(|&c| c as u32).collect(),
        int64_values: Vec::new(),
        float_values: Vec::new(),
    };
    // Sized up front: a flat_map collect has no exact size hint and would grow by doubling.
    fn gather<T: Copy>(v: &[T], rows: usize, width: usize, kept: &[usize]) -> Vec<T> {
        let mut out = Vec::with_capacity(rows * kept.len());
        for row in v.chunks_exact(width).take(rows) {
            out.extend(kept.iter().map(|&c| row[c]));
        }
        out
    }
    match &t.data {
        TensorData::I64(v) => {
            shared.int64_values = columns.iter().map(|&c| v[c]).collect();
            tensor.int64_values = gather(v, rows, width, &kept);
        }
        TensorData::F32(v) => {
            shared.float_values = columns.iter().map(|&c| v[c]).collect();
            tensor.float_values = gather(v, rows, width, &kept);
        }
    }
    (tensor, Some(shared))
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
            let inputs = snapshot
                .inputs
                .iter()
                .enumerate()
                .map(|(i, t)| row_of(t, position, snapshot.shared.iter().find(|s| s.input as usize == i)))
                .collect();
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

/// Row `row` of a stored `[rows, width]` tensor with its `shared` columns put back, as
/// `[1, full width]`.
fn row_of(t: &proto::Tensor, row: usize, shared: Option<&proto::SharedColumns>) -> proto::Tensor {
    let width = t.shape.get(1).copied().unwrap_or(0).max(0) as usize;
    // The shape is stored data: a damaged width must not overflow the row's range (it selects
    // nothing, like any range past the values).
    let cols = row.checked_mul(width).and_then(|start| Some(start..start.checked_add(width)?));
    let pick = |v: &[i64]| cols.clone().and_then(|c| v.get(c)).map(<[i64]>::to_vec).unwrap_or_default();
    let pick_f = |v: &[f32]| cols.clone().and_then(|c| v.get(c)).map(<[f32]>::to_vec).unwrap_or_default();
    let (mut int64_values, mut float_values) = (pick(&t.int64_values), pick_f(&t.float_values));
    let mut full = width;
    if let Some(s) = shared {
        full += s.columns.len();
        // Ascending columns: inserting in order puts each at its final index.
        for (k, &c) in s.columns.iter().enumerate() {
            let c = c as usize;
            if let Some(&v) = s.int64_values.get(k) {
                int64_values.insert(c.min(int64_values.len()), v);
            }
            if let Some(&v) = s.float_values.get(k) {
                float_values.insert(c.min(float_values.len()), v);
            }
        }
    }
    proto::Tensor {
        name: t.name.clone(),
        shape: vec![1, i64::try_from(full).unwrap_or(i64::MAX)],
        int64_values,
        float_values,
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
