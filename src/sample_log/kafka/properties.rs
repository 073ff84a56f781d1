//! Vetting the user's librdkafka `properties` before the producer is created: what the sink
//! refuses, by property (names resolved by [`crate::validate::librdkafka`], which also refuses
//! two names of one property).

use std::collections::BTreeMap;

use crate::validate::librdkafka::{Refusal, is_true, vet_with};

/// Checks a protected property's value: `None` if allowed, else the property and why not.
fn protected(property: &str, value: &str) -> Option<(&'static str, &'static str)> {
    let value = value.trim();
    let int = || value.parse::<i64>().ok();
    match property {
        "enable.idempotence" => (!is_true(value)).then_some((
            "enable.idempotence",
            "must stay `true`: retries must neither duplicate nor reorder a partition's records",
        )),
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

/// The first refusal among `properties`, in key order, or `None` if every property may be set.
pub(super) fn vet(properties: &BTreeMap<String, String>) -> Option<Refusal> {
    vet_with(properties, protected)
}
