//! Drift against the training reference published with a version: the demo ranking model and
//! the reference its trainer's code wrote (models/ranking/1/reference.json, from the same export
//! the model was trained on) serve traffic drawn like the training impressions (users uniform,
//! items by the demo's Zipf popularity, hour and device uniform), except that every candidate
//! carries a request-time `price` from far above the catalogue's range. The two features made
//! from the price (`item_price`, dense, and `item_price_bucket`, ids) must be flagged (PSI above
//! 0.25) on /metrics and the status page; every other feature stays below. A version published
//! without a reference serves and says so; `models publish` carries the reference beside the
//! model and refuses one augur cannot read.

use std::collections::BTreeMap;
use std::sync::Arc;

use augur::cli::demo::{DEVICES, DemoSpec, draw_item, popularity};
use augur::cli::models::{self, ModelsError, Repo};
use augur::drift::reference::REFERENCE_FILE;
use augur::proto::{Candidate, FeatureValue, PredictRequest, feature_value::Kind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common;
use crate::common::fake_model::{FakeLoader, fake_config, fake_repository};
use crate::common::http::{get, scrape};

const THRESHOLD: f64 = 0.25;

fn value(kind: Kind) -> FeatureValue {
    FeatureValue { kind: Some(kind) }
}

/// One request like the training impressions; with `shifted_price`, every candidate's price is
/// drawn from [400, 2000) (the catalogue's prices are below 200).
fn request(rng: &mut ChaCha8Rng, shifted_price: bool) -> PredictRequest {
    let spec = DemoSpec::default();
    let zipf = popularity(&spec);
    let candidates = (0..4)
        .map(|_| {
            let item = draw_item(&zipf, spec.items, rng);
            let mut features = std::collections::HashMap::new();
            if shifted_price {
                features.insert("price".to_owned(), value(Kind::FloatValue(rng.random_range(400.0..2000.0))));
            }
            Candidate { item_id: format!("i{item}"), features }
        })
        .collect();
    PredictRequest {
        request_id: String::new(),
        scene: "ranking".into(),
        user_id: format!("u{}", rng.random_range(0..spec.users)),
        context: [
            ("hour".to_owned(), value(Kind::IntValue(rng.random_range(0..24)))),
            ("device".to_owned(), value(Kind::StringValue(DEVICES[rng.random_range(0..DEVICES.len())].to_owned()))),
        ]
        .into(),
        candidates,
        model_version: String::new(),
    }
}

/// `augur_drift_psi` per feature of `version` in an exposition.
fn psi_by_feature(text: &str, version: &str) -> BTreeMap<String, f64> {
    let prefix = format!("augur_drift_psi{{scene=\"ranking\",model=\"ranking\",version=\"{version}\",feature=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (feature, value) = rest.split_once("\"} ")?;
            Some((feature.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn a_shifted_feature_is_flagged_and_the_others_stay_below() {
    common::require!(Ort);
    let config = common::demo_config("[drift]\nsample_every = 1\nmin_rows = 1000\n");
    let server = common::start(config).await;
    let mut client = server.client().await;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let requests = 600;
    for _ in 0..requests {
        client.predict(request(&mut rng, true)).await.expect("predict");
    }
    let text = scrape(&server).await;
    let (status, _, page) = get(server.admin_http_addr.unwrap(), "/status").await;
    server.stop().await;

    let rows = format!("augur_drift_window_rows{{scene=\"ranking\",model=\"ranking\",version=\"1\"}} {}", requests * 4);
    assert!(text.contains(&rows), "every row observed: {text}");
    assert!(text.contains("augur_drift_reference{scene=\"ranking\",model=\"ranking\",version=\"1\"} 1"));
    let psi = psi_by_feature(&text, "1");
    eprintln!("PSI per feature: {psi:?}");
    let spec = augur::assemble::Spec::load(&common::root().join("features/ranking.yaml")).unwrap();
    assert_eq!(psi.len(), spec.features.len(), "a PSI for every feature: {psi:?}");
    let shifted = ["item_price", "item_price_bucket"];
    for (feature, value) in &psi {
        if shifted.contains(&feature.as_str()) {
            assert!(*value > THRESHOLD, "{feature}: PSI {value} not above {THRESHOLD}");
        } else {
            assert!(*value < THRESHOLD, "{feature} was not shifted: PSI {value}");
        }
    }
    // The served fallback rate beside the training one: every row had its price from the request.
    assert!(text.contains(
        "augur_drift_fallback_rate{scene=\"ranking\",model=\"ranking\",version=\"1\",feature=\"item_price\"} 0.0"
    ));
    // The status page shows the same, flagged.
    assert_eq!(status, 200);
    let section = &page[page.find("<h2>Drift per version</h2>").expect("drift section")..];
    for feature in shifted {
        let row = section.lines().find(|l| l.contains(&format!("<td>{feature}</td>"))).expect("feature row");
        assert!(row.contains("<strong>drift</strong>"), "{row}");
    }
    let hour = section.lines().find(|l| l.contains("<td>hour</td>")).expect("hour row");
    assert!(!hour.contains("<strong>drift</strong>"), "{hour}");
}

#[tokio::test]
async fn unshifted_traffic_flags_nothing() {
    common::require!(Ort);
    let config = common::demo_config("[drift]\nsample_every = 1\nmin_rows = 1000\n");
    let server = common::start(config).await;
    let mut client = server.client().await;
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for _ in 0..600 {
        client.predict(request(&mut rng, false)).await.expect("predict");
    }
    let text = scrape(&server).await;
    server.stop().await;
    let psi = psi_by_feature(&text, "1");
    eprintln!("PSI per feature: {psi:?}");
    assert_eq!(psi.len(), 13, "{psi:?}");
    assert!(psi.values().all(|p| *p < THRESHOLD), "{psi:?}");
}

/// Fast tier (fake model): a version without reference.json serves, its fallback rates are
/// tracked and drift says "no reference"; PSI is absent.
#[tokio::test]
async fn a_version_without_a_reference_serves_and_says_no_reference() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fake_repository(dir.path());
    let config = fake_config(&repo, "[drift]\nsample_every = 1\n");
    let parts = augur::app::Parts { loader: Some(Arc::new(FakeLoader::default())), ..Default::default() };
    let server = common::start_with(config, parts).await;
    let mut client = server.client().await;
    // `no-such-item` has no row: its item features fall back in that row.
    client.predict(common::ranking_request("u1", &["i1", "no-such-item"])).await.unwrap();
    let text = scrape(&server).await;
    let (_, _, page) = get(server.admin_http_addr.unwrap(), "/status").await;
    server.stop().await;
    let labels = "scene=\"ranking\",model=\"fake_ranking\",version=\"1\"";
    assert!(text.contains(&format!("augur_drift_reference{{{labels}}} 0")), "{text}");
    assert!(text.contains(&format!("augur_drift_window_rows{{{labels}}} 2")), "{text}");
    assert!(text.contains(&format!("augur_drift_fallback_rate{{{labels},feature=\"item_category\"}} 0.5")), "{text}");
    assert!(!text.contains("augur_drift_psi{"), "no PSI without a reference: {text}");
    let section = &page[page.find("<h2>Drift per version</h2>").expect("drift section")..];
    assert!(section.contains("no reference"), "{section}");
}

/// Fast tier: `models publish` takes the trainer's reference.json from beside the model, checks
/// it, and the published version holds it.
#[tokio::test]
async fn publish_carries_the_reference_beside_the_model_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let trained = dir.path().join("trained");
    std::fs::create_dir_all(&trained).unwrap();
    std::fs::write(trained.join("model.onnx"), b"fake").unwrap();
    std::fs::write(trained.join("train_report.json"), b"{}").unwrap();
    let reference = std::fs::read(common::root().join("models/ranking/1/reference.json")).unwrap();
    std::fs::write(trained.join(REFERENCE_FILE), &reference).unwrap();
    let spec = augur::assemble::Spec::load(&common::root().join("features/ranking.yaml")).unwrap();
    let loader: Arc<dyn augur::model::ModelLoader> = Arc::new(FakeLoader::default());
    let repo = Repo::Dir(dir.path().join("ranking"));

    let files = models::with_reference(vec![trained.join("model.onnx"), trained.join("train_report.json")]);
    assert_eq!(files.last().unwrap(), &trained.join(REFERENCE_FILE));
    assert_eq!(models::with_reference(files.clone()), files, "named once");
    let published = models::publish(&spec, Arc::clone(&loader), &repo, &files, None).await.unwrap();
    assert!(published.marker.files.iter().any(|f| f.path == REFERENCE_FILE), "{:?}", published.marker);
    let loaded = augur::drift::reference::Reference::load(&dir.path().join("ranking/1")).unwrap().unwrap();
    assert_eq!(loaded.features.len(), spec.features.len());

    // Without one beside the model, nothing is added.
    std::fs::remove_file(trained.join(REFERENCE_FILE)).unwrap();
    assert_eq!(models::with_reference(vec![trained.join("model.onnx")]).len(), 1);

    // A reference augur cannot read is refused before anything is written.
    std::fs::write(trained.join(REFERENCE_FILE), br#"{"format": 9, "rows": 1, "features": []}"#).unwrap();
    let files = models::with_reference(vec![trained.join("model.onnx")]);
    let refused = models::publish(&spec, loader, &repo, &files, None).await.unwrap_err();
    assert!(matches!(refused, ModelsError::Reference(_)), "{refused}");
    assert!(refused.to_string().contains("format 9"), "{refused}");
    assert!(!dir.path().join("ranking/2").exists());
}

/// Fast tier (fake model, the demo model's reference copied beside it): ListModels carries each
/// version's drift, worst PSI first with the flagged count, and `augur models list --admin-addr`
/// shows it (table and JSON) from the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_models_and_the_cli_show_each_versions_drift_worst_first() {
    let dir = tempfile::tempdir().unwrap();
    let repo = fake_repository(dir.path());
    std::fs::copy(common::root().join("models/ranking/1/reference.json"), repo.join("1").join(REFERENCE_FILE)).unwrap();
    let config = fake_config(&repo, "[drift]\nsample_every = 1\nmin_rows = 1000\n");
    let parts = augur::app::Parts { loader: Some(Arc::new(FakeLoader::default())), ..Default::default() };
    let server = common::start_with(config, parts).await;
    let mut client = server.client().await;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..600 {
        client.predict(request(&mut rng, true)).await.expect("predict");
    }
    let mut admin = augur::proto::model_admin_client::ModelAdminClient::new(server.admin_channel().await);
    let listed = admin.list_models(augur::proto::ListModelsRequest {}).await.unwrap().into_inner().models.remove(0);
    let drift = listed.versions[0].drift.clone().expect("version 1's drift");
    assert!(drift.has_reference);
    assert_eq!((drift.rows, drift.rows_total, drift.psi_threshold), (2400, 2400, THRESHOLD));
    let names: Vec<&str> = drift.features.iter().map(|f| f.feature.as_str()).collect();
    eprintln!("worst first: {:?}", drift.features.iter().map(|f| (&f.feature, f.psi)).collect::<Vec<_>>());
    let mut shifted = names[..2].to_vec();
    shifted.sort_unstable();
    assert_eq!(shifted, ["item_price", "item_price_bucket"], "{names:?}");
    assert_eq!(drift.flagged, 2, "{drift:?}");
    assert!(drift.features.windows(2).all(|w| w[0].psi >= w[1].psi), "worst PSI first");
    assert_eq!(drift.features.len(), 13);
    let price = &drift.features.iter().find(|f| f.feature == "item_price").unwrap();
    assert_eq!(price.fallback_rate, Some(0.0), "every price came with the request");

    let admin_addr = format!("http://{}", server.admin_addr);
    let cli = |extra: &[&str]| {
        let out = common::process::cli()
            .args(["models", "list", "--admin-addr", &admin_addr, "--scene", "ranking"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = cli(&["--top", "2"]);
    eprintln!("{table}");
    let line = table.lines().find(|l| l.trim_start().starts_with("1 ")).expect("version 1's line");
    assert!(line.contains("2 of 13 flagged (PSI > 0.25) over 2400 rows"), "{line}");
    assert!(line.contains("item_price ") && line.contains("item_price_bucket ") && !line.contains("hour"), "{line}");
    let json: serde_json::Value = serde_json::from_str(&cli(&["--json"])).unwrap();
    let version = &json["versions"][0];
    assert_eq!(version["drift"]["flagged"], 2, "{json}");
    assert_eq!(version["drift"]["features"].as_array().unwrap().len(), 13);
    server.stop().await;
}
