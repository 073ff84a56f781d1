//! Online quality per version against an offline computation on the same joined samples: a real
//! augur (demo model, sample logging on) serves Predict, every candidate is impressed and clicked
//! by a known rule (probability = the served score, seeded), ReportEvents joins them; once every
//! sample is emitted, `/metrics` and `ModelAdmin.ListModels` must agree with what the sample log
//! holds: counts exactly, CTR / mean score / calibration / log loss to float rounding, AUC within
//! its reported bound and within the 0.005 docs/quality.md states; promtool accepts the families.

use augur::proto::model_admin_client::ModelAdminClient;
use augur::proto::{ListModelsRequest, ReportEventsRequest, log_record};
use augur::quality::estimator::{exact_auc, log_loss};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common;
use crate::common::http::{get, scrape};
use crate::common::samples::{EMITTED, event, metric, read_log, request, samples_config, wait_for};

const STATED_AUC_ERROR: f64 = 0.005;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[tokio::test]
async fn online_quality_matches_the_offline_computation_on_the_logged_samples() {
    common::require!(Ort, Promtool);
    let dir = tempfile::tempdir().unwrap();
    let config = samples_config(dir.path(), "[samples.quality]\nbucket_s = 60\nbuckets = 10\n");
    let server = common::start(config).await;
    let mut client = server.client().await;
    let n = 300;
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    let mut events = Vec::new();
    for k in 0..n {
        let r = request(k);
        let response = client.predict(r.clone()).await.expect("predict").into_inner();
        for (c, score) in r.candidates.iter().zip(&response.scores) {
            events.push(event(&r.request_id, &c.item_id, "impression"));
            // The known rule: clicked with the probability the model served (scores spread
            // across the demo model's range, so both classes fill many bins).
            if rng.random::<f32>() < *score {
                events.push(event(&r.request_id, &c.item_id, "click"));
            }
        }
    }
    let rows = n * 5;
    wait_for(&server.metrics, "augur_samples_pending", n as f64).await;
    for chunk in events.chunks(400) {
        client.report_events(ReportEventsRequest { events: chunk.to_vec() }).await.expect("report");
    }
    wait_for(&server.metrics, EMITTED, rows as f64).await;
    let exposition = scrape(&server).await;
    // What a plain scraper gets, through Prometheus's own linter.
    let (_, _, plain) = get(server.admin_http_addr.unwrap(), "/metrics").await;
    assert!(plain.contains("augur_quality_auc{"), "{plain}");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), plain.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}");
    let listed = ModelAdminClient::new(server.admin_channel().await)
        .list_models(ListModelsRequest {})
        .await
        .expect("list models")
        .into_inner();
    server.stop().await;

    // Offline: the revision-0 samples the log holds, as a consumer reads them.
    let samples: Vec<augur::proto::Sample> = read_log(dir.path())
        .into_iter()
        .filter_map(|r| match r.record {
            Some(log_record::Record::Sample(s)) if s.revision == 0 && !s.labels.is_empty() => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(samples.len(), rows);
    let version = samples[0].model_version.clone();
    assert!(samples.iter().all(|s| s.model_version == version && s.scene == "ranking"));
    let rows_of: Vec<(f32, bool)> =
        samples.iter().map(|s| (s.score, s.labels.iter().any(|l| l.r#type == "click"))).collect();
    let m = rows as f64;
    let positives = rows_of.iter().filter(|r| r.1).count() as f64;
    let mean_score = rows_of.iter().map(|r| f64::from(r.0)).sum::<f64>() / m;
    let loss = rows_of.iter().map(|&(s, y)| log_loss(f64::from(s), y)).sum::<f64>() / m;
    let exact = exact_auc(&rows_of).expect("both classes");
    assert!(positives > 20.0 && positives < m - 20.0, "{positives} clicks of {m}: both classes well filled");

    // /metrics.
    let labels = format!("{{scene=\"ranking\",model=\"ranking\",version=\"{version}\"}}");
    let get = |name: &str| metric(&exposition, &format!("augur_quality_{name}{labels} "));
    assert_eq!(get("window_impressions"), m, "{exposition}");
    assert_eq!(get("window_positives"), positives);
    assert_eq!(get("impressions_total"), m);
    assert_eq!(
        metric(
            &exposition,
            &format!(
                "augur_quality_events_total{{scene=\"ranking\",model=\"ranking\",version=\"{version}\",type=\"click\"}} "
            )
        ),
        positives
    );
    assert!(close(get("ctr"), positives / m), "ctr {} vs {}", get("ctr"), positives / m);
    assert!(close(get("mean_score"), mean_score), "mean score {} vs {mean_score}", get("mean_score"));
    assert!(close(get("calibration"), mean_score / (positives / m)));
    assert!(close(get("calibration_difference"), mean_score - positives / m));
    assert!(close(get("log_loss"), loss), "log loss {} vs {loss}", get("log_loss"));
    let (auc, bound) = (get("auc"), get("auc_error_bound"));
    let error = (auc - exact).abs();
    eprintln!("online AUC {auc:.6} vs exact {exact:.6}: error {error:.2e}, reported bound {bound:.2e}; {m} rows");
    assert!(error <= bound + 1e-12, "error {error} above the reported bound {bound}");
    assert!(error <= STATED_AUC_ERROR, "error {error}");

    // ModelAdmin shows the same numbers.
    let model = listed.models.iter().find(|m| m.scene == "ranking").expect("ranking listed");
    let q = model.quality.iter().find(|q| q.version == version).expect("the version's quality");
    assert_eq!((q.impressions, q.positives as f64, q.positive_event.as_str()), (rows as u64, positives, "click"));
    assert_eq!(q.auc, Some(auc));
    assert_eq!(q.log_loss, Some(get("log_loss")));
    assert_eq!(q.events_total.get("impression").copied(), Some(rows as u64));
    assert!(q.window_end_ms - q.window_start_ms <= 600_000);
}
