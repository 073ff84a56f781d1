//! Decoding, checking and configuring feature streams (no Kafka, no Redis: those are in
//! tests/it/feature_streams.rs).

use super::config::{EntityKind, UpdateFormat};
use super::specs::SpecReads;
use super::update::{Update, value_text};
use crate::assemble::Spec;
use crate::config::Config;
use crate::fetch::Value;

fn update() -> Update {
    Update {
        entity: EntityKind::Item,
        entity_id: "i42".into(),
        event_time_ms: 1_767_225_600_000,
        features: vec![
            ("category".into(), Value::Str("shoes".into())),
            ("price".into(), Value::Float(12.5)),
            ("tags".into(), Value::StrList(vec!["a".into(), "b".into()])),
        ],
    }
}

#[test]
fn protobuf_and_json_round_trip_and_auto_tells_them_apart() {
    let u = update();
    assert_eq!(Update::decode(UpdateFormat::Protobuf, &u.to_proto()).unwrap(), u);
    assert_eq!(Update::decode(UpdateFormat::Json, u.to_json().as_bytes()).unwrap(), u);
    assert_eq!(Update::decode(UpdateFormat::Auto, u.to_json().as_bytes()).unwrap(), u);
    assert_eq!(Update::decode(UpdateFormat::Auto, &u.to_proto()).unwrap(), u);
    assert_eq!(u.key(), "item:i42");
    assert_eq!(value_text(&Value::FloatList(vec![0.1, 2.0])), "0.1|2");
}

#[test]
fn bad_messages_name_their_reason() {
    let reason = |format, payload: &[u8]| Update::decode(format, payload).unwrap_err().reason;
    assert_eq!(reason(UpdateFormat::Json, b"{oops"), "decode");
    assert_eq!(reason(UpdateFormat::Protobuf, b"\xff\xff\xff"), "decode");
    let json = |s: &str| Update::decode(UpdateFormat::Json, s.as_bytes()).unwrap_err().reason;
    assert_eq!(json(r#"{"entity":"shop","entity_id":"x","event_time_ms":1,"features":{"a":1}}"#), "entity");
    assert_eq!(json(r#"{"entity":"item","entity_id":"","event_time_ms":1,"features":{"a":1}}"#), "entity_id");
    assert_eq!(json(r#"{"entity":"item","entity_id":"x","event_time_ms":0,"features":{"a":1}}"#), "event_time");
    assert_eq!(json(r#"{"entity":"item","entity_id":"x","event_time_ms":1,"features":{}}"#), "features");
    assert_eq!(json(r#"{"entity":"item","entity_id":"x","event_time_ms":1,"features":{"@t:a":1}}"#), "features");
    assert_eq!(json(r#"{"entity":"item","entity_id":"x","event_time_ms":1,"features":{"a":null}}"#), "value");
    let mut nan = update();
    nan.features[1].1 = Value::Float(f64::NAN);
    assert_eq!(Update::decode(UpdateFormat::Protobuf, &nan.to_proto()).unwrap_err().reason, "value");
}

const STREAM: &str = "[[feature_streams]]\nname = \"items\"\nbrokers = \"127.0.0.1:9092\"\ntopic = \"features\"\n";

/// Without the `kafka` feature a feature stream cannot run: start-up refuses it, naming it.
#[cfg(not(feature = "kafka"))]
#[test]
fn a_build_without_kafka_refuses_a_stream() {
    let err = Config::from_toml(STREAM).unwrap_err().to_string();
    assert!(err.contains("feature_streams") && err.contains("Kafka"), "{err}");
}

#[cfg(feature = "kafka")]
#[test]
fn a_stream_gets_its_defaults_and_bad_values_name_their_key() {
    let config = Config::from_toml(STREAM).unwrap();
    let stream = &config.feature_streams[0];
    assert_eq!(stream.group_id, "augur-features");
    assert_eq!(stream.format, UpdateFormat::Protobuf);
    assert_eq!(stream.tables[&EntityKind::Item], "items");
    assert_eq!(stream.tables[&EntityKind::User], "users");
    assert_eq!(stream.dead_letter_path(), std::path::PathBuf::from("items.dead-letters.jsonl"));
    assert!(Config::from_toml("").unwrap().feature_streams.is_empty());
    let with_tables = format!("{STREAM}format = \"json\"\ntables = {{ item = \"catalogue\" }}\n");
    let config = Config::from_toml(&with_tables).unwrap();
    assert_eq!(config.feature_streams[0].tables.len(), 1);
    for (extra, key) in [
        ("topic = \"\"\n", "feature_streams[0].topic"),
        (
            "properties = { \"enable.auto.commit\" = \"true\" }\n",
            "feature_streams[0].properties.\"enable.auto.commit\"",
        ),
        ("properties = { \"bootstrap.servers\" = \"x:1\" }\n", "feature_streams[0].properties.\"bootstrap.servers\""),
        ("tables = { item = \"a b\" }\n", "feature_streams[0].tables.item"),
        ("max_batch = 0\n", "feature_streams[0].max_batch"),
    ] {
        let toml = format!(
            "[[feature_streams]]\nname = \"items\"\nbrokers = \"b:1\"\n{}{extra}",
            if extra.starts_with("topic") { "" } else { "topic = \"t\"\n" }
        );
        let err = Config::from_toml(&toml).unwrap_err().to_string();
        assert!(err.contains(key), "{extra}: {err}");
    }
    let twice = format!("{STREAM}{STREAM}");
    assert!(Config::from_toml(&twice).unwrap_err().to_string().contains("feature_streams[1].name"));
    let unknown = format!("{STREAM}tables = {{ shop = \"x\" }}\n");
    assert!(Config::from_toml(&unknown).is_err(), "an unknown entity kind is refused");
}

/// The specs of the default scenes: ranking reads `users` and `items`, search_suggest `users` and
/// `suggestions`.
fn default_reads() -> SpecReads {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let specs: Vec<Spec> = ["features/ranking.yaml", "features/search_suggest.yaml"]
        .iter()
        .map(|p| Spec::load(&root.join(p)).unwrap())
        .collect();
    SpecReads::of(&specs)
}

#[cfg(feature = "kafka")]
#[test]
fn a_stream_writing_a_table_no_spec_reads_fails_naming_its_key() {
    let reads = default_reads();
    let streams = |tables: &str| Config::from_toml(&format!("{STREAM}tables = {tables}\n")).unwrap().feature_streams;
    assert!(reads.check(&streams("{ user = \"users\", item = \"items\" }")).is_ok());
    assert!(reads.check(&streams("{ item = \"suggestions\" }")).is_ok(), "any scene's table will do");
    for (tables, key, says) in [
        ("{ item = \"item\" }", "feature_streams[0].tables.item", "`item`"),
        // A table some spec reads, but as another kind's rows.
        ("{ user = \"users\", item = \"users\" }", "feature_streams[0].tables.item", "items, suggestions"),
        ("{ item = \"items\", context = \"ctx\" }", "feature_streams[0].tables.context", "from each request"),
    ] {
        let err = reads.check(&streams(tables)).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(says), "{tables}: {err}");
    }
    // The default mapping (users and items) passes for the default scenes.
    assert!(reads.check(&Config::from_toml(STREAM).unwrap().feature_streams).is_ok());
}

#[test]
fn features_no_spec_reads_from_the_table_are_named() {
    let reads = default_reads();
    let mut u = update();
    u.features.push(("color".into(), Value::Str("red".into())));
    // ranking reads category, price and brand/tags from `items`; `color` no spec reads.
    assert_eq!(reads.unknown("items", &u).collect::<Vec<_>>(), ["color"]);
    // search_suggest reads other fields from `suggestions`.
    assert!(reads.unknown("suggestions", &u).any(|f| f == "price"));
    // A table no spec reads: every feature is unknown.
    assert_eq!(reads.unknown("nowhere", &u).count(), 4);
    // The same names on a user update are user fields, not item fields.
    let user = Update { entity: EntityKind::User, ..u };
    assert!(reads.unknown("users", &user).any(|f| f == "price"));
}

#[tokio::test]
async fn a_full_memory_table_refuses_an_update_for_a_new_id_alone() {
    let store = std::sync::Arc::new(crate::fetch::MemoryStore::default().with_max_streamed_rows(1));
    let target = super::Target::Memory(std::sync::Arc::clone(&store));
    let first = update();
    let newcomer = Update { entity_id: "i43".into(), ..update() };
    let later = Update { event_time_ms: first.event_time_ms + 1, ..update() };
    let outcomes = target.apply("items", &[("items", &first), ("items", &newcomer), ("items", &later)]).await.unwrap();
    assert_eq!(outcomes[0].as_ref().map(|d| d.applied), Ok(3));
    let refused = outcomes[1].as_ref().unwrap_err();
    assert!(refused.contains("store.max_streamed_rows"), "{refused}");
    assert_eq!(outcomes[2].as_ref().map(|d| d.applied), Ok(3), "the row held keeps taking updates");
    assert_eq!(store.len("items"), 1);
}
