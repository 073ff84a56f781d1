//! The label join: snapshots wait here for the events callers report, until their positive wait
//! ends and they become samples.
//!
//! Semantics every store implements the same way (EasyRec/PAI-Rec defaults, DESIGN.md):
//! - an event for a request that is not (or no longer) held is an orphan;
//! - (request_id, item_id, type) is reported once: a repeat is a duplicate;
//! - the first event of a candidate (an impression, or a click that implies one) schedules its
//!   sample at event time + the longest positive wait, but never after the prediction's window
//!   closes: at the close a candidate is emitted with the labels known so far, never dropped;
//!   with `emit_unimpressed` every candidate is also scheduled just before the window ends, as an
//!   unlabelled sample;
//! - a prediction leaves the store only once every scheduled candidate of it was emitted; the
//!   candidates that never had an event leave with it and are counted (`expired_unlabelled`);
//! - a label arriving after its sample was emitted makes the store bump the candidate's revision,
//!   and the joiner emits a correction with every label known so far;
//! - a claim ([`JoinStore::take_due`]) becomes final only with [`JoinStore::confirm`], which the
//!   joiner calls once the samples are in the sample log; a crash in between leaves the claim in
//!   doubt, and recovery looks in the log for what made it (see `memory::MemoryJoinStore::replay`).
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
    /// The prediction's request id.
    pub request_id: String,
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
    /// A prediction with this request id is held already, with other candidates.
    #[error(
        "request_id `{request_id}` is held already for another prediction (request ids must be unique per prediction)"
    )]
    Reused {
        /// The id.
        request_id: String,
    },
}

/// What a caller reusing a request id would collide with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Not held: a new prediction.
    New,
    /// Held with the same candidates: a retried Predict; the first prediction keeps its labels.
    Retry,
    /// Held with other candidates: the caller reused an id.
    Conflict,
}

/// One prediction to hold ([`JoinStore::put_many`]; the arguments of [`JoinStore::put`]).
#[derive(Debug, Clone)]
pub struct Put {
    /// The request id events name it by.
    pub request_id: String,
    /// The encoded `augur.v1.Snapshot`.
    pub snapshot: Bytes,
    /// Its candidates.
    pub item_ids: Vec<String>,
    /// When the join window closes.
    pub expires_ms: i64,
    /// When unimpressed candidates are emitted (`emit_unimpressed`).
    pub unimpressed_due_ms: Option<i64>,
}

/// What [`JoinStore::expire`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Predictions that left the store.
    pub requests: usize,
    /// Their candidates that never had an event and were never emitted.
    pub unlabelled: usize,
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

    /// [`put`](Self::put) for each of `puts`, one result each in order. The joiner holds what
    /// the snapshot queue gave it in one call: the memory store takes its lock and writes its
    /// journal once per batch, the Redis store sends the batch's pipelines at once.
    fn put_many<'a>(&'a self, puts: &'a [Put]) -> BoxFuture<'a, Vec<Result<(), JoinError>>> {
        Box::pin(futures_util::future::join_all(
            puts.iter()
                .map(|p| self.put(&p.request_id, p.snapshot.clone(), &p.item_ids, p.expires_ms, p.unimpressed_due_ms)),
        ))
    }

    /// Records an event; schedules the candidate at `due_ms` if it is its first event.
    fn add_event<'a>(&'a self, event: &'a Event, due_ms: i64) -> BoxFuture<'a, Result<Added, JoinError>>;

    /// Claims up to `limit` candidates due by `now_ms` (each exactly once, across replicas) and
    /// marks them emitted at revision 0. `log_mark` is the sample log's last sequence before the
    /// joiner writes them: recovery looks for an unconfirmed claim's samples after it.
    fn take_due(&self, now_ms: i64, limit: usize, log_mark: u64) -> BoxFuture<'_, Result<Vec<Joined>, JoinError>>;

    /// Every claim so far is in the sample log: final.
    fn confirm(&self) -> BoxFuture<'_, Result<(), JoinError>>;

    /// The sample log refused `claimed`: they are due again at `now_ms` (retried next tick).
    fn release<'a>(&'a self, claimed: &'a [Joined], now_ms: i64) -> BoxFuture<'a, Result<(), JoinError>>;

    /// Whether a prediction `request_id` with `item_ids` would reuse a held id (`None` when the
    /// store cannot tell without a round trip: the joiner then counts a reuse at `put`).
    fn reuse(&self, request_id: &str, item_ids: &[&str]) -> Option<Reuse>;

    /// The candidate with every label so far, for a correction at `revision`.
    fn joined<'a>(
        &'a self,
        request_id: &'a str,
        item_id: &'a str,
        revision: u32,
    ) -> BoxFuture<'a, Result<Option<Joined>, JoinError>>;

    /// Drops what expired by `now_ms` and has nothing left to emit (memory store; Redis expires
    /// keys itself).
    fn expire(&self, now_ms: i64) -> Expired;

    /// Predictions held (memory store; `None` when the store cannot tell cheaply).
    fn pending(&self) -> Option<(usize, usize)>;
}
