//! Warm-up of a freshly loaded version before it takes traffic: rows of spec defaults at 1 row
//! and at a full batch, so ORT's lazy allocations and the threads' first-touch costs are paid
//! by nobody's request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::assemble::encode::RequestView;
use crate::assemble::{Spec, assemble};
use crate::batch::{BatchError, Batcher};
use crate::fetch::Value;

/// How the warm-up went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Warmup {
    /// Model runs.
    pub runs: u32,
    /// Rows scored.
    pub rows: u64,
    /// Wall time.
    pub duration: Duration,
}

/// Why a warm-up failed.
#[derive(Debug, thiserror::Error)]
pub enum WarmupError {
    /// The batcher or the model failed.
    #[error("warm-up failed: {0}")]
    Batch(#[from] BatchError),
    /// The model scored, but not with finite numbers.
    #[error("warm-up produced non-finite scores ({rows} rows)")]
    NonFinite {
        /// Rows of the run that produced them.
        rows: usize,
    },
}

/// Runs the warm-up batches through `batcher`.
pub async fn warm_up(spec: &Spec, batcher: &Batcher) -> Result<Warmup, WarmupError> {
    let started = Instant::now();
    let mut warmup = Warmup::default();
    let context = HashMap::new();
    for rows in [1, batcher.config().max_batch_rows] {
        let candidates: Vec<(String, HashMap<String, Value>)> =
            (0..rows).map(|i| (format!("warmup-{i}"), HashMap::new())).collect();
        let view = RequestView::new("", &context, &candidates);
        let assembled = assemble(spec, view, None, &vec![None; rows]);
        let scores = batcher.infer(assembled.tensors.into(), None).await?;
        if scores.iter().any(|s| !s.is_finite()) {
            return Err(WarmupError::NonFinite { rows });
        }
        warmup.runs += 1;
        warmup.rows += rows as u64;
    }
    warmup.duration = started.elapsed();
    Ok(warmup)
}
