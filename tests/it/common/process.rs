//! The real binary as a child process: `augur serve` started with a config, its addresses learnt
//! from its structured ready event, signalled by pid (no shell), its log kept for the failure
//! message and killed on drop.
//!
//! The ready event: the harness runs augur with `AUGUR__LOG__FORMAT=json`, one JSON object per
//! log line, and waits for the event whose message is `serving` (logged once the public port is
//! bound, after the admin HTTP port's `admin HTTP listening` event); the `addr` field of each is
//! the bound address. Every listener is on port 0 unless the test sets the variable itself, so
//! no two processes ever race for a port.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_augur")
}

/// `augur` with the repository root as working directory, for one-shot subcommands.
pub fn cli() -> Command {
    let mut command = Command::new(binary());
    command.current_dir(super::root());
    command
}

/// How to start `augur serve`: [`AugurProcess::launch`].
#[derive(Debug, Default)]
pub struct Launch {
    config: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    open_files: Option<(u64, u64)>,
}

impl Launch {
    /// `--config <path>`; without it, the embedded defaults.
    pub fn config(mut self, path: &Path) -> Self {
        self.config = Some(path.to_owned());
        self
    }

    /// An environment variable, set after the harness's own, so it overrides them: the three
    /// listen addresses (port 0 by default, whatever the config file says) and `RUST_LOG`, which
    /// must keep `augur::server` at info or the ready event is never logged.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Starts augur with this soft and hard RLIMIT_NOFILE, as systemd's `LimitNOFILE=soft:hard`.
    pub fn open_files(mut self, soft: u64, hard: u64) -> Self {
        self.open_files = Some((soft, hard));
        self
    }

    /// Spawns the process and waits (bounded) for its ready event.
    pub async fn start(self) -> AugurProcess {
        let mut command = Command::new(binary());
        command.arg("serve");
        if let Some((soft, hard)) = self.open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            // SAFETY: between fork and exec the hook only calls setrlimit, which is
            // async-signal-safe, and allocates nothing unless it fails.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .current_dir(super::root())
            .env("RUST_LOG", "info")
            .env("AUGUR__LOG__FORMAT", "json")
            .env("AUGUR__SERVER__LISTEN", "127.0.0.1:0")
            .env("AUGUR__ADMIN__LISTEN", "127.0.0.1:0")
            .env("AUGUR__ADMIN__GRPC_LISTEN", "127.0.0.1:0")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn augur serve");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Unspecified until the ready event names it; the guard kills the child if that never comes.
        let unset = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut augur = AugurProcess { child, lines, reader: Some(reader), log: Vec::new(), addr: unset, admin: None };
        augur.addr = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let Some(line) = augur.lines.recv().await else {
                    panic!("augur exited before serving:\n{}", augur.log.join("\n"))
                };
                let event = Event::parse(&line);
                augur.log.push(line);
                let Some(event) = event else { continue };
                match event.message() {
                    Some("serving") => return event.addr(),
                    Some(m) if m.starts_with("admin HTTP listening") => augur.admin = Some(event.addr()),
                    _ => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("augur did not start serving in 120 s:\n{}", augur.log.join("\n")));
        augur
    }
}

/// A running `augur serve`.
pub struct AugurProcess {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    reader: Option<JoinHandle<()>>,
    /// Every log line read so far (JSON objects, plus anything not logged through tracing).
    pub log: Vec<String>,
    /// The Prediction gRPC address.
    pub addr: SocketAddr,
    /// The admin HTTP address (`/metrics`); `None` with `admin.listen` off.
    pub admin: Option<SocketAddr>,
}

impl AugurProcess {
    /// `augur serve --config <config>`, ready.
    pub async fn start(config: &Path) -> AugurProcess {
        Self::launch().config(config).start().await
    }

    /// A start with more options: no config, extra environment.
    pub fn launch() -> Launch {
        Launch::default()
    }

    /// Moves the lines logged so far into [`AugurProcess::log`] without waiting.
    pub fn read_log(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        &self.log
    }

    /// `/metrics` of the admin port.
    pub async fn metrics(&self) -> String {
        let (status, _, body) = super::http::get(self.admin.expect("the admin HTTP port is on"), "/metrics").await;
        assert_eq!(status, 200);
        body
    }

    /// A Prediction client.
    pub async fn client(&self) -> augur::proto::prediction_client::PredictionClient<tonic::transport::Channel> {
        augur::proto::prediction_client::PredictionClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) without waiting.
    pub fn signal(&self, signal: i32) {
        // Not reaped before `wait`, which takes `self`: the pid is still our child's.
        super::child::signal_pid(self.pid(), signal);
    }

    /// SIGKILL, then the log lines up to the end.
    pub fn kill(self) -> Vec<String> {
        self.signal(libc::SIGKILL);
        self.wait()
    }

    /// Waits for the exit; returns every log line.
    pub fn wait(self) -> Vec<String> {
        self.wait_status().1
    }

    /// Waits for the exit; returns how it ended and every log line.
    pub fn wait_status(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("wait for augur");
        // The pipe closed with the exit: the reader ends once it has sent the last line.
        self.reader.take().expect("reader").join().expect("log reader");
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        (status, std::mem::take(&mut self.log))
    }
}

impl Drop for AugurProcess {
    fn drop(&mut self) {
        // A test that failed half-way leaves no server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One line of augur's JSON log.
#[derive(Debug)]
pub struct Event(serde_json::Value);

impl Event {
    /// `None` for a line that is not a JSON log event.
    pub fn parse(line: &str) -> Option<Event> {
        serde_json::from_str::<serde_json::Value>(line).ok().filter(serde_json::Value::is_object).map(Event)
    }

    pub fn message(&self) -> Option<&str> {
        self.0["fields"]["message"].as_str()
    }

    /// The event's field `key`, else its span's: a string as is, anything else as JSON.
    pub fn field(&self, key: &str) -> Option<String> {
        let value = self.0["fields"].get(key).or_else(|| self.0["span"].get(key))?;
        Some(value.as_str().map_or_else(|| value.to_string(), str::to_owned))
    }

    fn addr(&self) -> SocketAddr {
        let addr = self.field("addr").unwrap_or_else(|| panic!("no addr field: {:?}", self.0));
        addr.parse().unwrap_or_else(|e| panic!("addr {addr:?}: {e}"))
    }
}

/// The field `key` of the first line whose message is `message`.
pub fn field(log: &[String], message: &str, key: &str) -> Option<String> {
    log.iter().filter_map(|l| Event::parse(l)).find(|e| e.message() == Some(message))?.field(key)
}
