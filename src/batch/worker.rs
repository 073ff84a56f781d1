//! The inference thread loop: collect chunks into a batch, run it, answer each chunk.
//!
//! Threads share the queue through a mutex held only while a batch is being collected, so one
//! thread collects while the others run their batches (pipelining). A chunk that would overflow
//! the batch is parked in `carry` and opens the next one, so nothing is reordered or lost. Threads
//! count themselves in `busy` around each run (merge included); the collecting thread reads it to
//! decide whether waiting for company can pay (the policy is in the `batch` module docs).
//!
//! A model run that panics must not leave a version that health reports as serving with a dead
//! thread: the panic is caught, the batch is answered INTERNAL, and the thread reopens its model
//! (the old instance may be in any state) before taking the next batch. If the model cannot be
//! reopened the thread exits and says so; the last thread to go closes the queue, so requests
//! get UNAVAILABLE instead of waiting.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{BatchConfig, BatchError, Handles, Message, Reopen, merge};
use crate::assemble::RowKind;
use crate::model::Model;

/// How often a thread waiting for company re-checks whether another thread went idle: the most
/// that an idle thread can leave the batch waiting. At 2 ms of `max_queue_delay`, 20 wake-ups of
/// a thread that has nothing else to do.
const RECHECK: Duration = Duration::from_micros(100);

pub(super) struct QueueHead {
    pub(super) rx: Receiver<Message>,
    pub(super) carry: Option<Message>,
}

pub(super) struct Worker {
    pub(super) shared: Arc<Mutex<QueueHead>>,
    pub(super) config: BatchConfig,
    pub(super) handles: Handles,
    pub(super) reopen: Option<Reopen>,
    pub(super) alive: Arc<AtomicUsize>,
    /// Threads of this batcher inside a model run (merge included): the collecting thread reads
    /// it to tell whether another thread could take new chunks at once.
    pub(super) busy: Arc<AtomicUsize>,
    pub(super) name: String,
    /// What the rows of each input tensor are (for [`merge`]).
    pub(super) kinds: Arc<[RowKind]>,
}

impl Worker {
    pub(super) fn run(self, mut model: Box<dyn Model>) {
        // The thread's CPU clock is a syscall (no vDSO for it: ~1% of the CPU when read around
        // every run), so it is read at most every CPU_READ_EVERY and the difference counted: all
        // of this thread's CPU, merging and replying included, is what the version costs.
        let mut cpu = CpuClock::new(&self.handles.cpu);
        while let Some(batch) = self.collect() {
            let now = Instant::now();
            cpu.tick(now);
            let (mut live, expired): (Vec<Message>, Vec<Message>) =
                batch.into_iter().partition(|m| m.deadline.is_none_or(|d| d > now) && !m.reply.is_closed());
            for m in expired {
                if !m.reply.is_closed() {
                    self.handles.expired.inc();
                }
                let _ = m.reply.send(Err(BatchError::Expired));
            }
            if live.is_empty() {
                continue;
            }
            for m in &mut live {
                self.handles.queue_wait.record(now.saturating_duration_since(m.enqueued));
                // Picked up: the chunk's wait ends here, like the queue-wait histogram's.
                m.queue = tracing::Span::none();
            }
            let rows: usize = live.iter().map(Message::len).sum();
            self.handles.runs.inc();
            self.handles.rows.inc_by(rows as u64);
            self.handles.size.observe(rows as f64);
            // Tracing off: every request span is disabled, and no Vec is allocated per run.
            let spans: Vec<tracing::Span> = if live.iter().all(|m| m.span.is_disabled()) {
                Vec::new()
            } else {
                live.iter()
                    .map(|m| {
                        // i64: tracing-opentelemetry exports a u64 field as a string.
                        let (chunk_rows, batch_rows, requests) = (m.len() as i64, rows as i64, live.len() as i64);
                        tracing::debug_span!(parent: &m.span, "inference", rows = chunk_rows, batch_rows, requests)
                    })
                    .collect()
            };
            self.busy.fetch_add(1, Ordering::Relaxed);
            let outcome = {
                // Events during the run (ORT warnings) land in the first request's trace.
                let _entered = spans.first().map(tracing::Span::enter);
                let tensors = merge(&live, &self.kinds);
                catch_unwind(AssertUnwindSafe(|| model.run(&tensors)))
            };
            self.busy.fetch_sub(1, Ordering::Relaxed);
            // The run is over for every request in it, before any reply wakes a caller.
            drop(spans);
            match outcome {
                Ok(Ok(scores)) if scores.len() == rows => {
                    let mut start = 0;
                    for m in live {
                        let n = m.len();
                        let _ = m.reply.send(Ok(scores[start..start + n].to_vec()));
                        start += n;
                    }
                }
                Ok(Ok(scores)) => {
                    let e = Arc::new(crate::model::ModelError::Output {
                        problem: format!("model returned {} scores for {rows} rows", scores.len()),
                    });
                    live.into_iter().for_each(|m| drop(m.reply.send(Err(BatchError::Model(Arc::clone(&e))))));
                }
                Ok(Err(e)) => {
                    let e = Arc::new(e);
                    live.into_iter().for_each(|m| drop(m.reply.send(Err(BatchError::Model(Arc::clone(&e))))));
                }
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    self.handles.panics.inc();
                    tracing::error!(model = %self.name, panic = %message, "inference panicked; reopening the model");
                    for m in live {
                        let _ = m.reply.send(Err(BatchError::Panicked { message: message.clone() }));
                    }
                    match self.reopen.as_ref().map(|reopen| reopen()) {
                        Some(Ok(fresh)) => model = fresh,
                        Some(Err(e)) => {
                            tracing::error!(model = %self.name, error = %e, "cannot reopen the model; inference thread exits");
                            break;
                        }
                        None => {
                            tracing::error!(model = %self.name, "no way to reopen the model; inference thread exits");
                            break;
                        }
                    }
                }
            }
        }
        cpu.flush();
        if self.alive.fetch_sub(1, Ordering::Relaxed) == 1 {
            // Last thread: drop the receiver (and a parked chunk) so callers see `Closed` now.
            if let Ok(mut shared) = self.shared.lock() {
                if let Some(m) = shared.carry.take() {
                    let _ = m.reply.send(Err(BatchError::Closed));
                }
                while let Ok(m) = shared.rx.try_recv() {
                    self.handles.depth.dec();
                    let _ = m.reply.send(Err(BatchError::Closed));
                }
            }
        }
    }

    /// Blocks for the first chunk, then takes every chunk already queued, up to `max_batch_rows`.
    /// Only while every other thread is busy does it also wait for more, until `max_queue_delay`
    /// after the first chunk was queued or the earliest deadline in the batch, whichever is
    /// first (see the module docs). `None` = queue closed and drained.
    fn collect(&self) -> Option<Vec<Message>> {
        let config = self.config;
        let mut guard = self.shared.lock().ok()?;
        let shared = &mut *guard;
        let first = match shared.carry.take() {
            Some(m) => m,
            None => {
                let m = shared.rx.recv().ok()?;
                self.handles.depth.dec();
                m
            }
        };
        // The wait ends at the first chunk's delay or the earliest deadline in the batch.
        let mut until = first.enqueued + config.max_queue_delay;
        until = first.deadline.map_or(until, |d| until.min(d));
        let mut rows = first.len();
        let mut batch = vec![first];
        while rows < config.max_batch_rows {
            let m = match shared.rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= until || !self.others_busy() {
                        break;
                    }
                    // In slices, so a thread that goes idle meanwhile ends the wait.
                    match shared.rx.recv_timeout((until - now).min(RECHECK)) {
                        Ok(m) => m,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            self.handles.depth.dec();
            if rows + m.len() > config.max_batch_rows {
                shared.carry = Some(m);
                break;
            }
            rows += m.len();
            until = m.deadline.map_or(until, |d| until.min(d));
            batch.push(m);
        }
        Some(batch)
    }

    /// Whether every other live thread is inside a model run, so none could start on a chunk
    /// that arrives now. False with one thread: see the module docs.
    fn others_busy(&self) -> bool {
        let alive = self.alive.load(Ordering::Relaxed);
        alive > 1 && self.busy.load(Ordering::Relaxed) + 1 >= alive
    }
}

/// How often at most an inference thread reads its CPU clock.
const CPU_READ_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// An inference thread's CPU time, added to its version's counter as it grows.
struct CpuClock<'a> {
    counter: &'a prometheus_client::metrics::counter::Counter<f64, std::sync::atomic::AtomicU64>,
    seconds: f64,
    read_at: Instant,
}

impl<'a> CpuClock<'a> {
    fn new(counter: &'a prometheus_client::metrics::counter::Counter<f64, std::sync::atomic::AtomicU64>) -> Self {
        CpuClock { counter, seconds: thread_cpu_seconds(), read_at: Instant::now() }
    }

    /// Counts the CPU time since the last read, if that was CPU_READ_EVERY ago.
    fn tick(&mut self, now: Instant) {
        if now.saturating_duration_since(self.read_at) >= CPU_READ_EVERY {
            self.read_at = now;
            self.flush();
        }
    }

    /// Counts the CPU time since the last read.
    fn flush(&mut self) {
        let seconds = thread_cpu_seconds();
        self.counter.inc_by((seconds - self.seconds).max(0.0));
        self.seconds = seconds;
    }
}

/// This thread's CPU time, in seconds.
fn thread_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}
