//! Feature history: every change made to the feature store (stream updates and bulk loads), kept
//! as an append-only changelog so the values as of any past instant can be recomputed. Beside the
//! path: [`feature_stream`](crate::feature_stream) and `augur features load` write it; `augur
//! features backfill` replays it to give each impression the features serving would have had.
//!
//! A [`Change`] records both clocks: `event_time_ms` (when the values became true, the
//! last-writer-wins key the store applies) and `applied_time_ms` (when augur wrote them to the
//! store, so from when Predict could serve them). Replaying changes in applied order with the
//! store's own rule (per field, a change wins only over an older event time) rebuilds the store
//! exactly as Predict saw it at any instant ([`replay::Replay`]).

pub mod replay;

use crate::fetch::Value;

/// How the store applied a change: the replay must apply it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A stream update: per field, written only when strictly newer (by event time) than the
    /// value held; the field's event time is kept.
    Upsert,
    /// A bulk load row: `HSET` of the present cells and `HDEL` of the empty ones, unconditional;
    /// the fields' event times are left as they were.
    Load,
}

/// One change to one entity's row, as the changelog stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The store table (`users`, `items`, ...), as `[redis.tables]` and the feature spec name it.
    pub table: String,
    /// The entity's id (the row key within the table).
    pub entity_id: String,
    /// When the values became true, ms since the Unix epoch: the last-writer-wins key.
    pub event_time_ms: i64,
    /// When augur wrote the change to the store, ms since the Unix epoch.
    pub applied_time_ms: i64,
    /// How the store applied it.
    pub kind: ChangeKind,
    /// Feature name → new value; `None` = the field was deleted (a load's empty cell).
    pub features: Vec<(String, Option<Value>)>,
}
