//! The seam between the sample log and the network: a sink delivers records in log order and
//! says, per batch, which were acknowledged and which it refuses for good. The tail driver
//! (`tail.rs`) reads the log from the sink's persisted cursor, hands it batches, retries
//! transient failures with backoff, sends permanent refusals to the sink's dead-letter log, and
//! advances the cursor only past what is acknowledged or dead-lettered — so an outage costs disk,
//! not samples, and no record is retried forever.

use std::fmt;
use std::time::Duration;

use crate::fetch::BoxFuture;

use super::record::Record;

/// A destination of training samples (Kafka, Redis Streams).
pub trait SampleSink: Send + Sync + fmt::Debug + 'static {
    /// Name from the config (metrics label, cursor file).
    fn name(&self) -> &str;

    /// Delivers `records` (in log order).
    ///
    /// - `Err`: a transient failure (outage, timeout); the driver retries the whole batch later,
    ///   so a destination may see a record twice (consumers dedup by [`Record::id`]).
    /// - `Ok`: every record is settled — acknowledged, or listed in [`Delivered::refused`] because
    ///   the destination will never take it (retrying it would stall the sink forever). A batch
    ///   with both transient failures and refusals is `Err`: the refusals come back on the retry.
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<Delivered, SinkError>>;

    /// Whether the destination answers now. The driver runs it once in the background at start
    /// (never in the way of serving or delivery) and reports the result as the sink's health.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    /// `Some(tick interval)` for a sink that *stages* what it acknowledges (Parquet: rows sit in
    /// an open file until it is committed). For such a sink the driver keeps the persisted
    /// cursor before [`Self::staged_from`] rather than past every acknowledged record, calls
    /// [`Self::tick`] every interval and once when it stops, and after a failed `deliver` or
    /// `tick` reads again from the persisted cursor (the sink has dropped what it staged).
    /// `None` (network sinks): an acknowledgement is durable.
    fn staging(&self) -> Option<Duration> {
        None
    }

    /// The first log sequence the sink holds staged but not yet durable; `None` when nothing is.
    fn staged_from(&self) -> Option<u64> {
        None
    }

    /// A staging sink's chance to commit on time rather than on records: `caught_up` when the
    /// driver has delivered everything written so far, `closing` once when it stops (commit all).
    fn tick(&self, _tick: Tick) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// What the driver tells a staging sink at a [`SampleSink::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Every record written to the log so far has been delivered.
    pub caught_up: bool,
    /// The driver stops after this tick: commit everything staged.
    pub closing: bool,
}

/// The outcome of a batch every record of which is settled.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Records the destination refuses for good, by position in the batch (ascending); every
    /// other record of the batch was acknowledged.
    pub refused: Vec<Refused>,
}

/// One record a sink will never accept as it is.
#[derive(Debug)]
pub struct Refused {
    /// Position in the batch handed to `deliver`.
    pub index: usize,
    /// Why, as a bounded metric label (`too_large`, `invalid`).
    pub reason: &'static str,
    /// What the destination said, for the log line.
    pub detail: String,
}

/// Why a batch was not (wholly) settled: transient, so the driver retries it.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination is unreachable or refused the batch; retried.
    #[error("sink `{sink}` unavailable: {reason}")]
    Unavailable {
        /// The sink's name.
        sink: String,
        /// What failed.
        reason: String,
    },
    /// Acknowledgements did not arrive in time; retried.
    #[error("sink `{sink}`: no acknowledgement within {after_ms} ms")]
    Timeout {
        /// The sink's name.
        sink: String,
        /// How long the driver waited.
        after_ms: u64,
    },
}

// === impl Delivered ===

impl Delivered {
    /// Every record acknowledged.
    pub fn all() -> Delivered {
        Delivered::default()
    }
}
