//! The one shape of every external server a test starts (redis-server, etcd, moto): a child
//! process with a temporary directory for its data and log, waited for until it answers,
//! signalled by pid without a shell, and killed on drop (also when the test panics). Restartable
//! on the same ports and directory, which is how tests inject a crash.

use std::ffi::OsString;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::Need;

/// Free TCP ports on 127.0.0.1, all held at once while picking so they differ.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind :0")).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// A server process owned by the test.
pub struct ChildServer {
    /// What it is, for messages: "redis-server on port 6390".
    name: String,
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    child: Option<Child>,
    dir: TempDir,
}

impl ChildServer {
    /// A server that runs `program` once started. `need` is the external program it is: a test
    /// that starts one without `require!`-ing it first fails at once in the fast tier, so the
    /// fast tier never depends on what happens to be installed.
    pub fn new(need: Need, name: impl Into<String>, program: impl Into<OsString>) -> Self {
        let name = name.into();
        assert!(
            super::external_enabled(),
            "{name}: the test starts {need} without `require!({need:?})` (the fast tier runs no external programs)"
        );
        ChildServer {
            name,
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            child: None,
            dir: TempDir::new().expect("tempdir"),
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(&mut self, args: I) -> &mut Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> &mut Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The server's own directory: data, the log, anything the test puts beside them.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where stdout and stderr go (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Spawns the process, without waiting for it to answer.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = File::options().create(true).append(true).open(self.log_path()).expect("server log");
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("server log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: spawn {:?}: {e} (scripts/setup.sh installs it)", self.name, self.program));
        self.child = Some(child);
    }

    /// Polls `ready` every 20 ms until it holds; panics with the server's log if the process
    /// exits first or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let started = Instant::now();
        while !ready() {
            self.check_alive(started, timeout);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Self::wait_ready`] for checks that are async (a gRPC status call).
    pub async fn wait_ready_async(&mut self, timeout: Duration, mut ready: impl AsyncFnMut() -> bool) {
        let started = Instant::now();
        while !ready().await {
            self.check_alive(started, timeout);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn check_alive(&mut self, started: Instant, timeout: Duration) {
        let exited = self.child.as_mut().expect("spawned").try_wait().unwrap();
        if exited.is_some() || started.elapsed() > timeout {
            panic!("{} did not come up ({exited:?}):\n{}", self.name, self.log());
        }
    }

    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().unwrap_or_else(|| panic!("{} not running", self.name));
        i32::try_from(child.id()).expect("pid")
    }

    /// Sends `signal` (`libc::SIGSTOP`, ...) to the process.
    pub fn signal(&self, signal: i32) {
        signal_pid(self.pid(), signal);
    }

    /// SIGKILL and reap: the fault, not a shutdown. The directory stays for a restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server freezes with its connections open and answers nothing until
    /// [`Self::resume`], a stall that lasts exactly as long as the test wants. Returns once the
    /// kernel reports the process stopped.
    pub fn freeze(&self) {
        let pid = self.pid();
        self.signal(libc::SIGSTOP);
        let started = Instant::now();
        // /proc/<pid>/stat: "<pid> (<comm>) <state> ...", state T when stopped by a signal.
        let stopped = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T')))
        };
        while !stopped() {
            assert!(started.elapsed() < Duration::from_secs(10), "{} ({pid}) did not stop", self.name);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGCONT after [`Self::freeze`]: the server answers what queued up meanwhile and goes on.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// kill(2), asserting it was delivered.
pub fn signal_pid(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory effects; callers pass the pid of a child they have not reaped.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}
