//! The discovering client's resolver against a real etcd: it follows PUT and DELETE under
//! `<service>/` the way gRPC-Go's resolver does, ignores other prefixes and values that are not
//! the naming JSON, and picks the watch up again after etcd is killed and restarted. Also the
//! static list, against a real (fake-model) augur; `augur predict --discover` and the load
//! generator's discovering mode.

use std::time::Duration;

use augur::client::{ClientError, PredictionClient};

use crate::common;
use crate::common::etcd_server::EtcdServer;
use crate::common::fake_model::{FakeLoader, start_fake};

const HANG: Duration = Duration::from_secs(60);

const SERVICE: &str = "augur-disc";

fn value(addr: &str) -> String {
    format!(r#"{{"Op":0,"Addr":"{addr}","Metadata":null}}"#)
}

async fn wait_endpoints(client: &PredictionClient, want: &[&str]) {
    tokio::time::timeout(HANG, async {
        while client.endpoints() != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("client endpoints {:?}, expected {want:?}", client.endpoints()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_resolver_follows_put_and_delete() {
    common::require!(Etcd);
    let mut etcd = EtcdServer::start().await;
    let mut kv = etcd.client().await;
    // Present before the client starts: found by the initial Get.
    kv.put(format!("{SERVICE}/10.0.0.1:1"), value("10.0.0.1:1"), None).await.unwrap();
    // Another service whose name extends this one, and a key that is not a naming value.
    kv.put(format!("{SERVICE}-other/10.0.0.9:9"), value("10.0.0.9:9"), None).await.unwrap();
    kv.put(format!("{SERVICE}/garbage"), "not json", None).await.unwrap();

    let client = PredictionClient::discover(&format!("etcd://127.0.0.1:{}/{SERVICE}", etcd.client_port)).unwrap();
    wait_endpoints(&client, &["10.0.0.1:1"]).await;

    // Watched: PUT adds, DELETE removes.
    kv.put(format!("{SERVICE}/10.0.0.2:2"), value("10.0.0.2:2"), None).await.unwrap();
    wait_endpoints(&client, &["10.0.0.1:1", "10.0.0.2:2"]).await;
    kv.delete(format!("{SERVICE}/10.0.0.1:1"), None).await.unwrap();
    wait_endpoints(&client, &["10.0.0.2:2"]).await;

    // etcd killed: the client keeps what it knew; restarted: the watch resumes, and a change
    // made while it was reconnecting is not lost.
    etcd.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.endpoints(), ["10.0.0.2:2"]);
    etcd.spawn().await;
    let mut kv = etcd.client().await;
    kv.put(format!("{SERVICE}/10.0.0.3:3"), value("10.0.0.3:3"), None).await.unwrap();
    kv.delete(format!("{SERVICE}/10.0.0.2:2"), None).await.unwrap();
    wait_endpoints(&client, &["10.0.0.3:3"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_list_reaches_the_server_and_bad_targets_are_typed_errors() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "").await;
    let client = PredictionClient::discover(&server.addr.to_string()).unwrap();
    client.wait_for_endpoints(HANG).await.unwrap();
    let response = tokio::time::timeout(HANG, client.predict(common::ranking_request("u1", &["i1", "i2", "i3"])))
        .await
        .expect("hung")
        .expect("predict");
    assert_eq!(response.scores.len(), 3);

    let e = PredictionClient::discover("dns://somewhere:53").unwrap_err();
    assert!(matches!(e, ClientError::Target { .. }), "{e}");
    assert!(e.to_string().contains("dns://somewhere:53"), "{e}");
    // An invalid request is not retried and keeps its status.
    let mut bad = common::ranking_request("u1", &["i1"]);
    bad.scene = "no-such-scene".into();
    let e = client.predict(bad).await.unwrap_err();
    assert_ne!(e.status().map(tonic::Status::code), Some(tonic::Code::Unavailable), "{e}");
    assert!(e.status().is_some(), "{e}");

    // `augur bench --discover`: the load generator over the balanced channel, client-side
    // numbers only (the ModelAdmin stages belong to one instance).
    let load = augur::cli::loadgen::LoadConfig {
        addr: String::new(),
        admin_addr: String::new(),
        discover: Some(server.addr.to_string()),
        scene: "ranking".into(),
        mode: augur::cli::loadgen::Mode::Closed { concurrency: 4 },
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(50),
        candidates: 5,
        users: 100,
        items: 100,
        zipf: 1.1,
        seed: 1,
        distinct: augur::cli::loadgen::DISTINCT,
        connections: 1,
        timeout: Some(Duration::from_secs(10)),
    };
    let report = tokio::time::timeout(HANG, augur::cli::loadgen::run(&load)).await.expect("hung").expect("load");
    assert!(report.ok > 0 && report.errors.is_empty(), "{report}");
    assert!(report.server_stages.is_empty(), "{report}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn augur_predict_discovers_through_etcd() {
    common::require!(Etcd);
    let etcd = EtcdServer::start().await;
    let loader = FakeLoader::default();
    let toml = format!(
        "[registry]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nservices = [\"{SERVICE}\"]\nlease_ttl_s = 30\n",
        etcd.endpoint()
    );
    let (_dir, server) = start_fake(&loader, &toml).await;
    let target = format!("etcd://127.0.0.1:{}/{SERVICE}", etcd.client_port);
    let augur = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || common::process::cli().args(&args).output().expect("run augur"))
    };
    let out = tokio::time::timeout(
        HANG,
        augur(&["predict", "--discover", &target, "--user", "u1", "--items", "i1,i2", "--wait", "20"]),
    )
    .await
    .expect("augur predict hung")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("i1") && stdout.contains("i2") && stdout.contains("p(click)"), "{stdout}");
    assert!(loader.controls.runs.load(std::sync::atomic::Ordering::SeqCst) > 0, "served by the registered instance");

    // --discover and --addr exclude each other.
    let out = augur(&["predict", "--discover", &target, "--addr", "http://127.0.0.1:1", "--user", "u", "--items", "i"])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"), "{out:?}");

    server.stop().await;
}
