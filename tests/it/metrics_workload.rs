//! A known workload and one scrape of `/metrics`: requests by status, candidates scored,
//! fallbacks by feature and reason, and batch rows equal exactly what the workload implies. How
//! rows group into model runs depends on timing, so the run count is only bounded (at least one,
//! at most one per call) and checked against the model's own count of runs.
//!
//! Warm-up runs go through the batcher before the server takes traffic, so every number is the
//! difference between a scrape before and one after the workload.

use std::sync::atomic::Ordering;

use crate::common;
use crate::common::fake_model::{FakeLoader, start_fake};
use crate::common::http::{sample, scrape};

const PREDICT: &str = "/augur.v1.Prediction/Predict";

/// The item-table features of `features/ranking.yaml` (its `item.$key` feature `item_id` is the
/// request's own id, never missing): an unknown item serves each of them from its default.
const ITEM_FEATURES: [&str; 5] = ["item_category", "item_brand", "item_tags", "item_price_bucket", "item_price"];

#[tokio::test]
async fn scraped_counters_equal_what_the_workload_implies() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "").await;
    let before = scrape(&server).await;
    let runs_before = loader.controls.runs.load(Ordering::SeqCst);

    // Five calls with 1..=5 candidates; the 2nd and 4th end with an item the store lacks.
    let mut client = server.client().await;
    let catalogue = ["i1", "i2", "i3", "i4", "i5"];
    let (mut calls, mut candidates, mut ghosts) = (0, 0, 0);
    for n in 1..=5 {
        let mut items: Vec<&str> = catalogue[..n].to_vec();
        if n % 2 == 0 {
            items[n - 1] = "no-such-item";
            ghosts += 1;
        }
        let response = client.predict(common::ranking_request("u1", &items)).await.unwrap().into_inner();
        assert_eq!(response.scores.len(), n);
        calls += 1;
        candidates += n;
    }
    // Refused before it reaches the path: counted as an RPC, not as candidates or rows.
    let invalid = client.predict(common::ranking_request("u1", &[])).await.expect_err("no candidates");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    let after = scrape(&server).await;
    let delta = |series: &str| {
        let now = sample(&after, series).unwrap_or_else(|| panic!("{series} missing: {after}"));
        now - sample(&before, series).unwrap_or(0.0)
    };
    let requests = |code: &str| format!("augur_rpc_requests_total{{method=\"{PREDICT}\",code=\"{code}\"}}");
    assert_eq!(delta(&requests("OK")), calls as f64);
    assert_eq!(delta(&requests("INVALID_ARGUMENT")), 1.0);
    assert_eq!(delta("augur_stage_duration_seconds_count{scene=\"ranking\",stage=\"total\"}"), calls as f64);
    assert_eq!(delta("augur_candidates_scored_total{scene=\"ranking\"}"), candidates as f64);

    // One row per ghost for each item feature, and no other fallback.
    for feature in ITEM_FEATURES {
        let series =
            format!("augur_feature_fallbacks_total{{scene=\"ranking\",feature=\"{feature}\",reason=\"missing_row\"}}");
        assert_eq!(delta(&series), f64::from(ghosts), "{feature}");
    }
    let all_fallbacks = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("augur_feature_fallbacks_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(all_fallbacks(&after) - all_fallbacks(&before), f64::from(ghosts) * ITEM_FEATURES.len() as f64);

    // Every scored candidate is one batch row, however the rows were grouped into runs.
    let version = "model=\"fake_ranking\",version=\"1\"";
    assert_eq!(delta(&format!("augur_batch_rows_total{{{version}}}")), candidates as f64);
    assert_eq!(delta("augur_batch_size_rows_sum{model=\"fake_ranking\"}"), candidates as f64);
    let runs = delta(&format!("augur_batch_runs_total{{{version}}}"));
    assert!((1.0..=calls as f64).contains(&runs), "{runs} runs for {calls} calls");
    assert_eq!(delta("augur_batch_size_rows_count{model=\"fake_ranking\"}"), runs);
    assert_eq!((loader.controls.runs.load(Ordering::SeqCst) - runs_before) as f64, runs, "the model saw each run");
    assert_eq!(delta(&format!("augur_batch_rejected_total{{{version}}}")), 0.0);
    server.stop().await;
}
