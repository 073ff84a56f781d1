//! The tail driver: one task per network sink that reads the segment log from the sink's
//! persisted cursor and hands it batches. The cursor moves only past what the sink settled, so an
//! outage costs disk (the log keeps the records; its bound counts what it refuses), not samples;
//! a restart resumes from the cursor. Transient failures are retried with jittered exponential
//! backoff, the same batch again (the sink's consumers drop duplicates by record id). A record the
//! sink refuses for good (Kafka: larger than `message.max.bytes`) is appended to the sink's
//! dead-letter log (`<log dir>/dead_letter/<sink>/`, fsynced), counted in
//! `augur_samples_dead_letter_total{sink,reason}`, and the cursor moves past it: retrying it would
//! stall every record behind it forever.
//!
//! A staging sink (Parquet, [`SampleSink::staging`]) acknowledges records it has only staged in an
//! open file: the driver reads on from its own position but persists the cursor only up to the
//! sink's oldest staged record, ticks the sink on its interval (commits on time, hours closing)
//! and once at stop, and after a failure rereads from the persisted cursor. A crash then
//! re-delivers what was staged; the sink makes that idempotent.
//!
//! The sink's health check runs once at start in a task of its own, so an unreachable destination
//! delays neither serving nor the first delivery attempt; its answer sets `augur_samples_sink_up`
//! (until a delivery attempt says otherwise) and a failure is logged and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::file::{LogError, SegmentLog};
use super::record::Record;
use super::sink::{Delivered, SampleSink, SinkError, Tick};
use crate::sample_log::metrics::{DeadLetterLabels, SampleMetrics, SinkLabels};
use crate::telemetry::LogEvery;

/// A sink's tail settings (`[samples.sinks.tail]`), defined with the rest of the config tree.
pub use crate::sample_log::config::TailConfig;

/// Starts the driver of `sink` with `config` (the sink's `[samples.sinks.tail]`). It runs until
/// `cancel`, then delivers until caught up or the drain timeout passes, and returns.
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
    /// Persisted: everything up to it is settled durably.
    cursor: u64,
    /// Last sequence handed to the sink (equal to `cursor` except for a staging sink).
    position: u64,
    /// A staging sink's tick interval and next tick.
    tick: Option<(Duration, Instant)>,
    /// Opened at the first refusal: most sinks never need one.
    dead_letter: Option<Arc<SegmentLog>>,
    /// Set by the first delivery outcome: from then on the deliveries, not the start-up health
    /// check (which may answer late), say whether the sink is up.
    delivered_once: Arc<AtomicBool>,
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
        let tick = sink.staging().map(|every| (every, Instant::now() + every));
        Tail {
            log,
            sink,
            config,
            metrics,
            labels,
            cancel,
            deadline: None,
            cursor,
            position: cursor,
            tick,
            dead_letter: None,
            delivered_once: Arc::new(AtomicBool::new(false)),
            warn: LogEvery::new(Duration::from_secs(10)),
        }
    }

    async fn run(mut self) {
        let health = tokio::spawn(report_health(
            Arc::clone(&self.sink),
            self.metrics.clone(),
            self.labels.clone(),
            Arc::clone(&self.delivered_once),
        ));
        let mut changes = self.log.subscribe();
        let mut backoff = self.config.backoff_min();
        let mut batch: Vec<Record> = Vec::new();
        let stop = loop {
            self.update_lag();
            if self.deadline.is_none() && self.cancel.is_cancelled() {
                self.deadline = Some(Instant::now() + self.config.drain_timeout());
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                break Stop::DeadlinePassed;
            }
            if let Some((every, next)) = self.tick
                && Instant::now() >= next
            {
                self.tick = Some((every, Instant::now() + every));
                let caught_up = batch.is_empty() && self.position >= self.log.last_sequence();
                if !self.tick_sink(Tick { caught_up, closing: false }, &mut batch).await
                    && !self.pause(&mut backoff).await
                {
                    break Stop::DeadlinePassed;
                }
                continue;
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
                    if written > self.position {
                        // Everything up to `written` was readable at the time of the read and
                        // none of it came back: all corrupt (skipped and counted by the log).
                        self.position = written;
                        self.settle().await;
                        continue;
                    }
                    if self.deadline.is_some() {
                        break Stop::Drained;
                    }
                    let next_tick = self.tick.map(|(_, next)| next);
                    tokio::select! {
                        _ = changes.changed() => {}
                        _ = self.cancel.cancelled() => {}
                        _ = sleep_until(next_tick), if next_tick.is_some() => {}
                    }
                    continue;
                }
            }
            let outcome = match self.deliver(&batch).await {
                None => break Stop::DeadlinePassed,
                Some(outcome) => outcome,
            };
            self.delivered_once.store(true, Ordering::Release);
            self.metrics.sink_up.get_or_create(&self.labels).set(i64::from(outcome.is_ok()));
            let settled = match outcome {
                Ok(delivered) => self.dead_letter(&batch, delivered).await,
                Err(e) => Err(e.into()),
            };
            match settled {
                Ok(acknowledged) => {
                    self.position = batch.last().map_or(self.position, |r| r.sequence);
                    self.metrics.sink_delivered.get_or_create(&self.labels).inc_by(acknowledged as u64);
                    batch.clear();
                    backoff = self.config.backoff_min();
                    self.settle().await;
                }
                Err(e) => {
                    self.metrics.sink_errors.get_or_create(&self.labels).inc();
                    self.warn_failure("sample sink delivery failed; retrying the batch", &e);
                    self.rewind(&mut batch);
                    if !self.pause(&mut backoff).await {
                        break Stop::DeadlinePassed;
                    }
                }
            }
        };
        // A staging sink commits what it holds: local work, so even past the drain deadline (it
        // saves the next start re-delivering it; a cut shutdown loses nothing either way).
        if self.tick.is_some() {
            self.tick_sink(Tick { caught_up: matches!(stop, Stop::Drained), closing: true }, &mut batch).await;
        }
        // A health check still waiting on an unreachable destination has nothing left to report.
        health.abort();
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
        let (log, after, max) = (self.log.clone(), self.position, self.config.batch_max.max(1));
        spawn_blocking(move || log.read_after(after, max)).await
    }

    /// Delivers `batch`; `None` when the drain deadline passed first. A cancel during the call
    /// does not abort it: it starts the drain clock.
    async fn deliver(&mut self, batch: &[Record]) -> Option<Result<Delivered, SinkError>> {
        let delivery = self.sink.deliver(batch);
        tokio::pin!(delivery);
        loop {
            let deadline = self.deadline;
            tokio::select! {
                result = &mut delivery => return Some(result),
                _ = self.cancel.cancelled(), if deadline.is_none() => {
                    self.deadline = Some(Instant::now() + self.config.drain_timeout());
                }
                _ = sleep_until(deadline), if deadline.is_some() => return None,
            }
        }
    }

    /// Appends the records the sink refused for good to its dead-letter log, fsynced, before the
    /// cursor may pass them; returns how many of `batch` were acknowledged. On `Err` nothing is
    /// counted and the batch is retried whole (the acknowledged part again: consumers dedup).
    async fn dead_letter(&mut self, batch: &[Record], delivered: Delivered) -> Result<usize, DeadLetterError> {
        // Defensive against a sink listing a record twice or out of range: each is kept once.
        let mut refused: Vec<_> = delivered.refused.into_iter().filter(|r| r.index < batch.len()).collect();
        refused.sort_unstable_by_key(|r| r.index);
        refused.dedup_by_key(|r| r.index);
        if refused.is_empty() {
            return Ok(batch.len());
        }
        let log = match &self.dead_letter {
            Some(log) => Arc::clone(log),
            None => {
                let (main, sink) = (Arc::clone(&self.log), self.labels.sink.clone());
                let log = Arc::new(spawn_blocking(move || main.open_dead_letter(&sink)).await?);
                self.dead_letter = Some(Arc::clone(&log));
                log
            }
        };
        let payloads: Vec<Vec<u8>> = refused.iter().map(|r| batch[r.index].payload.to_vec()).collect();
        spawn_blocking(move || log.append(&payloads).and_then(|_| log.sync())).await?;
        for r in &refused {
            let labels = DeadLetterLabels { sink: self.labels.sink.clone(), reason: r.reason.to_owned() };
            self.metrics.dead_letter.get_or_create(&labels).inc();
        }
        // One line per batch: a misconfiguration (a `message.max.bytes` below every record) would
        // otherwise log every record.
        let first = &refused[0];
        let record = &batch[first.index];
        tracing::warn!(
            sink = %self.labels.sink, records = refused.len(), sequence = record.sequence, id = %record.id,
            reason = first.reason, detail = %first.detail,
            "sample sink refused records for good; kept in its dead-letter log"
        );
        Ok(batch.len() - refused.len())
    }

    /// Ticks a staging sink and settles; `false` (after counting and rewinding) if it failed.
    async fn tick_sink(&mut self, tick: Tick, batch: &mut Vec<Record>) -> bool {
        match self.sink.tick(tick).await {
            Ok(()) => {
                self.settle().await;
                true
            }
            Err(e) => {
                self.metrics.sink_errors.get_or_create(&self.labels).inc();
                self.warn_failure("sample sink commit failed; rereading from its cursor", &e);
                self.rewind(batch);
                false
            }
        }
    }

    /// After a failure of a staging sink (which dropped what it staged): read again from the
    /// persisted cursor. Other sinks retry the same batch.
    fn rewind(&mut self, batch: &mut Vec<Record>) {
        if self.tick.is_some() {
            batch.clear();
            self.position = self.cursor;
        }
    }

    /// Persists the cursor up to what is durable: everything delivered, or for a staging sink,
    /// up to its oldest staged record.
    async fn settle(&mut self) {
        let durable = match self.sink.staged_from() {
            Some(first) => first.saturating_sub(1).min(self.position),
            None => self.position,
        };
        if durable > self.cursor {
            self.advance(durable).await;
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
        *backoff = (*backoff * 2).min(self.config.backoff_max());
        let wake = Instant::now() + jittered;
        loop {
            let deadline = self.deadline;
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => return true,
                _ = self.cancel.cancelled(), if deadline.is_none() => {
                    self.deadline = Some(Instant::now() + self.config.drain_timeout());
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

/// Why a batch was not settled: the sink's transient failure, or its dead letters could not be
/// written (both retried).
#[derive(Debug, thiserror::Error)]
enum DeadLetterError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("writing the dead-letter log: {0}")]
    Log(#[from] LogError),
}

/// The start-up health check, off the driver's path: logs and counts a failure, and sets the up
/// gauge unless a delivery has already said more recently whether the sink is up.
async fn report_health(
    sink: Arc<dyn SampleSink>,
    metrics: SampleMetrics,
    labels: SinkLabels,
    delivered_once: Arc<AtomicBool>,
) {
    let health = sink.healthcheck().await;
    if let Err(e) = &health {
        metrics.sink_healthcheck_failures.get_or_create(&labels).inc();
        tracing::warn!(sink = %labels.sink, error = %e, "sample sink unhealthy at start; samples wait in the log");
    } else {
        tracing::info!(sink = %labels.sink, "sample sink healthy");
    }
    if !delivered_once.load(Ordering::Acquire) {
        metrics.sink_up.get_or_create(&labels).set(i64::from(health.is_ok()));
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
