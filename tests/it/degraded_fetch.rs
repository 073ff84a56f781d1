//! A slow or failing store degrades a request instead of failing it: spec defaults are served
//! within the fetch budget and the response names every degraded feature with its reason;
//! features marked `required` turn that into FAILED_PRECONDITION naming the feature.

use std::sync::Arc;
use std::time::Duration;

use augur::app::Parts;
use augur::config::{Config, FetchConfig};
use augur::fetch::{BoxFuture, FeatureStore, FetchError, Row};
use augur::proto::FallbackReason;
use augur::server::convert::fallback_reason_from_proto;

use crate::common;

#[derive(Debug)]
enum Fault {
    Hang,
    Down,
}

#[derive(Debug)]
struct FaultyStore(Fault);

impl FeatureStore for FaultyStore {
    fn get_rows<'a>(
        &'a self,
        _table: &'a str,
        _ids: &'a [&'a str],
        _fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<Row>>>, FetchError>> {
        Box::pin(async move {
            match self.0 {
                Fault::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Vec::new())
                }
                Fault::Down => Err(FetchError::Unavailable {
                    store: "test store".into(),
                    source: Arc::new(std::io::Error::other("connection refused")),
                }),
            }
        })
    }
}

/// augur on the ranking scene only, reading `store`, with a 50 ms fetch budget.
async fn start(config: &Config, store: FaultyStore) -> common::TestServer {
    let mut config = config.clone();
    config.scenes.truncate(1);
    config.fetch = FetchConfig { max_budget_ms: 50, inference_reserve_ms: 10 };
    common::start_with(config, Parts { store: Some(Arc::new(store)), ..Default::default() }).await
}

#[tokio::test]
async fn hung_and_failing_stores_serve_defaults_with_reasons() {
    common::require!(Ort);
    let config = common::demo_config("[model]\nwatch = false\npoll_interval_ms = 0\n");
    for (fault, reason) in [(Fault::Hang, FallbackReason::Timeout), (Fault::Down, FallbackReason::StoreError)] {
        let server = start(&config, FaultyStore(fault)).await;
        let predictor = Arc::clone(&server.predictor);
        let mut client = server.client().await;
        let call = client.predict(common::ranking_request("u1", &["i1", "i2", "i3"]));
        let response = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("a hung store must not hang the request")
            .expect("degraded, not failed")
            .into_inner();
        assert_eq!(response.scores.len(), 3);
        for feature in ["user_age", "user_segment", "item_category", "item_price"] {
            let f = response.fallbacks.iter().find(|f| f.feature == feature).unwrap_or_else(|| panic!("{feature}"));
            assert_eq!(f.reason(), reason, "{feature}");
        }
        let item = response.fallbacks.iter().find(|f| f.feature == "item_category").unwrap();
        assert_eq!(item.candidates, vec![0, 1, 2]);
        // Features that do not come from the store are not degraded.
        assert!(
            !response.fallbacks.iter().any(|f| ["user_id", "item_id", "hour", "device"].contains(&f.feature.as_str()))
        );
        let scene = predictor.scene("ranking").unwrap();
        assert_eq!(scene.fallback_count("item_category", fallback_reason_from_proto(reason)), 3);
        // A user feature falls back in every row too: counted in rows like an item one (it was
        // counted once per call).
        assert_eq!(scene.fallback_count("user_age", fallback_reason_from_proto(reason)), 3);
        server.stop().await;
    }
}

#[tokio::test]
async fn required_feature_fallback_is_failed_precondition() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(common::root().join("features/ranking.yaml"))
        .unwrap()
        .replace("    source: item.category\n", "    source: item.category\n    required: true\n");
    let path = dir.path().join("ranking.yaml");
    std::fs::write(&path, spec).unwrap();
    let config = common::demo_config(&format!(
        "[model]\nwatch = false\npoll_interval_ms = 0\n[[scenes]]\nname = \"ranking\"\nspec = \"{}\"\nmodel = \"{}\"\n",
        path.display(),
        common::root().join("models/ranking").display()
    ));
    let server = common::start(config.clone()).await;
    let mut client = server.client().await;
    assert!(client.predict(common::ranking_request("u1", &["i1"])).await.is_ok());
    let status = client.predict(common::ranking_request("u1", &["i1", "no-such-item"])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{}", status.message());
    assert!(
        status.message().contains("item_category") && status.message().contains("candidate 1"),
        "{}",
        status.message()
    );
    server.stop().await;

    let server = start(&config, FaultyStore(Fault::Down)).await;
    let status = server.client().await.predict(common::ranking_request("u1", &["i1"])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("item_category") && status.message().contains("StoreError"),
        "{}",
        status.message()
    );
    server.stop().await;
}
