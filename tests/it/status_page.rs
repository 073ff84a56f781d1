//! The status page on the admin HTTP port, after a known workload on the bundled demo model:
//! the scene with its model version and traffic share, the Predict calls it answered with a
//! latency, the batch-size distribution, the fallback the unknown item caused, and a sample
//! pipeline section that agrees with what `/metrics` declares.

use crate::common;
use crate::common::http::{families, get, scrape};

#[tokio::test]
async fn the_status_page_shows_scenes_traffic_batches_and_fallbacks() {
    common::require!(Ort);
    let server = common::start(common::demo_config("[model]\nwatch = false\npoll_interval_ms = 0\n")).await;
    let admin = server.admin_http_addr.expect("admin HTTP port enabled by default");
    let mut client = server.client().await;
    for items in [&["i1", "i2"][..], &["i3"], &["i4", "i5", "i6"], &["i7", "no-such-item"]] {
        client.predict(common::ranking_request("u1", items)).await.unwrap();
    }

    let (status, head, page) = get(admin, "/").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/html; charset=utf-8"), "{head}");
    assert!(page.starts_with("<!doctype html>") && page.ends_with("</html>\n"), "{page}");
    assert_eq!(get(admin, "/status").await.0, 200, "also served at /status");

    // Scene ranking, repository ranking, version 1, stable, all traffic.
    let version_row =
        "<tr><td>ranking</td><td>ranking</td><td class=\"n\">1</td><td>stable</td><td class=\"n\">100%</td>";
    assert!(page.contains(version_row), "{page}");
    assert!(page.contains("<tr><td>search_suggest</td><td>search_suggest</td>"), "both scenes: {page}");

    // Four calls and eight candidates, with latencies above zero.
    let traffic = page
        .lines()
        .find(|l| l.starts_with("<tr><td>ranking</td><td class=\"n\">4</td>"))
        .unwrap_or_else(|| panic!("a traffic row with 4 ranking calls: {page}"));
    assert!(traffic.contains("<td class=\"n\">8</td>"), "{traffic}");
    let latencies: Vec<f64> = traffic
        .split("<td class=\"n\">")
        .filter_map(|cell| cell.strip_suffix(" ms</td>").or_else(|| cell.strip_suffix(" ms</td></tr>")))
        .map(|ms| ms.parse().unwrap())
        .collect();
    assert_eq!(latencies.len(), 2, "p50 and p99: {traffic}");
    assert!(latencies[0] > 0.0 && latencies[1] >= latencies[0], "{traffic}");
    assert!(page.contains("<tr><td>OK</td><td class=\"n\">4</td></tr>"), "Predict calls by status: {page}");

    // The batch sizes of the ranking model, with the runs of its buckets shown as bars.
    let batches = &page[page.find("<h2>Batch size").expect("batch-size section")..];
    assert!(batches.contains("<tr><th colspan=\"3\">ranking: "), "{batches}");
    assert!(batches.contains("class=\"bar\""), "{batches}");
    // The calls came one at a time, so the two 2-candidate calls were runs of two rows.
    assert!(batches.contains("<tr><td>1 &lt; n &le; 2</td>"), "{batches}");

    // The unknown item: one row of item_category from its default.
    let fallback = "<tr><td>ranking</td><td>item_category</td><td>missing_row</td><td class=\"n\">1</td></tr>";
    assert!(page.contains(fallback), "{page}");

    // The sample pipeline lists what the registry declares under augur_samples_, or says off.
    let metrics = scrape(&server).await;
    let declared: Vec<&str> =
        families(&metrics).map(|(name, _)| name).filter(|name| name.starts_with("augur_samples_")).collect();
    let pipeline = &page[page.find("<h2>Sample pipeline</h2>").expect("sample pipeline section")..];
    assert_eq!(pipeline.contains("Sample logging off"), declared.is_empty(), "{pipeline}");
    for family in declared {
        assert!(pipeline.contains(family), "{family} missing: {pipeline}");
    }
    server.stop().await;
}
