//! `rediss://`: augur reads features from a Redis that only speaks TLS (Debian's redis-server with
//! `--tls-port`), trusting the private CA named by `store.tls_ca_path`; without that CA the
//! server's certificate is not trusted and start-up fails naming the store.

use std::time::Duration;

use augur::config::{Config, StoreConfig};
use augur::fetch::{FeatureStore, RedisFeatureStore, Value};

use crate::common;
use crate::common::Need;
use crate::common::child::{ChildServer, free_ports};

fn redis_config(port: u16, ca: Option<&std::path::Path>) -> augur::config::RedisConfig {
    let ca = ca.map(|p| format!("tls_ca_path = \"{}\"\n", p.display())).unwrap_or_default();
    let config = Config::from_toml(&format!(
        "[store]\nkind = \"redis\"\nurls = [\"rediss://127.0.0.1:{port}\"]\nconnect_timeout_ms = 2000\n{ca}"
    ))
    .unwrap();
    let StoreConfig::Redis(redis) = config.store else { panic!("redis store") };
    redis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_are_read_over_tls_from_a_redis_with_a_private_ca() {
    common::require!(Redis);
    let dir = tempfile::tempdir().unwrap();
    common::certs::make_certs(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let port = free_ports(1)[0];
    let mut redis = ChildServer::new(Need::Redis, format!("redis-server with TLS on port {port}"), "redis-server");
    let data = redis.dir().to_str().unwrap().to_owned();
    redis
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--tls-cert-file", &path("server.pem"), "--tls-key-file", &path("server.key")])
        .args(["--tls-ca-cert-file", &path("ca.pem"), "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--dir", &data]);
    redis.spawn();
    let ca = dir.path().join("ca.pem");
    // Wait for the TLS port, then write one row through augur's own connection.
    let mut store = None;
    redis
        .wait_ready_async(Duration::from_secs(30), async || {
            store = RedisFeatureStore::connect(&redis_config(port, Some(&ca))).await.ok();
            store.is_some()
        })
        .await;
    let store = store.unwrap();
    let mut conn = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}"),
        redis::TlsCertificates { client_tls: None, root_cert: Some(std::fs::read(&ca).unwrap()) },
    )
    .unwrap()
    .get_multiplexed_async_connection()
    .await
    .unwrap();
    let key = store.key("users", "u1");
    let _: () = redis::cmd("HSET").arg(&key).arg("age").arg("41").query_async(&mut conn).await.unwrap();
    let rows = store.get_rows("users", &["u1", "nobody"], &["age".to_owned()]).await.unwrap();
    assert_eq!(rows[0].as_ref().unwrap()["age"], Value::Str("41".into()));
    assert!(rows[1].is_none());

    // The system roots do not know the private CA: start-up fails, naming the store.
    let err = RedisFeatureStore::connect(&redis_config(port, None)).await.unwrap_err().to_string();
    assert!(err.contains(&format!("rediss://127.0.0.1:{port}")), "{err}");
}
