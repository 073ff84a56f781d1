//! What the scenes' feature specs read, held against what a stream writes: a stream is useful only
//! where a spec reads, and a typo in a table name or a feature name otherwise fills the store
//! with values nothing serves, silently.
//!
//! - **Tables, at start-up.** Each `feature_streams[i].tables.<kind>` must be a table some scene
//!   reads as that kind's rows (`entities.<kind>.table` of its spec), or start-up fails naming
//!   the key. A `context` mapping always fails: specs read context values from the request,
//!   never from a table. An error rather than a warning because nothing else would show the
//!   mistake: the updates would apply and count as `applied` while Predict kept its defaults.
//! - **Features, per update.** Which features an update carries is known only when it arrives.
//!   A feature no spec reads from the update's table is **applied and counted**
//!   (`augur_feature_stream_unknown_features_total{stream,table}`, and a warning naming it at
//!   most every 10 s), not dead-lettered: a producer often starts sending a feature before the
//!   spec that reads it is deployed, and in a rolling deploy replicas of the old spec share the
//!   consumer group with the new one (with Redis each update is written by one replica only), so
//!   refusing it would lose values the new spec needs, as `augur features load` never refuses a
//!   column. The count and the warning are there for typos.

use std::collections::{BTreeMap, BTreeSet};

use super::config::{EntityKind, FeatureStreamConfig};
use super::update::Update;
use crate::assemble::Spec;
use crate::validate::{Invalid, invalid};

/// Per entity kind and table, the fields some scene's spec reads there.
#[derive(Debug, Clone, Default)]
pub struct SpecReads {
    /// (kind, table) → fields read (`$key` is the id, never a field).
    fields: BTreeMap<(EntityKind, String), BTreeSet<String>>,
}

// === impl SpecReads ===

impl SpecReads {
    /// What `specs` read: each spec's user table with its user fields, item table with its item
    /// fields (fields read only by a `derive:` included).
    pub fn of<'a>(specs: impl IntoIterator<Item = &'a Spec>) -> SpecReads {
        let mut fields: BTreeMap<(EntityKind, String), BTreeSet<String>> = BTreeMap::new();
        for spec in specs {
            for (kind, table, read) in [
                (EntityKind::User, &spec.user_table, &spec.user_fields),
                (EntityKind::Item, &spec.item_table, &spec.item_fields),
            ] {
                fields.entry((kind, table.clone())).or_default().extend(read.iter().cloned());
            }
        }
        SpecReads { fields }
    }

    /// Whether some spec reads `table` as `kind`'s rows.
    pub fn reads_table(&self, kind: EntityKind, table: &str) -> bool {
        self.fields.contains_key(&(kind, table.to_owned()))
    }

    /// The features of `update` (written to `table`) that no spec reads there.
    pub fn unknown<'u>(&self, table: &str, update: &'u Update) -> impl Iterator<Item = &'u str> {
        let read = self.fields.get(&(update.entity, table.to_owned()));
        update
            .features
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(move |name| read.is_none_or(|r| !r.contains(*name)))
    }

    /// Every stream's `tables` against the specs; the first mapping no spec reads is an error
    /// naming its key (`feature_streams[i].tables.<kind>`).
    pub fn check(&self, streams: &[FeatureStreamConfig]) -> Result<(), Invalid> {
        for (i, stream) in streams.iter().enumerate() {
            for (&kind, table) in &stream.tables {
                if self.reads_table(kind, table) {
                    continue;
                }
                let key = format!("feature_streams[{i}].tables.{}", kind.as_str());
                if kind == EntityKind::Context {
                    return Err(invalid(
                        &key,
                        "feature specs read context values from each request, never from a table: no scene would \
                         read what this stream writes; remove the mapping",
                    ));
                }
                let read: Vec<&str> = self.fields.keys().filter(|(k, _)| *k == kind).map(|(_, t)| t.as_str()).collect();
                return Err(invalid(
                    &key,
                    &format!(
                        "no scene's feature spec reads table `{table}` for {} rows (they read: {}); a stream writing \
                         it would fill a table nothing serves. Map only the kinds this stream carries, to the \
                         table of `entities.{}.table`",
                        kind.as_str(),
                        if read.is_empty() { "none".to_owned() } else { read.join(", ") },
                        kind.as_str(),
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Counts (and, rate-limited, names) the features of each consumed update that no spec reads.
#[cfg(feature = "kafka")]
#[derive(Debug)]
pub(super) struct UnknownFeatures {
    reads: SpecReads,
    warn: crate::telemetry::LogEvery,
}

#[cfg(feature = "kafka")]
impl UnknownFeatures {
    pub(super) fn new(reads: SpecReads) -> Self {
        UnknownFeatures { reads, warn: crate::telemetry::LogEvery::new(std::time::Duration::from_secs(10)) }
    }

    /// Counts `update`'s unknown features under `{stream, table}`; the update is applied whole
    /// all the same (module docs).
    pub(super) fn observe(&self, metrics: &super::StreamMetrics, stream: &str, table: &str, update: &Update) {
        let unknown: Vec<&str> = self.reads.unknown(table, update).collect();
        if unknown.is_empty() {
            return;
        }
        let labels = super::metrics::TableLabels { stream: stream.to_owned(), table: table.to_owned() };
        metrics.unknown_features.get_or_create(&labels).inc_by(unknown.len() as u64);
        if let Some(suppressed) = self.warn.ready() {
            tracing::warn!(
                stream,
                table,
                entity_id = %update.entity_id,
                features = ?unknown,
                suppressed,
                "feature stream: update carries features no scene's spec reads; applied, and counted"
            );
        }
    }
}
