//! `[[feature_streams]]`: Kafka topics of feature updates, consumed into the feature store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::properties::vet;
use crate::validate::librdkafka::Refusal;
use crate::validate::{Invalid, in_range, invalid};

/// One feature stream: a topic of `FeatureUpdate`s upserted into the service's `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureStreamConfig {
    /// Names the stream in metrics, logs and dead letters.
    pub name: String,
    /// librdkafka `bootstrap.servers`: `host:port[,host:port]`.
    pub brokers: String,
    /// The topic of updates (key each message by `<entity>:<entity_id>` so one entity's updates
    /// stay in order on one partition).
    pub topic: String,
    /// Consumer group. With Redis every replica joins this one group, so each partition's
    /// updates are written once; offsets are committed only after the store write. With the
    /// in-memory store every replica needs every update: the group id gets a per-process
    /// suffix, nothing is committed and each start replays the topic from its beginning.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// How payloads are encoded.
    #[serde(default)]
    pub format: UpdateFormat,
    /// The store table each entity kind is written to (the `entities.<kind>.table` of the feature
    /// specs). The store written is the service's `[store]`, the one the scenes read; an update
    /// for a kind not listed is a bad message.
    #[serde(default = "default_tables")]
    pub tables: BTreeMap<EntityKind, String>,
    /// File that bad messages are appended to, one JSON line each (topic, partition, offset,
    /// reason, and the payload: as text when it is UTF-8, else hex); default `<name>.dead-letters.jsonl` in the working directory.
    #[serde(default)]
    pub dead_letter_path: Option<PathBuf>,
    /// Most messages written to the store in one round trip (taken as they are ready, never
    /// waited for).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Extra librdkafka consumer properties (security, fetch sizes, `auto.offset.reset` ...).
    /// Refused under any of their names: `bootstrap.servers` and `group.id` (use the fields),
    /// `enable.auto.commit`, the legacy topic-level `auto.commit.enable` and
    /// `enable.auto.offset.store` other than `false` (offsets are committed by augur after the
    /// store write, never before).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Payload encoding of a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateFormat {
    /// `augur.v1.FeatureUpdate` (proto/augur/v1/features.proto).
    #[default]
    Protobuf,
    /// The same update as a JSON object.
    Json,
    /// JSON when the payload starts with an opening brace, else protobuf (a topic written by both kinds of
    /// producer).
    Auto,
}

/// The entity an update is about, as the feature specs call them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// `entities.user`.
    User,
    /// `entities.item`.
    Item,
    /// Context values kept in a table.
    Context,
}

impl EntityKind {
    /// The name used in configs, JSON updates and message keys.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Item => "item",
            EntityKind::Context => "context",
        }
    }
}

fn default_group_id() -> String {
    "augur-features".to_owned()
}

fn default_tables() -> BTreeMap<EntityKind, String> {
    [(EntityKind::User, "users".to_owned()), (EntityKind::Item, "items".to_owned())].into()
}

const fn default_max_batch() -> usize {
    256
}

impl FeatureStreamConfig {
    /// The dead-letter file.
    pub fn dead_letter_path(&self) -> PathBuf {
        self.dead_letter_path.clone().unwrap_or_else(|| PathBuf::from(format!("{}.dead-letters.jsonl", self.name)))
    }
}

/// Checks every stream; `feature_streams[i].key` names the culprit.
pub fn validate(streams: &[FeatureStreamConfig]) -> Result<(), Invalid> {
    for (i, stream) in streams.iter().enumerate() {
        let key = |field: &str| format!("feature_streams[{i}].{field}");
        if !cfg!(feature = "kafka") {
            return Err(invalid(
                &format!("feature_streams[{i}]"),
                "this build has no Kafka support (cargo feature `kafka`)",
            ));
        }
        // Names go into pub/sub messages split on spaces, and into file names.
        let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        if !plain(&stream.name) {
            return Err(invalid(&key("name"), "must be non-empty printable ASCII without spaces or `/`"));
        }
        if streams[..i].iter().any(|s| s.name == stream.name) {
            return Err(invalid(&key("name"), &format!("`{}` is used by two streams", stream.name)));
        }
        for (field, value) in [("brokers", &stream.brokers), ("topic", &stream.topic), ("group_id", &stream.group_id)] {
            if value.trim().is_empty() {
                return Err(invalid(&key(field), "must not be empty"));
            }
        }
        if stream.tables.is_empty() {
            return Err(invalid(&key("tables"), "must map at least one entity kind to a table"));
        }
        for (kind, table) in &stream.tables {
            if !plain(table) {
                return Err(invalid(
                    &key(&format!("tables.{}", kind.as_str())),
                    "must be a table name: printable ASCII without spaces or `/`",
                ));
            }
        }
        in_range(&key("max_batch"), stream.max_batch, 1, 10_000)?;
        match vet(&stream.properties) {
            None => {}
            Some(Refusal::Protected { key: k, property, reason }) => {
                return Err(invalid(
                    &key(&format!("properties.\"{k}\"")),
                    &format!("librdkafka's `{property}` {reason}"),
                ));
            }
            Some(Refusal::SameProperty { first, second, property }) => {
                return Err(invalid(
                    &key("properties"),
                    &format!("`{first}` and `{second}` both set librdkafka's `{property}`; keep one"),
                ));
            }
        }
    }
    Ok(())
}
