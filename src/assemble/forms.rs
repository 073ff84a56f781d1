//! The two forms of a request's tensors under a spec with request-level inputs.
//!
//! The model form is what [`super::assemble`] builds and the batcher feeds the model: per-row
//! inputs `[N, w]`, request-level inputs `[1, w]` (one row per request) and the row → request
//! index `[N]`. The stored form is what snapshots, samples, `augur features export` and
//! GetFeatures hold: every candidate's full row, each request-level column expanded into the
//! per-row input it is `part_of`, at its declaration-order place, so the training data of a split
//! spec is byte for byte that of the flat spec with the same features. For a spec without
//! request-level inputs both forms are the model inputs and nothing is converted.

use super::encode::Assembled;
use super::spec::{DType, Level, Spec};
use super::tensor::{RowKind, Tensor, TensorData};

// === impl Spec ===

impl Spec {
    /// Whether some input is request-level (the model takes a request index).
    pub fn has_request_level(&self) -> bool {
        self.request_index.is_some()
    }

    /// What the rows of each model-form tensor are: one per input in spec order, then the
    /// request index when there is one.
    pub fn row_kinds(&self) -> Vec<RowKind> {
        let mut kinds: Vec<RowKind> = self
            .inputs
            .iter()
            .map(|i| match i.level {
                Level::Row => RowKind::Candidate,
                Level::Request => RowKind::Request,
            })
            .collect();
        if self.request_index.is_some() {
            kinds.push(RowKind::RequestIndex);
        }
        kinds
    }

    /// Where each feature's columns are in the stored form: (stored input, first column), in
    /// feature order. For a spec without request-level inputs, the feature's own input and offset.
    pub fn stored_places(&self) -> Vec<(usize, usize)> {
        self.features
            .iter()
            .map(|f| {
                let home = &self.inputs[self.inputs[f.input].part_of.unwrap_or(f.input)].name;
                let stored = self.stored.iter().position(|s| &s.name == home).expect("every home input is stored");
                let offset = self.stored[stored]
                    .columns
                    .iter()
                    .position(|&c| c == (f.input, f.offset))
                    .expect("every feature column is stored");
                (stored, offset)
            })
            .collect()
    }

    /// The stored form of model-form `tensors` holding `rows` candidates (a copy; the caller
    /// skips it when [`has_request_level`](Self::has_request_level) is false).
    pub fn stored_form(&self, tensors: &[Tensor], rows: usize) -> Vec<Tensor> {
        let index: Option<&[i64]> = match tensors.get(self.inputs.len()).map(|t| &t.data) {
            Some(TensorData::I64(v)) if self.has_request_level() => Some(v),
            _ => None,
        };
        // The row of model input `input` that candidate `r` reads.
        let source_row = |input: usize, r: usize| match self.inputs[input].level {
            Level::Row => r,
            Level::Request => index.map_or(0, |v| v[r] as usize),
        };
        self.stored
            .iter()
            .map(|stored| {
                let width = stored.columns.len();
                let data = match stored.dtype {
                    DType::Int64 => {
                        let mut out = Vec::with_capacity(rows * width);
                        for r in 0..rows {
                            out.extend(stored.columns.iter().map(|&(i, c)| match &tensors[i].data {
                                TensorData::I64(v) => v[source_row(i, r) * tensors[i].width + c],
                                TensorData::F32(_) => unreachable!("stored inputs keep their dtype"),
                            }));
                        }
                        TensorData::I64(out)
                    }
                    DType::Float32 => {
                        let mut out = Vec::with_capacity(rows * width);
                        for r in 0..rows {
                            out.extend(stored.columns.iter().map(|&(i, c)| match &tensors[i].data {
                                TensorData::F32(v) => v[source_row(i, r) * tensors[i].width + c],
                                TensorData::I64(_) => unreachable!("stored inputs keep their dtype"),
                            }));
                        }
                        TensorData::F32(out)
                    }
                };
                Tensor { name: stored.name.clone(), width, data }
            })
            .collect()
    }

    /// The model form of stored-form `stored` holding `rows` rows, each row its own request
    /// (rows from logged samples of different requests: the request index is `0..rows`).
    pub fn model_form(&self, stored: &[Tensor], rows: usize) -> Vec<Tensor> {
        let mut tensors: Vec<Tensor> = self
            .inputs
            .iter()
            .map(|i| Tensor {
                name: i.name.clone(),
                width: i.width,
                data: match i.dtype {
                    DType::Int64 => TensorData::I64(vec![0; rows * i.width]),
                    DType::Float32 => TensorData::F32(vec![0.0; rows * i.width]),
                },
            })
            .collect();
        for (layout, tensor) in self.stored.iter().zip(stored) {
            let width = layout.columns.len();
            for (j, &(i, c)) in layout.columns.iter().enumerate() {
                let w = tensors[i].width;
                match (&mut tensors[i].data, &tensor.data) {
                    (TensorData::I64(out), TensorData::I64(v)) => {
                        (0..rows).for_each(|r| out[r * w + c] = v[r * width + j]);
                    }
                    (TensorData::F32(out), TensorData::F32(v)) => {
                        (0..rows).for_each(|r| out[r * w + c] = v[r * width + j]);
                    }
                    _ => unreachable!("stored inputs keep their dtype"),
                }
            }
        }
        if let Some(name) = &self.request_index {
            tensors.push(Tensor { name: name.clone(), width: 1, data: TensorData::I64((0..rows as i64).collect()) });
        }
        tensors
    }
}

// === impl Assembled ===

impl Assembled {
    /// This request in the stored form (unchanged for a spec without request-level inputs).
    pub fn into_stored(self, spec: &Spec) -> Assembled {
        if !spec.has_request_level() {
            return self;
        }
        Assembled { tensors: spec.stored_form(&self.tensors, self.rows), ..self }
    }
}
