//! Reflection as a new user meets it: a Python client built on `grpcio-reflection` (which speaks
//! only v1alpha) lists augur's services and calls Predict knowing nothing but what reflection
//! told it; the scores equal what the Rust client gets for the same request.

use std::process::Command;

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_reflection_client_lists_services_and_calls_predict() {
    common::require!(Python, Ort);
    let server = common::start(common::demo_config("")).await;
    let addr = server.addr.to_string();
    let script = common::root().join("tests/it/python/reflection_client.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(common::venv_python()).arg(script).arg(addr).output().expect("run the python client")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    let services: Vec<&str> = report["services"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for expected in ["augur.v1.Prediction", "grpc.health.v1.Health"] {
        assert!(services.contains(&expected), "{expected} not listed: {services:?}");
    }
    // The public port advertises only what it serves: ModelAdmin lives on the admin port.
    assert!(!services.contains(&"augur.v1.ModelAdmin"), "ModelAdmin listed on the public port: {services:?}");
    let scores: Vec<f32> = report["scores"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap() as f32).collect();
    let mut client = server.client().await;
    let direct = client.predict(common::ranking_request("u42", &["i1", "i2", "i3"])).await.unwrap().into_inner();
    assert_eq!(scores, direct.scores, "reflection-built request must score like the typed one");
    assert_eq!(report["model"], "ranking");
    server.stop().await;
}
