//! Vetting a stream's librdkafka `properties` before the consumer is created: the same pattern as
//! the Kafka sample sink's (`sample_log/kafka/properties.rs`), for a consumer's guarantees.
//! librdkafka knows a property under several names (aliases, a `topic.` prefix), and rdkafka
//! hands properties over in `HashMap` order, so each name is resolved to its property first;
//! a protected property is refused under any name, and two names of one property are refused.

use std::collections::BTreeMap;

/// (alias, property) pairs a consumer may meet (librdkafka 2.12, `CONFIGURATION.md`).
const ALIASES: [(&str, &str); 4] = [
    ("bootstrap.servers", "metadata.broker.list"),
    ("auto.commit.enable", "enable.auto.commit"),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("sasl.mechanism", "sasl.mechanisms"),
];

/// Why a user property is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// It would undo a guarantee, or duplicates a stream field.
    Protected {
        /// The user's key.
        key: String,
        /// The property it resolves to.
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

/// The property `key` sets, aliases and the `topic.` prefix resolved.
pub(super) fn resolve(key: &str) -> &str {
    let name = key.strip_prefix("topic.").unwrap_or(key);
    ALIASES.iter().find(|(alias, _)| *alias == name).map_or(name, |(_, property)| property)
}

fn protected(property: &str, value: &str) -> Option<(&'static str, &'static str)> {
    let off = || {
        let v = value.trim();
        v.eq_ignore_ascii_case("false") || v.eq_ignore_ascii_case("f") || v == "0"
    };
    match property {
        "metadata.broker.list" => Some(("metadata.broker.list", "is the stream's `brokers` field")),
        "group.id" => Some(("group.id", "is the stream's `group_id` field")),
        "enable.auto.commit" => (!off()).then_some((
            "enable.auto.commit",
            "must stay `false`: an offset is committed only after its update is in the store",
        )),
        "enable.auto.offset.store" => (!off()).then_some((
            "enable.auto.offset.store",
            "must stay `false`: augur commits the offsets it has written, not those it was handed",
        )),
        _ => None,
    }
}

/// The first refusal among `properties`, in key order, or `None`.
pub(super) fn vet(properties: &BTreeMap<String, String>) -> Option<Refusal> {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in properties {
        let property = resolve(key);
        if let Some((property, reason)) = protected(property, value) {
            return Some(Refusal::Protected { key: key.clone(), property, reason });
        }
        if let Some(first) = seen.insert(property, key) {
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
    fn protected_properties_are_refused_under_every_name() {
        let one = |k: &str, v: &str| vet(&[(k.to_owned(), v.to_owned())].into());
        for key in ["enable.auto.commit", "auto.commit.enable", "topic.auto.commit.enable"] {
            assert!(
                matches!(one(key, "true"), Some(Refusal::Protected { property: "enable.auto.commit", .. })),
                "{key}"
            );
            assert_eq!(one(key, "false"), None, "{key}");
        }
        assert!(matches!(one("bootstrap.servers", "x:1"), Some(Refusal::Protected { .. })));
        assert!(matches!(one("group.id", "g"), Some(Refusal::Protected { .. })));
        assert_eq!(one("auto.offset.reset", "earliest"), None);
        let two = [
            ("fetch.message.max.bytes".to_owned(), "1".to_owned()),
            ("max.partition.fetch.bytes".to_owned(), "2".to_owned()),
        ];
        assert!(matches!(vet(&two.into()), Some(Refusal::SameProperty { .. })));
    }
}
