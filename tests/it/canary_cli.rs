//! `augur models rollout|decide|promote|rollback` against a running augur: fake models (no ONNX
//! Runtime), samples and quality on, a rollout policy whose decider never decides by itself
//! (min_impressions out of reach), so every decision here is the operator's. The library calls
//! (`augur::cli::served`) and the real binary read the same ListModels and drive the same
//! DecideCanary.

use std::path::Path;
use std::sync::Arc;

use augur::cli::served::{Admin, ServedError};
use augur::config::Config;
use augur::proto::{CanaryAction, ReportEventsRequest};
use serde_json::Value;

use crate::common::fake_model::{FakeLoader, fake_config};
use crate::common::process::cli;
use crate::common::samples::{event, request};
use crate::common::{self, TestServer};

fn publish(repo: &Path, version: u64) {
    let tmp = repo.join(format!(".tmp-{version}"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("model.onnx"), b"fake").unwrap();
    std::fs::rename(&tmp, repo.join(version.to_string())).unwrap();
}

fn config(repo: &Path, log: &Path) -> Config {
    let mut config = fake_config(repo, "");
    let samples = crate::common::samples::samples_config(log, "[samples.quality]\nbucket_s = 1\nbuckets = 60\n");
    config.samples = samples.samples;
    config.model.watch = true;
    config.model.poll_interval_ms = 200;
    config.scenes[0].rollout = Some(common::manual_rollout());
    config.validate().expect("the test config validates");
    config
}

fn admin_url(server: &TestServer) -> String {
    format!("http://{}", server.admin_addr)
}

/// `augur models <args> --admin-addr <server> --scene ranking`, which must succeed; its stdout.
fn run(server: &TestServer, args: &[&str]) -> String {
    let out = cli()
        .args(["models"])
        .args(args)
        .args(["--admin-addr", &admin_url(server), "--scene", "ranking"])
        .output()
        .expect("run augur");
    assert!(out.status.success(), "augur models {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_the_canary_and_an_operator_promotes_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("ranking_model");
    std::fs::create_dir_all(&repo).unwrap();
    publish(&repo, 1);
    let parts = augur::app::Parts { loader: Some(Arc::new(FakeLoader::default())), ..Default::default() };
    let server = common::start_with(config(&repo, &dir.path().join("log")), parts).await;
    let admin = Admin::connect(&admin_url(&server), None).await.unwrap();
    publish(&repo, 2);
    common::wait_for("v2 as canary", async || admin.rollout("ranking").await.unwrap().to_json()["canary_version"] == 2)
        .await;

    // Traffic to both arms, every candidate shown, one click per request: impressions and an
    // online CTR for each.
    let mut client = server.client().await;
    let mut events = Vec::new();
    for k in 0..40 {
        let r = request(k);
        client.predict(r.clone()).await.expect("predict");
        for c in &r.candidates {
            events.push(event(&r.request_id, &c.item_id, "impression"));
        }
        events.push(event(&r.request_id, &r.candidates[k % 5].item_id, "click"));
    }
    client.report_events(ReportEventsRequest { events }).await.expect("report");
    common::wait_for("impressions on both arms", async || {
        let json = admin.rollout("ranking").await.unwrap().to_json();
        json["versions"].as_array().unwrap().iter().all(|v| v["impressions"].as_u64().unwrap_or(0) > 0)
    })
    .await;

    // The table and the JSON from the real binary.
    let table = run(&server, &["rollout"]);
    eprintln!("{table}");
    let stable = table.lines().find(|l| l.starts_with("stable")).expect("stable line");
    let canary = table.lines().find(|l| l.starts_with("canary ")).expect("canary line");
    assert!(stable.split_whitespace().nth(1) == Some("1") && stable.contains("0.50"), "{stable}");
    assert!(canary.split_whitespace().nth(1) == Some("2") && canary.contains("0.50"), "{canary}");
    assert!(table.contains("last decision: v1 promote by bootstrap"), "{table}");
    assert!(table.contains("last look (this replica): v2 wait"), "{table}");
    let json: Value = serde_json::from_str(&run(&server, &["rollout", "--json"])).unwrap();
    assert_eq!((json["scene"].as_str(), json["model"].as_str()), (Some("ranking"), Some("ranking_model")));
    assert_eq!((json["stable_version"].as_u64(), json["canary_version"].as_u64()), (Some(1), Some(2)));
    assert_eq!(json["policy"]["min_impressions"], 1_000_000);
    let arms = json["versions"].as_array().unwrap();
    assert_eq!(arms.len(), 2, "{json}");
    let impressions: u64 = arms.iter().map(|a| a["impressions"].as_u64().unwrap()).sum();
    assert_eq!(impressions, 200, "every shown candidate counted once: {json}");
    for arm in arms {
        assert_eq!(arm["share"], 0.5, "{arm}");
        assert!(arm["ctr"].as_f64().unwrap() > 0.0 && arm["calibration"].is_f64(), "{arm}");
    }
    assert_eq!(json["last_decision"]["by"], "bootstrap");
    assert_eq!(json["last_evaluation"]["decision"], "wait");

    // Promote through the binary: v2 is stable, recorded as the operator's with the reason.
    let promoted: Value =
        serde_json::from_str(&run(&server, &["promote", "--reason", "looks right", "--json"])).unwrap();
    assert_eq!(promoted["last_decision"]["version"], 2, "{promoted}");
    assert_eq!(promoted["last_decision"]["decision"], "promote");
    assert_eq!(promoted["last_decision"]["by"], "operator");
    assert_eq!(promoted["last_decision"]["reason"], "looks right");
    common::wait_for("v2 stable", async || {
        let json = admin.rollout("ranking").await.unwrap().to_json();
        json["stable_version"] == 2 && json["canary_version"].is_null()
    })
    .await;
    let table = run(&server, &["rollout"]);
    assert!(table.contains("no canary under evaluation"), "{table}");

    // No canary now: promote/rollback must name the version.
    let refused = admin.decide("ranking", None, CanaryAction::Rollback, "").await.unwrap_err();
    assert!(matches!(refused, ServedError::NoCanary { .. }), "{refused}");
    let out =
        cli().args(["models", "rollback", "--admin-addr", &admin_url(&server), "--scene", "ranking"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--version"), "{}", String::from_utf8_lossy(&out.stderr));

    // `decide --action rollback --version 2`: back to v1.
    run(&server, &["decide", "--action", "rollback", "--version", "2", "--reason", "operator: back"]);
    common::wait_for("v1 stable again", async || {
        admin.rollout("ranking").await.unwrap().to_json()["stable_version"] == 1
    })
    .await;
    let json = admin.rollout("ranking").await.unwrap().to_json();
    assert_eq!(json["last_decision"]["decision"], "rollback", "{json}");

    // Bad input names the scene and what is served.
    let unknown = admin.rollout("nope").await.unwrap_err();
    assert_eq!(unknown.to_string(), "scene `nope` is not served there (served: ranking)");
    server.stop().await;
}
