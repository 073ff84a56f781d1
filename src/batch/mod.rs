//! Step 4 of the path: the queue in front of the inference threads.
//!
//! A bounded queue feeds dedicated OS threads, each owning one ORT session, so inference never
//! runs on the async workers. When the queue is full the caller gets [`BatchError::QueueFull`]
//! (RESOURCE_EXHAUSTED) at once instead of waiting; a job whose deadline passed while queued is
//! answered [`BatchError::Expired`] without spending compute. Today each job is one request's
//! rows; merging rows across requests (dynamic batching) slots in at the worker loop.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ort::session::Session;
use tokio::sync::oneshot;

use crate::assemble::Tensor;
use crate::model::onnx::{self, ModelError, OnnxModel, SessionOptions};

/// Why a job was not scored.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The queue holds `capacity` jobs already.
    #[error("inference queue is full ({capacity} jobs waiting; model.queue_capacity)")]
    QueueFull {
        /// The configured bound.
        capacity: usize,
    },
    /// The request's deadline passed before inference started.
    #[error("deadline expired while waiting for inference")]
    Expired,
    /// The pool is shutting down.
    #[error("inference threads are shutting down")]
    Closed,
    /// ORT failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

struct Job {
    tensors: Vec<Tensor>,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Vec<f32>, BatchError>>,
}

/// Inference threads for one model version, fed by a bounded queue.
#[derive(Debug)]
pub struct InferencePool {
    model: Arc<OnnxModel>,
    tx: Option<SyncSender<Job>>,
    capacity: usize,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl InferencePool {
    /// Starts `threads` inference threads; `first` is the session already opened for validation.
    pub fn start(
        model: OnnxModel,
        first: Session,
        options: &SessionOptions,
        threads: usize,
        capacity: usize,
    ) -> Result<Self, ModelError> {
        let model = Arc::new(model);
        let mut sessions = vec![first];
        for _ in 1..threads {
            sessions.push(model.session(options)?);
        }
        let (tx, rx) = sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let threads = sessions
            .into_iter()
            .enumerate()
            .map(|(i, session)| {
                let rx = Arc::clone(&rx);
                let output = model.output.clone();
                std::thread::Builder::new()
                    .name(format!("augur-infer-{}-{i}", model.name))
                    .spawn(move || worker(session, &output, &rx))
                    .expect("spawning an inference thread")
            })
            .collect();
        Ok(InferencePool {
            model,
            tx: Some(tx),
            capacity,
            threads,
        })
    }

    /// The model version these threads run.
    pub fn model(&self) -> &OnnxModel {
        &self.model
    }

    /// Scores `tensors` (one f32 per row), failing fast when the queue is full.
    pub async fn infer(
        &self,
        tensors: Vec<Tensor>,
        deadline: Option<Instant>,
    ) -> Result<Vec<f32>, BatchError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(BatchError::Closed)?;
        tx.try_send(Job {
            tensors,
            deadline,
            reply,
        })
        .map_err(|e| match e {
            TrySendError::Full(_) => BatchError::QueueFull {
                capacity: self.capacity,
            },
            TrySendError::Disconnected(_) => BatchError::Closed,
        })?;
        rx.await.map_err(|_| BatchError::Closed)?
    }
}

impl Drop for InferencePool {
    /// Closes the queue, lets the threads finish what is queued, and joins them.
    fn drop(&mut self) {
        self.tx.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn worker(mut session: Session, output: &str, rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, so idle threads queue up here.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if job.deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = job.reply.send(Err(BatchError::Expired));
            continue;
        }
        if job.reply.is_closed() {
            continue; // the caller gave up (cancelled RPC): skip the compute
        }
        let result = onnx::run(&mut session, output, &job.tensors).map_err(BatchError::Model);
        let _ = job.reply.send(result);
    }
}
