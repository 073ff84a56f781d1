//! Vetting a stream's librdkafka `properties` before the consumer is created: what a consumer
//! refuses, by property (names resolved by [`crate::validate::librdkafka`], which also refuses
//! two names of one property). Both auto-commits are refused: the consumer's global
//! `enable.auto.commit` and the legacy topic-level `auto.commit.enable` (`topic.enable.auto.commit`
//! is its alias, not the global one).

use std::collections::BTreeMap;

use crate::validate::librdkafka::{Refusal, is_false, vet_with};

fn protected(property: &str, value: &str) -> Option<(&'static str, &'static str)> {
    match property {
        "metadata.broker.list" => Some(("metadata.broker.list", "is the stream's `brokers` field")),
        "group.id" => Some(("group.id", "is the stream's `group_id` field")),
        "enable.auto.commit" => (!is_false(value)).then_some((
            "enable.auto.commit",
            "must stay `false`: an offset is committed only after its update is in the store",
        )),
        "auto.commit.enable" => (!is_false(value)).then_some((
            "auto.commit.enable",
            "(the legacy topic-level auto-commit) must stay `false`: an offset is committed only after its update is in the store",
        )),
        "enable.auto.offset.store" => (!is_false(value)).then_some((
            "enable.auto.offset.store",
            "must stay `false`: augur commits the offsets it has written, not those it was handed",
        )),
        _ => None,
    }
}

/// The first refusal among `properties`, in key order, or `None`.
pub(super) fn vet(properties: &BTreeMap<String, String>) -> Option<Refusal> {
    vet_with(properties, protected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_properties_are_refused_under_every_name() {
        let one = |k: &str, v: &str| vet(&[(k.to_owned(), v.to_owned())].into());
        assert!(matches!(
            one("enable.auto.commit", "true"),
            Some(Refusal::Protected { property: "enable.auto.commit", .. })
        ));
        for key in ["auto.commit.enable", "topic.auto.commit.enable", "topic.enable.auto.commit"] {
            assert!(
                matches!(one(key, "true"), Some(Refusal::Protected { property: "auto.commit.enable", .. })),
                "{key}"
            );
        }
        for key in ["enable.auto.commit", "auto.commit.enable", "topic.auto.commit.enable", "topic.enable.auto.commit"]
        {
            assert_eq!(one(key, "false"), None, "{key}");
        }
        assert!(matches!(one("enable.auto.offset.store", "1"), Some(Refusal::Protected { .. })));
        assert!(matches!(one("bootstrap.servers", "x:1"), Some(Refusal::Protected { .. })));
        assert!(matches!(one("topic.bootstrap.servers", "x:1"), Some(Refusal::Protected { .. })));
        assert!(matches!(one("group.id", "g"), Some(Refusal::Protected { .. })));
        assert_eq!(one("auto.offset.reset", "earliest"), None);
        let two = [
            ("fetch.message.max.bytes".to_owned(), "1".to_owned()),
            ("max.partition.fetch.bytes".to_owned(), "2".to_owned()),
        ];
        assert!(matches!(vet(&two.into()), Some(Refusal::SameProperty { .. })));
    }
}
