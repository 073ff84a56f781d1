//! The real binary as a child process: started with a config, its gRPC and admin addresses
//! learnt from its log, signalled by pid (no shell), its stderr kept for the failure message.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `augur serve`.
pub struct AugurProcess {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every log line read so far.
    pub log: Vec<String>,
    /// The Prediction gRPC address.
    pub addr: String,
    /// The admin HTTP address (`/metrics`).
    pub admin: String,
}

impl AugurProcess {
    /// Spawns `augur serve --config <config>` and waits (bounded) until it serves.
    pub async fn start(config: &Path) -> AugurProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_augur"))
            .args(["serve", "--config"])
            .arg(config)
            .current_dir(super::root())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn augur serve");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut augur = AugurProcess { child, lines, log: Vec::new(), addr: String::new(), admin: String::new() };
        tokio::time::timeout(Duration::from_secs(120), async {
            while augur.addr.is_empty() {
                let Some(line) = augur.lines.recv().await else { panic!("augur exited: {:#?}", augur.log) };
                if line.contains("admin HTTP listening") {
                    augur.admin = field(&line, "addr=").expect("admin addr");
                }
                if let Some(rest) = line.split("addr=Some(").nth(1) {
                    augur.addr = rest.split(')').next().unwrap().to_owned();
                }
                augur.log.push(line);
            }
        })
        .await
        .expect("augur did not start serving");
        augur
    }

    /// `/metrics` of the admin port.
    pub async fn metrics(&self) -> String {
        let (status, _, body) = super::http::get(self.admin.parse().unwrap(), "/metrics").await;
        assert_eq!(status, 200);
        body
    }

    /// A Prediction client.
    pub async fn client(&self) -> augur::proto::prediction_client::PredictionClient<tonic::transport::Channel> {
        augur::proto::prediction_client::PredictionClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) without waiting.
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid; it is not reaped until `wait` below.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// SIGKILL, then the log lines up to the end.
    pub fn kill(self) -> Vec<String> {
        self.signal(libc::SIGKILL);
        self.wait()
    }

    /// Waits for the exit; returns every log line.
    pub fn wait(mut self) -> Vec<String> {
        self.child.wait().unwrap();
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log
    }
}

/// The value after `key` up to the next space (log lines are `key=value` pairs).
pub fn field(line: &str, key: &str) -> Option<String> {
    let rest = line.split(key).nth(1)?;
    Some(rest.split(' ').next()?.trim_matches('"').to_owned())
}
