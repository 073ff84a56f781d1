//! The tail driver: one task per network sink that reads the segment log from the sink's
//! persisted cursor and hands it batches. The cursor moves only past what the sink acknowledged,
//! so an outage costs disk (the log keeps the records; its bound counts what it refuses), not
//! samples; a restart resumes from the cursor. Failures are retried with jittered exponential
//! backoff, the same batch again (the sink's consumers drop duplicates by record id).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::file::{LogError, SegmentLog};
use super::record::Record;
use super::sink::SampleSink;
use crate::telemetry::LogEvery;
use crate::telemetry::{SampleMetrics, SinkLabels};

/// How a tail driver batches, retries and drains.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// Records per `deliver` call at most: bounds the memory a batch holds and the work a retry
    /// repeats.
    pub batch_max: usize,
    /// First retry delay after a failure; doubles per consecutive failure...
    pub backoff_min: Duration,
    /// ... up to this.
    pub backoff_max: Duration,
    /// After cancel, how long the driver keeps delivering to catch up before it gives up (what is
    /// left stays in the log for the next start).
    pub drain_timeout: Duration,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            batch_max: 512,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Starts the driver of `sink`. It runs until `cancel`, then delivers until caught up or
/// `drain_timeout` passes, and returns.
pub fn spawn_tail(
    log: Arc<SegmentLog>,
    sink: Arc<dyn SampleSink>,
    config: TailConfig,
    metrics: SampleMetrics,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(Tail::new(log, sink, config, metrics, cancel).run())
}

struct Tail {
    log: Arc<SegmentLog>,
    sink: Arc<dyn SampleSink>,
    config: TailConfig,
    metrics: SampleMetrics,
    labels: SinkLabels,
    cancel: CancellationToken,
    /// Set once cancelled: the driver stops at this instant at the latest.
    deadline: Option<Instant>,
    cursor: u64,
    warn: LogEvery,
}

/// Why a step ended the driver.
enum Stop {
    Drained,
    DeadlinePassed,
}

// === impl Tail ===

impl Tail {
    fn new(
        log: Arc<SegmentLog>,
        sink: Arc<dyn SampleSink>,
        config: TailConfig,
        metrics: SampleMetrics,
        cancel: CancellationToken,
    ) -> Tail {
        let labels = SinkLabels { sink: sink.name().to_owned() };
        let cursor = log.cursor(sink.name());
        Tail {
            log,
            sink,
            config,
            metrics,
            labels,
            cancel,
            deadline: None,
            cursor,
            warn: LogEvery::new(Duration::from_secs(10)),
        }
    }

    async fn run(mut self) {
        let mut changes = self.log.subscribe();
        let mut backoff = self.config.backoff_min;
        let mut batch: Vec<Record> = Vec::new();
        let stop = loop {
            self.update_lag();
            if self.deadline.is_none() && self.cancel.is_cancelled() {
                self.deadline = Some(Instant::now() + self.config.drain_timeout);
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                break Stop::DeadlinePassed;
            }
            if batch.is_empty() {
                // Marked seen before reading, so a record written after the read wakes us.
                changes.borrow_and_update();
                let written = self.log.last_sequence();
                match self.read().await {
                    Ok(records) => batch = records,
                    Err(e) => {
                        self.warn_failure("reading the sample log failed", &e);
                        if !self.pause(&mut backoff).await {
                            break Stop::DeadlinePassed;
                        }
                        continue;
                    }
                }
                if batch.is_empty() {
                    if written > self.cursor {
                        // Everything up to `written` was readable at the time of the read and
                        // none of it came back: all corrupt (skipped and counted by the log).
                        self.advance(written).await;
                        continue;
                    }
                    if self.deadline.is_some() {
                        break Stop::Drained;
                    }
                    tokio::select! {
                        _ = changes.changed() => {}
                        _ = self.cancel.cancelled() => {}
                    }
                    continue;
                }
            }
            match self.deliver(&batch).await {
                None => break Stop::DeadlinePassed,
                Some(Ok(())) => {
                    let last = batch.last().map_or(self.cursor, |r| r.sequence);
                    self.metrics.sink_delivered.get_or_create(&self.labels).inc_by(batch.len() as u64);
                    batch.clear();
                    backoff = self.config.backoff_min;
                    self.advance(last).await;
                }
                Some(Err(e)) => {
                    self.metrics.sink_errors.get_or_create(&self.labels).inc();
                    self.warn_failure("sample sink delivery failed; retrying the batch", &e);
                    if !self.pause(&mut backoff).await {
                        break Stop::DeadlinePassed;
                    }
                }
            }
        };
        self.update_lag();
        let lag = self.log.last_sequence().saturating_sub(self.cursor);
        match stop {
            Stop::Drained => tracing::debug!(sink = %self.labels.sink, cursor = self.cursor, "sample sink drained"),
            Stop::DeadlinePassed => tracing::warn!(
                sink = %self.labels.sink, cursor = self.cursor, lag,
                "sample sink not caught up at shutdown; the rest stays in the log for the next start"
            ),
        }
    }

    async fn read(&self) -> Result<Vec<Record>, LogError> {
        // An empty read must mean "nothing readable" (see `run`), never "asked for nothing".
        let (log, after, max) = (self.log.clone(), self.cursor, self.config.batch_max.max(1));
        spawn_blocking(move || log.read_after(after, max)).await
    }

    /// Delivers `batch`; `None` when the drain deadline passed first. A cancel during the call
    /// does not abort it: it starts the drain clock.
    async fn deliver(&mut self, batch: &[Record]) -> Option<Result<(), super::sink::SinkError>> {
        let delivery = self.sink.deliver(batch);
        tokio::pin!(delivery);
        loop {
            let deadline = self.deadline;
            tokio::select! {
                result = &mut delivery => return Some(result),
                _ = self.cancel.cancelled(), if deadline.is_none() => {
                    self.deadline = Some(Instant::now() + self.config.drain_timeout);
                }
                _ = sleep_until(deadline), if deadline.is_some() => return None,
            }
        }
    }

    /// Moves the cursor in memory and persists it; a failed write is retried with the next
    /// batch (the sink already has these records, so holding them back would only duplicate).
    async fn advance(&mut self, to: u64) {
        self.cursor = to;
        let (log, sink) = (self.log.clone(), self.labels.sink.clone());
        if let Err(e) = spawn_blocking(move || log.set_cursor(&sink, to)).await {
            self.warn_failure("persisting the sink cursor failed", &e);
        }
        self.update_lag();
    }

    /// Sleeps the jittered backoff and doubles it; `false` if the drain deadline comes first.
    async fn pause(&mut self, backoff: &mut Duration) -> bool {
        // "Equal jitter": half fixed, half random, so sinks failing together do not retry together.
        let jittered = backoff.mul_f64(rand::rng().random_range(0.5..1.0));
        *backoff = (*backoff * 2).min(self.config.backoff_max);
        let wake = Instant::now() + jittered;
        loop {
            let deadline = self.deadline;
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => return true,
                _ = self.cancel.cancelled(), if deadline.is_none() => {
                    self.deadline = Some(Instant::now() + self.config.drain_timeout);
                }
                _ = sleep_until(deadline), if deadline.is_some() => return false,
            }
        }
    }

    fn update_lag(&self) {
        let lag = self.log.last_sequence().saturating_sub(self.cursor);
        self.metrics.sink_lag.get_or_create(&self.labels).set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    fn warn_failure(&mut self, message: &'static str, error: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.warn.ready() {
            tracing::warn!(sink = %self.labels.sink, cursor = self.cursor, %error, suppressed, "{message}");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Runs blocking log I/O off the async workers; a panicked task is reported as an I/O error
/// rather than taking the driver down.
async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(LogError::Io { op: "run", path: Default::default(), source: std::io::Error::other(e.to_string()) })
    })
}

#[cfg(test)]
mod tests;
