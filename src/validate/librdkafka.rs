//! Vetting a user's librdkafka `properties` before a client is created: the Kafka sample sink's
//! producer and the feature streams' consumers both pass extra properties through, and each
//! refuses the ones its guarantees rest on ([`vet_with`] takes that list). Here, not in either
//! module, because the sink is `cfg(feature = "kafka")` while a stream's config is validated in
//! every build.
//!
//! librdkafka knows one property under several names: documented aliases (`acks` for
//! `request.required.acks`, `delivery.timeout.ms` for `message.timeout.ms`, `linger.ms` for
//! `queue.buffering.max.ms` ...) and, for topic-level properties, the same name with a `topic.`
//! prefix on the global configuration. rdkafka's `ClientConfig` keeps properties in a `HashMap`
//! and hands them to librdkafka in its iteration order, so two names of one property are applied
//! in no fixed order: the same file starts on one run and fails (or silently runs with the other
//! value) on the next. So every name is resolved to the property it sets first, and
//!
//! - a protected property is refused, under any of its names, unless the value keeps the
//!   guarantee (the refusal names the key and says why);
//! - two user keys naming one property are refused, both named.
//!
//! A name resolves within its scope: `enable.auto.commit` is the consumer's global property, but
//! under `topic.` it is the topic-level alias of the legacy `auto.commit.enable` — two properties,
//! not one. The alias and scope tables are librdkafka 2.12's (`src/rdkafka_conf.c`, the
//! `_RK_C_ALIAS` entries; `CONFIGURATION.md` "Alias for"), the version rdkafka-sys bundles.

use std::collections::BTreeMap;

/// Global-scope aliases: (alias, property).
const GLOBAL_ALIASES: [(&str, &str); 9] = [
    ("bootstrap.servers", "metadata.broker.list"),
    ("max.in.flight", "max.in.flight.requests.per.connection"),
    ("sasl.mechanism", "sasl.mechanisms"),
    ("sasl.oauthbearer.client.credentials.client.id", "sasl.oauthbearer.client.id"),
    ("sasl.oauthbearer.client.credentials.client.secret", "sasl.oauthbearer.client.secret"),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("linger.ms", "queue.buffering.max.ms"),
    ("retries", "message.send.max.retries"),
    ("compression.type", "compression.codec"),
];

/// Topic-scope aliases: (alias, property).
const TOPIC_ALIASES: [(&str, &str); 4] = [
    ("acks", "request.required.acks"),
    ("delivery.timeout.ms", "message.timeout.ms"),
    ("compression.type", "compression.codec"),
    ("enable.auto.commit", "auto.commit.enable"),
];

/// Topic-scope names with no global property of the same name: librdkafka sets them on the
/// default topic configuration whether or not they carry the `topic.` prefix. (Names in both
/// scopes, like `compression.codec` or `enable.auto.commit`, set the global one unless
/// prefixed.)
const TOPIC_ONLY: [&str; 16] = [
    "acks",
    "consume.callback.max.messages",
    "delivery.timeout.ms",
    "message.timeout.ms",
    "msg_order_cmp",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partitioner",
    "partitioner_cb",
    "produce.offset.report",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "auto.offset.reset",
    "compression.level",
    "auto.commit.enable",
];

/// Which configuration a name lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The client's (global) configuration.
    Global,
    /// The default topic configuration.
    Topic,
}

/// Why a user property is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It would undo a guarantee, or it duplicates a field of the caller's own config.
    Protected {
        /// The user's key.
        key: String,
        /// The property librdkafka resolves it to.
        property: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// Two user keys set one property.
    SameProperty {
        /// The first key (in key order).
        first: String,
        /// The second.
        second: String,
        /// The property both set.
        property: String,
    },
}

/// What a caller protects: given a resolved property name (either scope) and the user's value,
/// `None` if allowed, else the property and why not (the reason completes "librdkafka's
/// `property` ...").
pub type Protected = fn(property: &str, value: &str) -> Option<(&'static str, &'static str)>;

/// The property `key` sets: (scope, canonical name), aliases and the `topic.` prefix resolved.
pub fn resolve(key: &str) -> (Scope, &str) {
    if let Some(name) = key.strip_prefix("topic.") {
        // A global property under `topic.` is unknown to librdkafka; resolving its alias anyway
        // lets `topic.bootstrap.servers` be refused by name like `bootstrap.servers`.
        let name = topic_alias(name);
        return (Scope::Topic, global_alias(name).unwrap_or(name));
    }
    if let Some(property) = global_alias(key) {
        return (Scope::Global, property);
    }
    if TOPIC_ONLY.contains(&key) {
        return (Scope::Topic, topic_alias(key));
    }
    (Scope::Global, key)
}

fn global_alias(name: &str) -> Option<&'static str> {
    GLOBAL_ALIASES.iter().find(|(alias, _)| *alias == name).map(|(_, property)| *property)
}

fn topic_alias(name: &str) -> &str {
    TOPIC_ALIASES.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, property)| property)
}

/// librdkafka's bool parser says true: `true`, `t` (any case) or `1`.
pub fn is_true(value: &str) -> bool {
    let v = value.trim();
    v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("t") || v == "1"
}

/// librdkafka's bool parser says false: `false`, `f` (any case) or `0`.
pub fn is_false(value: &str) -> bool {
    let v = value.trim();
    v.eq_ignore_ascii_case("false") || v.eq_ignore_ascii_case("f") || v == "0"
}

/// The first refusal among `properties`, in key order (so the same file always gives the same
/// answer), or `None` if every property may be set. `protected` is matched on the resolved name
/// in either scope: `topic.enable.idempotence` is no global setting (librdkafka would call it
/// unknown), but refusing it by name says more.
pub fn vet_with(properties: &BTreeMap<String, String>, protected: Protected) -> Option<Refusal> {
    let mut seen: BTreeMap<(Scope, &str), &str> = BTreeMap::new();
    for (key, value) in properties {
        let (scope, property) = resolve(key);
        if let Some((property, reason)) = protected(property, value) {
            return Some(Refusal::Protected { key: key.clone(), property, reason });
        }
        if let Some(first) = seen.insert((scope, property), key) {
            return Some(Refusal::SameProperty {
                first: first.to_owned(),
                second: key.clone(),
                property: property.to_owned(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_librdkafka_properties_in_their_scope() {
        assert_eq!(resolve("acks"), (Scope::Topic, "request.required.acks"));
        assert_eq!(resolve("topic.acks"), (Scope::Topic, "request.required.acks"));
        assert_eq!(resolve("topic.request.required.acks"), (Scope::Topic, "request.required.acks"));
        assert_eq!(resolve("delivery.timeout.ms"), (Scope::Topic, "message.timeout.ms"));
        assert_eq!(resolve("topic.delivery.timeout.ms"), (Scope::Topic, "message.timeout.ms"));
        assert_eq!(resolve("linger.ms"), (Scope::Global, "queue.buffering.max.ms"));
        assert_eq!(resolve("max.in.flight"), (Scope::Global, "max.in.flight.requests.per.connection"));
        assert_eq!(resolve("bootstrap.servers"), (Scope::Global, "metadata.broker.list"));
        assert_eq!(resolve("topic.bootstrap.servers"), (Scope::Topic, "metadata.broker.list"));
        // In both scopes: unprefixed is the global one.
        assert_eq!(resolve("compression.type"), (Scope::Global, "compression.codec"));
        assert_eq!(resolve("topic.compression.type"), (Scope::Topic, "compression.codec"));
        assert_eq!(resolve("socket.timeout.ms"), (Scope::Global, "socket.timeout.ms"));
        assert_eq!(resolve("auto.offset.reset"), (Scope::Topic, "auto.offset.reset"));
        assert_eq!(resolve("topic.auto.offset.reset"), (Scope::Topic, "auto.offset.reset"));
        // The consumer's global auto-commit, and the legacy topic-level one with its alias.
        assert_eq!(resolve("enable.auto.commit"), (Scope::Global, "enable.auto.commit"));
        assert_eq!(resolve("auto.commit.enable"), (Scope::Topic, "auto.commit.enable"));
        assert_eq!(resolve("topic.auto.commit.enable"), (Scope::Topic, "auto.commit.enable"));
        assert_eq!(resolve("topic.enable.auto.commit"), (Scope::Topic, "auto.commit.enable"));
    }

    #[test]
    fn protected_properties_are_refused_under_every_name_and_two_names_of_one_property_too() {
        fn protected(property: &str, value: &str) -> Option<(&'static str, &'static str)> {
            match property {
                "request.required.acks" => (value != "all").then_some(("request.required.acks", "must stay `all`")),
                "metadata.broker.list" => Some(("metadata.broker.list", "is a field")),
                _ => None,
            }
        }
        let vet = |pairs: &[(&str, &str)]| {
            let properties = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            vet_with(&properties, protected)
        };
        for key in ["acks", "topic.acks", "request.required.acks", "topic.request.required.acks"] {
            assert!(
                matches!(vet(&[(key, "1")]), Some(Refusal::Protected { property: "request.required.acks", .. })),
                "{key}"
            );
            assert_eq!(vet(&[(key, "all")]), None, "{key}");
        }
        assert!(matches!(vet(&[("topic.bootstrap.servers", "x:1")]), Some(Refusal::Protected { .. })));
        assert_eq!(
            vet(&[("fetch.message.max.bytes", "1"), ("max.partition.fetch.bytes", "2")]),
            Some(Refusal::SameProperty {
                first: "fetch.message.max.bytes".into(),
                second: "max.partition.fetch.bytes".into(),
                property: "fetch.message.max.bytes".into(),
            })
        );
        // One name per scope is two properties, not one.
        assert_eq!(vet(&[("compression.codec", "lz4"), ("topic.compression.codec", "zstd")]), None);
        assert_eq!(vet(&[("enable.auto.commit", "false"), ("auto.commit.enable", "false")]), None);
        assert!(matches!(
            vet(&[("auto.commit.enable", "false"), ("topic.enable.auto.commit", "false")]),
            Some(Refusal::SameProperty { .. })
        ));
    }

    #[test]
    fn booleans_parse_as_librdkafka_parses_them() {
        for v in ["true", "TRUE", "t", "T", "1", " true "] {
            assert!(is_true(v) && !is_false(v), "{v}");
        }
        for v in ["false", "False", "f", "0", " 0"] {
            assert!(is_false(v) && !is_true(v), "{v}");
        }
        assert!(!is_true("yes") && !is_false("no"));
    }
}
