//! `[model]`: inference threads, their queue, batching and how new versions load, owned by the
//! module that runs the model.

use std::path::PathBuf;

use serde::Deserialize;

use crate::validate::{Invalid, in_range};

/// Inference threads and their queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Dedicated inference threads per model, each with its own ONNX Runtime session (`run` needs
    /// `&mut`). One keeps a 2-core machine free for the async workers.
    #[serde(default = "default_inference_threads")]
    pub inference_threads: usize,
    /// ONNX Runtime intra-op threads per session.
    #[serde(default = "default_intra_op_threads")]
    pub intra_op_threads: usize,
    /// Inference jobs waiting for a thread; beyond this Predict fails fast with RESOURCE_EXHAUSTED
    /// instead of queueing without bound.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Explicit ONNX Runtime library; else `ORT_DYLIB_PATH`, else the project's `.venv`.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// Rows per model run; a repository's `model.yaml` may override it.
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// How long a queued request waits for others to share its model run, in microseconds;
    /// `model.yaml` may override it.
    #[serde(default = "default_max_queue_delay_us")]
    pub max_queue_delay_us: u64,
    /// Rescan model repositories this often even without a file-system event (the inotify
    /// fallback); 0 disables polling.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// React to file-system events in the repositories (inotify via `notify`).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// CPU priority of the thread that reads and optimises a new version while the old one
    /// serves: `idle` (the default; Linux `SCHED_IDLE`: runs only on CPU nothing else wants, and
    /// yields at once when a serving thread wakes) or `low` (nice 19). `idle` keeps p99 during
    /// a hot reload near steady (BENCHMARKS.md, "Hot reload: loader priority"); on a host
    /// saturated by other work it would starve the load, hence `load_idle_limit_ms`.
    #[serde(default)]
    pub load_priority: LoadPriority,
    /// With `load_priority = "idle"`, a load still running after this many milliseconds
    /// continues at nice 19 (`low`), so a busy host delays a new version by at most this much
    /// more than `low` would.
    #[serde(default = "default_load_idle_limit_ms")]
    pub load_idle_limit_ms: u64,
    /// How a new version replaces the one it supersedes: `overlap` (the default) loads and warms
    /// the new version while the old one serves, so no request is refused but memory peaks at
    /// both versions' weights; `release_first` takes the scene out of service (NOT_SERVING,
    /// Predict UNAVAILABLE), lets requests in flight finish, frees the old version and only then
    /// loads the new one: the peak stays near steady. Only for deployments with more than one
    /// replica, whose other replicas take the scene's traffic meanwhile; refused with a rollout
    /// policy, whose canary needs its stable loaded beside it.
    #[serde(default)]
    pub reload: ReloadStrategy,
    /// With `reload = "release_first"`, how long requests in flight on the old version may take
    /// to finish, and its inference threads to free it, before the new version loads anyway
    /// (logged; the old memory then goes when the last of them ends).
    #[serde(default = "default_release_wait_ms")]
    pub release_wait_ms: u64,
}

/// `model.reload`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadStrategy {
    /// Load the new version beside the old one, swap, then unload: no refusal, two versions'
    /// memory at the peak.
    #[default]
    Overlap,
    /// Release the version being replaced before loading the next: one version's memory at the
    /// peak, the scene out of service for the load and warm-up.
    ReleaseFirst,
}

impl ReloadStrategy {
    /// The config spelling (the `strategy` label).
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadStrategy::Overlap => "overlap",
            ReloadStrategy::ReleaseFirst => "release_first",
        }
    }
}

/// `model.load_priority`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadPriority {
    /// Nice 19: the lowest normal priority; a load still gets a small share of a busy host.
    Low,
    /// `SCHED_IDLE` on Linux (elsewhere the same as `low`), then nice 19 after
    /// `model.load_idle_limit_ms`.
    #[default]
    Idle,
}

const fn default_max_batch_rows() -> usize {
    256
}

const fn default_max_queue_delay_us() -> u64 {
    1000
}

const fn default_load_idle_limit_ms() -> u64 {
    30_000
}

const fn default_release_wait_ms() -> u64 {
    10_000
}

const fn default_poll_interval_ms() -> u64 {
    5000
}

const fn default_true() -> bool {
    true
}

const fn default_inference_threads() -> usize {
    1
}

const fn default_intra_op_threads() -> usize {
    1
}

const fn default_queue_capacity() -> usize {
    1024
}

impl ModelConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), Invalid> {
        let m = self;
        in_range("model.inference_threads", m.inference_threads, 1, 256)?;
        in_range("model.intra_op_threads", m.intra_op_threads, 1, 256)?;
        in_range("model.queue_capacity", m.queue_capacity, 1, 1 << 20)?;
        in_range("model.max_batch_rows", m.max_batch_rows, 1, 1 << 16)?;
        in_range("model.max_queue_delay_us", m.max_queue_delay_us as usize, 0, 1_000_000)?;
        in_range("model.load_idle_limit_ms", m.load_idle_limit_ms as usize, 1, 3_600_000)?;
        in_range("model.release_wait_ms", m.release_wait_ms as usize, 0, 3_600_000)?;
        Ok(())
    }
}
