//! The label join: snapshots wait here for the events callers report, until their positive wait
//! ends and they become samples.
//!
//! Semantics every store implements the same way (EasyRec/PAI-Rec defaults, DESIGN.md):
//! - an event for a request that is not (or no longer) held is an orphan;
//! - (request_id, item_id, type) is reported once: a repeat is a duplicate;
//! - the first event of a candidate (an impression, or a click that implies one) schedules its
//!   sample at event time + the longest positive wait; with `emit_unimpressed` every candidate is
//!   also scheduled just before the window ends, as an unlabelled sample;
//! - a label arriving after its sample was emitted makes the store bump the candidate's revision,
//!   and the joiner emits a correction with every label known so far.
//!
//! [`memory`] keeps it in this process (bounded in bytes); [`redis`] in Redis, so a callback may
//! land on any replica.

pub mod memory;
pub mod redis;

use bytes::Bytes;

use crate::fetch::BoxFuture;

/// A reported event, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The prediction's request id.
    pub request_id: String,
    /// The candidate.
    pub item_id: String,
    /// Event type.
    pub kind: String,
    /// When it happened, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Optional value.
    pub value: Option<f64>,
}

/// What the store made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Held, waiting for the candidate's sample to be emitted.
    Accepted,
    /// (request_id, item_id, type) was seen before.
    Duplicate,
    /// The request or the candidate is not held.
    Orphan,
    /// Held, but the sample was already emitted: emit a correction with this revision.
    Late {
        /// Revision of the correction (≥ 1).
        revision: u32,
    },
}

/// A candidate ready to become a sample (or a correction).
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The prediction's encoded `augur.v1.Snapshot`.
    pub snapshot: Bytes,
    /// The candidate.
    pub item_id: String,
    /// Every event of the candidate known so far.
    pub labels: Vec<Event>,
    /// 0 for the first emission.
    pub revision: u32,
}

/// Why the join store failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The in-memory store is at `samples.join.store.max_bytes`.
    #[error("join store full ({max_bytes} bytes, samples.join.store.max_bytes)")]
    Full {
        /// The bound.
        max_bytes: usize,
    },
    /// Redis failed or timed out.
    #[error("join store unavailable: {0}")]
    Unavailable(String),
    /// A stored value did not decode.
    #[error("join store value corrupt: {0}")]
    Corrupt(String),
}

/// Where snapshots wait for labels.
pub trait JoinStore: Send + Sync + std::fmt::Debug {
    /// Holds a prediction until `expires_ms`. `unimpressed_due_ms`: schedule every candidate
    /// then even without events (`emit_unimpressed`).
    fn put<'a>(
        &'a self,
        request_id: &'a str,
        snapshot: Bytes,
        item_ids: &'a [String],
        expires_ms: i64,
        unimpressed_due_ms: Option<i64>,
    ) -> BoxFuture<'a, Result<(), JoinError>>;

    /// Records an event; schedules the candidate at `due_ms` if it is its first event.
    fn add_event<'a>(&'a self, event: &'a Event, due_ms: i64) -> BoxFuture<'a, Result<Added, JoinError>>;

    /// Claims up to `limit` candidates due by `now_ms` (each exactly once, across replicas) and
    /// marks them emitted at revision 0.
    fn take_due(&self, now_ms: i64, limit: usize) -> BoxFuture<'_, Result<Vec<Joined>, JoinError>>;

    /// The candidate with every label so far, for a correction at `revision`.
    fn joined<'a>(
        &'a self,
        request_id: &'a str,
        item_id: &'a str,
        revision: u32,
    ) -> BoxFuture<'a, Result<Option<Joined>, JoinError>>;

    /// Drops what expired by `now_ms`; returns how many predictions went (memory store; Redis
    /// expires keys itself).
    fn expire(&self, now_ms: i64) -> usize;

    /// Predictions held (memory store; `None` when the store cannot tell cheaply).
    fn pending(&self) -> Option<(usize, usize)>;
}
