//! Every metric name an operator's tooling queries is one augur exports: the PromQL of the alert
//! rules (`deploy/prometheus/alerts.yml`), of every Grafana panel (`deploy/grafana/augur.json`)
//! and the custom metric the Kubernetes HPA scales on. A rule or panel on a misspelt or renamed
//! metric is silently empty, and neither promtool nor Grafana can tell.

use std::collections::BTreeSet;

use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

use crate::common;
use crate::common::http::{families, scrape};
use crate::common::redis_server::{ITEM_CACHE, RedisServer, load_demo, redis_demo_config};

/// Prefixes of families that a feature off in the test config registers only when it is on.
/// Keep this minimal: every entry is a name the test cannot check.
const NOT_REGISTERED_HERE: [&str; 2] = [
    // Sample logging (`augur_samples_*`), off in the demo config; the dashboard selects the family
    // by this prefix rather than by name.
    "augur_samples_",
    // The feature changelog's writers register theirs with a feature stream (Kafka) writing it;
    // feature_history::tests checks the alert rules' names against them instead.
    "augur_feature_history_",
];

/// Sample names a family of `kind` adds to its name in the text exposition.
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total"],
        "histogram" => &["_bucket", "_sum", "_count"],
        "info" => &["_info"],
        _ => &[""],
    }
}

/// Identifiers in `expr` that name augur's metrics: `augur_*` and `process_*` (what a standard
/// process collector would export), never label names or values of another shape.
fn metric_tokens(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("augur_") || t.starts_with("process_"))
}

fn json_exprs<'a>(value: &'a Json, out: &mut Vec<&'a str>) {
    match value {
        Json::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Json::String(expr)) => out.push(expr),
                    _ => json_exprs(v, out),
                }
            }
        }
        Json::Array(items) => items.iter().for_each(|v| json_exprs(v, out)),
        _ => {}
    }
}

fn yaml(path: &str) -> Yaml {
    serde_yaml_ng::from_str(&std::fs::read_to_string(common::root().join(path)).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_dashboard_and_hpa_query_only_exported_metrics() {
    common::require!(Redis, Ort);
    // Redis with the local item cache: its families have series only when a cache is configured.
    let redis = RedisServer::start();
    let config = redis_demo_config(&[redis.url()], false, ITEM_CACHE);
    load_demo(&config).await;
    let server = common::start(config).await;
    let mut client = server.client().await;
    client.predict(common::ranking_request("u1", &["i1", "no-such-item"])).await.unwrap();
    let text = scrape(&server).await;
    server.stop().await;

    let mut exported: BTreeSet<String> = BTreeSet::new();
    for (family, kind) in families(&text) {
        exported.extend(suffixes(kind).iter().map(|suffix| format!("{family}{suffix}")));
    }
    // And whatever a sample line carries, in case a type has suffixes this test does not know.
    exported.extend(
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).map(str::to_owned),
    );
    assert!(exported.contains("augur_rpc_requests_total") && exported.contains("augur_batch_size_rows_bucket"));

    let mut queried: Vec<(String, String)> = Vec::new();
    let alerts = yaml("deploy/prometheus/alerts.yml");
    for rule in alerts["groups"].as_sequence().unwrap().iter().flat_map(|g| g["rules"].as_sequence().unwrap()) {
        let expr = rule["expr"].as_str().expect("every rule has an expr");
        queried.extend(
            metric_tokens(expr).map(|t| (t.to_owned(), format!("alerts.yml {}", rule["alert"].as_str().unwrap()))),
        );
    }
    let dashboard: Json =
        serde_json::from_str(&std::fs::read_to_string(common::root().join("deploy/grafana/augur.json")).unwrap())
            .unwrap();
    let mut exprs = Vec::new();
    json_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard's panels query augur ({} exprs)", exprs.len());
    queried.extend(exprs.iter().flat_map(|e| metric_tokens(e)).map(|t| (t.to_owned(), "augur.json".to_owned())));
    // The HPA's pod metric comes through prometheus-adapter, whose usual rule serves the rate of
    // `X_total` as `X_per_second`: the series behind it must be exported.
    let hpa = yaml("deploy/k8s/hpa.yaml");
    for metric in hpa["spec"]["metrics"].as_sequence().unwrap() {
        if let Some(name) = metric["pods"]["metric"]["name"].as_str() {
            let series = name.strip_suffix("_per_second").map_or(name.to_owned(), |base| format!("{base}_total"));
            queried.push((series, "hpa.yaml".to_owned()));
        }
    }

    let unknown: Vec<&(String, String)> = queried
        .iter()
        .filter(|(name, _)| !exported.contains(name))
        .filter(|(name, _)| !NOT_REGISTERED_HERE.iter().any(|prefix| name.starts_with(prefix)))
        .collect();
    assert!(unknown.is_empty(), "queried but not exported: {unknown:?}\nexported: {exported:?}");
    let distinct: BTreeSet<&str> = queried.iter().map(|(name, _)| name.as_str()).collect();
    assert!(distinct.len() >= 15, "the checks cover augur's metrics: {distinct:?}");
    assert!(queried.iter().any(|(_, from)| from == "hpa.yaml"), "the HPA's custom metric was checked");
}

#[test]
fn tokens_are_metric_names_only() {
    let expr = r#"sum by (job) (rate(augur_rpc_requests_total{code!="OK",job="augur"}[5m])) / process_open_fds"#;
    assert_eq!(metric_tokens(expr).collect::<Vec<_>>(), ["augur_rpc_requests_total", "process_open_fds"]);
    assert_eq!(metric_tokens(r#"{__name__=~"augur_samples_.+"}"#).collect::<Vec<_>>(), ["augur_samples_"]);
}
