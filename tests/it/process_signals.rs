//! The real binary and real signals: `augur serve` as a child process answers Predict, and on
//! SIGTERM drains in order and exits 0 with the steps logged.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_order_and_exits_zero() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_augur"))
        .arg("serve")
        .current_dir(common::root())
        .env("AUGUR__SERVER__LISTEN", "127.0.0.1:0")
        .env("AUGUR__ADMIN__LISTEN", "127.0.0.1:0")
        .env("AUGUR__ADMIN__GRPC_LISTEN", "127.0.0.1:0")
        // Per-request lines are at debug, for the Prediction handler only.
        .env("RUST_LOG", "info,augur::server::grpc=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn augur serve");
    // The log line `serving addr=Some(127.0.0.1:PORT)` names the port the kernel picked.
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines_rx.recv().await {
            log.push(line.clone());
            if let Some(rest) = line.split("addr=Some(").nth(1) {
                return rest.split(')').next().unwrap().to_owned();
            }
        }
        panic!("augur exited before serving: {log:#?}");
    })
    .await
    .expect("augur did not start serving");

    let mut client =
        augur::proto::prediction_client::PredictionClient::connect(format!("http://{addr}")).await.expect("connect");
    let mut request = common::ranking_request("u42", &["i1", "i2"]);
    request.request_id = "req-log-1".into();
    let response = client.predict(request).await.unwrap().into_inner();
    assert_eq!(response.scores.len(), 2);
    let mut unknown = common::ranking_request("u42", &["i1"]);
    unknown.request_id = "req-log-2".into();
    unknown.scene = "nope".into();
    assert!(client.predict(unknown).await.is_err());

    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    // The pipe closed with the exit: the reader thread ends and the channel with it.
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines_rx.recv().await {
            log.push(line);
        }
    })
    .await
    .expect("stderr reader never ended");
    assert!(status.success(), "exit {status:?}: {log:#?}");
    let text = log.join("\n");
    let steps: Vec<usize> =
        ["SIGTERM received", "health NOT_SERVING", "stop accepting", "batchers flush", "shutdown complete"]
            .iter()
            .map(|step| text.find(step).unwrap_or_else(|| panic!("`{step}` not logged: {text}")))
            .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps out of order: {text}");
    // One line per request, failures too, each with its request id.
    let lines = |id: &str| text.lines().filter(|l| l.contains(id) && l.contains("predict")).count();
    assert_eq!(lines("req-log-1"), 1, "{text}");
    assert_eq!(lines("req-log-2"), 1, "{text}");
}
