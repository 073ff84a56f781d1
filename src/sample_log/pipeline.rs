//! The sample pipeline as one owned value: started by the app when `samples.enabled`, and shut
//! down by it at step 6, after the last request is answered (so no snapshot can arrive late):
//!
//! 1. the joiner holds every snapshot still queued and emits what is due;
//! 2. the in-memory join store is written to `<log dir>/pending.bin` (read back at start; after
//!    a crash, its journal `<log dir>/journal/` is replayed instead);
//! 3. the log is fsynced;
//! 4. each sink delivers what it still lags by, up to its drain timeout (its cursor is
//!    persisted, so what is left is delivered after the restart);
//! 5. the syncer's final fsync.
//!
//! All of it within the budget the app gives (what is left of `server.grace_ms`), cut short by a
//! second signal, and the disk work (the pending file, fsync) on blocking threads. A cut loses
//! nothing: every change is already in the journal and the log (page cache), so the next start
//! replays the journal instead of reading `pending.bin`, and sinks resume from their cursors.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Samples;
use super::buffer::SnapshotQueue;
use super::file::{LogError, SegmentLog, spawn_syncer};
use super::join::memory::MemoryJoinStore;
use super::join::redis::{RedisJoinConfig, RedisJoinStore};
use super::join::{JoinError, JoinStore};
use super::joiner::{Joiner, RecordWriter};
#[cfg(feature = "kafka")]
use super::kafka::KafkaSink;
use super::redis_stream::RedisStreamSink;
use super::sink::SampleSink;
use super::snapshot::now_ms;
use super::tail::spawn_tail;
use crate::sample_log::config::{JoinStoreConfig, SamplesConfig, SinkConfig};
use crate::sample_log::metrics::SampleMetrics;

/// File of the in-memory join store's content between a graceful shutdown and the next start.
const PENDING_FILE: &str = "pending.bin";
/// Directory of the in-memory join store's journal (crash recovery), inside the log dir.
const JOURNAL_DIR: &str = "journal";

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The segment log could not be opened.
    #[error("samples.log: {0}")]
    Log(#[from] LogError),
    /// The join store could not be reached or restored.
    #[error("samples.join.store: {0}")]
    Join(#[from] JoinError),
    /// `pending.bin` could not be read.
    #[error("samples.log.dir: reading {path}: {source}")]
    Pending {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The joiner's thread could not be started.
    #[error("samples: starting the joiner thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A sink could not be built.
    #[error("samples.sinks[{index}] ({name}): {message}")]
    Sink {
        /// Position in the config.
        index: usize,
        /// Its name.
        name: String,
        /// Why.
        message: String,
    },
}

/// See the module doc.
#[derive(Debug)]
pub struct SamplePipeline {
    samples: Samples,
    log: Arc<SegmentLog>,
    memory: Option<Arc<MemoryJoinStore>>,
    pending_path: PathBuf,
    joiner_stop: CancellationToken,
    /// Resolves when the joiner's thread has held the queue's last snapshot and ticked.
    joiner_done: oneshot::Receiver<()>,
    sinks_stop: CancellationToken,
    sink_tasks: Vec<JoinHandle<()>>,
    syncer_stop: CancellationToken,
    /// The sample log's and the join journal's.
    syncers: Vec<JoinHandle<()>>,
}

/// What the shutdown did, for its log line and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Predictions written to `pending.bin` (in-memory store).
    pub pending: usize,
    /// Last sequence fsynced.
    pub durable_sequence: u64,
    /// The step the budget or a second signal cut (`None`: every step finished).
    pub cut: Option<&'static str>,
}

impl RecordWriter for SegmentLog {
    fn write(&self, records: Vec<Vec<u8>>) -> Result<(), String> {
        self.append(&records).map(|_| ()).map_err(|e| e.to_string())
    }

    fn last_sequence(&self) -> u64 {
        SegmentLog::last_sequence(self)
    }
}

// === impl SamplePipeline ===

impl SamplePipeline {
    /// Opens the log, restores or connects the join store, builds the sinks and starts the tasks.
    pub async fn start(config: &SamplesConfig, metrics: &SampleMetrics) -> Result<Self, SampleError> {
        let config = Arc::new(config.clone());
        let sink_names: Vec<String> = config.sinks.iter().map(|s| s.name().to_owned()).collect();
        let (log, report) = SegmentLog::open(&config.log, &sink_names, metrics.clone())?;
        let log = Arc::new(log);
        tracing::info!(
            dir = %config.log.dir.display(),
            last_sequence = report.last_sequence,
            truncated_bytes = report.truncated_bytes,
            segments = report.segments,
            "sample log open"
        );
        let pending_path = config.log.dir.join(PENDING_FILE);
        let syncer_stop = CancellationToken::new();
        let interval = Duration::from_millis(config.log.fsync_interval_ms);
        let mut syncers = Vec::new();
        let (store, memory): (Arc<dyn JoinStore>, _) = match &config.join.store {
            JoinStoreConfig::Memory { max_bytes } => {
                let memory = Arc::new(MemoryJoinStore::new(*max_bytes));
                metrics.join_store_max_bytes.set(i64::try_from(*max_bytes).unwrap_or(i64::MAX));
                let journal_dir = config.log.dir.join(JOURNAL_DIR);
                if pending_path.exists() {
                    // A graceful shutdown wrote everything: the journal is older than it.
                    let (restored, expired) = memory
                        .load(&pending_path, now_ms())
                        .map_err(|source| SampleError::Pending { path: pending_path.clone(), source })?;
                    tracing::info!(restored, expired, "pending joins restored from the shutdown file");
                } else {
                    let replayed = memory.replay(&journal_dir, now_ms())?;
                    let (in_log, emitted_again) = settle(&memory, &log, &replayed, metrics)?;
                    if replayed.records > 0 {
                        metrics.log_corrupt.inc_by(replayed.corrupt);
                        tracing::warn!(
                            restored = replayed.requests,
                            records = replayed.records,
                            corrupt = replayed.corrupt,
                            in_log,
                            emitted_again,
                            "pending joins replayed from the journal (the last run did not shut down cleanly; \
                             after a power loss, changes after its last fsync are lost)"
                        );
                    }
                }
                let journal = memory.attach_journal(&journal_dir, &config.log, metrics.clone())?;
                syncers.push(spawn_syncer(journal, interval, syncer_stop.clone()));
                if let Some((requests, bytes)) = memory.pending() {
                    metrics.pending.set(requests as i64);
                    metrics.pending_bytes.set(bytes as i64);
                }
                (Arc::clone(&memory) as _, Some(memory))
            }
            JoinStoreConfig::Redis { url, cluster, namespace, timeout_ms, shards, lease_ms, close_grace_ms } => {
                let redis = RedisJoinConfig {
                    url,
                    cluster: *cluster,
                    namespace,
                    timeout_ms: *timeout_ms,
                    shards: *shards,
                    lease_ms: *lease_ms,
                    close_grace_ms: *close_grace_ms,
                };
                (Arc::new(RedisJoinStore::connect(&redis, metrics.clone()).await?) as _, None)
            }
        };
        let writer: Arc<dyn RecordWriter> = Arc::clone(&log) as _;
        let (queue, rx) = SnapshotQueue::new(Arc::clone(&config), metrics.clone());
        let joiner =
            Arc::new(Joiner::new(Arc::clone(&config), store, writer, metrics.clone()).with_progress(queue.progress()));
        let joiner_stop = CancellationToken::new();
        let joiner_done = Arc::clone(&joiner).spawn(rx, joiner_stop.clone()).map_err(SampleError::Thread)?;
        syncers.push(spawn_syncer(Arc::clone(&log), interval, syncer_stop.clone()));
        let sinks_stop = CancellationToken::new();
        let mut sink_tasks = Vec::new();
        for (index, sink) in config.sinks.iter().enumerate() {
            let built = build_sink(sink, &config, metrics).await.map_err(|message| SampleError::Sink {
                index,
                name: sink.name().to_owned(),
                message,
            })?;
            sink_tasks.push(spawn_tail(
                Arc::clone(&log),
                built,
                sink.tail().clone(),
                metrics.clone(),
                sinks_stop.clone(),
            ));
        }
        Ok(SamplePipeline {
            samples: Samples { queue, joiner },
            log,
            memory,
            pending_path,
            joiner_stop,
            joiner_done,
            sinks_stop,
            sink_tasks,
            syncer_stop,
            syncers,
        })
    }

    /// The ends the request path holds.
    pub fn samples(&self) -> Samples {
        self.samples.clone()
    }

    /// The segment log (tests, `augur samples dump` in-process).
    pub fn log(&self) -> &Arc<SegmentLog> {
        &self.log
    }

    /// Shutdown step 6 (module doc), within `budget`, cut short when `cut` resolves.
    pub async fn shutdown(self, budget: Duration, cut: impl Future<Output = ()>) -> Flushed {
        let SamplePipeline {
            samples,
            log,
            memory,
            pending_path,
            joiner_stop,
            joiner_done,
            sinks_stop,
            sink_tasks,
            syncer_stop,
            syncers,
        } = self;
        drop(samples);
        let step = std::sync::Mutex::new("the joiner's last tick");
        let set = |name: &'static str| *step.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = name;
        let work = async {
            joiner_stop.cancel();
            if joiner_done.await.is_err() {
                tracing::error!("the joiner thread panicked");
            }
            let mut pending = 0;
            if let Some(memory) = memory {
                set("saving pending joins");
                let path = pending_path.clone();
                match tokio::task::spawn_blocking(move || memory.save(&path)).await {
                    Ok(Ok(n)) => pending = n,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, path = %pending_path.display(), "pending joins not saved")
                    }
                    Err(e) => tracing::error!(error = %e, "pending joins not saved"),
                }
            }
            set("the sample log fsync");
            let synced = Arc::clone(&log);
            match tokio::task::spawn_blocking(move || synced.sync()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "sample log fsync failed"),
                Err(e) => tracing::error!(error = %e, "sample log fsync failed"),
            }
            set("the sinks' drain");
            sinks_stop.cancel();
            for task in sink_tasks {
                let _ = task.await;
            }
            pending
        };
        let finished = tokio::select! {
            r = tokio::time::timeout(budget, work) => r.ok(),
            () = cut => None,
        };
        let cut = finished.is_none().then(|| *step.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if let Some(step) = cut {
            // Safe to stop anywhere: the journal and the log hold every change (module doc).
            tracing::warn!(step, "samples flush cut short; the journal is replayed at the next start");
            joiner_stop.cancel();
            sinks_stop.cancel();
        }
        // The syncers' last fsync (on a blocking thread each); awaited only when nothing was cut.
        syncer_stop.cancel();
        if cut.is_none() {
            for syncer in syncers {
                let _ = syncer.await;
            }
        }
        Flushed { pending: finished.unwrap_or(0), durable_sequence: log.durable_sequence(), cut }
    }
}

/// Settles the claims a crash left in doubt: a claimed candidate whose sample is in the log
/// after the batch's mark stays claimed, any other is due again. Returns (in log, due again).
fn settle(
    memory: &MemoryJoinStore,
    log: &SegmentLog,
    replayed: &super::join::memory::Replayed,
    metrics: &SampleMetrics,
) -> Result<(usize, usize), LogError> {
    use prost::Message;
    if replayed.in_doubt.is_empty() {
        return Ok((0, 0));
    }
    let wanted: std::collections::HashSet<&(String, String)> = replayed.in_doubt.iter().collect();
    let mut found = std::collections::HashSet::new();
    let mut after = replayed.in_doubt_after;
    loop {
        let batch = log.read_after(after, 1024)?;
        let Some(last) = batch.last() else { break };
        after = last.sequence;
        for record in &batch {
            let Ok(record) = crate::proto::LogRecord::decode(record.payload.clone()) else { continue };
            if let Some(crate::proto::log_record::Record::Sample(s)) = record.record {
                let key = (s.request_id, s.item_id);
                if wanted.contains(&key) {
                    found.insert(key);
                }
            }
        }
    }
    let again = memory.settle(&replayed.in_doubt, &found, now_ms());
    let in_log = replayed.in_doubt.len() - again;
    let count = |reason: &str, n: usize| {
        metrics
            .recovered
            .get_or_create(&crate::sample_log::metrics::ReasonLabels { reason: reason.to_owned() })
            .inc_by(n as u64)
    };
    count("in_log", in_log);
    count("emitted_again", again);
    Ok((in_log, again))
}

/// Builds a sink: a misconfigured one fails start-up. Its health check is not awaited here: the
/// tail driver runs it in the background and reports an unreachable sink (log, `sink_up`,
/// `sink_healthcheck_failures`) while serving goes on; the log keeps the samples until it answers.
async fn build_sink(
    config: &SinkConfig,
    #[cfg_attr(not(feature = "parquet"), allow(unused_variables))] samples: &SamplesConfig,
    #[cfg_attr(not(feature = "parquet"), allow(unused_variables))] metrics: &SampleMetrics,
) -> Result<Arc<dyn SampleSink>, String> {
    // With the causes: librdkafka's own refusal (the cause) is what names the property.
    let message = |e: &dyn std::error::Error| {
        std::iter::successors(e.source(), |c| c.source()).fold(e.to_string(), |out, c| format!("{out}: {c}"))
    };
    Ok(match config {
        #[cfg(feature = "kafka")]
        SinkConfig::Kafka(c) => Arc::new(KafkaSink::new(c).map_err(|e| message(&e))?),
        // Validation refuses a kafka sink in a build without the feature.
        #[cfg(not(feature = "kafka"))]
        SinkConfig::Kafka(c) => {
            return Err(format!("sink `{}`: this build of augur lacks the `kafka` feature", c.name));
        }
        SinkConfig::RedisStream(c) => Arc::new(RedisStreamSink::new(c).await.map_err(|e| message(&e))?),
        #[cfg(feature = "parquet")]
        SinkConfig::Parquet(c) => {
            // Lists the directory for hours a previous run left open: start-up, blocking is fine.
            Arc::new(super::parquet::ParquetSink::new(c, samples, metrics.clone()).map_err(|e| message(&e))?)
        }
        // Validation refuses a parquet sink in a build without the feature.
        #[cfg(not(feature = "parquet"))]
        SinkConfig::Parquet(c) => {
            return Err(format!("sink `{}`: this build of augur lacks the `parquet` feature", c.name));
        }
    })
}
