//! Real Redis for tests: `redis-server` processes on free ports, killed on drop (also on panic),
//! and a 3-master Redis Cluster built with `redis-cli --cluster create`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use augur::cli::load::{LoadOptions, LoadSummary, OnError, load_file};
use augur::config::{Config, RedisConfig, StoreConfig};
use tempfile::TempDir;

/// One `redis-server` child process.
pub struct RedisServer {
    pub port: u16,
    /// Cluster bus port, for cluster nodes.
    bus_port: Option<u16>,
    child: Option<Child>,
    dir: TempDir,
}

/// Free TCP ports on 127.0.0.1, all held at once while picking so they differ.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind :0")).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl RedisServer {
    /// A standalone server on a free port, answering PING.
    pub fn start() -> Self {
        Self::start_on(free_ports(1)[0], None)
    }

    fn start_on(port: u16, bus_port: Option<u16>) -> Self {
        let mut server = RedisServer { port, bus_port, child: None, dir: TempDir::new().expect("tempdir") };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = self.log_path();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--dir", self.dir.path().to_str().unwrap(), "--logfile", log.to_str().unwrap()]);
        if let Some(bus) = self.bus_port {
            let conf = self.dir.path().join(format!("nodes-{}.conf", self.port));
            cmd.args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()]).args([
                "--cluster-config-file",
                conf.to_str().unwrap(),
                "--cluster-node-timeout",
                "5000",
            ]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup.sh installs it)");
        self.child = Some(child);
        self.wait_for_ping();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn wait_for_ping(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(pong) = self.query::<String>(&mut redis::cmd("PING")) {
                assert_eq!(pong, "PONG");
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || started.elapsed() > Duration::from_secs(10) {
                panic!(
                    "redis-server on port {} did not come up ({exited:?}):\n{}",
                    self.port,
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command on a fresh blocking connection.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        cmd.query(&mut conn)
    }

    /// SIGKILL: the fault, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server freezes with its connections open and answers nothing until
    /// [`Self::resume`] — a stall that lasts exactly as long as the test wants. Returns once the
    /// kernel reports the process stopped.
    pub fn freeze(&self) {
        let pid = self.signal("-STOP");
        let started = Instant::now();
        // /proc/<pid>/stat: "<pid> (<comm>) <state> ...", state T when stopped by a signal.
        let stopped = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T')))
        };
        while !stopped() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server {pid} did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGCONT after [`Self::freeze`]: the server answers what queued up meanwhile and goes on.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) -> u32 {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}: {status}");
        pid
    }

    /// A new, empty server on the same port (after [`Self::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
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

/// The demo config (embedded defaults, bundled model, free port) with the store switched to Redis.
pub fn redis_demo_config(urls: &[String], cluster: bool, extra: &str) -> Config {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    super::demo_config(&format!(
        "[store]\nkind = \"redis\"\ncluster = {cluster}\nurls = [{}]\n{extra}",
        urls.join(", ")
    ))
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
