//! The joiner: holds snapshots in the join store, takes reported events, and writes samples,
//! corrections and orphans to the sample log. One thread of its own (`augur-joiner`, off the
//! tokio workers that serve requests) drains the snapshot queue in batches and emits what is
//! due every `samples.join.tick_ms`; `ReportEvents` calls [`Joiner::report`] directly, so each
//! event gets its result in the response.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::buffer::Progress;
use super::join::{Added, Event, JoinError, JoinStore, Joined, Put};
use super::snapshot::{self, Served, now_ms};
use crate::proto::{self, EventResult, EventStatus, LogRecord, Snapshot};
use crate::sample_log::config::SamplesConfig;
use crate::sample_log::metrics::{EventLabels, ReasonLabels, RecordKindLabels, SampleMetrics};

/// Where joined records go: the segment log (a trait so the joiner is tested without disk).
pub trait RecordWriter: Send + Sync + std::fmt::Debug {
    /// Appends encoded `augur.v1.LogRecord`s in order. An error means they were not written
    /// (the writer counts why).
    fn write(&self, records: Vec<Vec<u8>>) -> Result<(), String>;

    /// The last sequence written: a claim batch's mark (recovery reads the log after it).
    fn last_sequence(&self) -> u64;
}

/// Candidates claimed per store call while emitting.
const DUE_BATCH: usize = 512;

/// Snapshots taken off the queue and held per store call.
const HOLD_BATCH: usize = 64;

/// See the module doc.
#[derive(Debug)]
pub struct Joiner {
    config: Arc<SamplesConfig>,
    store: Arc<dyn JoinStore>,
    writer: Arc<dyn RecordWriter>,
    metrics: SampleMetrics,
    /// The longest positive wait: an impressed candidate is emitted this long after its first event.
    wait_ms: i64,
    /// The snapshot queue's progress (none in tests that hold snapshots directly).
    progress: Option<Arc<Progress>>,
}

/// How long ReportEvents waits for the joiner to hold snapshots queued before it.
const CATCH_UP: Duration = Duration::from_millis(200);

// === impl Joiner ===

impl Joiner {
    /// A joiner over `store`, writing to `writer`.
    pub fn new(
        config: Arc<SamplesConfig>,
        store: Arc<dyn JoinStore>,
        writer: Arc<dyn RecordWriter>,
        metrics: SampleMetrics,
    ) -> Self {
        let wait_ms = config.join.positive_wait_s.values().copied().max().unwrap_or(0) as i64 * 1000;
        metrics.quality.start(&config.quality);
        Joiner { config, store, writer, metrics, wait_ms, progress: None }
    }

    /// Makes ReportEvents wait (at most 200 ms) for snapshots queued before it.
    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The store (restart persistence, tests).
    pub fn store(&self) -> &Arc<dyn JoinStore> {
        &self.store
    }

    fn window_ms(&self) -> i64 {
        self.config.join.window_s as i64 * 1000
    }

    fn drop_count(&self, reason: &str) {
        self.metrics.dropped.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// Puts one snapshot in the join store.
    pub async fn hold(&self, served: Served) {
        self.hold_many(vec![served]).await;
    }

    /// Puts snapshots in the join store in one store call (the queue hands them over in
    /// batches: one lock and one journal write per batch, not per prediction).
    pub async fn hold_many(&self, served: Vec<Served>) {
        let puts: Vec<Put> = served
            .into_iter()
            .map(|served| {
                let snapshot = Bytes::from(served.encode());
                let expires = served.timestamp_ms + self.window_ms();
                // Unimpressed candidates go just before the window closes, while the snapshot is held.
                let unimpressed = self.config.join.emit_unimpressed.then(|| expires - 1000.min(self.window_ms() / 10));
                Put {
                    request_id: served.request_id,
                    snapshot,
                    item_ids: served.item_ids,
                    expires_ms: expires,
                    unimpressed_due_ms: unimpressed,
                }
            })
            .collect();
        for result in self.store.put_many(&puts).await {
            match result {
                Ok(()) => {}
                Err(JoinError::Full { .. }) => self.drop_count("join_store_full"),
                Err(e @ JoinError::Reused { .. }) => {
                    // Two predictions under one id raced past Predict's check (both queued at once).
                    tracing::warn!(error = %e, "snapshot not held");
                    self.drop_count("request_id_reused");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot not held");
                    self.drop_count("join_store_error");
                }
            }
        }
    }

    /// ReportEvents: one result per event, in order. Fails whole only when the store cannot be
    /// reached for the first event that needs it (then nothing was acknowledged and the caller
    /// retries); a store that fails or fills later in the batch answers the events it could not
    /// take REJECTED with the reason, and what was acknowledged before stays (its orphan records
    /// are written).
    pub async fn report(&self, events: Vec<proto::Event>, max_id_bytes: usize) -> Result<Vec<EventResult>, JoinError> {
        if let Some(progress) = &self.progress {
            progress.caught_up(CATCH_UP).await;
        }
        let now = now_ms();
        let mut results = Vec::with_capacity(events.len());
        let mut records = Vec::new();
        let mut acknowledged = 0;
        for (index, raw) in events.into_iter().enumerate() {
            let event = match self.check(raw, index, now, max_id_bytes) {
                Ok(event) => event,
                Err((kind, reason)) => {
                    self.count_event(&kind, "rejected");
                    results.push(EventResult { status: EventStatus::Rejected as i32, reason });
                    continue;
                }
            };
            let due = event.timestamp_ms.max(now - self.window_ms()) + self.wait_ms;
            let added = match self.store.add_event(&event, due).await {
                Ok(added) => added,
                Err(e @ JoinError::Unavailable(_)) if acknowledged == 0 && records.is_empty() => {
                    return Err(e);
                }
                Err(e) => {
                    let reason = match &e {
                        JoinError::Full { .. } => "join_store_full",
                        _ => "join_store_error",
                    };
                    self.count_event(&event.kind, "rejected");
                    self.drop_count(reason);
                    results.push(EventResult {
                        status: EventStatus::Rejected as i32,
                        reason: format!("events[{index}]: {reason}: {e}; retry this event"),
                    });
                    continue;
                }
            };
            let status = match added {
                Added::Accepted => EventStatus::Accepted,
                Added::Duplicate => EventStatus::Duplicate,
                Added::Orphan => {
                    records.push((snapshot::orphan(&event), "orphan"));
                    EventStatus::Orphan
                }
                Added::Late { revision } => {
                    match self.store.joined(&event.request_id, &event.item_id, revision).await {
                        Ok(Some(joined)) => records.extend(self.cut(&joined, &mut None, now, "correction")),
                        // Expired between the two calls: the label is recorded as an orphan.
                        Ok(None) => records.push((snapshot::orphan(&event), "orphan")),
                        Err(e) => {
                            // The label is held; the next correction of this candidate carries it.
                            tracing::warn!(error = %e, "correction not written");
                            self.drop_count("correction_read");
                        }
                    }
                    EventStatus::Accepted
                }
            };
            if status == EventStatus::Accepted {
                acknowledged += 1;
            }
            self.count_event(&event.kind, status_name(status));
            results.push(EventResult { status: status as i32, reason: String::new() });
        }
        self.write(records);
        Ok(results)
    }

    /// Validates one event; `Err((type label, reason))` names the field and the limit.
    fn check(&self, e: proto::Event, index: usize, now: i64, max_id_bytes: usize) -> Result<Event, (String, String)> {
        let known = self.config.is_event_type(&e.r#type);
        // Unknown types share one label value so a caller cannot grow the metric's cardinality.
        let kind = if known { e.r#type.clone() } else { "invalid".to_owned() };
        let field = |name: &str| format!("events[{index}].{name}");
        let reject = |reason: String| Err((kind.clone(), reason));
        for (name, value) in [("request_id", &e.request_id), ("item_id", &e.item_id)] {
            if value.is_empty() {
                return reject(format!("{}: must not be empty", field(name)));
            }
            if value.len() > max_id_bytes {
                return reject(format!(
                    "{}: {} bytes, more than server.max_string_bytes ({max_id_bytes})",
                    field(name),
                    value.len()
                ));
            }
        }
        if !known {
            let mut types: Vec<&str> = crate::sample_log::config::BUILTIN_EVENT_TYPES.to_vec();
            types.extend(self.config.join.event_types.iter().map(String::as_str));
            let shown: String = e.r#type.chars().take(64).collect();
            return reject(format!("{}: `{shown}` is not one of {}", field("type"), types.join(", ")));
        }
        let timestamp_ms = if e.timestamp_ms == 0 { now } else { e.timestamp_ms };
        let skew = self.config.join.max_future_skew_s as i64 * 1000;
        if timestamp_ms > now + skew {
            return reject(format!(
                "{}: {} ms in the future, more than samples.join.max_future_skew_s ({} s)",
                field("timestamp_ms"),
                timestamp_ms - now,
                self.config.join.max_future_skew_s
            ));
        }
        if timestamp_ms < now - self.window_ms() {
            return reject(format!(
                "{}: before the join window (samples.join.window_s = {} s)",
                field("timestamp_ms"),
                self.config.join.window_s
            ));
        }
        if e.value.is_some_and(|v| !v.is_finite()) {
            return reject(format!("{}: must be finite", field("value")));
        }
        Ok(Event { request_id: e.request_id, item_id: e.item_id, kind: e.r#type, timestamp_ms, value: e.value })
    }

    fn count_event(&self, kind: &str, result: &str) {
        self.metrics.events.get_or_create(&EventLabels { r#type: kind.to_owned(), result: result.to_owned() }).inc();
    }

    /// Writes `records`; `false` when the log refused them (counted by the log, logged here).
    fn write(&self, records: Vec<(LogRecord, &'static str)>) -> bool {
        if records.is_empty() {
            return true;
        }
        let kinds: Vec<&str> = records.iter().map(|(_, k)| *k).collect();
        let encoded = records.iter().map(|(r, _)| r.encode_to_vec()).collect();
        match self.writer.write(encoded) {
            Ok(()) => {
                // Only what the log took: a refused batch is emitted again and would count twice.
                self.metrics.quality.observe(records.iter().map(|(r, _)| r));
                for kind in kinds {
                    self.metrics.emitted.get_or_create(&RecordKindLabels { kind: kind.to_owned() }).inc();
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, records = kinds.len(), "sample records not written");
                false
            }
        }
    }

    /// The records of a joined candidate (one per position it held), tagged `kind`; a held
    /// snapshot that does not decode is counted and yields none. `decoded` keeps the last
    /// snapshot decoded: a batch claims a prediction's candidates one after another, and each
    /// would otherwise decode the whole snapshot again.
    fn cut(
        &self,
        joined: &Joined,
        decoded: &mut Option<(String, Snapshot)>,
        now: i64,
        kind: &'static str,
    ) -> Vec<(LogRecord, &'static str)> {
        let snapshot = match decoded {
            Some((request_id, s)) if *request_id == joined.request_id => s,
            _ => match Snapshot::decode(joined.snapshot.clone()) {
                Ok(s) => &decoded.insert((joined.request_id.clone(), s)).1,
                Err(e) => {
                    tracing::warn!(error = %e, "held snapshot does not decode");
                    self.drop_count("corrupt_snapshot");
                    return Vec::new();
                }
            },
        };
        snapshot::samples(snapshot, &joined.item_id, &joined.labels, joined.revision, now)
            .into_iter()
            .map(|r| (r, kind))
            .collect()
    }

    /// Emits every candidate due by `now`; returns how many samples were written. Each batch is
    /// claimed, written to the sample log, then confirmed (`join` module doc): a crash between
    /// the claim and the confirmation is settled at the next start. A batch the log refuses is
    /// released (due again next tick), never dropped.
    pub async fn emit_due(&self, now: i64) -> Result<usize, JoinError> {
        let mut written = 0;
        loop {
            let mark = self.writer.last_sequence();
            let due = self.store.take_due(now, DUE_BATCH, mark).await?;
            let claimed = due.len();
            if claimed == 0 {
                return Ok(written);
            }
            let mut records = Vec::new();
            let mut decoded = None;
            for joined in &due {
                records.extend(self.cut(joined, &mut decoded, now, "sample"));
            }
            let n = records.len();
            if !self.write(records) {
                self.store.release(&due, now).await?;
                return Err(JoinError::Unavailable("the sample log refused the batch; retried next tick".into()));
            }
            self.store.confirm().await?;
            written += n;
            if claimed < DUE_BATCH {
                return Ok(written);
            }
        }
    }

    /// The joiner task: holds queued snapshots, emits due samples every tick. On `cancel` it
    /// holds every snapshot still queued (so none accepted before shutdown is lost) and returns.
    pub async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Served>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.join.tick_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(HOLD_BATCH);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, HOLD_BATCH) => match n {
                    0 => break,
                    n => self.hold_batch(&mut batch, n).await,
                },
                _ = tick.tick() => self.tick().await,
                () = cancel.cancelled() => break,
            }
        }
        rx.close();
        loop {
            match rx.recv_many(&mut batch, HOLD_BATCH).await {
                0 => break,
                n => self.hold_batch(&mut batch, n).await,
            }
        }
        self.tick().await;
    }

    async fn hold_batch(&self, batch: &mut Vec<Served>, n: usize) {
        self.metrics.queue_depth.dec_by(n as i64);
        self.hold_many(std::mem::take(batch)).await;
        self.progress.iter().for_each(|p| p.held(n as u64));
    }

    /// [`run`](Self::run) on a thread of its own (`augur-joiner`, with a single-threaded
    /// runtime): encoding snapshots, holding them and emitting samples is CPU work that would
    /// otherwise take turns with requests on the tokio workers. `done` resolves when it ends.
    pub fn spawn(
        self: Arc<Self>,
        rx: mpsc::Receiver<Served>,
        cancel: CancellationToken,
    ) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("augur-joiner".into()).spawn(move || {
            runtime.block_on(self.run(rx, cancel));
            let _ = done_tx.send(());
        })?;
        Ok(done)
    }

    async fn tick(&self) {
        // One `now` for both: whatever falls due by a window's close is claimed before the
        // window's prediction may go (and a prediction with a candidate still scheduled stays).
        let now = now_ms();
        if let Err(e) = self.emit_due(now).await {
            tracing::warn!(error = %e, "emitting due samples failed; retried next tick");
        }
        let expired = self.store.expire(now);
        self.metrics.expired_unlabelled.inc_by(expired.unlabelled as u64);
        if let Some((requests, bytes)) = self.store.pending() {
            self.metrics.pending.set(requests as i64);
            self.metrics.pending_bytes.set(bytes as i64);
        }
    }
}

fn status_name(status: EventStatus) -> &'static str {
    match status {
        EventStatus::Accepted => "accepted",
        EventStatus::Duplicate => "duplicate",
        EventStatus::Orphan => "orphan",
        EventStatus::Rejected => "rejected",
        EventStatus::Unspecified => "unspecified",
    }
}
