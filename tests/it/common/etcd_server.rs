//! Real etcd for tests: Debian's `/usr/bin/etcd` (3.4) on free ports with a temporary data dir,
//! killed on drop (also on panic) and restartable on the same ports and data.

use std::time::Duration;

use super::Need;
use super::child::{ChildServer, free_ports};

/// One single-member etcd.
pub struct EtcdServer {
    pub client_port: u16,
    server: ChildServer,
}

impl EtcdServer {
    /// A fresh etcd on free ports, answering.
    pub async fn start() -> Self {
        let ports = free_ports(2);
        let (client_port, peer) = (ports[0], format!("http://127.0.0.1:{}", ports[1]));
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let mut server = ChildServer::new(Need::Etcd, format!("etcd on port {client_port}"), "etcd");
        let data = server.dir().join("data");
        server
            .args(["--name", "t", "--data-dir", data.to_str().unwrap()])
            .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}"), "--logger", "zap", "--log-level", "warn"]);
        let mut etcd = EtcdServer { client_port, server };
        etcd.spawn().await;
        etcd
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts the process (same ports, same data dir) and waits until it answers.
    pub async fn spawn(&mut self) {
        self.server.spawn();
        let endpoint = self.endpoint();
        self.server
            .wait_ready_async(Duration::from_secs(20), async || {
                let Ok(mut client) = etcd_client::Client::connect([&endpoint], None).await else { return false };
                matches!(tokio::time::timeout(Duration::from_secs(1), client.status()).await, Ok(Ok(_)))
            })
            .await;
    }

    /// A client for reading keys the way the Go resolver does.
    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None).await.expect("etcd client")
    }

    /// SIGKILL: the fault, not a shutdown. The data dir stays, so [`Self::spawn`] restarts it
    /// with its keys and leases.
    pub fn kill(&mut self) {
        self.server.kill();
    }
}
