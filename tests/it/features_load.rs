//! `augur features load` against a real `redis-server`: bad lines are reported by line number and
//! skipped or stop the load; JSONL values round-trip exactly; re-loads are idempotent.

use augur::cli::load::OnError;
use augur::fetch::Value;
use augur::fetch::{FeatureStore, RedisFeatureStore};

use crate::common;
use crate::common::redis_server::{RedisServer, load, redis_config, redis_demo_config};

const BAD_CSV: &str = "user_id,age,gender\nu1,30,f\nu2,40\nu3,50,m\n,60,f\nu5,70,f\n";

fn hget(redis: &RedisServer, key: &str, field: &str) -> Option<String> {
    redis.query(redis::cmd("HGET").arg(key).arg(field)).unwrap()
}

#[tokio::test]
async fn malformed_lines_are_reported_by_number_and_skipped() {
    common::require!(Redis);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.csv");
    std::fs::write(&file, BAD_CSV).unwrap();

    let summary = load(&config, "users", &file, None, OnError::Skip).await;
    assert_eq!(summary.rows, 3, "{summary}");
    assert_eq!(summary.error_count, 2, "{summary}");
    let lines: Vec<u64> = summary.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 5], "{summary}");
    assert!(summary.errors[0].problem.contains("fields"), "{summary}");
    assert!(summary.to_string().contains("line 3:"), "{summary}");
    assert_eq!(summary.stopped_at, None);
    for (user, age) in [("u1", "30"), ("u3", "50"), ("u5", "70")] {
        assert_eq!(hget(&redis, &format!("augur:users:{user}"), "age").as_deref(), Some(age));
    }
    assert_eq!(hget(&redis, "augur:users:u2", "age"), None);
}

#[tokio::test]
async fn stop_mode_stops_at_the_first_malformed_line() {
    common::require!(Redis);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.csv");
    std::fs::write(&file, BAD_CSV).unwrap();

    let summary = load(&config, "users", &file, Some("user_id"), OnError::Stop).await;
    assert_eq!((summary.rows, summary.error_count, summary.stopped_at), (1, 1, Some(3)), "{summary}");
    assert_eq!(hget(&redis, "augur:users:u1", "age").as_deref(), Some("30"), "rows before the bad line are loaded");
    assert_eq!(hget(&redis, "augur:users:u3", "age"), None, "nothing after it");
}

#[tokio::test]
async fn jsonl_values_round_trip_and_reloads_are_idempotent() {
    common::require!(Redis);
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, "");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("items.jsonl");
    let x = 0.1f64 + 0.2; // 0.30000000000000004: needs all 17 digits
    std::fs::write(
        &file,
        format!(
            "{{\"item_id\": \"i1\", \"price\": {x:?}, \"tags\": [\"a\", \"b\"], \"w\": [1.5, 2], \"n\": 7, \"ok\": true}}\n\
             not json\n{{\"item_id\": 2, \"price\": 1e300}}\n{{\"price\": 3}}\n"
        ),
    )
    .unwrap();
    let summary = load(&config, "items", &file, Some("item_id"), OnError::Skip).await;
    assert_eq!((summary.rows, summary.error_count), (2, 2), "{summary}");
    assert_eq!(summary.errors.iter().map(|e| e.line).collect::<Vec<_>>(), [2, 4], "{summary}");

    let store = RedisFeatureStore::connect(redis_config(&config)).await.unwrap();
    let fields: Vec<String> = ["price", "tags", "w", "n", "ok"].map(String::from).to_vec();
    let rows = store.get_rows("items", &["i1", "2"], &fields).await.unwrap();
    let i1 = rows[0].as_ref().unwrap();
    let Value::Str(price) = &i1["price"] else { panic!() };
    assert_eq!(price.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{price}");
    assert_eq!(i1["tags"], Value::Str("a|b".into()));
    assert_eq!(i1["w"], Value::Str("1.5|2".into()));
    assert_eq!((&i1["n"], &i1["ok"]), (&Value::Str("7".into()), &Value::Str("1".into())));
    // `format!("{}", f64)` never uses an exponent: long, but exact.
    let Value::Str(big) = &rows[1].as_ref().unwrap()["price"] else { panic!() };
    assert_eq!(big.parse::<f64>().unwrap(), 1e300, "{big}");

    // Same file again: same state. A null clears a field that an earlier load set.
    load(&config, "items", &file, Some("item_id"), OnError::Skip).await;
    assert_eq!(redis.query::<u64>(&mut redis::cmd("DBSIZE")).unwrap(), 2);
    std::fs::write(&file, "{\"item_id\": \"i1\", \"price\": null}\n").unwrap();
    load(&config, "items", &file, Some("item_id"), OnError::Skip).await;
    assert_eq!(hget(&redis, "augur:items:i1", "price"), None);
    assert_eq!(hget(&redis, "augur:items:i1", "n").as_deref(), Some("7"), "fields not in the file stay");
}

#[test]
fn cli_loads_prints_a_summary_and_fails_when_stopped() {
    common::require!(Redis);
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.csv");
    std::fs::write(&file, BAD_CSV).unwrap();
    let config = dir.path().join("augur.toml");
    std::fs::write(&config, format!("[store]\nkind = \"redis\"\nurls = [\"{}\"]\n", redis.url())).unwrap();
    let run = |extra: &[&str]| {
        common::process::cli()
            .args(["features", "load", "--config", config.to_str().unwrap(), "--table", "users"])
            .args(["--file", file.to_str().unwrap(), "--batch", "2"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("loaded 3 rows") && stdout.contains("line 3:") && stdout.contains("line 5:"), "{stdout}");
    assert!(stdout.contains("rows/s"), "{stdout}");

    let out = run(&["--on-error", "stop"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped at line 3"), "{out:?}");

    // With no --file, the table's entry in store.tables (the embedded demo tables) is used.
    let out = common::process::cli()
        .args(["features", "load", "--config", config.to_str().unwrap(), "--table", "items"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("loaded 5000 rows"), "{out:?}");
    assert_eq!(hget(&redis, "augur:items:i0", "brand").as_deref(), Some("b173"));
}
