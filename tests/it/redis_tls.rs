//! `rediss://`: augur reads features from a Redis that only speaks TLS (Debian's redis-server with
//! `--tls-port`), trusting the private CA named by `store.tls_ca_path`; without that CA the
//! server's certificate is not trusted and start-up fails naming the store.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use augur::config::{Config, StoreConfig};
use augur::fetch::{FeatureStore, RedisFeatureStore, Value};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

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
    let dir = tempfile::tempdir().unwrap();
    common::certs::make_certs(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let port = free_port();
    let _redis = Killed(
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &path("server.pem"), "--tls-key-file", &path("server.key")])
            .args(["--tls-ca-cert-file", &path("ca.pem"), "--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let ca = dir.path().join("ca.pem");
    // Wait for the TLS port, then write one row through augur's own connection.
    let store = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match RedisFeatureStore::connect(&redis_config(port, Some(&ca))).await {
                Ok(store) => break store,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("augur never connected over TLS");
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
