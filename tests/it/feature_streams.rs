//! Feature streams end to end: `augur features publish`'s producer → librdkafka's mock cluster
//! (the real Kafka protocol) → augur's consumer group → a real `redis-server` → Predict. Every
//! wait is bounded by `common::wait_for`'s generous timeout; times are reported, not asserted.

use std::time::{Duration, Instant};

use augur::feature_stream::publish::{encode, publish, publish_raw};
use augur::feature_stream::{EntityKind, Update, UpdateFormat};
use augur::fetch::Value;
use augur::proto::FallbackReason;
use augur::sample_log::kafka::mock::{Fault, MockKafka};

use crate::common;
use crate::common::http::{sample, scrape};
use crate::common::redis_server::{RedisServer, load_demo, redis_demo_config};

pub(crate) const TOPIC: &str = "features";

/// Items cached for a minute, unknown ids too: only an invalidation makes an update visible
/// within a test's timeout.
const CACHE: &str = "[store.cache.tables.items]\nmax_entries = 1000\nttl_ms = 60000\nnegative_ttl_ms = 60000\n";

fn config(redis: &RedisServer, kafka: &MockKafka, dead_letters: &std::path::Path) -> augur::config::Config {
    redis_demo_config(
        &[redis.url()],
        false,
        &format!(
            "{CACHE}\n[[feature_streams]]\nname = \"items\"\nbrokers = \"{}\"\ntopic = \"{TOPIC}\"\n\
             format = \"auto\"\ndead_letter_path = \"{}\"\n",
            kafka.bootstrap,
            dead_letters.display()
        ),
    )
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Every field the ranking spec reads from an item.
pub(crate) fn item_update(id: &str, event_time_ms: i64, price: f64, category: &str) -> Update {
    Update {
        entity: EntityKind::Item,
        entity_id: id.to_owned(),
        event_time_ms,
        features: vec![
            ("brand".into(), Value::Str("b7".into())),
            ("category".into(), Value::Str(category.into())),
            ("price".into(), Value::Float(price)),
            ("tags".into(), Value::StrList(vec!["t1".into(), "t2".into()])),
        ],
    }
}

/// Whether Predict on `server` serves `item` from a stored row (no `MissingRow` fallback).
async fn served(server: &common::TestServer, item: &str) -> bool {
    let mut client = server.client().await;
    let response = client.predict(common::ranking_request("u1", &[item])).await.expect("predict").into_inner();
    !response.fallbacks.iter().any(|f| f.reason == FallbackReason::MissingRow as i32)
}

fn hget(redis: &RedisServer, id: &str, field: &str) -> Option<String> {
    redis.query(redis::cmd("HGET").arg(format!("augur:items:{id}")).arg(field)).unwrap()
}

async fn counter(server: &common::TestServer, name: &str, labels: &str) -> f64 {
    sample(&scrape(server).await, &format!("augur_feature_stream_{name}{{{labels}}}")).unwrap_or(0.0)
}

/// Fails the test, instead of hanging CI, if it takes longer than a generous bound: a stream
/// test waits on a broker, a consumer group and Redis, and each wait is bounded on its own.
pub(crate) async fn bounded(test: impl std::future::Future<Output = ()>) {
    let bound = Duration::from_secs(240);
    tokio::time::timeout(bound, test).await.unwrap_or_else(|_| panic!("the test took more than {bound:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_item_is_served_by_two_replicas() {
    bounded(async {
        common::require!(Redis, Ort);
        let (redis, kafka, dir) = (RedisServer::start(), MockKafka::start(TOPIC, 3), tempfile::tempdir().unwrap());
        let config = config(&redis, &kafka, &dir.path().join("dead.jsonl"));
        load_demo(&config).await;
        let a = common::start(config.clone()).await;
        let b = common::start(config).await;
        // Both replicas have cached "no such item" for a minute.
        assert!(!served(&a, "new-item").await && !served(&b, "new-item").await);

        let published = Instant::now();
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &[item_update("new-item", now_ms(), 12.5, "c3")])
            .await
            .expect("publish");
        let mut seen = Vec::new();
        for (name, server) in [("a", &a), ("b", &b)] {
            common::wait_for(&format!("new-item served by replica {name}"), async || served(server, "new-item").await)
                .await;
            seen.push((name, published.elapsed()));
        }
        // Includes the consumer group's first join (the mock cluster's initial rebalance delay).
        println!("publish → served: {seen:?}");

        // One replica wrote it (one group); both invalidated over pub/sub; freshness is on /metrics.
        let applied = |s| async move { counter(s, "updates_total", "stream=\"items\",result=\"applied\"").await };
        assert_eq!(applied(&a).await + applied(&b).await, 1.0);
        for server in [&a, &b] {
            let text = scrape(server).await;
            let count = sample(&text, "augur_feature_stream_freshness_seconds_count{stream=\"items\",path=\"pubsub\"}");
            assert_eq!(count, Some(1.0), "every replica hears the write");
        }
        // A second update, as JSON (the stream takes both), now that the group has settled: the
        // steady-state time.
        assert!(!served(&a, "newer-item").await && !served(&b, "newer-item").await);
        let published = Instant::now();
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Json, &[item_update("newer-item", now_ms(), 3.0, "c1")])
            .await
            .expect("publish");
        let mut seen = Vec::new();
        for (name, server) in [("a", &a), ("b", &b)] {
            common::wait_for(&format!("newer-item served by {name}"), async || served(server, "newer-item").await)
                .await;
            seen.push((name, published.elapsed()));
        }
        println!("steady state publish → served: {seen:?}");
        a.stop().await;
        b.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_updates_resolve_by_event_time() {
    bounded(async {
        common::require!(Redis, Ort);
        let (redis, kafka, dir) = (RedisServer::start(), MockKafka::start(TOPIC, 3), tempfile::tempdir().unwrap());
        let config = config(&redis, &kafka, &dir.path().join("dead.jsonl"));
        load_demo(&config).await;
        let server = common::start(config).await;
        let t = now_ms();
        let mut late = item_update("ooo", t - 60_000, 10.0, "old");
        late.features.push(("color".into(), Value::Str("red".into())));
        let updates = [
            item_update("ooo", t, 20.0, "new"),
            // A minute older: only `color`, which nothing newer set, is written.
            late,
            // A replay of the first: changes nothing.
            item_update("ooo", t, 20.0, "new"),
        ];
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &updates).await.expect("publish");
        common::wait_for("three updates consumed", async || {
            counter(&server, "updates_total", "stream=\"items\",result=\"applied\"").await
                + counter(&server, "updates_total", "stream=\"items\",result=\"stale\"").await
                >= 3.0
        })
        .await;
        assert_eq!(counter(&server, "updates_total", "stream=\"items\",result=\"applied\"").await, 2.0);
        assert_eq!(counter(&server, "updates_total", "stream=\"items\",result=\"stale\"").await, 1.0);
        assert_eq!(hget(&redis, "ooo", "price").as_deref(), Some("20"));
        assert_eq!(hget(&redis, "ooo", "category").as_deref(), Some("new"));
        assert_eq!(hget(&redis, "ooo", "color").as_deref(), Some("red"));
        assert_eq!(hget(&redis, "ooo", "@t:price"), Some(t.to_string()));
        assert!(served(&server, "ooo").await);
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_skipped_counted_and_dead_lettered() {
    bounded(async {
        common::require!(Redis, Ort);
        let (redis, kafka, dir) = (RedisServer::start(), MockKafka::start(TOPIC, 3), tempfile::tempdir().unwrap());
        let dead = dir.path().join("dead.jsonl");
        let config = config(&redis, &kafka, &dead);
        load_demo(&config).await;
        let server = common::start(config).await;
        // Same key, so the same partition: the good update comes after the poison.
        let good = item_update("after-poison", now_ms(), 5.0, "c2");
        publish_raw(
            &kafka.bootstrap,
            TOPIC,
            [(good.key(), vec![0xff, 0xff, 0xff, 0x00]), (good.key(), encode(UpdateFormat::Protobuf, &good))],
        )
        .await
        .expect("publish");
        common::wait_for("the update after the poison", async || served(&server, "after-poison").await).await;
        assert_eq!(counter(&server, "bad_messages_total", "stream=\"items\",reason=\"decode\"").await, 1.0);
        let letters = std::fs::read_to_string(&dead).expect("dead-letter file");
        let lines: Vec<serde_json::Value> = letters.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{letters}");
        assert_eq!(lines[0]["reason"], "decode");
        assert_eq!(lines[0]["topic"], TOPIC);
        assert_eq!(lines[0]["payload_hex"], "ffffff00");
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_from_its_committed_offsets() {
    bounded(async {
        common::require!(Redis, Ort);
        let (redis, kafka, dir) = (RedisServer::start(), MockKafka::start(TOPIC, 3), tempfile::tempdir().unwrap());
        let config = config(&redis, &kafka, &dir.path().join("dead.jsonl"));
        load_demo(&config).await;
        let first = common::start(config.clone()).await;
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &[item_update("r1", now_ms(), 1.0, "c1")])
            .await
            .unwrap();
        common::wait_for("r1 written", async || hget(&redis, "r1", "price").is_some()).await;
        first.stop().await;

        // Published while no consumer runs.
        let t = now_ms();
        let later = [item_update("r2", t, 2.0, "c2"), item_update("r3", t, 3.0, "c3")];
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &later).await.unwrap();
        let second = common::start(config).await;
        common::wait_for("r2 and r3 written", async || {
            hget(&redis, "r2", "price").is_some() && hget(&redis, "r3", "price").is_some()
        })
        .await;
        assert!(served(&second, "r2").await && served(&second, "r3").await);
        // Exactly the two it missed: r1 was committed, so it is not consumed again.
        assert_eq!(counter(&second, "updates_total", "stream=\"items\",result=\"applied\"").await, 2.0);
        assert_eq!(counter(&second, "updates_total", "stream=\"items\",result=\"stale\"").await, 0.0);
        second.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_serves_stale_features_never_errors() {
    bounded(async {
        common::require!(Redis, Ort);
        let (redis, kafka, dir) = (RedisServer::start(), MockKafka::start(TOPIC, 3), tempfile::tempdir().unwrap());
        let config = config(&redis, &kafka, &dir.path().join("dead.jsonl"));
        load_demo(&config).await;
        let server = common::start(config).await;
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &[item_update("o1", now_ms(), 10.0, "c1")])
            .await
            .unwrap();
        common::wait_for("o1 served", async || served(&server, "o1").await).await;

        let faults = kafka.faults();
        for broker in 1..=3 {
            faults.inject(Fault::Down(broker)).await;
        }
        let mut client = server.client().await;
        let until = Instant::now() + Duration::from_secs(6);
        let mut calls = 0;
        while Instant::now() < until {
            let response = client.predict(common::ranking_request("u1", &["o1", "i1"])).await;
            let response = response.expect("Predict must not fail while the brokers are down").into_inner();
            assert!(
                !response.fallbacks.iter().any(|f| f.reason == FallbackReason::MissingRow as i32),
                "o1 stays served"
            );
            calls += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let errors = counter(&server, "consumer_errors_total", "stream=\"items\"").await;
        println!("{calls} Predict calls during the outage, all OK; consumer errors counted: {errors}");
        for broker in 1..=3 {
            faults.inject(Fault::Up(broker)).await;
        }
        // The stream picks up where it was.
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &[item_update("o1", now_ms(), 99.0, "c1")])
            .await
            .unwrap();
        common::wait_for("o1 updated after the outage", async || hget(&redis, "o1", "price").as_deref() == Some("99"))
            .await;
        server.stop().await;
    })
    .await
}

/// The stream's crash invariant, on the real binary: an update's offset is committed only after
/// its write, so whatever a SIGKILL interrupts is delivered again to the next process of the
/// group, and the replay is harmless (last writer by event time wins, so a re-delivered older
/// update never undoes a newer one). See [`kill_twice_then_drain`]; then every item must hold its
/// newer price and nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_consumers_lose_no_update_and_replays_never_regress_one() {
    bounded(async {
        common::require!(Redis, Ort);
        let run = kill_twice_then_drain(600, |_| String::new(), |_, _, _| {}).await;
        let dead = std::fs::read_to_string(run.dir.path().join("dead.jsonl")).unwrap_or_default();
        assert!(dead.is_empty(), "nothing was dead-lettered: {dead}");
    })
    .await
}

/// What [`kill_twice_then_drain`] leaves for the caller's checks.
pub(crate) struct Drained {
    pub(crate) redis: RedisServer,
    pub(crate) kafka: MockKafka,
    pub(crate) dir: tempfile::TempDir,
    /// The third process, still running.
    pub(crate) last: crate::common::process::AugurProcess,
}

/// The crash scenario on the real binary (`augur serve`, config `augur.toml` in a temp dir, plus
/// `extra(dir)`): every item gets two updates in publish order (price `i`, then `1000 + i` a
/// millisecond later), published in three chunks; the first two replicas are SIGKILLed right
/// after their chunk is published (mid-consumption; `after_kill(kafka, dir, replica)` runs after
/// each), the third drains the rest, until every item holds its newer price.
pub(crate) async fn kill_twice_then_drain(
    items: usize,
    extra: impl Fn(&std::path::Path) -> String,
    after_kill: impl Fn(&MockKafka, &std::path::Path, &str),
) -> Drained {
    use crate::common::process::AugurProcess;
    let (redis, kafka, dir) = (RedisServer::start(), MockKafka::start(TOPIC, 3), tempfile::tempdir().unwrap());
    let path = dir.path().join("augur.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n\
             [store]\nkind = \"redis\"\nurls = [\"{}\"]\ntimeout_ms = 5000\n\
             [[feature_streams]]\nname = \"items\"\nbrokers = \"{}\"\ntopic = \"{TOPIC}\"\nmax_batch = 16\n\
             dead_letter_path = \"{}\"\n{}",
            redis.url(),
            kafka.bootstrap,
            dir.path().join("dead.jsonl").display(),
            extra(dir.path())
        ),
    )
    .unwrap();
    let base = now_ms() - 60_000;
    let chunk = |range: std::ops::Range<usize>| {
        let mut updates = Vec::with_capacity(2 * range.len());
        for i in range {
            let id = format!("k{i}");
            updates.push(item_update(&id, base + 2 * i as i64, i as f64, "c1"));
            updates.push(item_update(&id, base + 2 * i as i64 + 1, 1000.0 + i as f64, "c1"));
        }
        updates
    };
    let newest = |i: usize| hget(&redis, &format!("k{i}"), "price").as_deref() == Some(&*format!("{}", 1000 + i));
    let thirds = [0..items / 3, items / 3..2 * items / 3];
    for (replica, range) in ["a", "b"].into_iter().zip(thirds) {
        let augur = AugurProcess::start(&path).await;
        // Joined the group and consuming: the first update of this chunk is written.
        let first = range.start;
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &chunk(first..first + 1)).await.unwrap();
        common::wait_for(&format!("{replica} consuming"), async || newest(first)).await;
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &chunk(first + 1..range.end)).await.unwrap();
        augur.kill();
        let done = (first..range.end).filter(|&i| newest(i)).count();
        println!("replica {replica} SIGKILLed with {done} of {} items of its chunk at the newer price", range.len());
        after_kill(&kafka, dir.path(), replica);
    }
    let last = AugurProcess::start(&path).await;
    publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &chunk(2 * items / 3..items)).await.unwrap();
    common::wait_for("every item at its newer price", async || (0..items).all(newest)).await;
    Drained { redis, kafka, dir, last }
}
