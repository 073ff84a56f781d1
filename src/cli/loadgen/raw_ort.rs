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
use crate::telemetry;

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
    /// CPU seconds (user + system) the whole process spent in the timed window, all threads
    /// (ORT's included): the denominator of [`Self::items_per_cpu_s`]. `None` off Linux.
    pub cpu_s: Option<f64>,
    /// Rows scored per CPU-second: what a core buys, whatever else runs on the machine.
    pub items_per_cpu_s: Option<f64>,
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
    // Every thread warms up, then they start the clock together; the CPU reading brackets
    // exactly the timed runs (opening sessions and warm-up stay out of it).
    let start = std::sync::Barrier::new(threads);
    let cpu_start = std::sync::OnceLock::new();
    let results: Vec<Result<u64, ModelError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .enumerate()
            .map(|(t, session)| {
                let (inputs, output, start, cpu_start) = (&inputs, &output, &start, &cpu_start);
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
                    let warm_up = onnx::run(session, output, &tensors); // not counted
                    // Past the barrier even on error: the other threads wait there for this one.
                    if start.wait().is_leader() {
                        let _ = cpu_start.set(telemetry::process_cpu_seconds());
                    }
                    warm_up?;
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
    // Joined threads' CPU stays counted in the process's utime/stime.
    let cpu_end = telemetry::process_cpu_seconds();
    let runs: u64 = results.into_iter().collect::<Result<Vec<_>, _>>()?.into_iter().sum();
    let items = (runs * batch as u64) as f64;
    let cpu_s = match (cpu_start.into_inner().flatten(), cpu_end) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(RawReport {
        batch,
        threads,
        intra_op_threads: options.intra_op_threads,
        shared_weights,
        rss_open_mib,
        rss_end_mib: memory("VmRSS"),
        rss_peak_mib: memory("VmHWM"),
        runs,
        items_per_s: items / duration.as_secs_f64(),
        cpu_s,
        items_per_cpu_s: cpu_s.filter(|&c| c > 0.0).map(|c| items / c),
    })
}

/// A `/proc/self/status` memory line (`VmRSS`, `VmHWM`) in MiB; 0 where there is none.
fn memory(key: &str) -> f64 {
    telemetry::process_status_kib(key).map_or(0.0, |kib| kib as f64 / 1024.0)
}
