//! The seam between the sample log and the network: a sink delivers records in log order and
//! says when they are acknowledged. The tail driver (`tail.rs`) reads the log from the sink's
//! persisted cursor, hands it batches, retries failures with backoff, and advances the cursor
//! only past what `deliver` acknowledged — so an outage costs disk, not samples.

use std::fmt;

use crate::fetch::BoxFuture;

use super::record::Record;

/// A destination of training samples (Kafka, Redis Streams).
pub trait SampleSink: Send + Sync + fmt::Debug + 'static {
    /// Name from the config (metrics label, cursor file).
    fn name(&self) -> &str;

    /// Delivers `records` (in log order). `Ok` only when every one is acknowledged by the
    /// destination; on `Err` the driver retries the whole batch later, so a destination may see
    /// a record twice (consumers dedup by [`Record::id`]).
    fn deliver<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// Why a batch was not (wholly) acknowledged.
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
