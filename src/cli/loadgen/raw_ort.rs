//! The ceiling: raw ONNX Runtime on a model with random inputs at a fixed batch shape, one
//! session per thread (the configuration DESIGN.md measured best on 2 cores), no gRPC, no
//! features, no batcher. The sessions share one copy of the large weights as the service's do
//! ([`SharedWeights`]), or each hold their own (`shared_weights = false`); the report carries
//! the process's resident memory, so both can be compared.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::assemble::{Tensor, TensorData};
use crate::model::ModelError;
use crate::model::onnx::{self, SessionOptions};
use crate::model::weights::{SHARE_MIN_BYTES, SharedWeights};

/// What the raw run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RawReport {
    /// Rows per run.
    pub batch: usize,
    /// Threads (one session each).
    pub threads: usize,
    /// Intra-op threads per session.
    pub intra_op_threads: usize,
    /// Whether the sessions shared one copy of the large initializers.
    pub shared_weights: bool,
    /// Resident memory once every session was open (VmRSS, MiB; Linux only, else 0).
    pub rss_open_mib: f64,
    /// Resident memory after the run.
    pub rss_end_mib: f64,
    /// Peak resident memory of the process (VmHWM), loading included.
    pub rss_peak_mib: f64,
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
    shared_weights: bool,
    vocab: i64,
    duration: Duration,
) -> Result<RawReport, ModelError> {
    let shared = if shared_weights { Some(SharedWeights::read(model, options, SHARE_MIN_BYTES)?) } else { None };
    let mut sessions = Vec::with_capacity(threads);
    for _ in 0..threads {
        sessions.push(onnx::open_session_with(model, options, shared.as_ref())?);
    }
    // The sessions hold what they use of it.
    drop(shared);
    let rss_open_mib = memory("VmRSS");
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
            .iter_mut()
            .enumerate()
            .map(|(t, session)| {
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
                    onnx::run(session, output, &tensors)?; // warm-up, not counted
                    let end = Instant::now() + duration;
                    let mut runs = 0;
                    while Instant::now() < end {
                        onnx::run(session, output, &tensors)?;
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
        shared_weights,
        rss_open_mib,
        rss_end_mib: memory("VmRSS"),
        rss_peak_mib: memory("VmHWM"),
        runs,
        items_per_s: (runs * batch as u64) as f64 / duration.as_secs_f64(),
    })
}

/// A `/proc/self/status` memory line (`VmRSS`, `VmHWM`) in MiB; 0 where there is none.
pub fn memory(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
