//! The tensors assembly hands on: one per model input, row-major, typed by the input's dtype.
//!
//! [`super::assemble`] produces them, the batcher splits and merges them by rows, and the model
//! feeds them to ONNX Runtime. Plain vectors, so nothing between the spec and the runtime depends
//! on the runtime's own tensor type.

/// A model input, row-major `[rows, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// ONNX input name.
    pub name: String,
    /// Columns per row.
    pub width: usize,
    /// The values.
    pub data: TensorData,
}

/// Tensor storage by element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Ids.
    I64(Vec<i64>),
    /// Dense values.
    F32(Vec<f32>),
}

// === impl Tensor ===

impl Tensor {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        let len = match &self.data {
            TensorData::I64(v) => v.len(),
            TensorData::F32(v) => v.len(),
        };
        len / self.width.max(1)
    }
}

/// What a model tensor's rows are, so the batcher can merge requests and ORT can shape them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// One row per candidate: `[N, width]`; merged by concatenating row ranges.
    Candidate,
    /// One row per request: `[R, width]`; a merged run holds one row per request in it (a
    /// chunk of a split request carries its request's row).
    Request,
    /// The row → request index, int64 `[N]` (rank 1): for each candidate row, its request's row
    /// in the request-level tensors.
    RequestIndex,
}
