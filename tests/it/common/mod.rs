//! Test harness: start augur in-process on 127.0.0.1:0 and talk to it over real gRPC.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use augur::config::Config;
use augur::proto::prediction_client::PredictionClient;
use augur::proto::{Candidate, FeatureValue, PredictRequest, feature_value::Kind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running server; `stop` shuts it down gracefully and re-raises its errors and panics.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin gRPC port: `ModelAdmin`.
    pub admin_addr: SocketAddr,
    /// The admin HTTP port (`None` when the config disabled it).
    pub admin_http_addr: Option<SocketAddr>,
    /// The flag `/readyz` reports.
    pub readiness: augur::admin::http::Readiness,
    /// The app's predictor and metrics, for white-box checks.
    pub predictor: std::sync::Arc<augur::predict::Predictor>,
    pub metrics: augur::telemetry::Metrics,
    shutdown: mpsc::Sender<()>,
    handle: JoinHandle<Result<(), augur::server::ServeError>>,
}

impl TestServer {
    pub async fn client(&self) -> PredictionClient<Channel> {
        PredictionClient::connect(format!("http://{}", self.addr)).await.expect("connect")
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connect")
    }

    /// A channel to the admin gRPC port, where `ModelAdmin` is served.
    pub async fn admin_channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.admin_addr)).unwrap().connect().await.expect("connect admin")
    }

    /// Sends one shutdown request (as a SIGTERM would) without waiting.
    pub async fn request_shutdown(&self) {
        self.shutdown.send(()).await.expect("server task alive");
    }

    /// Waits for the server task to end and returns how it ended.
    pub async fn join(self) -> Result<(), augur::server::ServeError> {
        self.handle.await.expect("server task panicked")
    }

    pub async fn stop(self) {
        self.request_shutdown().await;
        self.join().await.expect("server failed");
    }
}

/// Repository root (tests run with it as the working directory, but be explicit).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The embedded defaults (demo catalogue, bundled model) on a free port, plus `extra` TOML.
pub fn demo_config(extra: &str) -> Config {
    let mut config = Config::from_toml(extra).expect("test config");
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    // Also for tests that build an `App` themselves: never the fixed default admin ports.
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.grpc_listen = "127.0.0.1:0".parse().unwrap();
    // A debug build on a busy 2-core CI machine can take longer than the 2 s production default
    // for a large request; tests that are about deadlines set their own.
    if !extra.contains("default_deadline_ms") {
        config.server.default_deadline_ms = 30_000;
    }
    // Loads run under SCHED_IDLE (the default) as in production, but test binaries keep both
    // cores busy with each other's servers: after 100 ms a load competes at nice 19, so a test
    // never waits out the production limit for CPU its neighbours hold.
    if !extra.contains("load_idle_limit_ms") {
        config.model.load_idle_limit_ms = 100;
    }
    config
}

pub async fn start(config: Config) -> TestServer {
    start_with(config, augur::app::Parts::default()).await
}

/// Starts augur with some parts supplied (a fake model loader, a faulty store).
pub async fn start_with(config: Config, parts: augur::app::Parts) -> TestServer {
    let listener = tokio::net::TcpListener::bind(config.server.listen).await.expect("bind");
    start_on(listener, config, parts).await
}

/// Starts augur on a listener the test bound itself, so the address it put into the config
/// (`registry.advertise`) is held from the start: a port picked free and bound only after the
/// app is built can be taken meanwhile as the ephemeral port of some client connection.
pub async fn start_on(listener: tokio::net::TcpListener, mut config: Config, parts: augur::app::Parts) -> TestServer {
    // Many servers run at once in one test binary: never the fixed default admin ports.
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.grpc_listen = "127.0.0.1:0".parse().unwrap();
    let app = augur::app::App::build_with(config, parts).await.expect("build app");
    let addr = listener.local_addr().unwrap();
    let (admin_addr, admin_http_addr) = (app.admin_grpc_addr(), app.admin_http_addr());
    let readiness = app.readiness().clone();
    let (predictor, metrics) = (std::sync::Arc::clone(app.predictor()), app.metrics().clone());
    let (shutdown, requests) = mpsc::channel(4);
    let handle = tokio::spawn(app.serve(listener, requests));
    TestServer { addr, admin_addr, admin_http_addr, readiness, predictor, metrics, shutdown, handle }
}

pub fn int(i: i64) -> FeatureValue {
    FeatureValue { kind: Some(Kind::IntValue(i)) }
}

pub fn string(s: &str) -> FeatureValue {
    FeatureValue { kind: Some(Kind::StringValue(s.to_owned())) }
}

/// A ranking request for `user` and `items` with a typical context.
pub fn ranking_request(user: &str, items: &[&str]) -> PredictRequest {
    PredictRequest {
        request_id: String::new(),
        scene: "ranking".into(),
        user_id: user.into(),
        context: [("hour".to_string(), int(20)), ("device".to_string(), string("ios"))].into(),
        candidates: items.iter().map(|i| Candidate { item_id: (*i).into(), features: Default::default() }).collect(),
        model_version: String::new(),
    }
}

/// Polls `done` every 50 ms until it holds; fails the test after a generous 90 s.
pub async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !done().await {
        assert!(std::time::Instant::now() < give_up, "gave up waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The Python interpreter of the project venv (`scripts/setup.sh`).
pub fn venv_python() -> PathBuf {
    assert!(external_enabled(), "the test runs the venv's Python without `require!(Python)`");
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run scripts/setup.sh", python.display());
    python
}

pub mod certs;
pub mod child;
#[cfg(feature = "etcd")]
pub mod etcd_server;
pub mod fake_model;
pub mod h2;
pub mod http;
pub mod load;
#[cfg(feature = "bucket")]
pub mod moto_server;
pub mod otlp_sink;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod process;
pub mod redis_server;
pub mod samples;

pub use child::free_ports;

// === the fast tier and the external tier ===

/// The variable that turns on the tests needing programs outside the Rust toolchain.
pub const EXTERNAL: &str = "AUGUR_IT_EXTERNAL";

/// Something outside the crate a test needs. Without `AUGUR_IT_EXTERNAL=1` a test that needs
/// any of these is skipped (the fast tier); with it, each must be there (CI, `scripts/test.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `redis-server` (and `redis-cli` for a cluster) on PATH.
    Redis,
    /// `etcd` on PATH.
    Etcd,
    /// The venv's `moto_server` (an S3-compatible server).
    Moto,
    /// The venv's Python with the project's packages (numpy, grpcio, the training tools).
    Python,
    /// `go` and `protoc` on PATH, with Debian's Go etcd and gRPC sources.
    Go,
    /// The ONNX Runtime library: a test that loads a real model (the demo config's bundled
    /// models, or an ORT session of its own). Fake-model tests do not need it.
    Ort,
    /// The MovieLens-100K data beside the repository (`../shared/data/movielens-100k`).
    MovieLens,
    /// `promtool` (Debian's `prometheus`) on PATH.
    Promtool,
    /// `curl` (with HTTP/2) on PATH.
    Curl,
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Need::Redis => "redis-server",
            Need::Etcd => "etcd",
            Need::Moto => "moto_server (.venv)",
            Need::Python => "the Python venv",
            Need::Go => "the Go toolchain",
            Need::Ort => "ONNX Runtime (.venv)",
            Need::MovieLens => "the MovieLens-100K data",
            Need::Promtool => "promtool",
            Need::Curl => "curl",
        })
    }
}

impl Need {
    /// Why it is missing, or `None` when it is there.
    fn missing(self) -> Option<String> {
        let venv = |file: &str| {
            let path = root().join(".venv/bin").join(file);
            (!path.exists()).then(|| format!("{} missing", path.display()))
        };
        match self {
            Need::Redis => on_path(&["redis-server", "redis-cli"]),
            Need::Etcd => on_path(&["etcd"]),
            Need::Moto => venv("moto_server"),
            Need::Python => venv("python"),
            Need::Go => on_path(&["go", "protoc"]),
            Need::Promtool => on_path(&["promtool"]),
            Need::Curl => on_path(&["curl"]),
            Need::Ort => augur::model::runtime::find_library()
                .is_none()
                .then(|| "no libonnxruntime.so at ORT_DYLIB_PATH or in .venv".to_owned()),
            Need::MovieLens => {
                let data = root().join("../shared/data/movielens-100k/u.data");
                (!data.exists()).then(|| format!("{} missing", data.display()))
            }
        }
    }
}

/// The programs not found on PATH, as one message.
fn on_path(programs: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> =
        programs.iter().copied().filter(|p| !std::env::split_paths(&path).any(|dir| dir.join(p).is_file())).collect();
    (!missing.is_empty()).then(|| format!("{} not on PATH", missing.join(", ")))
}

/// Whether the external tier is on (`AUGUR_IT_EXTERNAL=1`).
pub fn external_enabled() -> bool {
    std::env::var(EXTERNAL).is_ok_and(|v| v == "1")
}

/// `false` (after one line on stderr saying why) when the calling test must be skipped: it needs
/// something external and the external tier is off. With the tier on, something missing fails
/// the test: CI never skips. Use through [`require!`].
pub fn required(needs: &[Need]) -> bool {
    if !external_enabled() {
        let names: Vec<String> = needs.iter().map(Need::to_string).collect();
        eprintln!("skipped: needs {} (set {EXTERNAL}=1 or run scripts/test.sh)", names.join(", "));
        return false;
    }
    let missing: Vec<String> = needs.iter().filter_map(|n| n.missing().map(|why| format!("{n}: {why}"))).collect();
    assert!(missing.is_empty(), "{EXTERNAL}=1 but {} (scripts/setup.sh installs them)", missing.join("; "));
    true
}

/// `require!(Redis, Ort);` first in a test that needs them: returns from the test (skipped)
/// unless the external tier is on. See [`Need`].
macro_rules! require {
    ($($need:ident),+ $(,)?) => {
        if !$crate::common::required(&[$($crate::common::Need::$need),+]) {
            return;
        }
    };
}
pub(crate) use require;

/// For a test that changes state of the whole process (the global tracing subscriber): `true`
/// where the test body should run, in a process of its own. Under `cargo test`, where every test
/// shares one process, the first call re-runs this same test binary on exactly the calling test
/// (libtest names each test's thread after it) and returns `false` once that child passed; the
/// child gets `true`. Under nextest, which runs every test in a process of its own, `true` at once.
pub fn own_process() -> bool {
    const CHILD: &str = "AUGUR_IT_OWN_PROCESS";
    let thread = std::thread::current();
    let test = thread.name().filter(|n| n.contains("::")).expect("called on the test's own thread");
    if std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test")
        || std::env::var(CHILD).is_ok_and(|t| t == test)
    {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("re-run the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} in its own process failed:\n{text}");
    assert!(text.contains("1 passed"), "{test} did not run in its own process:\n{text}");
    false
}

/// The GetFeatures request for exactly what a Predict request would score.
pub fn features_request(request: &PredictRequest) -> augur::proto::GetFeaturesRequest {
    augur::proto::GetFeaturesRequest {
        scene: request.scene.clone(),
        user_id: request.user_id.clone(),
        context: request.context.clone(),
        candidates: request.candidates.clone(),
    }
}

/// Scores GetFeatures' tensors with a plain ORT session: the reference Predict must equal.
pub fn direct_ort(
    session: &mut ort::session::Session,
    features: &augur::proto::GetFeaturesResponse,
    output: &str,
) -> Vec<f32> {
    use ort::session::SessionInputValue;
    use ort::value::TensorRef;
    let inputs: Vec<(&str, SessionInputValue<'_>)> = features
        .inputs
        .iter()
        .map(|t| {
            let shape = [t.shape[0] as usize, t.shape[1] as usize];
            let value: SessionInputValue<'_> = if t.float_values.is_empty() && !t.int64_values.is_empty() {
                TensorRef::from_array_view((shape, t.int64_values.as_slice())).unwrap().into()
            } else {
                TensorRef::from_array_view((shape, t.float_values.as_slice())).unwrap().into()
            };
            (t.name.as_str(), value)
        })
        .collect();
    let outputs = session.run(inputs).unwrap();
    outputs[output].try_extract_tensor::<f32>().unwrap().1.to_vec()
}

/// An ORT session on a repository model file, through augur's runtime discovery.
pub fn ort_session(model: &Path) -> ort::session::Session {
    assert!(external_enabled(), "the test opens an ORT session without `require!(Ort)`");
    let env = augur::model::runtime::environment(None).expect("ort runtime");
    ort::session::Session::builder(env).unwrap().commit_from_file(model).unwrap()
}

/// A rollout policy for tests that drive the canary by hand: half the users to the canary, and
/// `min_impressions` out of reach so the decider only waits.
pub fn manual_rollout() -> augur::config::RolloutConfig {
    augur::config::RolloutConfig {
        canary_share: 0.5,
        min_impressions: 1_000_000,
        max_auc_drop: 0.02,
        max_calibration_error: 0.5,
        decision_window_s: 60,
        check_interval_ms: 200,
    }
}
