//! A real S3-compatible server for tests: `moto` in server mode from the project venv
//! (`scripts/setup.sh`), on a free port, killed on drop (also on panic). Its request recorder
//! (`MOTO_ENABLE_RECORDING`) writes every request it receives to a file, so tests count requests
//! at the server, not in the client under test.

use std::path::PathBuf;
use std::time::Duration;

use super::Need;
use super::child::{ChildServer, free_ports};

/// Credentials moto accepts (any non-empty pair).
pub const KEY: &str = "testing";

/// One `moto_server` child process.
pub struct MotoServer {
    pub port: u16,
    server: ChildServer,
}

/// One request as moto recorded it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, without scheme and host.
    pub path: String,
    pub if_none_match: Option<String>,
}

impl MotoServer {
    /// Starts moto and waits until it answers HTTP.
    pub fn start() -> Self {
        let port = free_ports(1)[0];
        let moto = super::root().join(".venv/bin/moto_server");
        let mut server = ChildServer::new(Need::Moto, format!("moto_server on port {port}"), moto);
        let recording = server.dir().join("recording.jsonl");
        server
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "True")
            .env("MOTO_RECORDER_FILEPATH", recording);
        server.spawn();
        server.wait_ready(Duration::from_secs(60), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        MotoServer { port, server }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Creates a bucket (moto lets an unsigned request do it).
    pub async fn create_bucket(&self, name: &str) {
        augur::repository::bucket::install_crypto_provider();
        let response =
            reqwest::Client::new().put(format!("{}/{name}", self.endpoint())).send().await.expect("create bucket");
        assert!(response.status().is_success(), "create bucket {name}: {}", response.status());
    }

    fn recording(&self) -> PathBuf {
        self.server.dir().join("recording.jsonl")
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        let text = std::fs::read_to_string(self.recording()).unwrap_or_default();
        text.lines()
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).expect("moto recording line");
                let url = entry["url"].as_str().unwrap_or_default();
                let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default();
                let headers = entry["headers"].as_object().cloned().unwrap_or_default();
                let if_none_match = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("if-none-match"))
                    .and_then(|(_, v)| v.as_str().map(str::to_owned));
                Recorded { method: entry["method"].as_str().unwrap_or_default().to_owned(), path, if_none_match }
            })
            .collect()
    }

    /// The `[scenes.source]` TOML inline table for `bucket/prefix` on this server.
    /// `extra`: more `key = value` pairs for the table (`, keep_versions = 1`), or "".
    pub fn source_toml(&self, url: &str, poll_interval_ms: u64, extra: &str) -> String {
        format!(
            "{{ url = \"{url}\", endpoint = \"{}\", region = \"us-east-1\", allow_http = true, poll_interval_ms = {poll_interval_ms}, options = {{ aws_access_key_id = \"{KEY}\", aws_secret_access_key = \"{KEY}\" }}{extra} }}",
            self.endpoint()
        )
    }
}
