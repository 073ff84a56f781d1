//! Real etcd for tests: Debian's `/usr/bin/etcd` (3.4) on free ports with a temporary data dir,
//! killed on drop (also on panic) and restartable on the same ports and data.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::redis_server::free_ports;

/// One single-member etcd.
pub struct EtcdServer {
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl EtcdServer {
    /// A fresh etcd on free ports, answering.
    pub async fn start() -> Self {
        let ports = free_ports(2);
        let mut server = EtcdServer {
            client_port: ports[0],
            peer_port: ports[1],
            child: None,
            dir: TempDir::new().expect("tempdir"),
        };
        server.spawn().await;
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts the process (same ports, same data dir) and waits until it answers.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options().create(true).append(true).open(self.log_path()).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir", self.dir.path().join("data").to_str().unwrap()])
            .args(["--listen-client-urls", &self.endpoint(), "--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}"), "--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("etcd (scripts/setup.sh installs Debian's etcd-server)");
        self.child = Some(child);
        self.wait_ready().await;
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("etcd.log")
    }

    async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(mut client) = etcd_client::Client::connect([self.endpoint()], None).await
                && let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), client.status()).await
            {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || started.elapsed() > Duration::from_secs(20) {
                panic!(
                    "etcd on port {} did not come up ({exited:?}):\n{}",
                    self.client_port,
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client for reading keys the way the Go resolver does.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None).await.expect("etcd client")
    }

    /// SIGKILL: the fault, not a shutdown. The data dir stays, so [`Self::spawn`] restarts it
    /// with its keys and leases.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
