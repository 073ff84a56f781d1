//! The admin HTTP port: `/metrics` shows what a known workload implies (plus process metrics),
//! `/healthz` answers while the process runs, `/readyz` follows the gRPC health (503 from
//! shutdown step 1, while in-flight calls still drain and `/metrics` stays scrapeable), and any
//! other path is 404.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use augur::app::Parts;

use crate::common;
use crate::common::fake_model::{FakeLoader, fake_config, fake_repository};
use crate::common::http::{OPENMETRICS_ACCEPT, get, get_with, sample};

#[tokio::test]
async fn metrics_health_and_readiness_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let loader = FakeLoader::default();
    let parts = Parts { loader: Some(Arc::new(loader.clone())), ..Default::default() };
    let server = common::start_with(fake_config(&fake_repository(dir.path()), ""), parts).await;
    let admin = server.admin_http_addr.expect("admin port enabled by default");
    assert!(admin.ip().is_loopback() && admin.port() != 0);

    let mut client = server.client().await;
    for i in 0..3 {
        client.predict(common::ranking_request(&format!("u{i}"), &["i1", "i2"])).await.unwrap();
    }

    let (status, head, text) = get_with(admin, "/metrics", OPENMETRICS_ACCEPT).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text; version=1.0.0"), "{head}");
    assert_eq!(
        sample(&text, "augur_rpc_requests_total{method=\"/augur.v1.Prediction/Predict\",code=\"OK\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "augur_stage_duration_seconds_count{scene=\"ranking\",stage=\"total\"}"),
        Some(3.0),
        "{text}"
    );
    assert!(text.contains("augur_stage_duration_seconds_bucket{"), "{text}");
    assert!(sample(&text, "augur_process_resident_memory_bytes").is_some_and(|v| v > 0.0), "{text}");
    assert!(sample(&text, "augur_process_open_fds").is_some_and(|v| v > 0.0), "{text}");
    assert!(sample(&text, "augur_process_start_time_seconds").is_some_and(|v| v > 1.0e9), "{text}");
    assert!(text.contains("augur_process_cpu_seconds_total "), "{text}");
    assert!(text.contains(&format!("augur_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.ends_with("# EOF\n"), "a complete exposition");
    println!("/metrics: {} bytes, {} lines", text.len(), text.lines().count());

    // A scraper that does not ask for OpenMetrics gets the 0.0.4 text format, the same samples
    // with each counter's help and type under its samples' name.
    let (status, head, plain) = get(admin, "/metrics").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(plain.contains("# TYPE augur_rpc_requests_total counter\n"), "{plain}");
    assert!(!plain.contains("# EOF"), "{plain}");
    let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(samples(&plain), samples(&text));

    assert_eq!(get(admin, "/healthz").await.0, 200);
    assert_eq!(get(admin, "/readyz").await.0, 200);
    assert!(server.readiness.get());
    assert_eq!(get(admin, "/nope").await.0, 404);
    assert_eq!(get(admin, "/metrics/extra").await.0, 404);

    // Hold one call in flight so the drain (step 4) waits for it.
    loader.controls.close();
    let mut held = server.client().await;
    let call = tokio::spawn(async move { held.predict(common::ranking_request("u9", &["i1"])).await });
    while loader.controls.waiting.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.request_shutdown().await;
    while server.readiness.get() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Not ready, still alive, still scrapeable while the call drains.
    assert_eq!(get(admin, "/readyz").await.0, 503);
    assert_eq!(get(admin, "/healthz").await.0, 200);
    let (status, _, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "augur_rpc_in_flight"), Some(1.0), "{text}");

    loader.controls.open();
    call.await.unwrap().expect("the held call finishes during the drain");
    server.join().await.expect("clean shutdown");
    assert!(tokio::net::TcpStream::connect(admin).await.is_err(), "the admin port closes with the app");
}

#[tokio::test]
async fn the_admin_port_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let loader = FakeLoader::default();
    let parts = Parts { loader: Some(Arc::new(loader.clone())), ..Default::default() };
    let config = fake_config(&fake_repository(dir.path()), "[admin]\nenabled = false\n");
    let server = common::start_with(config, parts).await;
    assert_eq!(server.admin_http_addr, None);
    server.stop().await;
}

/// `promtool check metrics` (Prometheus's own linter) on a live scrape in the format a plain
/// scraper gets: no complaint at all.
#[tokio::test]
async fn promtool_finds_nothing_to_complain_about_in_a_live_scrape() {
    common::require!(Promtool);
    let dir = tempfile::tempdir().unwrap();
    let parts = Parts { loader: Some(Arc::new(FakeLoader::default())), ..Default::default() };
    let server = common::start_with(fake_config(&fake_repository(dir.path()), ""), parts).await;
    let mut client = server.client().await;
    client.predict(common::ranking_request("u1", &["i1", "i2"])).await.unwrap();
    let (status, _, text) = get(server.admin_http_addr.unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
    server.stop().await;
}
