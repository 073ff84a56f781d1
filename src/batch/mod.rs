//! Step 5 of the path: the dynamic batcher in front of the inference threads.
//!
//! Rows from concurrent requests for the same model version are merged into one model run of up
//! to `max_batch_rows`; a request with more rows is split into chunks that run in parallel on the
//! inference threads and are reassembled in order.
//!
//! Batching adapts to load. A free thread takes the first chunk and every chunk queued behind it
//! at that moment, and runs them at once. It waits for company (at most `max_queue_delay` after
//! the first chunk was queued, never past a deadline in the batch) only while every other thread
//! of the version is inside a model run, and stops waiting when one of them comes out. Waiting
//! costs the chunks already taken their whole wait, so it must buy something: while another
//! thread is idle, whatever arrives next starts on that thread at once, and a merged run here
//! would save nothing; when all the others are busy, the version is loaded, arrivals would wait
//! for a thread anyway, and a fuller batch means fewer runs for the same rows. Under load the
//! batches grow without any timer: chunks queue while the threads run and the next collection
//! takes them all (Triton's dynamic batcher and TF Serving's batch scheduler likewise form a
//! batch when an instance is free, with the delay as an upper bound; TF Serving's guide starts
//! CPU deployments at `batch_timeout_micros` 0). A single thread therefore never waits: it is
//! the idle thread, there is no other thread whose state says the version is loaded, and the
//! queue it has just emptied says the opposite. Before, a lone request always waited the full
//! delay (2 ms in `config/bench.toml`) with every thread idle, and a chunk that had already
//! waited longer than the delay behind busy threads ran alone instead of with those queued
//! behind it.
//! The queue is bounded: when full, callers get [`BatchError::QueueFull`] (RESOURCE_EXHAUSTED) at
//! once. A chunk whose deadline passed while queued is answered [`BatchError::Expired`] without
//! spending compute. Shape: tower's Buffer (a cloneable front, a bounded channel) + vector's
//! Batcher (collect until size or time), with the workers as OS threads because ORT blocks.
//!
//! Tensors arrive by `Arc`: a chunk is a row range of the request's tensors, copied once when it
//! is merged with others (never when it runs alone), so a later sample snapshot of the same
//! tensors costs no copy. Each inference thread holds a task-tracker token, so the app's
//! shutdown can wait for the threads to answer what is queued and exit.
//!
//! Request-level inputs (a spec's `level: request`: the user and context part, one row per
//! request) are merged by request, not by row: a run of R requests gets their R rows, and the
//! row → request index is renumbered so each candidate row points at its own request's row. A
//! chunk of a request split by `max_batch_rows` carries its request's row, so every chunk runs
//! on its own. The tensors' [`RowKind`]s come from the spec ([`BatchContext::with_row_kinds`]).
//!
//! Each chunk carries two trace spans across the thread boundary: its `queue` span, opened at
//! enqueue and closed when a thread takes the chunk into a run, and the request's span, the
//! explicit parent of the `inference` span the thread opens per chunk around the model run (one
//! run serves several requests, so each request's trace gets its own copy of the run).

pub mod metrics;
mod worker;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;

use crate::assemble::{RowKind, Tensor, TensorData};
use crate::model::{Model, ModelError};
use crate::telemetry::{LatencyHistogram, Metrics, ModelLabels, SceneVersionLabels, VersionLabels};
use metrics::BatchMetrics;

/// Why rows were not scored.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The batcher is shutting down (or every inference thread of the version is gone).
    #[error("inference threads are shutting down")]
    Closed,
    /// The model failed on the batch this request was part of.
    #[error(transparent)]
    Model(Arc<ModelError>),
    /// The model panicked on the batch this request was part of; the thread reopened its model.
    #[error("inference panicked: {message}")]
    Panicked {
        /// The panic payload, when it was a string.
        message: String,
    },
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

/// Reopens a thread's model after it panicked (the old instance may be in any state).
pub type Reopen = crate::model::Opener;

/// The metric handles of one version's batcher, resolved once from the registry.
#[derive(Debug, Clone)]
pub(crate) struct Handles {
    runs: Counter,
    rows: Counter,
    size: Histogram,
    expired: Counter,
    rejected: Counter,
    depth: Gauge,
    panics: Counter,
    cpu: Counter<f64, AtomicU64>,
    queue_wait: LatencyHistogram,
}

/// What a batcher is started with besides its models: names, metrics, the task tracker its
/// threads report to and how to replace a model that panicked.
#[derive(Clone)]
pub struct BatchContext {
    name: String,
    handles: Handles,
    tracker: TaskTracker,
    reopen: Option<Reopen>,
    kinds: Arc<[RowKind]>,
}

impl std::fmt::Debug for BatchContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchContext").field("name", &self.name).finish_non_exhaustive()
    }
}

impl BatchContext {
    /// Version `version` of `model`, recording into `metrics` (queue waits into the stage
    /// histogram of `scene`), with threads tracked by `tracker`.
    pub fn new(metrics: &Metrics, scene: &str, model: &str, version: u64, tracker: &TaskTracker) -> Self {
        let labels = VersionLabels { model: model.to_owned(), version: version.to_string() };
        let b = metrics.of::<BatchMetrics>();
        let handles = Handles {
            runs: b.runs.get_or_create(&labels).clone(),
            rows: b.rows.get_or_create(&labels).clone(),
            size: b.size.get_or_create(&ModelLabels { model: model.to_owned() }).clone(),
            expired: b.expired.get_or_create(&labels).clone(),
            rejected: b.rejected.get_or_create(&labels).clone(),
            depth: b.queue_depth.get_or_create(&labels).clone(),
            panics: b.panics.get_or_create(&labels).clone(),
            cpu: b.cpu.get_or_create(&SceneVersionLabels::new(scene, model, version)).clone(),
            queue_wait: metrics.stage(scene, "queue"),
        };
        BatchContext {
            name: format!("{model}-{version}"),
            handles,
            tracker: tracker.clone(),
            reopen: None,
            kinds: Arc::from([]),
        }
    }

    /// What the rows of each input tensor are ([`crate::assemble::Spec::row_kinds`]); without
    /// it every tensor has one row per candidate.
    pub fn with_row_kinds(mut self, kinds: Vec<RowKind>) -> Self {
        self.kinds = kinds.into();
        self
    }

    /// How to replace a thread's model after a panic; without it the thread exits instead.
    pub fn with_reopen(mut self, reopen: Reopen) -> Self {
        self.reopen = Some(reopen);
        self
    }
}

/// Counters of one batcher (read by `ModelAdmin.ListModels`; the same handles are exported).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchStats {
    /// Model runs.
    pub batches: u64,
    /// Rows scored.
    pub rows: u64,
    /// Chunks dropped because their deadline passed in the queue.
    pub expired: u64,
    /// Chunks refused because the queue was full.
    pub rejected: u64,
    /// Runs that panicked.
    pub panics: u64,
    /// CPU seconds of the inference threads in model runs.
    pub cpu_seconds: f64,
}

/// One chunk of one request waiting to be merged: a row range of the request's tensors.
pub(crate) struct Message {
    tensors: Arc<[Tensor]>,
    rows: Range<usize>,
    deadline: Option<Instant>,
    enqueued: Instant,
    /// The request's span, so the model run shows up inside the request's trace.
    span: tracing::Span,
    /// Open while the chunk waits; the worker closes it when the chunk joins a run.
    queue: tracing::Span,
    reply: oneshot::Sender<Result<Vec<f32>, BatchError>>,
}

impl Message {
    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// The queue and the threads of one model version. Dropping it closes the queue: the threads
/// answer what is queued, free their models and exit on their own (their tracker tokens tell
/// the app when). They are not joined here, because the last `Arc<Version>` is often dropped
/// by a request finishing on an async worker, which must not block on freeing a model.
#[derive(Debug)]
pub struct Batcher {
    tx: SyncSender<Message>,
    config: BatchConfig,
    handles: Handles,
    alive: Arc<AtomicUsize>,
    kinds: Arc<[RowKind]>,
    /// Held by every inference thread until it has dropped its model (and with it the
    /// version's shared weights): gone once the version's memory is.
    holding: Weak<()>,
}

/// Whether a batcher's inference threads still hold their models (see [`Batcher::models`]).
#[derive(Debug, Clone)]
pub struct ModelsHeld(Weak<()>);

impl ModelsHeld {
    /// True once every inference thread has dropped its model.
    pub fn freed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

impl Batcher {
    /// One inference thread per model, all fed by one bounded queue.
    pub fn start(models: Vec<Box<dyn Model>>, config: BatchConfig, context: BatchContext) -> Self {
        let (tx, rx) = sync_channel::<Message>(config.queue_capacity);
        let shared = Arc::new(Mutex::new(worker::QueueHead { rx, carry: None }));
        let alive = Arc::new(AtomicUsize::new(models.len()));
        let busy = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(());
        let holding = Arc::downgrade(&held);
        for (i, model) in models.into_iter().enumerate() {
            let worker = worker::Worker {
                shared: Arc::clone(&shared),
                config,
                handles: context.handles.clone(),
                reopen: context.reopen.clone(),
                alive: Arc::clone(&alive),
                busy: Arc::clone(&busy),
                name: context.name.clone(),
                kinds: Arc::clone(&context.kinds),
            };
            let token = context.tracker.token();
            let held = Arc::clone(&held);
            std::thread::Builder::new()
                .name(format!("augur-infer-{}-{i}", context.name))
                .spawn(move || {
                    // `run` consumes the worker and the model: both are dropped when it returns.
                    worker.run(model);
                    drop(held);
                    drop(token);
                })
                .expect("spawning an inference thread");
        }
        Batcher { tx, config, handles: context.handles, alive, kinds: context.kinds, holding }
    }

    /// Counters.
    pub fn stats(&self) -> BatchStats {
        let h = &self.handles;
        BatchStats {
            batches: h.runs.get(),
            rows: h.rows.get(),
            expired: h.expired.get(),
            rejected: h.rejected.get(),
            panics: h.panics.get(),
            cpu_seconds: h.cpu.get(),
        }
    }

    /// Inference threads still running (a thread whose model could not be reopened after a
    /// panic exits; at zero the version can serve nothing).
    pub fn threads_alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Tells when the inference threads have freed their models, after the batcher is dropped
    /// (a release-first reload waits for it before loading the next version).
    pub fn models(&self) -> ModelsHeld {
        ModelsHeld(Weak::clone(&self.holding))
    }

    /// Parameters.
    pub fn config(&self) -> BatchConfig {
        self.config
    }

    /// Scores `tensors` (one f32 per row, in order), splitting them into chunks of at most
    /// `max_batch_rows`. Fails fast when the queue is full.
    pub async fn infer(&self, tensors: Arc<[Tensor]>, deadline: Option<Instant>) -> Result<Vec<f32>, BatchError> {
        let rows = tensors
            .iter()
            .enumerate()
            .find(|(i, _)| kind(&self.kinds, *i) == RowKind::Candidate)
            .map_or(0, |(_, t)| t.rows());
        let max = self.config.max_batch_rows;
        let mut replies = Vec::with_capacity(rows.div_ceil(max));
        let enqueued = Instant::now();
        let span = tracing::Span::current();
        for start in (0..rows).step_by(max.max(1)) {
            let (reply, rx) = oneshot::channel();
            let chunk = start..(start + max).min(rows);
            let message = Message {
                tensors: Arc::clone(&tensors),
                queue: queue_span(&span, chunk.len()),
                rows: chunk,
                deadline,
                enqueued,
                span: span.clone(),
                reply,
            };
            self.tx.try_send(message).map_err(|e| match e {
                TrySendError::Full(_) => {
                    self.handles.rejected.inc();
                    BatchError::QueueFull { capacity: self.config.queue_capacity }
                }
                TrySendError::Disconnected(_) => BatchError::Closed,
            })?;
            self.handles.depth.inc();
            replies.push(rx);
        }
        let mut scores = Vec::with_capacity(rows);
        for rx in replies {
            scores.extend(rx.await.map_err(|_| BatchError::Closed)??);
        }
        Ok(scores)
    }
}

/// The queue span of a chunk of `rows` rows, within `request`'s span. None outside a request
/// (the warm-up runs at load): a queue span there would be a trace of its own.
fn queue_span(request: &tracing::Span, rows: usize) -> tracing::Span {
    if request.is_none() {
        return tracing::Span::none();
    }
    // i64: tracing-opentelemetry exports a u64 field as a string.
    tracing::debug_span!(parent: request, "queue", rows = rows as i64)
}

/// The kind of tensor `i` (one row per candidate unless the spec said otherwise).
fn kind(kinds: &[RowKind], i: usize) -> RowKind {
    kinds.get(i).copied().unwrap_or(RowKind::Candidate)
}

/// The tensors of a batch: the one message's own tensors when it is a whole request alone, else
/// the row ranges of every message concatenated input by input.
fn merge<'m>(messages: &'m [Message], kinds: &[RowKind]) -> std::borrow::Cow<'m, [Tensor]> {
    let first = &messages[0];
    let whole = |m: &Message| {
        let candidate = (0..m.tensors.len()).find(|&i| kind(kinds, i) == RowKind::Candidate).unwrap_or(0);
        m.rows.start == 0 && m.rows.end == m.tensors[candidate].rows()
    };
    if messages.len() == 1 && whole(first) {
        return std::borrow::Cow::Borrowed(&first.tensors[..]);
    }
    std::borrow::Cow::Owned(concat_parts(messages, kinds, |m| (&m.tensors[..], m.rows.clone())))
}

/// Concatenates a row range of each part's tensors, input by input (all parts have the inputs of
/// the first, in the same order and types). The copying half of [`merge`]; public only so
/// `benches/batch.rs` can measure it without queueing messages.
#[doc(hidden)]
pub fn concat_rows<P>(parts: &[P], part: impl Fn(&P) -> (&[Tensor], Range<usize>)) -> Vec<Tensor> {
    concat_parts(parts, &[], part)
}

/// [`concat_rows`] for tensors of any [`RowKind`]: candidate tensors by row range; request-level
/// tensors by the request rows each part's range refers to (its index's span), once per part;
/// the request index renumbered to point into the concatenated request rows.
#[doc(hidden)]
pub fn concat_parts<P>(parts: &[P], kinds: &[RowKind], part: impl Fn(&P) -> (&[Tensor], Range<usize>)) -> Vec<Tensor> {
    let index = (0..kinds.len()).find(|&i| kinds[i] == RowKind::RequestIndex);
    // Per part: the request rows its candidate rows refer to, and where they land.
    let spans: Vec<Range<usize>> = parts
        .iter()
        .map(|p| {
            let (tensors, range) = part(p);
            match index.map(|i| &tensors[i].data) {
                Some(TensorData::I64(v)) if !range.is_empty() => {
                    let ids = &v[range];
                    let lo = ids.iter().copied().min().unwrap_or(0) as usize;
                    let hi = ids.iter().copied().max().unwrap_or(0) as usize;
                    lo..hi + 1
                }
                _ => 0..1,
            }
        })
        .collect();
    let rows_of = |i: usize, p: usize| match kind(kinds, i) {
        RowKind::Request => spans[p].clone(),
        RowKind::Candidate | RowKind::RequestIndex => part(&parts[p]).1,
    };
    let (first, _) = part(&parts[0]);
    first
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let w = t.width;
            if kind(kinds, i) == RowKind::RequestIndex {
                let rows: usize = parts.iter().map(|p| part(p).1.len()).sum();
                let mut out = Vec::with_capacity(rows);
                let mut base = 0i64;
                for (p, span) in parts.iter().zip(&spans) {
                    let (tensors, range) = part(p);
                    if let TensorData::I64(v) = &tensors[i].data {
                        out.extend(v[range].iter().map(|&r| r - span.start as i64 + base));
                    }
                    base += span.len() as i64;
                }
                return Tensor { name: t.name.clone(), width: w, data: TensorData::I64(out) };
            }
            let rows: usize = (0..parts.len()).map(|p| rows_of(i, p).len()).sum();
            let data = match &t.data {
                TensorData::I64(_) => {
                    let mut out = Vec::with_capacity(rows * w);
                    for (p, at) in parts.iter().zip(0..) {
                        let (tensors, _) = part(p);
                        let range = rows_of(i, at);
                        if let TensorData::I64(v) = &tensors[i].data {
                            out.extend_from_slice(&v[range.start * w..range.end * w]);
                        }
                    }
                    TensorData::I64(out)
                }
                TensorData::F32(_) => {
                    let mut out = Vec::with_capacity(rows * w);
                    for (p, at) in parts.iter().zip(0..) {
                        let (tensors, _) = part(p);
                        let range = rows_of(i, at);
                        if let TensorData::F32(v) = &tensors[i].data {
                            out.extend_from_slice(&v[range.start * w..range.end * w]);
                        }
                    }
                    TensorData::F32(out)
                }
            };
            Tensor { name: t.name.clone(), width: w, data }
        })
        .collect()
}

#[cfg(test)]
mod tests;
