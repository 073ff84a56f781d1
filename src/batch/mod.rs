//! Step 4 of the path: the dynamic batcher in front of the inference threads.
//!
//! Rows from concurrent requests for the same model version are merged into one model run of up
//! to `max_batch_rows`, waiting at most `max_queue_delay` for company; a request with more rows is
//! split into chunks that run in parallel on the inference threads and are reassembled in order.
//! The queue is bounded: when full, callers get [`BatchError::QueueFull`] (RESOURCE_EXHAUSTED) at
//! once. A chunk whose deadline passed while queued is answered [`BatchError::Expired`] without
//! spending compute. Shape: tower's Buffer (a cloneable front, a bounded channel) + vector's
//! Batcher (collect until size or time), with the workers as OS threads because ORT blocks.

mod worker;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::assemble::{Tensor, TensorData};
use crate::model::onnx::ModelError;

/// Runs one merged batch: one f32 per row. ORT sessions implement it; tests use fakes.
pub trait Runner: Send + 'static {
    /// Scores `tensors` (all with the same number of rows).
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError>;
}

/// Why rows were not scored.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The queue holds `capacity` chunks already.
    #[error("inference queue is full ({capacity} batches waiting; model.queue_capacity)")]
    QueueFull {
        /// The configured bound.
        capacity: usize,
    },
    /// The request's deadline passed before inference started.
    #[error("deadline expired before inference")]
    Expired,
    /// The batcher is shutting down.
    #[error("inference threads are shutting down")]
    Closed,
    /// The model failed on the batch this request was part of.
    #[error("inference failed: {0}")]
    Model(String),
}

impl From<ModelError> for BatchError {
    fn from(e: ModelError) -> Self {
        BatchError::Model(e.to_string())
    }
}

/// Batching parameters of one model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Rows per model run (merged requests or one chunk of a large one).
    pub max_batch_rows: usize,
    /// How long the first queued chunk waits for others to join it.
    pub max_queue_delay: Duration,
    /// Chunks waiting for a thread; beyond it, fail fast.
    pub queue_capacity: usize,
}

/// Counters of one batcher (read by the admin API and, later, metrics).
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Model runs.
    pub batches: AtomicU64,
    /// Rows scored.
    pub rows: AtomicU64,
    /// Chunks dropped because their deadline passed in the queue.
    pub expired: AtomicU64,
    /// Chunks refused because the queue was full.
    pub rejected: AtomicU64,
}

/// One chunk of one request waiting to be merged.
pub(crate) struct Message {
    tensors: Vec<Tensor>,
    rows: usize,
    deadline: Option<Instant>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Vec<f32>, BatchError>>,
}

/// The queue and the threads of one model version. Dropping it closes the queue: the threads
/// answer what is queued, free their sessions and exit on their own. They are not joined,
/// because the last `Arc<Version>` is often dropped by a request finishing on an async worker,
/// which must not block on freeing a model.
#[derive(Debug)]
pub struct Batcher {
    tx: SyncSender<Message>,
    config: BatchConfig,
    stats: Arc<BatchStats>,
}

impl Batcher {
    /// One inference thread per runner, all fed by one bounded queue.
    pub fn start<R: Runner>(name: &str, runners: Vec<R>, config: BatchConfig) -> Self {
        let (tx, rx) = sync_channel::<Message>(config.queue_capacity);
        let shared = Arc::new(Mutex::new(worker::Shared { rx, carry: None }));
        let stats = Arc::new(BatchStats::default());
        for (i, runner) in runners.into_iter().enumerate() {
            let (shared, stats) = (Arc::clone(&shared), Arc::clone(&stats));
            std::thread::Builder::new()
                .name(format!("augur-infer-{name}-{i}"))
                .spawn(move || worker::run(runner, &shared, config, &stats))
                .expect("spawning an inference thread");
        }
        Batcher { tx, config, stats }
    }

    /// Counters.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// Parameters.
    pub fn config(&self) -> BatchConfig {
        self.config
    }

    /// Scores `tensors` (one f32 per row, in order), splitting them into chunks of at most
    /// `max_batch_rows`. Fails fast when the queue is full.
    pub async fn infer(&self, tensors: Vec<Tensor>, deadline: Option<Instant>) -> Result<Vec<f32>, BatchError> {
        let tx = &self.tx;
        let rows = tensors.first().map_or(0, Tensor::rows);
        let chunks = split(tensors, rows, self.config.max_batch_rows);
        let mut replies = Vec::with_capacity(chunks.len());
        let enqueued = Instant::now();
        for (tensors, rows) in chunks {
            let (reply, rx) = oneshot::channel();
            tx.try_send(Message { tensors, rows, deadline, enqueued, reply }).map_err(|e| match e {
                TrySendError::Full(_) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    BatchError::QueueFull { capacity: self.config.queue_capacity }
                }
                TrySendError::Disconnected(_) => BatchError::Closed,
            })?;
            replies.push(rx);
        }
        let mut scores = Vec::with_capacity(rows);
        for rx in replies {
            scores.extend(rx.await.map_err(|_| BatchError::Closed)??);
        }
        Ok(scores)
    }
}

/// Splits row-major tensors into chunks of at most `max` rows.
fn split(tensors: Vec<Tensor>, rows: usize, max: usize) -> Vec<(Vec<Tensor>, usize)> {
    if rows <= max {
        return vec![(tensors, rows)];
    }
    (0..rows)
        .step_by(max)
        .map(|start| {
            let n = max.min(rows - start);
            let chunk = tensors
                .iter()
                .map(|t| {
                    let range = start * t.width..(start + n) * t.width;
                    let data = match &t.data {
                        TensorData::I64(v) => TensorData::I64(v[range].to_vec()),
                        TensorData::F32(v) => TensorData::F32(v[range].to_vec()),
                    };
                    Tensor { name: t.name.clone(), width: t.width, data }
                })
                .collect();
            (chunk, n)
        })
        .collect()
}

/// Concatenates the chunks of several messages into one batch, input by input.
fn merge(messages: &[Message]) -> Vec<Tensor> {
    let first = &messages[0].tensors;
    if messages.len() == 1 {
        return first.clone();
    }
    let rows: usize = messages.iter().map(|m| m.rows).sum();
    first
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let data = match &t.data {
                TensorData::I64(_) => {
                    let mut out = Vec::with_capacity(rows * t.width);
                    for m in messages {
                        if let TensorData::I64(v) = &m.tensors[i].data {
                            out.extend_from_slice(v);
                        }
                    }
                    TensorData::I64(out)
                }
                TensorData::F32(_) => {
                    let mut out = Vec::with_capacity(rows * t.width);
                    for m in messages {
                        if let TensorData::F32(v) = &m.tensors[i].data {
                            out.extend_from_slice(v);
                        }
                    }
                    TensorData::F32(out)
                }
            };
            Tensor { name: t.name.clone(), width: t.width, data }
        })
        .collect()
}

#[cfg(test)]
mod tests;
