//! `model.reload`: with `release_first` a new version replaces the old one only after the old one
//! is gone — the scene turns NOT_SERVING (its own grpc.health.v1 service and, as it is the only
//! scene, the whole server), Predict answers UNAVAILABLE naming the setting, the request in
//! flight finishes on the old version, every instance of the old version is dropped before the
//! first of the new one opens, and the scene serves the new version once it is warm. A new
//! version that fails brings the released one back. The default, `overlap`, refuses nothing.
//!
//! Fake models (no ONNX Runtime): a loader whose instances know their version, count themselves
//! live and score every row with a version-specific value, and two gates, one holding model runs
//! (a request in flight) and one holding the opening of a version (the load in progress), so
//! every step is observed while it lasts, without timing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use augur::assemble::{Spec, Tensor};
use augur::model::{Model, ModelError, ModelLoader};
use augur::proto::model_admin_client::ModelAdminClient;
use augur::proto::{PredictResponse, ReloadRequest};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::common;

/// What the loader's instances share.
#[derive(Debug, Default)]
struct Shared {
    /// Live instances per version, and for each instance opened: its version and the live
    /// instances of every other version at that moment.
    state: Mutex<State>,
    changed: Condvar,
    /// A version that fails to open.
    broken: Mutex<Option<u64>>,
}

#[derive(Debug, Default)]
struct State {
    live: BTreeMap<u64, usize>,
    opens: Vec<(u64, usize)>,
    /// While set, model runs wait (a request stays in flight).
    runs_held: bool,
    runs_waiting: usize,
    /// While set, opening this version waits (its load is in progress).
    open_held: Option<u64>,
    open_waiting: bool,
}

/// Opens a [`VersionModel`] for `<repo>/<version>/model.onnx` whatever the file holds.
#[derive(Debug, Clone, Default)]
struct VersionLoader(Arc<Shared>);

impl ModelLoader for VersionLoader {
    fn open(&self, path: &Path, _spec: &Spec) -> Result<Box<dyn Model>, ModelError> {
        let version: u64 = path.parent().and_then(|d| d.file_name()).unwrap().to_str().unwrap().parse().unwrap();
        if *self.0.broken.lock().unwrap() == Some(version) {
            return Err(ModelError::Output { problem: format!("version {version} is broken") });
        }
        let mut state = self.0.state.lock().unwrap();
        while state.open_held == Some(version) {
            state.open_waiting = true;
            self.0.changed.notify_all();
            state = self.0.changed.wait(state).unwrap();
        }
        state.open_waiting = false;
        let others = state.live.iter().filter(|(v, _)| **v != version).map(|(_, n)| n).sum();
        state.opens.push((version, others));
        *state.live.entry(version).or_default() += 1;
        Ok(Box::new(VersionModel { version, shared: Arc::clone(&self.0) }))
    }
}

struct VersionModel {
    version: u64,
    shared: Arc<Shared>,
}

impl Model for VersionModel {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        let mut state = self.shared.state.lock().unwrap();
        while state.runs_held {
            state.runs_waiting += 1;
            self.shared.changed.notify_all();
            state = self.shared.changed.wait(state).unwrap();
            state.runs_waiting -= 1;
        }
        assert!(state.live.get(&self.version).is_some_and(|n| *n > 0), "a freed model ran");
        Ok(vec![score(self.version); tensors[0].rows()])
    }
}

impl Drop for VersionModel {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().unwrap();
        *state.live.get_mut(&self.version).unwrap() -= 1;
        self.shared.changed.notify_all();
    }
}

fn score(version: u64) -> f32 {
    version as f32 / 10.0
}

impl Shared {
    fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }

    fn get<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap())
    }
}

fn install(repo: &Path, version: u64) {
    std::fs::create_dir_all(repo.join(version.to_string())).unwrap();
    std::fs::write(repo.join(format!("{version}/model.onnx")), b"not an onnx model").unwrap();
}

async fn start(loader: &VersionLoader, reload: &str) -> (tempfile::TempDir, PathBuf, common::TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fake_ranking");
    install(&repo, 1);
    let config = common::fake_model::fake_config(
        &repo,
        &format!("[model]\ninference_threads = 2\nrelease_wait_ms = 60000\nreload = \"{reload}\"\n"),
    );
    let parts = augur::app::Parts { loader: Some(Arc::new(loader.clone())), ..Default::default() };
    let server = common::start_with(config, parts).await;
    (dir, repo, server)
}

/// Starts `ModelAdmin.Reload` of repository `model` (it returns once the rescan is over) in the
/// background.
fn reload(server: &common::TestServer, model: &'static str) -> tokio::task::JoinHandle<()> {
    let addr = server.admin_addr;
    tokio::spawn(async move {
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        ModelAdminClient::new(channel).reload(ReloadRequest { model: model.into() }).await.unwrap();
    })
}

/// A Predict answered by `version`, every score that version's.
fn assert_served_by(response: &PredictResponse, version: u64) {
    assert_eq!(response.model_version, version.to_string());
    assert!(!response.scores.is_empty());
    assert!(
        response.scores.iter().all(|s| *s == score(version)),
        "scores {:?} are not version {version}'s",
        response.scores
    );
}

async fn status(health: &mut HealthClient<tonic::transport::Channel>, service: &str) -> ServingStatus {
    health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner().status()
}

/// The next status on a health Watch stream; a status that never comes fails the test (after a
/// generous guard) instead of hanging it.
async fn next(watch: &mut tonic::Streaming<HealthCheckResponse>) -> ServingStatus {
    let message = tokio::time::timeout(std::time::Duration::from_secs(60), watch.message()).await;
    message.expect("a health status change").unwrap().expect("watch open").status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_first_frees_the_old_version_before_the_new_one_loads() {
    let loader = VersionLoader::default();
    let shared = Arc::clone(&loader.0);
    let (_dir, repo, server) = start(&loader, "release_first").await;
    let scene = augur::app::scene_service("ranking");
    let mut client = server.client().await;
    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health.watch(HealthCheckRequest { service: scene.clone() }).await.unwrap().into_inner();
    assert_eq!(next(&mut watch).await, ServingStatus::Serving);
    assert_served_by(&client.predict(common::ranking_request("u1", &["i1", "i2"])).await.unwrap().into_inner(), 1);

    // A request in flight on version 1 while version 2 arrives.
    shared.set(|s| s.runs_held = true);
    let mut held_client = client.clone();
    let in_flight = tokio::spawn(async move {
        held_client.predict(common::ranking_request("u2", &["i3"])).await.map(|r| r.into_inner())
    });
    common::wait_for("the request in flight", async || shared.get(|s| s.runs_waiting == 1)).await;
    install(&repo, 2);
    shared.set(|s| s.open_held = Some(2));
    let reloading = reload(&server, "fake_ranking");

    // Out of service at once: the scene and (its only scene) the server say NOT_SERVING and new
    // calls are refused, naming the setting, while the old version finishes what it has.
    assert_eq!(next(&mut watch).await, ServingStatus::NotServing);
    assert_eq!(status(&mut health, "").await, ServingStatus::NotServing);
    assert_eq!(status(&mut health, "augur.v1.Prediction").await, ServingStatus::NotServing);
    assert!(!server.readiness.get(), "/readyz follows");
    let refused = client.predict(common::ranking_request("u3", &["i1"])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("model.reload = release_first") && refused.message().contains("`ranking`"),
        "{}",
        refused.message()
    );
    assert!(shared.get(|s| s.opens.iter().all(|(v, _)| *v == 1)), "version 2 waits for the request in flight");
    assert_eq!(shared.get(|s| s.live[&1]), 2, "version 1 still holds its two instances");

    shared.set(|s| s.runs_held = false);
    assert_served_by(&in_flight.await.unwrap().unwrap(), 1);
    common::wait_for("version 2 opening", async || shared.get(|s| s.open_waiting)).await;
    assert_eq!(shared.get(|s| s.live[&1]), 0, "version 1 is freed before version 2 opens");
    let refused = client.predict(common::ranking_request("u3", &["i1"])).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "still loading: {refused:?}");

    shared.set(|s| s.open_held = None);
    reloading.await.unwrap();
    assert_eq!(next(&mut watch).await, ServingStatus::Serving);
    assert_eq!(status(&mut health, "").await, ServingStatus::Serving);
    assert!(server.readiness.get());
    assert_served_by(&client.predict(common::ranking_request("u4", &["i1", "i5"])).await.unwrap().into_inner(), 2);
    let opens = shared.get(|s| s.opens.clone());
    assert_eq!(opens, vec![(1, 0), (1, 0), (2, 0), (2, 0)], "(version, other versions' live instances) per open");

    let stats = server.predictor.scene("ranking").unwrap().repo.stats();
    assert_eq!((stats.reloads_released_first, stats.reloads_overlapped), (1, 0));
    assert_eq!(stats.refused, 2);
    assert_eq!(stats.unloads, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_first_brings_the_released_version_back_when_the_new_one_fails() {
    let loader = VersionLoader::default();
    let shared = Arc::clone(&loader.0);
    let (_dir, repo, server) = start(&loader, "release_first").await;
    *shared.broken.lock().unwrap() = Some(2);
    install(&repo, 2);
    reload(&server, "fake_ranking").await.unwrap();

    let mut health = HealthClient::new(server.channel().await);
    assert_eq!(status(&mut health, &augur::app::scene_service("ranking")).await, ServingStatus::Serving);
    let response = server.client().await.predict(common::ranking_request("u1", &["i1"])).await.unwrap().into_inner();
    assert_served_by(&response, 1);
    // Version 1 opened twice per thread: at start and again from the repository after version 2
    // failed.
    assert_eq!(shared.get(|s| s.opens.clone()), vec![(1, 0), (1, 0), (1, 0), (1, 0)]);
    let stats = server.predictor.scene("ranking").unwrap().repo.stats();
    assert_eq!((stats.rejected, stats.unloads, stats.loads), (1, 1, 2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_is_the_default_and_refuses_nothing() {
    let loader = VersionLoader::default();
    let shared = Arc::clone(&loader.0);
    let (_dir, repo, server) = start(&loader, "overlap").await;
    let mut client = server.client().await;
    let mut health = HealthClient::new(server.channel().await);
    install(&repo, 2);
    shared.set(|s| s.open_held = Some(2));
    let reloading = reload(&server, "fake_ranking");
    common::wait_for("version 2 opening", async || shared.get(|s| s.open_waiting)).await;

    // While version 2 loads, version 1 serves and health stays SERVING.
    assert_served_by(&client.predict(common::ranking_request("u1", &["i1"])).await.unwrap().into_inner(), 1);
    assert_eq!(status(&mut health, &augur::app::scene_service("ranking")).await, ServingStatus::Serving);
    assert_eq!(status(&mut health, "").await, ServingStatus::Serving);
    assert_eq!(shared.get(|s| s.live[&1]), 2, "version 1 serves while version 2 opens");

    shared.set(|s| s.open_held = None);
    reloading.await.unwrap();
    assert_served_by(&client.predict(common::ranking_request("u1", &["i1"])).await.unwrap().into_inner(), 2);
    let opens = shared.get(|s| s.opens.clone());
    assert_eq!(opens, vec![(1, 0), (1, 0), (2, 2), (2, 2)], "version 2 opened beside version 1's two instances");
    let stats = server.predictor.scene("ranking").unwrap().repo.stats();
    assert_eq!((stats.reloads_overlapped, stats.reloads_released_first, stats.refused), (1, 0, 0));
    server.stop().await;

    let default = augur::config::Config::from_toml("").unwrap();
    assert_eq!(default.model.reload, augur::model::config::ReloadStrategy::Overlap);
}

#[test]
fn release_first_is_refused_with_a_rollout_policy() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::fake_model::fake_config(dir.path(), "[model]\nreload = \"release_first\"\n");
    let samples = common::samples::samples_config(dir.path(), "[samples.quality]\nbucket_s = 1\nbuckets = 60\n");
    config.samples = samples.samples;
    config.scenes[0].rollout = Some(common::manual_rollout());
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("model.reload") && error.contains("scenes[0].rollout"), "{error}");
    config.model.reload = augur::model::config::ReloadStrategy::Overlap;
    config.validate().expect("overlap serves a rollout");
}

/// The same with ONNX Runtime under steady load: every call is answered by version 1 or 2 or
/// refused UNAVAILABLE naming the setting — none fails otherwise, none hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_first_with_onnx_under_load_refuses_only_with_unavailable() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("ranking");
    let model = std::fs::read(common::root().join("models/ranking/1/model.onnx")).unwrap();
    let put = |version: u64| {
        std::fs::create_dir_all(repo.join(version.to_string())).unwrap();
        std::fs::write(repo.join(format!("{version}/model.onnx")), &model).unwrap();
    };
    put(1);
    let config = common::demo_config(&format!(
        "[model]\nwatch = false\npoll_interval_ms = 0\nreload = \"release_first\"\n[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\n",
        repo.display()
    ));
    let server = common::start(config).await;
    let load = common::load::PredictLoad::start(&server, 3).await;
    load.wait_more("1", 20).await;
    put(2);
    reload(&server, "ranking").await.unwrap();
    load.wait_more("2", 20).await;
    let (versions, failures) = load.stop().await;
    assert_eq!(versions.keys().collect::<Vec<_>>(), ["1", "2"]);
    assert!(
        failures.iter().all(|f| f.starts_with("Unavailable") && f.contains("model.reload = release_first")),
        "{failures:?}"
    );
    let stats = server.predictor.scene("ranking").unwrap().repo.stats();
    assert_eq!((stats.reloads_released_first, stats.refused), (1, failures.len() as u64));
    server.stop().await;
}
