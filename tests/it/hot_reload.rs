//! Hot reload under continuous load: a new version is picked up by the watcher and swapped in
//! with zero failed requests; a corrupt version is rejected while the old one keeps serving; a
//! removed version directory is unloaded; the admin API reports all of it.

use std::path::Path;

use augur::proto::model_admin_client::ModelAdminClient;
use augur::proto::{ListModelsRequest, SetCanaryRequest};

use crate::common;
use crate::common::load::PredictLoad;

fn install(repo: &Path, version: u64, bytes: &[u8]) {
    // Write beside, then rename: the watcher never sees a half-written model.
    let staging = repo.join(format!(".staging-{version}"));
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("model.onnx"), bytes).unwrap();
    std::fs::rename(&staging, repo.join(version.to_string())).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_version_swaps_in_under_load_and_corrupt_one_is_rejected() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("ranking");
    let model = std::fs::read(common::root().join("models/ranking/1/model.onnx")).unwrap();
    install(&repo, 1, &model);
    let config = common::demo_config(&format!(
        "[model]\npoll_interval_ms = 200\n[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\n",
        repo.display()
    ));
    let server = common::start(config).await;
    let mut admin = ModelAdminClient::new(server.admin_channel().await);

    let load = PredictLoad::start(&server, 3).await;
    let seen = |v: &str| load.seen(v);
    common::wait_for("traffic on version 1", async || seen("1") > 20).await;

    install(&repo, 2, &model);
    common::wait_for("traffic on version 2", async || seen("2") > 20).await;
    let v1_before = seen("1");

    // A corrupt version 3 is rejected; version 2 keeps serving.
    install(&repo, 3, b"this is not an onnx model");
    common::wait_for("version 3 rejected", async || {
        admin.list_models(ListModelsRequest {}).await.unwrap().into_inner().models[0].rejected >= 1
    })
    .await;
    let v2_before = seen("2");
    common::wait_for("more traffic on version 2", async || seen("2") > v2_before + 20).await;

    let status = admin.list_models(ListModelsRequest {}).await.unwrap().into_inner().models.remove(0);
    assert!(status.last_error.contains("3/model.onnx"), "{}", status.last_error);
    let loaded: Vec<u64> = status.versions.iter().map(|v| v.version).collect();
    assert_eq!(loaded, vec![2], "latest-1 policy: only version 2 loaded");
    assert_eq!(status.versions[0].labels, vec!["stable".to_string()]);
    assert!(status.versions[0].warmup_rows > 0 && status.versions[0].batches > 0);

    // Removing the corrupt and the serving version directories falls back to version 1.
    std::fs::remove_dir_all(repo.join("3")).unwrap();
    std::fs::remove_dir_all(repo.join("2")).unwrap();
    common::wait_for("traffic back on version 1", async || seen("1") > v1_before + 20).await;

    let (versions, failures) = load.stop().await;
    assert!(failures.is_empty(), "{} failed requests during reloads, first: {:?}", failures.len(), failures.first());
    assert!(!versions.contains_key("3"), "the corrupt version never served");
    server.stop().await;
}

#[tokio::test]
async fn canary_routes_a_sticky_share_of_users_and_pins_work() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("ranking");
    let model = std::fs::read(common::root().join("models/ranking/1/model.onnx")).unwrap();
    install(&repo, 1, &model);
    install(&repo, 2, &model);
    std::fs::write(repo.join("model.yaml"), "version_policy: {latest: 2}\nlabels: {stable: 1}\n").unwrap();
    let config = common::demo_config(&format!(
        "[model]\nwatch = false\npoll_interval_ms = 0\n[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\n",
        repo.display()
    ));
    let server = common::start(config).await;
    let mut client = server.client().await;
    let mut admin = ModelAdminClient::new(server.admin_channel().await);
    let version_of =
        async |client: &mut augur::proto::prediction_client::PredictionClient<_>, user: &str, pin: &str| {
            let mut request = common::ranking_request(user, &["i1"]);
            request.model_version = pin.into();
            client.predict(request).await.map(|r| r.into_inner().model_version)
        };
    assert_eq!(version_of(&mut client, "u1", "").await.unwrap(), "1", "stable label pins version 1");

    let status = admin
        .set_canary(SetCanaryRequest { model: "ranking".into(), version: 2, weight: 0.3 })
        .await
        .unwrap()
        .into_inner();
    let weights: Vec<(u64, f64)> = status.versions.iter().map(|v| (v.version, v.traffic_weight)).collect();
    assert_eq!(weights, vec![(1, 0.7), (2, 0.3)]);
    let mut canary_users = 0;
    for u in 0..200 {
        let user = format!("user-{u}");
        let first = version_of(&mut client, &user, "").await.unwrap();
        assert_eq!(version_of(&mut client, &user, "").await.unwrap(), first, "routing is sticky per user");
        canary_users += usize::from(first == "2");
    }
    assert!((30..=90).contains(&canary_users), "30% canary gave {canary_users}/200 users");

    assert_eq!(version_of(&mut client, "u1", "2").await.unwrap(), "2");
    assert_eq!(version_of(&mut client, "u1", "stable").await.unwrap(), "1");
    let missing = version_of(&mut client, "u1", "9").await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(missing.message().contains("model_version") && missing.message().contains("`9`"), "{}", missing.message());

    let bad =
        admin.set_canary(SetCanaryRequest { model: "ranking".into(), version: 2, weight: 1.5 }).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let absent =
        admin.set_canary(SetCanaryRequest { model: "ranking".into(), version: 7, weight: 0.1 }).await.unwrap_err();
    assert_eq!(absent.code(), tonic::Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn admin_reload_picks_up_a_version_without_the_watcher() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("ranking");
    let model = std::fs::read(common::root().join("models/ranking/1/model.onnx")).unwrap();
    install(&repo, 1, &model);
    let config = common::demo_config(&format!(
        "[model]\nwatch = false\npoll_interval_ms = 0\n[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\n",
        repo.display()
    ));
    let server = common::start(config).await;
    let mut admin = ModelAdminClient::new(server.admin_channel().await);
    install(&repo, 4, &model);
    let listed = admin.list_models(ListModelsRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.models[0].versions[0].version, 1, "nothing reloads without the watcher or a Reload");
    let reloaded = admin.reload(augur::proto::ReloadRequest { model: "ranking".into() }).await.unwrap().into_inner();
    let versions: Vec<u64> = reloaded.models[0].versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![4]);
    assert_eq!(reloaded.models[0].unloads, 1);
    let unknown = admin.reload(augur::proto::ReloadRequest { model: "nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let response = server.client().await.predict(common::ranking_request("u1", &["i1"])).await.unwrap().into_inner();
    assert_eq!(response.model_version, "4");
    server.stop().await;
}
