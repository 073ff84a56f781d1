//! Export is deploy: versions published to a bucket (a real S3-compatible server, moto, started
//! on a free port) reach a running augur by its poller. A new version swaps in under load with
//! zero failed requests; flipping LATEST back rolls back; a version without its marker, with a
//! wrong checksum or not matching the spec is refused, counted and reported while the old one
//! keeps serving; an unchanged poll costs the bucket exactly one conditional GET; an unreachable
//! bucket leaves the local version serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use augur::cli::models::{self, ModelsError, Repo};
use augur::proto::model_admin_client::ModelAdminClient;
use augur::proto::{ListModelsRequest, ModelStatus};
use augur::repository::bucket::{MARKER, MODEL_FILE, Marker};
use augur::repository::metrics::SourceRejectLabels;
use augur::repository::source::PollOutcome;

use crate::common;
use crate::common::load::PredictLoad;
use crate::common::moto_server::MotoServer;

const BUCKET: &str = "augur-models";

/// A bucket on a fresh moto server, a config whose `ranking` scene is fed from it into an empty
/// temporary directory, the scene's repository handle, and version 1 published there.
struct Fixture {
    moto: MotoServer,
    dir: tempfile::TempDir,
    config: augur::config::Config,
    repo: Repo,
}

impl Fixture {
    /// `extra`: more `[scenes.source]` settings (`, keep_versions = 1`) or "".
    async fn with_version_1(poll_interval_ms: u64, extra: &str) -> Self {
        let moto = MotoServer::start();
        moto.create_bucket(BUCKET).await;
        let dir = tempfile::tempdir().unwrap();
        let source = moto.source_toml(&format!("s3://{BUCKET}/deploy"), poll_interval_ms, extra);
        let config = common::demo_config(&format!(
            "[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\nsource = {source}\n",
            dir.path().join("ranking").display()
        ));
        let repo = Repo::open(&config.scenes[0], None).unwrap();
        assert_eq!(publish(&repo, &ranking_model()).await.unwrap().version, 1);
        Fixture { moto, dir, config, repo }
    }
}

fn ranking_model() -> PathBuf {
    common::root().join("models/ranking/1/model.onnx")
}

fn spec() -> augur::assemble::Spec {
    augur::assemble::Spec::load(&common::root().join("features/ranking.yaml")).unwrap()
}

fn onnx_loader() -> Arc<dyn augur::model::ModelLoader> {
    Arc::new(augur::model::onnx::OnnxLoader::new(augur::model::onnx::SessionOptions {
        intra_op_threads: 1,
        library: None,
    }))
}

/// `augur models publish` in-process: validated against the spec, then uploaded.
async fn publish(repo: &Repo, model: &Path) -> Result<models::Published, ModelsError> {
    models::publish(&spec(), onnx_loader(), repo, &[model.to_path_buf()], None).await
}

async fn status(admin: &mut ModelAdminClient<tonic::transport::Channel>) -> ModelStatus {
    admin.list_models(ListModelsRequest {}).await.unwrap().into_inner().models.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_version_swaps_in_under_load_and_flipping_latest_back_rolls_back() {
    common::require!(Moto, Ort);
    let Fixture { moto: _moto, dir, config, repo } = Fixture::with_version_1(100, "").await;
    let local = dir.path().join("ranking");

    // A fresh machine: the local directory is empty; start-up materialises LATEST.
    let server = common::start(config).await;
    let mut admin = ModelAdminClient::new(server.admin_channel().await);
    let load = PredictLoad::start(&server, 3).await;
    load.wait_more("1", 20).await;

    let published = publish(&repo, &ranking_model()).await.unwrap();
    assert_eq!(published.version, 2);
    load.wait_more("2", 20).await;
    let s = status(&mut admin).await;
    assert_eq!((s.source_latest, s.source.as_str()), (2, format!("s3://{BUCKET}/deploy/ranking").as_str()));
    assert!(local.join("2").join(MARKER).is_file(), "version 2 materialised with its marker");

    // Rollback: LATEST back to 1; the newer version leaves the directory and the routing table.
    models::set_latest(&repo, 1).await.unwrap();
    common::wait_for("version 2 unloaded", async || status(&mut admin).await.versions.iter().all(|v| v.version == 1))
        .await;
    // Requests routed to 2 just before the swap may still finish: let them, then count.
    load.wait_more("1", 20).await;
    let v2_after_rollback = load.seen("2");
    load.wait_more("1", 20).await;
    assert_eq!(load.seen("2"), v2_after_rollback, "no response from version 2 after the rollback settled");
    assert!(!local.join("2").exists(), "version 2 removed locally");
    assert_eq!(status(&mut admin).await.source_latest, 1);

    let (versions, failures) = load.stop().await;
    assert!(failures.is_empty(), "failed requests during publish and rollback: {failures:?}");
    assert_eq!(versions.keys().cloned().collect::<Vec<_>>(), ["1", "2"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_corrupt_and_mismatched_versions_are_refused_counted_and_reported() {
    common::require!(Moto, Ort);
    let Fixture { moto, dir: _dir, config, repo } = Fixture::with_version_1(100, "").await;
    let Repo::Bucket(bucket) = &repo else { panic!("the scene's source is a bucket") };
    let model = std::fs::read(ranking_model()).unwrap();

    // publish validates before uploading: the search_suggest model never reaches the bucket.
    let suggest = common::root().join("models/search_suggest/1/model.onnx");
    let err = publish(&repo, &suggest).await.unwrap_err();
    assert!(matches!(err, ModelsError::Invalid(_)), "{err}");
    assert_eq!(models::list(&repo, &models::Verify::default()).await.unwrap().versions.len(), 1, "nothing uploaded");

    let server = common::start(config).await;
    let mut admin = ModelAdminClient::new(server.admin_channel().await);
    let load = PredictLoad::start(&server, 2).await;
    load.wait_more("1", 20).await;
    let rejected = |reason: &str| {
        let labels = SourceRejectLabels { model: "ranking".into(), reason: reason.into() };
        server.metrics.of::<augur::repository::metrics::ModelMetrics>().source_rejected.get_or_create(&labels).get()
    };
    let reported = async |admin: &mut ModelAdminClient<_>, version: u64, reason: &str| {
        status(admin).await.rejected_versions.iter().any(|r| r.version == version && r.reason == reason)
    };

    // 2: the files and LATEST, but no marker (the upload "did not finish").
    bucket.put(&format!("2/{MODEL_FILE}"), model.clone()).await.unwrap();
    bucket.put("LATEST", b"2\n".to_vec()).await.unwrap();
    common::wait_for("version 2 refused", async || reported(&mut admin, 2, "no_marker").await).await;
    load.wait_more("1", 20).await;

    // 3: a marker whose checksum does not match the file (same size, one byte off).
    let mut wrong = model.clone();
    wrong[100] ^= 0xff;
    bucket.put(&format!("3/{MODEL_FILE}"), model.clone()).await.unwrap();
    bucket.put(&format!("3/{MARKER}"), Marker::describe(3, &[(MODEL_FILE.into(), wrong)]).to_json()).await.unwrap();
    bucket.put("LATEST", b"3\n".to_vec()).await.unwrap();
    common::wait_for("version 3 refused", async || reported(&mut admin, 3, "checksum").await).await;
    load.wait_more("1", 20).await;

    // 4: complete and intact, but its inputs do not match the spec (uploaded without the
    // validation publish does): downloaded, then refused by the repository at load.
    let suggest_bytes = std::fs::read(&suggest).unwrap();
    models::upload(&repo, Some(4), vec![(MODEL_FILE.into(), suggest_bytes)]).await.unwrap();
    common::wait_for("version 4 refused at load", async || reported(&mut admin, 4, "load").await).await;
    load.wait_more("1", 20).await;

    let s = status(&mut admin).await;
    assert_eq!(s.source_latest, 4);
    assert_eq!(s.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1], "version 1 still the only one served");
    assert!(s.rejected >= 1 && s.last_error.contains("does not match"), "{}", s.last_error);
    let detail = |v: u64| s.rejected_versions.iter().find(|r| r.version == v).map(|r| r.detail.clone()).unwrap();
    assert!(detail(3).contains("sha256"), "{}", detail(3));
    assert_eq!((rejected("no_marker"), rejected("checksum")), (1, 1), "each refusal counted once");
    // Not retried while nothing changes: more polls, no more refusals.
    let polls = |outcome: &str| {
        let labels = augur::repository::metrics::SourcePollLabels { model: "ranking".into(), outcome: outcome.into() };
        server.metrics.of::<augur::repository::metrics::ModelMetrics>().source_polls.get_or_create(&labels).get()
    };
    let before = polls("not_modified");
    common::wait_for("more polls", async || polls("not_modified") >= before + 5).await;
    assert_eq!((rejected("no_marker"), rejected("checksum")), (1, 1));

    // `augur models list --verify` on the bucket: each state, and LATEST.
    let spec = spec();
    let verify = models::Verify { files: true, spec: Some((&spec, onnx_loader())) };
    let listing = models::list(&repo, &verify).await.unwrap();
    let states: Vec<(u64, &str)> = listing.versions.iter().map(|v| (v.version, v.state.as_str())).collect();
    assert_eq!(states, [(1, "complete"), (2, "no_marker"), (3, "checksum"), (4, "mismatch")]);
    assert_eq!(listing.latest, Some(4));
    let unverified = models::list(&repo, &models::Verify::default()).await.unwrap();
    assert_eq!(unverified.versions[3].state, "complete", "only verification opens the model");

    // The same through the binary, configured from the environment only.
    let augur = |args: &[&str]| {
        common::process::cli()
            .args(args)
            .env("AWS_ACCESS_KEY_ID", common::moto_server::KEY)
            .env("AWS_SECRET_ACCESS_KEY", common::moto_server::KEY)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap()
    };
    let url = format!("s3://{BUCKET}/deploy");
    let refused = augur(&["models", "publish", "--model", suggest.to_str().unwrap(), "--to", &url]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("does not match"), "{stderr}");
    let out = augur(&["models", "list", "--verify", "--from", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("LATEST = 4"), "{text}");
    let line = |v: &str| text.lines().find(|l| l.trim_start().starts_with(&format!("{v} "))).unwrap_or_default();
    assert!(line("2").contains("no_marker") && line("3").contains("checksum"), "{text}");
    assert!(line("4").contains("mismatch") && line("4").contains("LATEST"), "{text}");
    assert_eq!(text.lines().count(), 2 + 4, "header lines and versions 1-4, nothing published by the refused run");

    let (versions, failures) = load.stop().await;
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(versions.keys().cloned().collect::<Vec<_>>(), ["1"], "only version 1 ever answered");

    // Version 3 fixed (its marker re-uploaded right) and LATEST back on it: served, and no
    // longer listed as rejected; what still is says when it was refused.
    let marker = Marker::describe(3, &[(MODEL_FILE.into(), model.clone())]).to_json();
    bucket.put(&format!("3/{MARKER}"), marker).await.unwrap();
    bucket.put("LATEST", b"3\n".to_vec()).await.unwrap();
    common::wait_for("fixed version 3 served", async || {
        status(&mut admin).await.versions.iter().any(|v| v.version == 3)
    })
    .await;
    let s = status(&mut admin).await;
    assert!(!s.rejected_versions.iter().any(|r| r.version == 3), "{:?}", s.rejected_versions);
    assert!(s.rejected_versions.iter().any(|r| r.version == 2), "{:?}", s.rejected_versions);
    assert!(s.rejected_versions.iter().all(|r| r.rejected_at_ms > 1_700_000_000_000), "{:?}", s.rejected_versions);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_poll_costs_one_conditional_get() {
    common::require!(Moto, Ort);
    // The background poller waits an hour: the test drives the polls itself.
    let Fixture { moto, dir, config, repo } = Fixture::with_version_1(3_600_000, ", keep_versions = 1").await;
    let server = common::start(config).await;
    let source = server.predictor.scenes().next().unwrap().source.clone().expect("bucket source");

    let before = moto.requests().len();
    for _ in 0..3 {
        assert_eq!(source.poll().await, PollOutcome::NotModified);
    }
    let requests = moto.requests()[before..].to_vec();
    assert_eq!(requests.len(), 3, "one request per unchanged poll: {requests:?}");
    for r in &requests {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", format!("/{BUCKET}/deploy/ranking/LATEST").as_str()));
        assert!(r.if_none_match.is_some(), "conditional: {r:?}");
    }

    // A change is seen by the next poll; keep_versions = 1 leaves only LATEST on disk.
    publish(&repo, &ranking_model()).await.unwrap();
    assert_eq!(source.poll().await, PollOutcome::Ready(2));
    let local = dir.path().join("ranking");
    assert!(local.join("2").join(MODEL_FILE).is_file() && !local.join("1").exists(), "only version 2 kept");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bucket_leaves_the_local_version_serving() {
    common::require!(Moto, Ort);
    // Nothing listens on this port: every poll fails, and is counted.
    let port = common::free_ports(1)[0];
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("ranking");
    let repo = Repo::Dir(local.clone());
    models::upload(&repo, None, vec![(MODEL_FILE.into(), std::fs::read(ranking_model()).unwrap())]).await.unwrap();
    let config = common::demo_config(&format!(
        "[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\nsource = {{ url = \"s3://{BUCKET}/deploy\", endpoint = \"http://127.0.0.1:{port}\", region = \"us-east-1\", allow_http = true, poll_interval_ms = 50, timeout_ms = 2000, options = {{ aws_access_key_id = \"k\", aws_secret_access_key = \"k\" }} }}\n",
        local.display()
    ));
    let server = common::start(config).await;
    let errors = || {
        let labels = augur::repository::metrics::SourcePollLabels { model: "ranking".into(), outcome: "error".into() };
        server.metrics.of::<augur::repository::metrics::ModelMetrics>().source_polls.get_or_create(&labels).get()
    };
    common::wait_for("failed polls counted", async || errors() >= 3).await;
    let response = server.client().await.predict(common::ranking_request("u1", &["i1"])).await.unwrap().into_inner();
    assert_eq!(response.model_version, "1", "the local version serves while the bucket is unreachable");
    server.stop().await;
}

/// Canary decisions shared through the bucket: two replicas, each with its own local directory
/// fed from one bucket on moto, fake models, a rollout policy whose decider never decides by
/// itself. v2 becomes canary on both; an operator's rollback on A reaches B through the bucket
/// (`2/rollout.json`), an operator's promote on B replaces it and reaches A, and a resume on A
/// deletes it everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_bucket_follow_the_same_canary_decision() {
    use augur::proto::{CanaryAction, DecideCanaryRequest};

    common::require!(Moto);
    let moto = MotoServer::start();
    moto.create_bucket(BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let source = moto.source_toml(&format!("s3://{BUCKET}/deploy"), 100, "");
    let replica = |name: &str| {
        let mut config = common::samples::samples_config(
            &dir.path().join(format!("log-{name}")),
            &format!(
                "[samples.quality]\nbucket_s = 1\nbuckets = 60\n[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\nsource = {source}\n",
                dir.path().join(name).join("ranking").display()
            ),
        );
        config.scenes[0].rollout = Some(common::manual_rollout());
        config.validate().expect("the test config validates");
        config
    };
    let repo = Repo::open(&replica("a").scenes[0], None).unwrap();
    let fake = || vec![(MODEL_FILE.to_owned(), b"fake".to_vec())];
    models::upload(&repo, Some(1), fake()).await.unwrap();
    let parts = || augur::app::Parts {
        loader: Some(Arc::new(crate::common::fake_model::FakeLoader::default())),
        ..Default::default()
    };
    let a = common::start_with(replica("a"), parts()).await;
    let b = common::start_with(replica("b"), parts()).await;
    let mut admin_a = ModelAdminClient::new(a.admin_channel().await);
    let mut admin_b = ModelAdminClient::new(b.admin_channel().await);
    models::upload(&repo, Some(2), fake()).await.unwrap();
    for admin in [&mut admin_a, &mut admin_b] {
        common::wait_for("v2 as canary", async || status(admin).await.rollout.unwrap().canary_version == 2).await;
    }
    let decision = |s: &ModelStatus, version: u64| {
        s.rollout
            .as_ref()
            .unwrap()
            .decisions
            .iter()
            .find(|d| d.version == version)
            .map(|d| (d.decision.clone(), d.by.clone()))
    };
    let decide = |version: u64, action: CanaryAction, reason: &str| DecideCanaryRequest {
        model: "ranking".into(),
        version,
        action: action as i32,
        reason: reason.into(),
    };

    // Rolled back on A: B follows through the bucket.
    admin_a.decide_canary(decide(2, CanaryAction::Rollback, "on A")).await.expect("rollback on A");
    for admin in [&mut admin_a, &mut admin_b] {
        common::wait_for("v2 rolled back on both", async || {
            let s = status(admin).await;
            let r = s.rollout.clone().unwrap();
            decision(&s, 2) == Some(("rollback".into(), "operator".into()))
                && r.canary_version == 0
                && r.stable_version == 1
        })
        .await;
    }
    let shared = repo_object(&repo, "2/rollout.json").await;
    assert!(shared.contains("\"rollback\"") && shared.contains("on A"), "{shared}");

    // Promoted on B (an operator replaces the decision): A follows.
    admin_b.decide_canary(decide(2, CanaryAction::Promote, "on B")).await.expect("promote on B");
    for admin in [&mut admin_a, &mut admin_b] {
        common::wait_for("v2 stable on both", async || {
            let s = status(admin).await;
            decision(&s, 2) == Some(("promote".into(), "operator".into())) && s.rollout.unwrap().stable_version == 2
        })
        .await;
    }
    assert!(repo_object(&repo, "2/rollout.json").await.contains("on B"));

    // Resumed on A (the decision removed): deleted in the bucket, removed on B, v2 canary again.
    admin_a.decide_canary(decide(2, CanaryAction::Resume, "look again")).await.expect("resume on A");
    for admin in [&mut admin_a, &mut admin_b] {
        common::wait_for("v2 canary again on both", async || {
            let s = status(admin).await;
            decision(&s, 2).is_none() && s.rollout.unwrap().canary_version == 2
        })
        .await;
    }
    let Repo::Bucket(bucket) = &repo else { unreachable!() };
    assert!(matches!(
        bucket.get_if_changed("2/rollout.json", None).await.unwrap(),
        augur::repository::bucket::Conditional::Missing
    ));
    // Both replicas hold the same bootstrap stable (the first one shared).
    let (sa, sb) = (status(&mut admin_a).await, status(&mut admin_b).await);
    let bootstrap = |s: &ModelStatus| s.rollout.as_ref().unwrap().decisions.iter().find(|d| d.version == 1).cloned();
    assert_eq!(bootstrap(&sa), bootstrap(&sb));
    a.stop().await;
    b.stop().await;
}

/// The text of `relative` under the repository's bucket prefix.
async fn repo_object(repo: &Repo, relative: &str) -> String {
    let Repo::Bucket(bucket) = repo else { panic!("a bucket") };
    match bucket.get_if_changed(relative, None).await.unwrap() {
        augur::repository::bucket::Conditional::Found { bytes, .. } => String::from_utf8(bytes.to_vec()).unwrap(),
        other => panic!("{relative}: {other:?}"),
    }
}
