//! The feature changelog against the real parts: librdkafka's mock cluster, a real
//! `redis-server`, the consumer in process and the real binary SIGKILLed. After the stream (and a
//! bulk load) have written, replaying the changelog must give exactly what Redis holds, field by
//! field; and at any instant every update whose Kafka offset is committed must be in a committed
//! changelog part. Waits are bounded; nothing is timed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use augur::cli::load::{LoadOptions, OnError, load_file_with_history};
use augur::feature_history::read::changes;
use augur::feature_history::replay::Replay;
use augur::feature_history::write::HistoryWriter;
use augur::feature_history::{ChangeKind, HistoryMetrics};
use augur::feature_stream::publish::publish;
use augur::feature_stream::{EntityKind, Update, UpdateFormat};
use augur::fetch::{FeatureStore, Value};
use augur::sample_log::kafka::mock::MockKafka;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common;
use crate::common::http::{sample, scrape};
use crate::common::redis_server::{RedisServer, load_demo, redis_config, redis_demo_config};
use crate::feature_streams::{TOPIC, bounded, kill_twice_then_drain, now_ms};

/// Redis's row of an item as text, without the stream's event-time stamps.
fn redis_row(redis: &RedisServer, id: &str) -> BTreeMap<String, String> {
    let all: BTreeMap<String, String> = redis.query(redis::cmd("HGETALL").arg(format!("augur:items:{id}"))).unwrap();
    all.into_iter().filter(|(field, _)| !field.starts_with("@t:")).collect()
}

/// The changelog replayed to its end: each item's row as the text Redis would hold.
async fn replayed(dir: &Path, ids: &[String]) -> HashMap<String, BTreeMap<String, String>> {
    let mut replay = Replay::new();
    let mut fields = BTreeSet::new();
    for change in changes(dir, i64::MAX).expect("list the changelog") {
        let change = change.expect("read the changelog");
        fields.extend(change.features.iter().map(|(f, _)| f.clone()));
        replay.apply(change).expect("in applied order");
    }
    let fields: Vec<String> = fields.into_iter().collect();
    let store = replay.store();
    let mut rows = HashMap::new();
    for id in ids {
        let row = store.get_rows("items", &[id.as_str()], &fields).await.unwrap().remove(0);
        let row = fields
            .iter()
            .filter_map(|f| Some((f.clone(), row.as_ref()?.get(f)?.store_text())))
            .collect::<BTreeMap<_, _>>();
        rows.insert(id.clone(), row);
    }
    rows
}

/// Every item's replayed row equals Redis's; returns how many fields were compared.
async fn assert_replay_equals_redis(dir: &Path, redis: &RedisServer, ids: &[String]) -> usize {
    let replayed = replayed(dir, ids).await;
    let mut fields = 0;
    for id in ids {
        let held = redis_row(redis, id);
        assert_eq!(replayed[id], held, "item {id}: the replay (left) differs from Redis (right)");
        fields += held.len();
    }
    fields
}

/// A random update of `id`: a random non-empty subset of four fields of four types.
fn random_update(rng: &mut ChaCha8Rng, id: &str, event_time_ms: i64) -> Update {
    let mut features = Vec::new();
    while features.is_empty() {
        if rng.random_bool(0.6) {
            features.push(("category".into(), Value::Str(format!("c{}", rng.random_range(0..5)))));
        }
        if rng.random_bool(0.6) {
            features.push(("clicks".into(), Value::Int(rng.random_range(0..1000))));
        }
        if rng.random_bool(0.6) {
            features.push(("price".into(), Value::Float(rng.random_range(0..10_000) as f64 / 7.0)));
        }
        if rng.random_bool(0.3) {
            features.push(("tags".into(), Value::StrList(vec![format!("t{}", rng.random_range(0..9)), "x".into()])));
        }
    }
    Update { entity: EntityKind::Item, entity_id: id.to_owned(), event_time_ms, features }
}

async fn stream_counter(server: &common::TestServer, result: &str) -> f64 {
    let series = format!("augur_feature_stream_updates_total{{stream=\"items\",result=\"{result}\"}}");
    sample(&scrape(server).await, &series).unwrap_or(0.0)
}

/// A bulk load recorded in the changelog (present cells and empty ones), then a stream of a
/// seeded random mix of in-order, out-of-order and duplicate updates over the same items:
/// replaying the changelog gives what Redis holds for every item and field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_then_a_random_stream_replays_equal_to_redis() {
    bounded(async {
        common::require!(Redis, Ort);
        const ITEMS: usize = 20;
        const UPDATES: usize = 400;
        let (redis, kafka, dir) = (RedisServer::start(), MockKafka::start(TOPIC, 3), tempfile::tempdir().unwrap());
        let history = dir.path().join("history");
        let config = redis_demo_config(
            &[redis.url()],
            false,
            &format!(
                "[[feature_streams]]\nname = \"items\"\nbrokers = \"{}\"\ntopic = \"{TOPIC}\"\nmax_batch = 32\n\
                 dead_letter_path = \"{}\"\n[feature_history]\ndir = \"{}\"\nroll_interval_ms = 200\n\
                 max_rows_per_part = 50\n",
                kafka.bootstrap,
                dir.path().join("dead.jsonl").display(),
                history.display()
            ),
        );
        // The demo rows are not part of this test's history (other ids).
        load_demo(&config).await;
        let ids: Vec<String> = (0..ITEMS).map(|i| format!("h{i}")).collect();
        let csv = dir.path().join("items.csv");
        let mut text = String::from("item_id,category,clicks,brand,color\n");
        for (i, id) in ids.iter().enumerate() {
            // Every third row has no color: an HDEL, recorded as a deletion.
            let color = if i % 3 == 0 { "" } else { "red" };
            text.push_str(&format!("{id},c{},{},b{},{color}\n", i % 4, i * 10, i % 2));
        }
        std::fs::write(&csv, text).unwrap();
        let store = augur::cli::load::connect(redis_config(&config)).await.unwrap();
        let options = LoadOptions { table: "items".into(), key_column: None, batch: 7, on_error: OnError::Stop };
        let mut writer =
            HistoryWriter::open(&history, &config.feature_history, "load", HistoryMetrics::default()).unwrap();
        let progress = indicatif::ProgressBar::hidden();
        let summary =
            load_file_with_history(&store, &csv, &options, &progress, Some(&mut writer)).await.expect("load");
        assert_eq!((summary.rows, writer.pending_rows()), (ITEMS as u64, 0), "{summary}");
        let loaded = assert_replay_equals_redis(&history, &redis, &ids).await;
        println!("after the load: {loaded} fields of {ITEMS} items equal");

        let server = common::start(config).await;
        let mut rng = ChaCha8Rng::seed_from_u64(20);
        let base = now_ms() - 600_000;
        let mut updates: Vec<Update> = Vec::with_capacity(UPDATES);
        while updates.len() < UPDATES {
            if !updates.is_empty() && rng.random_bool(0.15) {
                // An exact duplicate of an earlier update (a producer retry).
                let again = updates[rng.random_range(0..updates.len())].clone();
                updates.push(again);
                continue;
            }
            let id = &ids[rng.random_range(0..ITEMS)];
            // Event times drift forward with jitter: many arrive after a newer one (out of
            // order), some share an event time with different values (the first written wins).
            let event_time = base + updates.len() as i64 * 10 + rng.random_range(-300..300);
            updates.push(random_update(&mut rng, id, event_time));
        }
        for chunk in updates.chunks(UPDATES / 4) {
            publish(&kafka.bootstrap, TOPIC, UpdateFormat::Protobuf, chunk).await.expect("publish");
        }
        common::wait_for("every update consumed", async || {
            stream_counter(&server, "applied").await + stream_counter(&server, "stale").await >= UPDATES as f64
        })
        .await;
        let (applied, stale) = (stream_counter(&server, "applied").await, stream_counter(&server, "stale").await);
        // The consumer's own roll commits the last part (200 ms), with the server still up.
        common::wait_for("every update in a committed part", async || {
            let text = scrape(&server).await;
            sample(&text, "augur_feature_history_rows_total{source=\"stream:items\"}") == Some(UPDATES as f64)
        })
        .await;
        let text = scrape(&server).await;
        let parts = sample(&text, "augur_feature_history_parts_total{source=\"stream:items\"}").unwrap();
        server.stop().await;
        let recorded = changes(&history, i64::MAX).unwrap().map(Result::unwrap);
        let (loads, upserts) = recorded.fold((0, 0), |(l, u), c| match c.kind {
            ChangeKind::Load => (l + 1, u),
            ChangeKind::Upsert => (l, u + 1),
        });
        assert_eq!((loads, upserts), (ITEMS, UPDATES), "every load row and every update, stale ones too");
        let fields = assert_replay_equals_redis(&history, &redis, &ids).await;
        println!(
            "{UPDATES} updates ({applied} applied, {stale} stale) in {parts} stream parts; the replay equals Redis on {fields} fields of {ITEMS} items"
        );
    })
    .await
}

/// The updates (entity id, event time) at offsets below the group's committed offsets that are
/// missing from the changelog, and how many were checked. The committed offsets are read first,
/// the changelog last: it only grows, so a miss is a real breach of the invariant.
fn committed_but_not_recorded(bootstrap: &str, group: &str, history: &Path) -> (usize, Vec<(String, i64)>) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let client = |group: &str| {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create::<BaseConsumer>()
            .expect("consumer")
    };
    let mut partitions = TopicPartitionList::new();
    for p in 0..3 {
        partitions.add_partition(TOPIC, p);
    }
    let committed = client(group).committed_offsets(partitions, Duration::from_secs(30)).expect("committed offsets");
    let mut wanted: HashMap<i32, i64> = HashMap::new();
    let mut from = TopicPartitionList::new();
    for element in committed.elements() {
        if let Offset::Offset(next) = element.offset()
            && next > 0
        {
            wanted.insert(element.partition(), next);
            from.add_partition_offset(TOPIC, element.partition(), Offset::Beginning).unwrap();
        }
    }
    let reader = client(&format!("history-check-{}", uuid::Uuid::new_v4().simple()));
    reader.assign(&from).expect("assign");
    let mut updates = Vec::new();
    let mut reached: HashMap<i32, i64> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while wanted.iter().any(|(p, next)| reached.get(p).copied().unwrap_or(0) < *next) {
        assert!(std::time::Instant::now() < deadline, "reading the topic back: {reached:?} of {wanted:?}");
        let Some(message) = reader.poll(Duration::from_millis(500)) else { continue };
        let message = message.expect("read the topic");
        let (p, offset) = (message.partition(), message.offset());
        reached.insert(p, offset + 1);
        if offset < wanted.get(&p).copied().unwrap_or(0) {
            let update = Update::decode(UpdateFormat::Protobuf, message.payload().unwrap()).expect("an update");
            updates.push((update.entity_id, update.event_time_ms));
        }
    }
    let recorded: BTreeSet<(String, i64)> = changes(history, i64::MAX)
        .expect("list")
        .map(|c| c.expect("read"))
        .filter(|c| c.kind == ChangeKind::Upsert)
        .map(|c| (c.entity_id, c.event_time_ms))
        .collect();
    let checked = updates.len();
    (checked, updates.into_iter().filter(|u| !recorded.contains(u)).collect())
}

/// Asserts the invariant now (blocking: a Kafka consumer reads the topic back); returns how many
/// committed updates were checked.
fn check_invariant(kafka: &MockKafka, history: &Path, when: &str) -> usize {
    let (checked, missing) = committed_but_not_recorded(&kafka.bootstrap, "augur-features", history);
    assert!(missing.is_empty(), "{when}: {} committed updates are not in the changelog: {missing:?}", missing.len());
    println!("{when}: all {checked} updates below the committed offsets are in committed changelog parts");
    checked
}

/// The SIGKILL test of feature streams (`feature_streams::kill_twice_then_drain`) with the
/// changelog on: two consumers of the real binary are SIGKILLed mid-chunk, a third drains and is
/// stopped. After each kill, drained, and after the stop, every update whose offset the group
/// committed is in a committed part; then the replay of the changelog equals Redis for every item
/// and field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_consumers_never_commit_an_offset_ahead_of_the_changelog() {
    bounded(async {
        common::require!(Redis, Ort);
        const ITEMS: usize = 300;
        let history = |dir: &Path| dir.join("history");
        let run = kill_twice_then_drain(
            ITEMS,
            |dir| {
                format!(
                    "[feature_history]\ndir = \"{}\"\nroll_interval_ms = 300\nmax_rows_per_part = 64\n",
                    history(dir).display()
                )
            },
            |kafka, dir, replica| {
                tokio::task::block_in_place(|| check_invariant(kafka, &history(dir), &format!("after killing {replica}")));
            },
        )
        .await;
        let history = history(run.dir.path());
        check_invariant(&run.kafka, &history, "drained, still running");
        run.last.signal(libc::SIGTERM);
        run.last.wait();
        let checked = check_invariant(&run.kafka, &history, "after a graceful stop");
        assert_eq!(checked, 2 * ITEMS, "a graceful stop commits every offset (after the changelog)");
        let ids: Vec<String> = (0..ITEMS).map(|i| format!("k{i}")).collect();
        let fields = assert_replay_equals_redis(&history, &run.redis, &ids).await;
        let (mut parts, mut temporary) = (0, 0);
        for (_, hour) in augur::hourly::hours(&history).unwrap() {
            for file in augur::hourly::list(&hour).unwrap() {
                if file.file_name().unwrap().to_string_lossy().starts_with('.') {
                    temporary += 1;
                } else {
                    parts += 1;
                }
            }
        }
        println!(
            "the replay equals Redis on {fields} fields of {ITEMS} items; {parts} parts, {temporary} temporary files left by the killed writers (never read)"
        );
    })
    .await
}

/// `augur features load` with `[feature_history]` configured records every row it wrote as a
/// `load` change (an empty cell as a deletion), and the replay equals Redis.
#[test]
fn the_load_command_records_its_rows() {
    common::require!(Redis);
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (file, config, history) =
        (dir.path().join("items.csv"), dir.path().join("augur.toml"), dir.path().join("history"));
    std::fs::write(&file, "item_id,price,color\nx1,1.5,red\nx2,,blue\nx3,3,\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"redis\"\nurls = [\"{}\"]\n[feature_history]\ndir = \"{}\"\n",
            redis.url(),
            history.display()
        ),
    )
    .unwrap();
    let out = common::process::cli()
        .args(["features", "load", "--config", config.to_str().unwrap(), "--table", "items"])
        .args(["--file", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("loaded 3 rows") && stdout.contains("recorded in the feature history"), "{stdout}");
    let recorded: Vec<_> = changes(&history, i64::MAX).unwrap().map(Result::unwrap).collect();
    assert_eq!(recorded.len(), 3);
    assert!(recorded.iter().all(|c| c.kind == ChangeKind::Load && c.table == "items"));
    let x2 = recorded.iter().find(|c| c.entity_id == "x2").unwrap();
    assert_eq!(x2.features, [("price".to_owned(), None), ("color".to_owned(), Some(Value::Str("blue".into())))]);
    let ids: Vec<String> = ["x1", "x2", "x3"].map(String::from).to_vec();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let fields = runtime.block_on(assert_replay_equals_redis(&history, &redis, &ids));
    assert_eq!(fields, 4);
}
