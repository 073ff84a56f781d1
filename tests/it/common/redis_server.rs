//! Real Redis for tests: `redis-server` processes on free ports, killed on drop (also on panic),
//! and a 3-master Redis Cluster built with `redis-cli --cluster create`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use augur::cli::load::{LoadOptions, LoadSummary, OnError, load_file};
use augur::config::{Config, RedisConfig, StoreConfig};

use super::Need;
use super::child::{ChildServer, free_ports};

/// One `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    server: ChildServer,
}

impl RedisServer {
    /// A standalone server on a free port, answering PING.
    pub fn start() -> Self {
        Self::start_on(free_ports(1)[0], None)
    }

    fn start_on(port: u16, bus_port: Option<u16>) -> Self {
        let mut server = ChildServer::new(Need::Redis, format!("redis-server on port {port}"), "redis-server");
        let dir = server.dir().to_str().unwrap().to_owned();
        server.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]).args([
            "--daemonize",
            "no",
            "--dir",
            &dir,
        ]);
        if let Some(bus) = bus_port {
            let conf = format!("{dir}/nodes-{port}.conf");
            server.args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()]).args([
                "--cluster-config-file",
                &conf,
                "--cluster-node-timeout",
                "5000",
            ]);
        }
        let mut redis = RedisServer { port, server };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        self.server.spawn();
        let url = self.url();
        self.server.wait_ready(Duration::from_secs(10), || {
            query::<String>(&url, &mut redis::cmd("PING")).is_ok_and(|pong| pong == "PONG")
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command on a fresh blocking connection.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
        query(&self.url(), cmd)
    }

    /// SIGKILL: the fault, not a shutdown.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// SIGSTOP: the server freezes with its connections open and answers nothing until
    /// [`Self::resume`].
    pub fn freeze(&self) {
        self.server.freeze();
    }

    /// SIGCONT after [`Self::freeze`]: the server answers what queued up meanwhile and goes on.
    pub fn resume(&self) {
        self.server.resume();
    }

    /// A new, empty server on the same port (after [`Self::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

fn query<T: redis::FromRedisValue>(url: &str, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    cmd.query(&mut conn)
}

/// Three masters, no replicas, all slots assigned and `cluster_state:ok` on every node.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let ports = free_ports(6);
        let nodes: Vec<RedisServer> = (0..3).map(|i| RedisServer::start_on(ports[i], Some(ports[i + 3]))).collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        let started = Instant::now();
        while !cluster.nodes.iter().all(|n| {
            n.query::<String>(redis::cmd("CLUSTER").arg("INFO")).is_ok_and(|info| info.contains("cluster_state:ok"))
        }) {
            assert!(started.elapsed() < Duration::from_secs(30), "cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A local cache in front of the items table: 60 s entries, 2 s for ids the store lacks.
pub const ITEM_CACHE: &str = "[store.cache.tables.items]\nmax_entries = 1000\nttl_ms = 60000\nnegative_ttl_ms = 2000\n";

/// The demo config (embedded defaults, bundled model, free port) with the store switched to Redis,
/// plus `extra` keys of `[store]`.
///
/// Unless `extra` sets a `timeout_ms` of its own (the fault tests, which are about timing), the
/// fetch budget and the store's call timeout are seconds, not the production 100 ms and 50 ms:
/// tests that compare scores with the in-memory store's must not get a default for a fetch that
/// a busy 2-core machine (other tests' servers, a training run) made late.
pub fn redis_demo_config(urls: &[String], cluster: bool, extra: &str) -> Config {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let timeout = if extra.contains("timeout_ms") { "" } else { "timeout_ms = 10000\n" };
    let mut config = super::demo_config(&format!(
        "[store]\nkind = \"redis\"\ncluster = {cluster}\nurls = [{}]\n{timeout}{extra}",
        urls.join(", ")
    ));
    if !extra.contains("timeout_ms") {
        config.fetch.max_budget_ms = 10_000;
    }
    config
}

pub fn redis_config(config: &Config) -> &RedisConfig {
    match &config.store {
        StoreConfig::Redis(redis) => redis,
        other => panic!("not a redis store: {other:?}"),
    }
}

/// Loads one file with the library loader (default options: skip bad lines, batches of 1000).
pub async fn load(config: &Config, table: &str, file: &Path, key: Option<&str>, on_error: OnError) -> LoadSummary {
    let store = augur::cli::load::connect(redis_config(config)).await.expect("connect for load");
    let options = LoadOptions { table: table.to_owned(), key_column: key.map(str::to_owned), batch: 1000, on_error };
    load_file(&store, file, &options, &indicatif::ProgressBar::hidden()).await.expect("load")
}

/// Loads demo/users.csv and demo/items.csv, asserting every row made it.
pub async fn load_demo(config: &Config) {
    for (table, key) in [("users", "user_id"), ("items", "item_id")] {
        let file = super::root().join(format!("demo/{table}.csv"));
        let summary = load(config, table, &file, Some(key), OnError::Stop).await;
        assert_eq!(summary.error_count, 0, "{summary}");
        let lines = std::fs::read_to_string(&file).unwrap().lines().count() as u64;
        assert_eq!(summary.rows, lines - 1, "{summary}");
    }
}
