//! Feature streams end to end: `augur features publish`'s producer → librdkafka's mock cluster
//! (the real Kafka protocol) → augur's consumer group → a real `redis-server` → Predict. Every
//! wait is bounded by `common::wait_for`'s generous timeout; times are reported, not asserted.

use std::time::{Duration, Instant};

use augur::feature_stream::publish::{encode, publish, publish_raw};
use augur::feature_stream::{EntityKind, Update, UpdateFormat};
use augur::fetch::Value;
use augur::proto::FallbackReason;
use augur::sample_log::kafka::mock::{Fault, MockKafka};
use prost::Message;

use crate::common;
use crate::common::http::{sample, scrape};
use crate::common::redis_server::{RedisCluster, RedisServer, load_demo, redis_demo_config};

pub(crate) const TOPIC: &str = "features";

/// Items cached for a minute, unknown ids too: only an invalidation makes an update visible
/// within a test's timeout.
const CACHE: &str = "[store.cache.tables.items]\nmax_entries = 1000\nttl_ms = 60000\nnegative_ttl_ms = 60000\n";

fn config(redis: &RedisServer, kafka: &MockKafka, dead_letters: &std::path::Path) -> augur::config::Config {
    redis_demo_config(&[redis.url()], false, &stream_section(kafka, dead_letters))
}

/// The item cache and one stream `items` on [`TOPIC`], JSON or protobuf.
fn stream_section(kafka: &MockKafka, dead_letters: &std::path::Path) -> String {
    format!(
        "{CACHE}\n[[feature_streams]]\nname = \"items\"\nbrokers = \"{}\"\ntopic = \"{TOPIC}\"\n\
         format = \"auto\"\ndead_letter_path = \"{}\"\n",
        kafka.bootstrap,
        dead_letters.display()
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

/// The offsets `group` has committed on [`TOPIC`]'s `partitions`, summed (a partition with none
/// counts 0).
async fn committed(kafka: &MockKafka, group: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (brokers, group) = (kafka.bootstrap.clone(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        // Asks the coordinator without joining the group.
        let consumer: BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", &group).create().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(TOPIC, p);
        }
        consumer.committed_offsets(tpl, Duration::from_secs(5)).map_or(0, |tpl| {
            tpl.elements()
                .iter()
                .filter_map(|e| if let rdkafka::Offset::Offset(o) = e.offset() { Some(o) } else { None })
                .sum()
        })
    })
    .await
    .unwrap()
}

/// Predict's scores for `items` on `server` (user u1). With `values`, candidate i carries
/// `values[i]`'s features as request-time overrides: the scores the stored rows give when they hold
/// exactly those values.
async fn scores(server: &common::TestServer, items: &[&str], values: Option<&[&Update]>) -> Vec<f32> {
    let mut request = common::ranking_request("u1", items);
    if let Some(values) = values {
        for (candidate, update) in request.candidates.iter_mut().zip(values) {
            candidate.features = augur::proto::FeatureUpdate::decode(&*update.to_proto()).unwrap().features;
        }
    }
    let mut client = server.client().await;
    client.predict(request).await.expect("predict").into_inner().scores
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
        // `color` no scene's spec reads from `items`: applied all the same, and counted.
        assert_eq!(counter(&server, "unknown_features_total", "stream=\"items\",table=\"items\"").await, 1.0);
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
        // Published during the outage: the producer holds it until a broker is back, so the
        // store keeps the old value meanwhile (were the brokers not really down, it would land
        // within the outage and the check below would fail).
        let brokers = kafka.bootstrap.clone();
        let held = tokio::spawn(async move {
            // Encoded here: `publish`'s future (a closure over borrowed updates) is not `Send`.
            let update = item_update("o1", now_ms(), 50.0, "c1");
            publish_raw(&brokers, TOPIC, vec![(update.key(), encode(UpdateFormat::Protobuf, &update))]).await
        });
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
            assert_eq!(hget(&redis, "o1", "price").as_deref(), Some("10"), "the value held stays");
            calls += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let errors = counter(&server, "consumer_errors_total", "stream=\"items\"").await;
        println!("{calls} Predict calls during the outage, all OK; consumer errors counted: {errors}");
        assert!(errors > 0.0, "the consumer saw the outage and counted it");
        for broker in 1..=3 {
            faults.inject(Fault::Up(broker)).await;
        }
        // The stream picks up where it was: the held update, then a new one.
        held.await.unwrap().expect("the update published during the outage is delivered after it");
        common::wait_for("o1 at the price published during the outage", async || {
            hget(&redis, "o1", "price").as_deref() == Some("50")
        })
        .await;
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &[item_update("o1", now_ms(), 99.0, "c1")])
            .await
            .unwrap();
        common::wait_for("o1 updated after the outage", async || hget(&redis, "o1", "price").as_deref() == Some("99"))
            .await;
        assert!(served(&server, "o1").await);
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

/// The stream on a real 3-master Redis Cluster, two replicas in one consumer group, each with a
/// local cache that holds "no such item" for every id: updates to many items (keys over every
/// master) are written by the Lua script on whichever node owns each key, the late ones lose by
/// event time, every write's invalidation (PUBLISH inside the script, broadcast by the cluster
/// bus) reaches both replicas, and Predict on both scores the stored rows as it scores the newest
/// values given explicitly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_updates_spread_resolve_by_event_time_and_reach_both_replicas() {
    bounded(async {
        common::require!(Redis, Ort);
        const ITEMS: usize = 120;
        let (cluster, kafka, dir) = (RedisCluster::start(), MockKafka::start(TOPIC, 3), tempfile::tempdir().unwrap());
        // librdkafka's mock coordinator holds a rebalance that a second member starts in a settled
        // group for the session timeout less 1 s (45 s by default), so the replicas use a short one.
        let section = format!(
            "{}properties = {{ \"session.timeout.ms\" = \"6000\" }}\n",
            stream_section(&kafka, &dir.path().join("dead.jsonl"))
        );
        let config = redis_demo_config(&cluster.urls()[..1], true, &section);
        load_demo(&config).await;
        let a = common::start(config.clone()).await;
        let b = common::start(config).await;
        let ids: Vec<String> = (0..ITEMS).map(|i| format!("cs{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        // Both replicas cache every id as missing, for a minute.
        for server in [&a, &b] {
            let response =
                server.client().await.predict(common::ranking_request("u1", &ids)).await.unwrap().into_inner();
            assert!(
                response
                    .fallbacks
                    .iter()
                    .any(|f| f.reason == FallbackReason::MissingRow as i32 && f.candidates.len() == ITEMS),
                "every id is cached as missing: {:?}",
                response.fallbacks
            );
        }

        // Each item's newest update, then for every fourth item one a minute older (published
        // later, on the same partition: the key is the item).
        let t = now_ms();
        let newest: Vec<Update> =
            ids.iter().enumerate().map(|(i, id)| item_update(id, t + i as i64, 100.0 + i as f64, "new")).collect();
        let late: Vec<Update> = ids.iter().step_by(4).map(|id| item_update(id, t - 60_000, 1.0, "old")).collect();
        let published = Instant::now();
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, &newest).await.expect("publish");
        publish(&kafka.bootstrap, TOPIC, UpdateFormat::Json, &late).await.expect("publish");
        let total = |result: &'static str| {
            let (a, b) = (&a, &b);
            async move {
                let labels = format!("stream=\"items\",result=\"{result}\"");
                (counter(a, "updates_total", &labels).await, counter(b, "updates_total", &labels).await)
            }
        };
        // Done when the group's committed offsets cover every message: an offset is committed
        // only after its update is written and counted. Until then a replica may consume again
        // what the other wrote but could not commit (its commit failed in a rebalance): counted
        // `stale`, never `applied`.
        let messages = (ITEMS + late.len()) as i64;
        common::wait_for("every update written and committed", async || {
            committed(&kafka, "augur-features", 3).await == messages
        })
        .await;
        let (applied, stale) = (total("applied").await, total("stale").await);
        let retried = (
            counter(&a, "write_errors_total", "stream=\"items\"").await,
            counter(&b, "write_errors_total", "stream=\"items\"").await,
        );
        println!(
            "{ITEMS} items consumed in {:?}; by (a, b): applied {applied:?}, stale {stale:?}, write errors {retried:?}",
            published.elapsed()
        );
        assert_eq!(applied.0 + applied.1, ITEMS as f64, "each newest update written once, no late one written");
        assert!(stale.0 + stale.1 >= late.len() as f64, "every late update lost to the newer one");

        // Spread over every master, each value the newest.
        for node in &cluster.nodes {
            let keys: Vec<String> = node.query(redis::cmd("KEYS").arg("augur:items:cs*")).unwrap();
            assert!(!keys.is_empty(), "node {} holds none of the streamed rows", node.port);
            println!("node {}: {} streamed rows", node.port, keys.len());
        }
        let mut conn = redis::cluster::ClusterClient::new(cluster.urls()).unwrap().get_connection().unwrap();
        for (i, id) in ids.iter().enumerate() {
            let key = format!("augur:items:{id}");
            let (price, category): (String, String) =
                redis::cmd("HMGET").arg(&key).arg("price").arg("category").query(&mut conn).unwrap();
            assert_eq!((price.as_str(), category.as_str()), (&*format!("{}", 100 + i), "new"), "{key}");
        }

        // Every write's invalidation reached both replicas: the one that did not write it too.
        for (name, server) in [("a", &a), ("b", &b)] {
            common::wait_for(&format!("replica {name} hears every write"), async || {
                let text = scrape(server).await;
                sample(&text, "augur_feature_stream_freshness_seconds_count{stream=\"items\",path=\"pubsub\"}")
                    == Some(ITEMS as f64)
            })
            .await;
        }
        // Predict on both: the stored rows score exactly as the newest values given explicitly,
        // and not as the late ones (which would score otherwise).
        let newest: Vec<&Update> = newest.iter().collect();
        let older: Vec<Update> = ids.iter().map(|id| item_update(id, t - 60_000, 1.0, "old")).collect();
        let older: Vec<&Update> = older.iter().collect();
        for (name, server) in [("a", &a), ("b", &b)] {
            let expected = scores(server, &ids, Some(&newest)).await;
            assert_ne!(expected, scores(server, &ids, Some(&older)).await, "the two versions score apart");
            common::wait_for(&format!("replica {name} scores the newest values"), async || {
                scores(server, &ids, None).await == expected
            })
            .await;
        }
        a.stop().await;
        b.stop().await;
    })
    .await
}

/// `augur features publish`, the real binary, as the producer for a running augur: two streams
/// of fixed formats (a message in the other encoding would be dead-lettered as `decode`), fed
/// from JSON-lines files as JSON (the format taken from `--config --stream`) and as protobuf
/// (`--brokers --topic`, the default format), and one update from flags. A file with a bad line
/// is refused whole, naming the line; the good updates are scored by Predict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_binary_feeds_json_and_protobuf_streams_and_names_a_bad_line() {
    bounded(async {
        common::require!(Redis, Ort);
        let (json_topic, proto_topic) = ("features-json", "features-proto");
        let (redis, kafka, dir) = (
            RedisServer::start(),
            MockKafka::start_topics(&[(json_topic, 3), (proto_topic, 3)]),
            tempfile::tempdir().unwrap(),
        );
        let streams = format!(
            "[[feature_streams]]\nname = \"json-items\"\nbrokers = \"{b}\"\ntopic = \"{json_topic}\"\n\
             group_id = \"g-json\"\nformat = \"json\"\ndead_letter_path = \"{d}/json.jsonl\"\n\
             [[feature_streams]]\nname = \"proto-items\"\nbrokers = \"{b}\"\ntopic = \"{proto_topic}\"\n\
             group_id = \"g-proto\"\nformat = \"protobuf\"\ndead_letter_path = \"{d}/proto.jsonl\"\n",
            b = kafka.bootstrap,
            d = dir.path().display()
        );
        let config = redis_demo_config(&[redis.url()], false, &format!("{CACHE}\n{streams}"));
        load_demo(&config).await;
        let server = common::start(config).await;
        let ids = ["p-json", "p-json2", "p-proto", "p-flag", "p-bad"];
        for id in ids {
            assert!(!served(&server, id).await, "{id} is cached as missing");
        }
        // The binary reads the streams from a config file of its own.
        let config_file = dir.path().join("augur.toml");
        std::fs::write(&config_file, &streams).unwrap();
        let run = |args: Vec<String>| async move {
            let out = tokio::task::spawn_blocking(move || {
                common::process::cli().args(["features", "publish"]).args(&args).output().expect("run augur")
            })
            .await
            .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let write = |name: &str, lines: &[String]| {
            let path = dir.path().join(name);
            std::fs::write(&path, lines.join("\n") + "\n").unwrap();
            path.display().to_string()
        };
        let t = now_ms();

        // A bad third line (the second is blank): nothing is sent, the line is named.
        let bad = write(
            "bad.jsonl",
            &[
                item_update("p-bad", t, 1.0, "c1").to_json(),
                String::new(),
                r#"{"entity":"shop","entity_id":"x","event_time_ms":1,"features":{"price":1}}"#.to_owned(),
            ],
        );
        let (ok, stdout, stderr) = run(vec![
            "--config".into(),
            config_file.display().to_string(),
            "--stream".into(),
            "json-items".into(),
            "--file".into(),
            bad.clone(),
        ])
        .await;
        assert!(!ok, "a bad line fails the run: {stdout}{stderr}");
        assert!(stderr.contains(&format!("{bad}:3:")) && stderr.contains("entity"), "{stderr}");
        assert!(!stdout.contains("published"), "{stdout}");

        // JSON, the stream's format, from --config --stream.
        let json_updates = [item_update("p-json", t, 7.5, "c1"), item_update("p-json2", t, 42.0, "c2")];
        let file = write("json.jsonl", &json_updates.iter().map(Update::to_json).collect::<Vec<_>>());
        let (ok, stdout, stderr) = run(vec![
            "--config".into(),
            config_file.display().to_string(),
            "--stream".into(),
            "json-items".into(),
            "--file".into(),
            file,
        ])
        .await;
        assert!(ok && stdout.contains(&format!("published 2 updates to {json_topic}")), "{stdout}{stderr}");
        // Protobuf (the default without a config), from a file and from flags.
        let proto_update = item_update("p-proto", t, 15.0, "c3");
        let file = write("proto.jsonl", &[proto_update.to_json()]);
        let (ok, stdout, stderr) = run(vec![
            "--brokers".into(),
            kafka.bootstrap.clone(),
            "--topic".into(),
            proto_topic.into(),
            "--file".into(),
            file,
        ])
        .await;
        assert!(ok && stdout.contains(&format!("published 1 updates to {proto_topic}")), "{stdout}{stderr}");
        let flag_update = Update {
            entity: EntityKind::Item,
            entity_id: "p-flag".into(),
            event_time_ms: t,
            features: vec![
                ("brand".into(), Value::Str("b3".into())),
                ("category".into(), Value::Str("c4".into())),
                ("price".into(), Value::Float(55.5)),
                ("tags".into(), Value::StrList(vec!["t3".into(), "t4".into()])),
            ],
        };
        let mut args: Vec<String> = ["--brokers", &kafka.bootstrap, "--topic", proto_topic, "--format", "protobuf"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(["--entity", "item", "--id", "p-flag", "--event-time-ms", &t.to_string()].map(str::to_owned));
        for set in ["brand=b3", "category=c4", "price=55.5", "tags=t3|t4"] {
            args.extend(["--set".to_owned(), set.to_owned()]);
        }
        let (ok, stdout, stderr) = run(args).await;
        assert!(ok, "{stdout}{stderr}");

        // Every good update scores in Predict as its values given explicitly.
        let good = [&json_updates[0], &json_updates[1], &proto_update, &flag_update];
        let items: Vec<&str> = good.iter().map(|u| u.entity_id.as_str()).collect();
        let expected = scores(&server, &items, Some(&good)).await;
        common::wait_for("the published updates scored", async || scores(&server, &items, None).await == expected)
            .await;
        for (stream, n) in [("json-items", 2.0), ("proto-items", 2.0)] {
            let labels = format!("stream=\"{stream}\",result=\"applied\"");
            assert_eq!(counter(&server, "updates_total", &labels).await, n, "{stream}");
        }
        let text = scrape(&server).await;
        assert!(!text.contains("augur_feature_stream_bad_messages_total{"), "no message in the wrong encoding");
        assert_eq!(hget(&redis, "p-bad", "price"), None, "nothing of the refused file was sent");
        server.stop().await;
    })
    .await
}

/// A stream whose `tables` names a table no scene's spec reads fails start-up naming the key,
/// before any model is loaded and without a broker (docs/features.md, "Checked against the
/// specs").
#[tokio::test]
async fn a_stream_writing_a_table_no_spec_reads_fails_start_up() {
    let config = common::demo_config(
        "[[feature_streams]]\nname = \"items\"\nbrokers = \"127.0.0.1:1\"\ntopic = \"t\"\n\
         tables = { item = \"catalogue\" }\n",
    );
    let err = augur::app::App::build(config).await.expect_err("start-up refuses the stream").to_string();
    assert!(err.contains("feature_streams[0].tables.item") && err.contains("`catalogue`"), "{err}");
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
