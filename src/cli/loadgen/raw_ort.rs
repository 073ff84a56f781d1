//! The ceiling: raw ONNX Runtime on a model with random inputs at a fixed batch shape, one
//! session per thread (the configuration DESIGN.md measured best on 2 cores), no gRPC, no
//! features, no batcher.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::assemble::{Tensor, TensorData};
use crate::model::ModelError;
use crate::model::onnx::{self, SessionOptions};

/// What the raw run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RawReport {
    /// Rows per run.
    pub batch: usize,
    /// Threads (one session each).
    pub threads: usize,
    /// Intra-op threads per session.
    pub intra_op_threads: usize,
    /// Model runs.
    pub runs: u64,
    /// Rows scored per second.
    pub items_per_s: f64,
}

/// Scores random batches of `batch` rows on `threads` sessions for `duration`.
pub fn run(
    model: &Path,
    batch: usize,
    threads: usize,
    options: &SessionOptions,
    vocab: i64,
    duration: Duration,
) -> Result<RawReport, ModelError> {
    let mut sessions = Vec::with_capacity(threads);
    for _ in 0..threads {
        sessions.push(onnx::open_session(model, options)?);
    }
    let inputs: Vec<(String, bool, usize)> = sessions[0]
        .inputs()
        .iter()
        .map(|i| {
            let is_int = i.dtype().tensor_type() == Some(ort::value::TensorElementType::Int64);
            let width = i.dtype().tensor_shape().and_then(|s| s.get(1).copied()).unwrap_or(1).max(1) as usize;
            (i.name().to_owned(), is_int, width)
        })
        .collect();
    let output = sessions[0].outputs()[0].name().to_owned();
    let results: Vec<Result<u64, ModelError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .into_iter()
            .enumerate()
            .map(|(t, mut session)| {
                let (inputs, output) = (&inputs, &output);
                scope.spawn(move || {
                    let mut rng = ChaCha8Rng::seed_from_u64(t as u64);
                    let tensors: Vec<Tensor> = inputs
                        .iter()
                        .map(|(name, is_int, width)| Tensor {
                            name: name.clone(),
                            width: *width,
                            data: if *is_int {
                                TensorData::I64((0..batch * width).map(|_| rng.random_range(0..vocab)).collect())
                            } else {
                                TensorData::F32((0..batch * width).map(|_| rng.random_range(-1.0..1.0)).collect())
                            },
                        })
                        .collect();
                    onnx::run(&mut session, output, &tensors)?; // warm-up, not counted
                    let end = Instant::now() + duration;
                    let mut runs = 0;
                    while Instant::now() < end {
                        onnx::run(&mut session, output, &tensors)?;
                        runs += 1;
                    }
                    Ok(runs)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread panicked")).collect()
    });
    let runs: u64 = results.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter().sum();
    Ok(RawReport {
        batch,
        threads,
        intra_op_threads: options.intra_op_threads,
        runs,
        items_per_s: (runs * batch as u64) as f64 / duration.as_secs_f64(),
    })
}
