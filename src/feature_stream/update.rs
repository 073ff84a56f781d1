//! One feature update: decoded from a message (protobuf `FeatureUpdate` or its JSON form),
//! checked, and encoded again by `augur features publish`.

use prost::Message;
use serde_json::Value as Json;

use super::config::{EntityKind, UpdateFormat};
use crate::fetch::Value;
use crate::proto::{self, feature_value::Kind};

/// Longest entity id accepted (the store key is built from it).
const MAX_ID_BYTES: usize = 1024;
/// Most features in one update.
const MAX_FEATURES: usize = 1024;
/// Prefix of the Redis hash fields that hold event times: no feature may use it.
pub(crate) const STAMP_PREFIX: &str = "@t:";

/// A decoded, checked update.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Which entity kind (mapped to a table by the stream).
    pub entity: EntityKind,
    /// The entity's id.
    pub entity_id: String,
    /// When the values became true, ms since the Unix epoch.
    pub event_time_ms: i64,
    /// Feature name → new value.
    pub features: Vec<(String, Value)>,
}

/// Why a message is not a usable update: counted under `reason`, dead-lettered with `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct BadMessage {
    /// The metric label: `decode`, `entity`, `entity_id`, `event_time`, `features`, `value`,
    /// `table`.
    pub reason: &'static str,
    /// What exactly.
    pub detail: String,
}

fn bad(reason: &'static str, detail: impl Into<String>) -> BadMessage {
    BadMessage { reason, detail: detail.into() }
}

// === impl Update ===

impl Update {
    /// Decodes `payload` as `format` says and checks it.
    pub fn decode(format: UpdateFormat, payload: &[u8]) -> Result<Update, BadMessage> {
        let json = match format {
            UpdateFormat::Protobuf => false,
            UpdateFormat::Json => true,
            UpdateFormat::Auto => payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'),
        };
        let update = if json { Self::from_json(payload)? } else { Self::from_proto(payload)? };
        update.check()?;
        Ok(update)
    }

    fn from_proto(payload: &[u8]) -> Result<Update, BadMessage> {
        let m =
            proto::FeatureUpdate::decode(payload).map_err(|e| bad("decode", format!("not a FeatureUpdate: {e}")))?;
        let entity = match proto::EntityKind::try_from(m.entity) {
            Ok(proto::EntityKind::User) => EntityKind::User,
            Ok(proto::EntityKind::Item) => EntityKind::Item,
            Ok(proto::EntityKind::Context) => EntityKind::Context,
            _ => return Err(bad("entity", format!("entity {} is not user, item or context", m.entity))),
        };
        let mut features = Vec::with_capacity(m.features.len());
        for (name, value) in m.features {
            let value = match value.kind {
                Some(Kind::IntValue(i)) => Value::Int(i),
                Some(Kind::FloatValue(x)) => Value::Float(x),
                Some(Kind::StringValue(s)) => Value::Str(s),
                Some(Kind::IntList(l)) => Value::IntList(l.values),
                Some(Kind::FloatList(l)) => Value::FloatList(l.values),
                Some(Kind::StringList(l)) => Value::StrList(l.values),
                None => return Err(bad("value", format!("feature `{name}` has no value"))),
            };
            features.push((name, value));
        }
        // Map order is not wire order: sorted, so the same update always writes the same way.
        features.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Update { entity, entity_id: m.entity_id, event_time_ms: m.event_time_ms, features })
    }

    fn from_json(payload: &[u8]) -> Result<Update, BadMessage> {
        let Json::Object(mut m) = serde_json::from_slice(payload).map_err(|e| bad("decode", format!("JSON: {e}")))?
        else {
            return Err(bad("decode", "JSON update must be an object"));
        };
        let entity = match m.get("entity").and_then(Json::as_str) {
            Some("user") => EntityKind::User,
            Some("item") => EntityKind::Item,
            Some("context") => EntityKind::Context,
            other => return Err(bad("entity", format!("`entity` {other:?} is not \"user\", \"item\" or \"context\""))),
        };
        let entity_id = match m.get("entity_id") {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => return Err(bad("entity_id", "`entity_id` must be a string")),
        };
        let event_time_ms = m
            .get("event_time_ms")
            .and_then(Json::as_i64)
            .ok_or_else(|| bad("event_time", "`event_time_ms` must be an integer"))?;
        let Some(Json::Object(object)) = m.remove("features") else {
            return Err(bad("features", "`features` must be an object"));
        };
        let mut features = Vec::with_capacity(object.len());
        for (name, json) in object {
            let value =
                from_json(&json).ok_or_else(|| bad("value", format!("feature `{name}`: {json} is no value")))?;
            features.push((name, value));
        }
        features.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Update { entity, entity_id, event_time_ms, features })
    }

    fn check(&self) -> Result<(), BadMessage> {
        if self.entity_id.is_empty() || self.entity_id.len() > MAX_ID_BYTES {
            return Err(bad("entity_id", format!("must be 1..={MAX_ID_BYTES} bytes (got {})", self.entity_id.len())));
        }
        if self.event_time_ms <= 0 {
            return Err(bad("event_time", format!("event_time_ms must be > 0 (got {})", self.event_time_ms)));
        }
        if self.features.is_empty() || self.features.len() > MAX_FEATURES {
            return Err(bad(
                "features",
                format!("must carry 1..={MAX_FEATURES} features (got {})", self.features.len()),
            ));
        }
        for (name, value) in &self.features {
            if name.is_empty() || name.starts_with(STAMP_PREFIX) {
                return Err(bad("features", format!("feature name `{name}` is empty or reserved ({STAMP_PREFIX}...)")));
            }
            let finite = match value {
                Value::Float(x) => x.is_finite(),
                Value::FloatList(xs) => xs.iter().all(|x| x.is_finite()),
                _ => true,
            };
            if !finite {
                return Err(bad("value", format!("feature `{name}` is not finite")));
            }
        }
        Ok(())
    }

    /// The Kafka message key: one entity's updates hash to one partition, in order.
    pub fn key(&self) -> String {
        format!("{}:{}", self.entity.as_str(), self.entity_id)
    }

    /// The protobuf encoding.
    pub fn to_proto(&self) -> Vec<u8> {
        let entity = match self.entity {
            EntityKind::User => proto::EntityKind::User,
            EntityKind::Item => proto::EntityKind::Item,
            EntityKind::Context => proto::EntityKind::Context,
        };
        let features = self
            .features
            .iter()
            .map(|(name, value)| {
                let kind = match value.clone() {
                    Value::Int(i) => Kind::IntValue(i),
                    Value::Float(x) => Kind::FloatValue(x),
                    Value::Str(s) => Kind::StringValue(s),
                    Value::IntList(values) => Kind::IntList(proto::IntList { values }),
                    Value::FloatList(values) => Kind::FloatList(proto::FloatList { values }),
                    Value::StrList(values) => Kind::StringList(proto::StringList { values }),
                };
                (name.clone(), proto::FeatureValue { kind: Some(kind) })
            })
            .collect();
        proto::FeatureUpdate {
            entity: entity as i32,
            entity_id: self.entity_id.clone(),
            features,
            event_time_ms: self.event_time_ms,
        }
        .encode_to_vec()
    }

    /// The JSON encoding.
    pub fn to_json(&self) -> String {
        let features: serde_json::Map<String, Json> = self
            .features
            .iter()
            .map(|(name, value)| {
                let json = match value {
                    Value::Int(i) => Json::from(*i),
                    Value::Float(x) => Json::from(*x),
                    Value::Str(s) => Json::from(s.as_str()),
                    Value::IntList(v) => Json::from(v.clone()),
                    Value::FloatList(v) => Json::from(v.clone()),
                    Value::StrList(v) => Json::from(v.clone()),
                };
                (name.clone(), json)
            })
            .collect();
        serde_json::json!({
            "entity": self.entity.as_str(),
            "entity_id": self.entity_id,
            "event_time_ms": self.event_time_ms,
            "features": features,
        })
        .to_string()
    }

    /// Parses the JSON form (what `augur features publish` reads), checked.
    pub fn parse_json(text: &str) -> Result<Update, BadMessage> {
        Update::decode(UpdateFormat::Json, text.as_bytes())
    }
}

/// A value as Redis holds it ([`Value::store_text`]).
pub(crate) fn value_text(value: &Value) -> String {
    value.store_text()
}

/// JSON → value with the in-memory store's JSONL rules (booleans are 1/0; mixed lists are text).
fn from_json(json: &Json) -> Option<Value> {
    Some(match json {
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Bool(b) => Value::Int(i64::from(*b)),
        Json::Array(items) => {
            if items.iter().all(Json::is_i64) {
                Value::IntList(items.iter().filter_map(Json::as_i64).collect())
            } else if items.iter().all(Json::is_number) {
                Value::FloatList(items.iter().filter_map(Json::as_f64).collect())
            } else {
                Value::StrList(items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect())
            }
        }
        Json::Null | Json::Object(_) => return None,
    })
}
