//! The real binary and real signals: `augur serve` as a child process answers Predict, and on
//! SIGTERM drains in order and exits 0 with the steps logged.

use crate::common;
use crate::common::process::AugurProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_order_and_exits_zero() {
    common::require!(Ort);
    // Per-request lines are at debug, for the Prediction handler only.
    let augur = AugurProcess::launch().env("RUST_LOG", "info,augur::server::grpc=debug").start().await;

    let mut client = augur.client().await;
    let mut request = common::ranking_request("u42", &["i1", "i2"]);
    request.request_id = "req-log-1".into();
    let response = client.predict(request).await.unwrap().into_inner();
    assert_eq!(response.scores.len(), 2);
    let mut unknown = common::ranking_request("u42", &["i1"]);
    unknown.request_id = "req-log-2".into();
    unknown.scene = "nope".into();
    assert!(client.predict(unknown).await.is_err());

    augur.signal(libc::SIGTERM);
    let (status, log) = tokio::task::spawn_blocking(move || augur.wait_status()).await.unwrap();
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
