//! Vetting the user's librdkafka `properties` before the producer is created.
//!
//! librdkafka knows one property under several names: documented aliases (`acks` for
//! `request.required.acks`, `delivery.timeout.ms` for `message.timeout.ms`, `linger.ms` for
//! `queue.buffering.max.ms` ...) and, for topic-level properties, the same name with a `topic.`
//! prefix on the global configuration. rdkafka's `ClientConfig` keeps properties in a `HashMap`
//! and hands them to librdkafka in its iteration order, so two names of one property are applied
//! in no fixed order: the same file starts on one run and fails (or silently runs with the other
//! value) on the next. So every name is resolved to the property it sets first, and
//!
//! - a property the sink's guarantees rest on is refused, under any of its names, unless the
//!   value keeps the guarantee (the refusal names the key and says why);
//! - two user keys naming one property are refused, both named.
//!
//! The alias and scope tables are librdkafka 2.12's (`src/rdkafka_conf.c`, the `_RK_C_ALIAS`
//! entries; `CONFIGURATION.md` "Alias for"), the version rdkafka-sys bundles.

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
/// scopes, like `compression.codec`, set the global one unless prefixed.)
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
enum Scope {
    Global,
    Topic,
}

/// Why a user property is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// It would undo a guarantee, or it duplicates a sink field.
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

/// The property `key` sets: (scope, canonical name), aliases and the `topic.` prefix resolved.
fn resolve(key: &str) -> (Scope, &str) {
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

/// Checks a protected property's value: `None` if allowed, else the property and why not.
/// Matched by name in either scope: `topic.enable.idempotence` is no global setting (librdkafka
/// would call it unknown), but refusing it by name says more.
fn protected(property: &str, value: &str) -> Option<(&'static str, &'static str)> {
    let value = value.trim();
    let int = || value.parse::<i64>().ok();
    match property {
        "enable.idempotence" => {
            // librdkafka's bool parser: true, t (any case) or 1.
            let on = value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("t") || value == "1";
            (!on).then_some((
                "enable.idempotence",
                "must stay `true`: retries must neither duplicate nor reorder a partition's records",
            ))
        }
        "request.required.acks" => (!(value.eq_ignore_ascii_case("all") || int() == Some(-1))).then_some((
            "request.required.acks",
            "must stay `all` (-1): a record counts as delivered only once every in-sync replica has it",
        )),
        "metadata.broker.list" => Some(("metadata.broker.list", "set the sink's `brokers` instead")),
        "message.timeout.ms" => Some(("message.timeout.ms", "set the sink's `message_timeout_ms` instead")),
        "max.in.flight.requests.per.connection" => (!matches!(int(), Some(1..=5))).then_some((
            "max.in.flight.requests.per.connection",
            "must be 1..=5: the idempotent producer keeps a partition's order only up to 5 requests in flight",
        )),
        "message.send.max.retries" => (!matches!(int(), Some(1..))).then_some((
            "message.send.max.retries",
            "must be at least 1: without retries a transient error reorders a partition's records",
        )),
        "queuing.strategy" => (!value.eq_ignore_ascii_case("fifo"))
            .then_some(("queuing.strategy", "must stay `fifo`: records must leave in log order")),
        "partitioner" => value.eq_ignore_ascii_case("random").then_some((
            "partitioner",
            "must hash the key: every sample of a request must land on one partition, in order",
        )),
        "transactional.id" => Some((
            "transactional.id",
            "the sink's producer is not transactional (it never begins a transaction, so every record would fail)",
        )),
        _ => None,
    }
}

/// The first refusal among `properties`, in key order (so the same file always gives the same
/// answer), or `None` if every property may be set.
pub(super) fn vet(properties: &BTreeMap<String, String>) -> Option<Refusal> {
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
    fn names_resolve_to_librdkafka_properties() {
        assert_eq!(resolve("acks"), (Scope::Topic, "request.required.acks"));
        assert_eq!(resolve("topic.acks"), (Scope::Topic, "request.required.acks"));
        assert_eq!(resolve("topic.request.required.acks"), (Scope::Topic, "request.required.acks"));
        assert_eq!(resolve("delivery.timeout.ms"), (Scope::Topic, "message.timeout.ms"));
        assert_eq!(resolve("topic.delivery.timeout.ms"), (Scope::Topic, "message.timeout.ms"));
        assert_eq!(resolve("linger.ms"), (Scope::Global, "queue.buffering.max.ms"));
        assert_eq!(resolve("max.in.flight"), (Scope::Global, "max.in.flight.requests.per.connection"));
        // In both scopes: unprefixed is the global one.
        assert_eq!(resolve("compression.type"), (Scope::Global, "compression.codec"));
        assert_eq!(resolve("topic.compression.type"), (Scope::Topic, "compression.codec"));
        assert_eq!(resolve("socket.timeout.ms"), (Scope::Global, "socket.timeout.ms"));
    }
}
