//! The bounded queue between Predict and the joiner: the only part of the sample pipeline on
//! the request path. A full queue never slows serving by more than the configured bound:
//! `drop_newest` refuses at once, `block` waits at most `block_timeout_ms`; both count what they
//! drop (`augur_samples_dropped_total{reason="queue_full"}`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use xxhash_rust::xxh3::xxh3_64;

use super::snapshot::Served;
use crate::sample_log::config::{SamplesConfig, WhenFull};
use crate::sample_log::metrics::{ReasonLabels, SampleMetrics};
use crate::telemetry::SceneLabels;

/// Predict's handle: decides whether a request is logged and queues its snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotQueue {
    tx: mpsc::Sender<Served>,
    config: std::sync::Arc<SamplesConfig>,
    metrics: SampleMetrics,
    progress: std::sync::Arc<Progress>,
}

/// How far the joiner is behind the queue: ReportEvents waits (bounded) until every snapshot
/// queued before it is held, so an event cannot overtake its own prediction on this replica and
/// come back ORPHAN.
#[derive(Debug, Default)]
pub struct Progress {
    queued: AtomicU64,
    held: AtomicU64,
    moved: tokio::sync::Notify,
}

// === impl Progress ===

impl Progress {
    /// The joiner took `n` snapshots off the queue (held or dropped).
    pub fn held(&self, n: u64) {
        self.held.fetch_add(n, Ordering::Release);
        self.moved.notify_waiters();
    }

    /// Waits until every snapshot queued so far is off the queue, or `bound` passed.
    pub async fn caught_up(&self, bound: Duration) {
        let target = self.queued.load(Ordering::Acquire);
        let wait = async {
            loop {
                let moved = self.moved.notified();
                if self.held.load(Ordering::Acquire) >= target {
                    return;
                }
                moved.await;
            }
        };
        let _ = tokio::time::timeout(bound, wait).await;
    }
}

// === impl SnapshotQueue ===

impl SnapshotQueue {
    /// A queue of `config.queue_capacity` snapshots; the receiver goes to the joiner.
    pub fn new(config: std::sync::Arc<SamplesConfig>, metrics: SampleMetrics) -> (Self, mpsc::Receiver<Served>) {
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        (SnapshotQueue { tx, config, metrics, progress: std::sync::Arc::default() }, rx)
    }

    /// The queue's progress, shared with the joiner.
    pub fn progress(&self) -> std::sync::Arc<Progress> {
        std::sync::Arc::clone(&self.progress)
    }

    /// Whether `request_id` in `scene` is logged: a hash of the id against the scene's rate, so
    /// the decision is the same on every replica and for every candidate of the request.
    pub fn wants(&self, scene: &str, request_id: &str) -> bool {
        let rate = self.config.rate_for(scene);
        if rate >= 1.0 {
            return true;
        }
        if rate <= 0.0 {
            return false;
        }
        (xxh3_64(request_id.as_bytes()) as f64 / u64::MAX as f64) < rate
    }

    /// Queues a snapshot under the configured policy; never fails the request.
    pub async fn offer(&self, served: Served) {
        let scene = served.scene.clone();
        let sent = match self.config.when_full {
            WhenFull::DropNewest => self.tx.try_send(served).is_ok(),
            WhenFull::Block => {
                let bound = Duration::from_millis(self.config.block_timeout_ms);
                self.tx.send_timeout(served, bound).await.is_ok()
            }
        };
        if sent {
            self.progress.queued.fetch_add(1, Ordering::Release);
            self.metrics.snapshots.get_or_create(&SceneLabels { scene }).inc();
            self.metrics.queue_depth.inc();
        } else {
            // Full, or closed because the pipeline is shutting down: either way it is lost.
            self.metrics.dropped.get_or_create(&ReasonLabels { reason: "queue_full".to_owned() }).inc();
        }
    }
}
