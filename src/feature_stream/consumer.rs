//! One stream's consumer: Kafka → decode → store write → cache invalidation → offset commit.
//!
//! A batch is the first message awaited plus whatever else is ready at once (up to
//! `max_batch`), never waited for: an idle topic costs nothing and a backlog is written in
//! pipelines. Per batch: bad messages are counted and dead-lettered; good ones are written in one
//! round trip; a failed write is retried with backoff until it succeeds or shutdown (the offsets
//! wait, so nothing is lost: after a restart the same messages come again, and event-time
//! last-writer-wins makes them no-ops where they were already written). Only then are the
//! batch's offsets committed (asynchronously; once more synchronously at shutdown). A broker
//! outage surfaces as consumer errors, counted and logged at most once per interval: serving
//! goes on with the values the store holds.
//!
//! With `[feature_history]` on, every decoded update the store accepted (stale ones too: the
//! replay drops them exactly as the store did) is appended to the changelog as an
//! [`Upsert`](crate::feature_history::ChangeKind::Upsert) stamped with the time the store write
//! returned, and **offsets are committed only once both the store write and the changelog part
//! holding those updates are committed**. The part commits within `roll_interval_ms` (or at
//! `max_rows_per_part`), so that is how long offsets wait; the store write is not delayed, so
//! freshness is unaffected. Invariant: every update whose offset was committed is in a committed
//! part. A crash before the part commits re-delivers its updates; writing them again changes
//! nothing in the store (upserts are last-writer-wins by event time: a replayed update is stale)
//! and recording them again changes nothing in a replay (the copy is stale there too), so
//! re-delivery is idempotent for both. A changelog that cannot be written holds offsets back (the
//! updates wait in memory up to `max_uncommitted_rows`, then consuming waits), never the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::config::FeatureStreamConfig;
use super::dead_letter::{DeadLetter, DeadLetters};
use super::metrics::{BadLabels, FreshnessLabels, PartitionLabels, StreamLabels, StreamMetrics, UpdateLabels};
use super::specs::UnknownFeatures;
use super::target::Target;
use super::update::{BadMessage, Update};
use super::{StreamError, age_seconds, now_ms};
use crate::feature_history::write::HistoryWriter;
use crate::feature_history::{Change, ChangeKind, HistoryError};
use crate::telemetry::LogEvery;
use crate::validate::librdkafka;

/// How often lag is re-read for partitions with no new messages.
const LAG_EVERY: Duration = Duration::from_secs(2);
/// Bound on one watermark request.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on the final commit and leaving the group at shutdown.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Longest pause between write retries.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// A running stream consumer.
pub(super) struct StreamConsumerTask {
    config: FeatureStreamConfig,
    /// Shared with the lag watcher.
    consumer: Arc<StreamConsumer>,
    target: Target,
    /// Counts the features of each update that no scene's spec reads (applied all the same).
    unknown: UnknownFeatures,
    /// With the in-memory store nothing is committed (each start replays the topic).
    commit: bool,
    dead_letters: DeadLetters,
    metrics: StreamMetrics,
    /// Highest offset + 1 written, per partition: committed after each batch (with history:
    /// once the changelog holds every update written), and at shutdown.
    written: BTreeMap<i32, i64>,
    /// The changelog writer, when `[feature_history]` is on. An `Option` also so it can be moved
    /// to a blocking thread for a commit and back.
    history: Option<HistoryWriter>,
    /// History is on (even while the writer is away on a blocking thread).
    keeps_history: bool,
    warn: LogEvery,
}

impl std::fmt::Debug for StreamConsumerTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConsumerTask").field("stream", &self.config.name).finish_non_exhaustive()
    }
}

// === impl StreamConsumerTask ===

impl StreamConsumerTask {
    /// Creates the consumer and subscribes (no broker round trip: an unreachable cluster shows
    /// later, as consumer errors).
    pub(super) fn new(
        config: &FeatureStreamConfig,
        target: Target,
        unknown: UnknownFeatures,
        metrics: StreamMetrics,
        history: Option<HistoryWriter>,
    ) -> Result<Self, StreamError> {
        let commit = !matches!(target, Target::Memory(_));
        let group = if commit {
            config.group_id.clone()
        } else {
            // Every replica needs every update in its own memory: a group of its own.
            format!("{}.{}", config.group_id, uuid::Uuid::new_v4().simple())
        };
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &group)
            .set("client.id", format!("augur-features-{}", config.name))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let user_sets = |property: &str| config.properties.keys().any(|k| librdkafka::resolve(k).1 == property);
        if !commit || !user_sets("auto.offset.reset") {
            // A new group starts from the retained backlog: replaying it is safe (last writer
            // wins by event time) and a new in-memory replica needs all of it.
            client.set("auto.offset.reset", "earliest");
        }
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let error =
            |action: &'static str| move |source| StreamError::Kafka { stream: config.name.clone(), action, source };
        let consumer: StreamConsumer = client.create().map_err(error("creating the consumer"))?;
        consumer.subscribe(&[&config.topic]).map_err(error("subscribing"))?;
        tracing::info!(stream = %config.name, topic = %config.topic, group = %group, commit, "feature stream started");
        Ok(StreamConsumerTask {
            config: config.clone(),
            consumer: Arc::new(consumer),
            target,
            unknown,
            commit,
            dead_letters: DeadLetters::new(config.dead_letter_path()),
            metrics,
            written: BTreeMap::new(),
            keeps_history: history.is_some(),
            history,
            warn: LogEvery::new(Duration::from_secs(10)),
        })
    }

    /// Consumes until `stop`; then commits what was written and leaves the group.
    pub(super) async fn run(mut self, stop: CancellationToken) {
        let lag = tokio::spawn(watch_lag(
            Arc::clone(&self.consumer),
            self.config.name.clone(),
            self.metrics.clone(),
            stop.clone(),
        ));
        loop {
            let roll_at = self.history.as_ref().and_then(HistoryWriter::roll_at);
            let first = tokio::select! {
                () = stop.cancelled() => break,
                () = sleep_until(roll_at) => {
                    self.roll_history().await;
                    continue;
                }
                m = self.consumer.recv() => m.map(|m| m.detach()),
            };
            let first = match first {
                Ok(m) => m,
                Err(e) => {
                    self.consumer_error(&e);
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.config.max_batch {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => batch.push(m.detach()),
                    Some(Err(e)) => {
                        self.consumer_error(&e);
                        break;
                    }
                    None => break,
                }
            }
            if !self.process(&batch, &stop).await {
                break;
            }
        }
        // Commit what was written (a commit still in flight may be lost with the consumer) and
        // leave the group, on a thread of its own: librdkafka's synchronous commit and close block,
        // without a bound while the group coordinator is unreachable, and a blocking-pool task
        // would hold up the runtime's exit. Waited for up to `CLOSE_WAIT`; after that the thread
        // finishes on its own and the uncommitted updates come again (no-ops).
        // The changelog first: offsets only when every update written is in a committed part.
        let recorded = !self.keeps_history || self.commit_history().await;
        if !recorded {
            tracing::warn!(stream = %self.config.name, "feature stream: the changelog could not be committed at shutdown; offsets not committed (the updates will be consumed and recorded again)");
        }
        let tpl = (self.commit && recorded).then(|| self.offsets());
        let (consumer, stream) = (self.consumer, self.config.name);
        let _ = lag.await;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let closer = std::thread::Builder::new().name("feature-stream-close".into()).spawn(move || {
            if let Some(tpl) = tpl.filter(|t| t.count() > 0)
                && let Err(e) = consumer.commit(&tpl, CommitMode::Sync)
            {
                tracing::warn!(stream = %stream, error = %e, "feature stream: final commit failed; the last updates will be consumed again (no-ops)");
            }
            drop(consumer);
            let _ = done_tx.send(());
        });
        if closer.is_ok() && tokio::time::timeout(CLOSE_WAIT, done_rx).await.is_err() {
            tracing::warn!("feature stream: the consumer did not close within the bound; leaving it to finish");
        }
    }

    fn consumer_error(&self, e: &rdkafka::error::KafkaError) {
        self.metrics.consumer_errors.get_or_create(&self.stream_labels()).inc();
        if let Some(suppressed) = self.warn.ready() {
            tracing::warn!(stream = %self.config.name, error = %e, suppressed, "feature stream: consumer error; serving the values held");
        }
    }

    /// Handles one batch; `false` when shutdown came while a write was being retried.
    async fn process(&mut self, batch: &[OwnedMessage], stop: &CancellationToken) -> bool {
        let name = self.config.name.clone();
        let mut good: Vec<(usize, &str, Update)> = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            let decoded = message
                .payload()
                .ok_or_else(|| BadMessage { reason: "decode", detail: "empty payload".into() })
                .and_then(|payload| Update::decode(self.config.format, payload))
                .and_then(|update| match self.config.tables.get(&update.entity) {
                    Some(table) => Ok((table.as_str(), update)),
                    None => Err(BadMessage {
                        reason: "table",
                        detail: format!("the stream maps no table for entity `{}`", update.entity.as_str()),
                    }),
                });
            match decoded {
                Ok((table, update)) => {
                    self.unknown.observe(&self.metrics, &name, table, &update);
                    good.push((i, table, update));
                }
                Err(bad) => self.bad(message, bad.reason, &bad.detail),
            }
        }
        let writes: Vec<(&str, &Update)> = good.iter().map(|(_, table, u)| (*table, u)).collect();
        let mut pause = Duration::from_millis(50);
        let mut applied_ms = 0;
        let outcomes = loop {
            if writes.is_empty() {
                break Vec::new();
            }
            match self.target.apply(&name, &writes).await {
                Ok(outcomes) => {
                    applied_ms = now_ms();
                    break outcomes;
                }
                Err(e) => {
                    self.metrics.write_errors.get_or_create(&self.stream_labels()).inc();
                    if let Some(suppressed) = self.warn.ready() {
                        tracing::warn!(stream = %name, error = %e, suppressed, "feature stream: store write failed; retrying");
                    }
                    tokio::select! {
                        () = stop.cancelled() => return false,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(MAX_RETRY);
                }
            }
        };
        let mut changes = Vec::new();
        for ((i, table, update), outcome) in good.iter().zip(outcomes) {
            if self.keeps_history && outcome.is_ok() {
                changes.push(Change {
                    table: (*table).to_owned(),
                    entity_id: update.entity_id.clone(),
                    event_time_ms: update.event_time_ms,
                    applied_time_ms: applied_ms,
                    kind: ChangeKind::Upsert,
                    features: update.features.iter().map(|(f, v)| (f.clone(), Some(v.clone()))).collect(),
                });
            }
            match outcome {
                Ok(done) => {
                    let result = if done.applied > 0 { "applied" } else { "stale" };
                    self.metrics
                        .updates
                        .get_or_create(&UpdateLabels { stream: name.clone(), result: result.into() })
                        .inc();
                    if done.applied > 0 {
                        let labels = FreshnessLabels { stream: name.clone(), path: "write".into() };
                        self.metrics.freshness.get_or_create(&labels).observe(age_seconds(update.event_time_ms));
                    }
                }
                Err(detail) => self.bad(&batch[*i], "store", &detail),
            }
        }
        if self.keeps_history && !self.record(changes, stop).await {
            return false;
        }
        for message in batch {
            let next = self.written.entry(message.partition()).or_insert(0);
            *next = (*next).max(message.offset() + 1);
        }
        match &self.history {
            // Nothing of this batch (nor before it) waits for a part: bad messages only.
            Some(history) if history.pending_rows() == 0 => self.commit_offsets(),
            Some(history) if history.due() => self.roll_history().await,
            // The offsets wait for the part: the roll that commits it commits them.
            Some(_) => {}
            None => self.commit_offsets(),
        }
        true
    }

    /// Appends `changes` to the changelog; when the writer holds too many, commits first, and
    /// while that fails waits with backoff. `false` when shutdown came meanwhile (the batch's
    /// offsets are then never committed: it comes again).
    async fn record(&mut self, changes: Vec<Change>, stop: &CancellationToken) -> bool {
        let mut pause = Duration::from_millis(50);
        loop {
            let history = self.history.as_mut().expect("history is on");
            match history.append(changes.iter().cloned()) {
                Ok(()) => return true,
                Err(HistoryError::Full { .. }) if self.commit_history().await => continue,
                Err(e) => {
                    if let Some(suppressed) = self.warn.ready() {
                        tracing::warn!(stream = %self.config.name, error = %e, suppressed, "feature stream: changelog full and not committing; waiting");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_RETRY);
        }
    }

    /// Commits the changelog's pending part(s) and, when nothing is left pending, the offsets of
    /// everything written.
    async fn roll_history(&mut self) {
        if self.commit_history().await {
            self.commit_offsets();
        }
    }

    /// Commits the changelog on a blocking thread; `true` when every change appended is in a
    /// committed part.
    async fn commit_history(&mut self) -> bool {
        let Some(mut history) = self.history.take() else { return !self.keeps_history };
        let (history, result) = match tokio::task::spawn_blocking(move || {
            let result = history.commit();
            (history, result)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let pending = history.pending_rows();
        self.history = Some(history);
        if let Err(e) = result
            && let Some(suppressed) = self.warn.ready()
        {
            tracing::warn!(stream = %self.config.name, error = %e, pending, suppressed, "feature stream: changelog commit failed; offsets wait, retrying");
        }
        pending == 0
    }

    fn commit_offsets(&self) {
        if self.commit
            && let Err(e) = self.consumer.commit(&self.offsets(), CommitMode::Async)
            && let Some(suppressed) = self.warn.ready()
        {
            tracing::warn!(stream = %self.config.name, error = %e, suppressed, "feature stream: commit failed; updates may be consumed again (no-ops)");
        }
    }

    fn bad(&self, message: &OwnedMessage, reason: &'static str, detail: &str) {
        let labels = BadLabels { stream: self.config.name.clone(), reason: reason.into() };
        self.metrics.bad_messages.get_or_create(&labels).inc();
        let letter = DeadLetter {
            stream: &self.config.name,
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            reason,
            detail,
            payload: message.payload().unwrap_or_default(),
        };
        let written = self.dead_letters.write(&letter);
        tracing::warn!(
            stream = %self.config.name,
            partition = message.partition(),
            offset = message.offset(),
            reason,
            detail,
            dead_letter = %self.dead_letters.path().display(),
            written = written.is_ok(),
            "feature stream: bad message skipped"
        );
    }

    fn offsets(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (&partition, &next) in &self.written {
            let _ = tpl.add_partition_offset(&self.config.topic, partition, Offset::Offset(next));
        }
        tpl
    }

    fn stream_labels(&self) -> StreamLabels {
        StreamLabels { stream: self.config.name.clone() }
    }
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Every `LAG_EVERY`, the lag of each assigned partition: its high watermark (asked of the
/// broker, off the async workers) minus the consumer's position. During an outage the request
/// fails and the last value stays.
async fn watch_lag(consumer: Arc<StreamConsumer>, stream: String, metrics: StreamMetrics, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LAG_EVERY) => {}
        }
        let consumer = Arc::clone(&consumer);
        let lags = tokio::task::spawn_blocking(move || {
            let Ok(positions) = consumer.position() else {
                return Vec::new();
            };
            let mut lags = Vec::new();
            for element in positions.elements() {
                let Offset::Offset(position) = element.offset() else {
                    continue;
                };
                if let Ok((_, high)) =
                    consumer.fetch_watermarks(element.topic(), element.partition(), WATERMARK_TIMEOUT)
                {
                    lags.push((element.partition(), (high - position).max(0)));
                }
            }
            lags
        })
        .await
        .unwrap_or_default();
        for (partition, lag) in lags {
            let labels = PartitionLabels { stream: stream.clone(), partition: partition.to_string() };
            metrics.lag.get_or_create(&labels).set(lag);
        }
    }
}
