//! What needs no server: reading replies of any shape without panicking, and a sink that builds
//! while Redis is down. The end-to-end test against a real redis-server (kill, restart, trim) is
//! `tests/it/sample_sink_redis_stream.rs`.

use std::time::Duration;

use redis::Value;

use super::read::entries;
use super::*;
use crate::sample_log::config::RedisStreamSinkConfig;
use crate::sample_log::record::Record;
use crate::sample_log::sink::SampleSink;

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
    Value::Array(vec![bulk(id), Value::Array(fields.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())])
}

fn config(url: &str) -> RedisStreamSinkConfig {
    RedisStreamSinkConfig {
        name: "stream".to_owned(),
        url: url.to_owned(),
        stream: "samples".to_owned(),
        maxlen: 1000,
        timeout_ms: 500,
        tail: Default::default(),
    }
}

#[test]
fn entries_become_records_whatever_the_field_order() {
    let page = Value::Array(vec![
        entry("1-0", &[("id", "r1:0#0"), ("seq", "7"), ("key", "r1"), ("payload", "\u{1}x")]),
        entry("1-1", &[("payload", ""), ("key", "r2"), ("extra", "ignored"), ("seq", "8"), ("id", "r2:0#0")]),
    ]);
    let got = entries("s", page).expect("well-formed");
    assert_eq!(got.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(), ["1-0", "1-1"]);
    assert_eq!(
        got[0].1,
        Record { sequence: 7, key: "r1".into(), id: "r1:0#0".into(), payload: bytes::Bytes::from_static(b"\x01x") }
    );
    assert_eq!((got[1].1.sequence, got[1].1.key.as_str(), got[1].1.payload.len()), (8, "r2", 0));
}

#[test]
fn malformed_replies_are_errors_naming_the_entry() {
    let full = [("id", "a"), ("seq", "1"), ("key", "k"), ("payload", "p")];
    let cases = [
        (Value::Int(3), "?"),
        (Value::Array(vec![Value::Int(1)]), "?"),
        (Value::Array(vec![Value::Array(vec![bulk("1-0")])]), "?"),
        (Value::Array(vec![Value::Array(vec![Value::Nil, Value::Array(vec![])])]), "?"),
        (Value::Array(vec![entry("2-0", &full[1..])]), "2-0"),
        (Value::Array(vec![entry("3-0", &[("id", "a"), ("seq", "x"), ("key", "k"), ("payload", "p")])]), "3-0"),
        (Value::Array(vec![Value::Array(vec![bulk("4-0"), Value::Array(vec![bulk("id")])])]), "4-0"),
        (Value::Array(vec![Value::Array(vec![bulk("5-0"), Value::Int(1)])]), "5-0"),
    ];
    for (page, want) in cases {
        let shown = format!("{page:?}");
        match entries("s", page) {
            Err(ReadError::Malformed { entry, .. }) => assert_eq!(entry, want, "{shown}"),
            other => panic!("{shown}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_bad_url_fails_the_build() {
    let error = RedisStreamSink::new(&config("http://nowhere")).await.expect_err("not a redis url");
    assert!(error.to_string().contains("http://nowhere"), "{error}");
}

#[tokio::test]
async fn the_sink_builds_while_redis_is_down_and_fails_batches_in_bounded_time() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sink = RedisStreamSink::new(&config(&format!("redis://127.0.0.1:{port}"))).await.expect("lazy build");
    let record = Record { sequence: 1, key: "k".into(), id: "k:0#0".into(), payload: bytes::Bytes::from_static(b"p") };
    // Generous: the sink's own 500 ms bound must end both long before.
    let bound = Duration::from_secs(60);
    let delivered = tokio::time::timeout(bound, sink.deliver(std::slice::from_ref(&record))).await;
    assert!(delivered.expect("bounded, not hung").is_err(), "nothing acknowledged it");
    let health = tokio::time::timeout(bound, sink.healthcheck()).await;
    assert!(health.expect("bounded, not hung").is_err(), "healthcheck reports the outage");
    assert!(sink.deliver(&[]).await.is_ok_and(|d| d.refused.is_empty()), "an empty batch is trivially acknowledged");
}

#[test]
fn config_defaults_maxlen_and_timeout_and_bounds_them() {
    let sink = |extra: &str| {
        crate::config::Config::from_toml(&format!(
            "[samples]\nenabled = true\n[[samples.sinks]]\nkind = \"redis_stream\"\nurl = \"redis://r:6379\"\nstream = \"s\"\n{extra}"
        ))
    };
    match &sink("").expect("parses").samples.sinks[..] {
        [crate::sample_log::config::SinkConfig::RedisStream(r)] => {
            assert_eq!((r.name.as_str(), r.maxlen, r.timeout_ms), ("redis_stream", 1_000_000, 5_000));
        }
        other => panic!("{other:?}"),
    }
    for (extra, key) in [("timeout_ms = 0", "timeout_ms"), ("maxlen = 0", "maxlen")] {
        let error = sink(extra).expect_err(extra).to_string();
        assert!(error.contains(&format!("samples.sinks[0].{key}")), "{error}");
    }
}
