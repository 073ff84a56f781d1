//! The store as of an instant, rebuilt from the changelog: changes applied in `applied_time_ms`
//! order with the store's own rules ([`ChangeKind`]) into a [`MemoryStore`], which serves reads
//! through [`FeatureStore`] like any store, so backfill fetches and assembles with serving's code.

use std::sync::Arc;

use super::{Change, ChangeKind};
use crate::fetch::MemoryStore;

/// A store being rolled forward through the changelog.
#[derive(Debug, Default)]
pub struct Replay {
    store: Arc<MemoryStore>,
    /// Applied time of the last change applied; changes must not go back in time.
    applied_through_ms: Option<i64>,
}

/// A change older (by applied time) than one already applied: the changelog reader hands them
/// over in order, so this means a reader bug or a hand-made changelog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("change for {table}/{entity_id} applied at {applied_time_ms} ms comes after one applied at {through_ms} ms")]
pub struct OutOfOrder {
    /// The change's table.
    pub table: String,
    /// The change's entity.
    pub entity_id: String,
    /// Its applied time.
    pub applied_time_ms: i64,
    /// The latest applied time already replayed.
    pub through_ms: i64,
}

// === impl Replay ===

impl Replay {
    /// An empty store at the beginning of history.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store holding `tables` (with no rows yet): reads of a table no change has
    /// touched find no rows, as in a store where the table is configured but empty.
    pub fn with_tables<'a>(tables: impl IntoIterator<Item = &'a str>) -> Self {
        let replay = Self::default();
        for table in tables {
            replay.store.create_table(table);
        }
        replay
    }

    /// Applies `change` as the store did.
    pub fn apply(&mut self, change: Change) -> Result<(), OutOfOrder> {
        if let Some(through_ms) = self.applied_through_ms
            && change.applied_time_ms < through_ms
        {
            return Err(OutOfOrder {
                table: change.table,
                entity_id: change.entity_id,
                applied_time_ms: change.applied_time_ms,
                through_ms,
            });
        }
        self.applied_through_ms = Some(change.applied_time_ms);
        match change.kind {
            ChangeKind::Upsert => {
                // A stream update never deletes: a `None` here is not something the stream wrote.
                let fields = change.features.into_iter().filter_map(|(f, v)| v.map(|v| (f, v))).collect();
                self.store.upsert(&change.table, &change.entity_id, change.event_time_ms, fields);
            }
            ChangeKind::Load => self.store.overwrite(&change.table, &change.entity_id, change.features),
        }
        Ok(())
    }

    /// Applied time of the last change applied.
    pub fn applied_through_ms(&self) -> Option<i64> {
        self.applied_through_ms
    }

    /// The store as of the last change applied (reads see later changes once they are applied).
    pub fn store(&self) -> Arc<MemoryStore> {
        Arc::clone(&self.store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{FeatureStore, Value};

    fn change(kind: ChangeKind, event: i64, applied: i64, fields: &[(&str, Option<i64>)]) -> Change {
        Change {
            table: "items".into(),
            entity_id: "i1".into(),
            event_time_ms: event,
            applied_time_ms: applied,
            kind,
            features: fields.iter().map(|(f, v)| (f.to_string(), v.map(Value::Int))).collect(),
        }
    }

    async fn price(replay: &Replay) -> Option<Value> {
        let store = replay.store();
        let fields = ["price".to_owned()];
        let rows = store.get_rows("items", &["i1"], &fields).await.unwrap();
        rows[0].as_ref().and_then(|r| r.get("price").cloned())
    }

    #[tokio::test]
    async fn upserts_are_last_writer_wins_by_event_time_and_loads_overwrite() {
        let mut replay = Replay::new();
        replay.apply(change(ChangeKind::Upsert, 200, 1_000, &[("price", Some(2))])).unwrap();
        // Arrived later, happened earlier: loses, as in the store.
        replay.apply(change(ChangeKind::Upsert, 100, 1_001, &[("price", Some(1))])).unwrap();
        assert_eq!(price(&replay).await, Some(Value::Int(2)));
        // A load writes whatever its event time; the stamp stays 200.
        replay.apply(change(ChangeKind::Load, 0, 1_002, &[("price", Some(5))])).unwrap();
        assert_eq!(price(&replay).await, Some(Value::Int(5)));
        replay.apply(change(ChangeKind::Upsert, 150, 1_003, &[("price", Some(6))])).unwrap();
        assert_eq!(price(&replay).await, Some(Value::Int(5)), "150 is older than the held stamp 200");
        replay.apply(change(ChangeKind::Load, 0, 1_004, &[("price", None)])).unwrap();
        assert_eq!(price(&replay).await, None);
        let back = replay.apply(change(ChangeKind::Upsert, 300, 999, &[("price", Some(7))]));
        assert!(back.is_err(), "{back:?}");
        assert_eq!(replay.applied_through_ms(), Some(1_004));
    }
}
