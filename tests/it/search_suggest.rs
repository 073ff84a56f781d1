//! The search_suggest scene over real gRPC with its bundled model: text (tokens, char n-grams) and
//! derived (cross, prefix length) features end to end, and Predict equal to ONNX Runtime run
//! directly on GetFeatures' tensors.

use augur::proto::{Candidate, FallbackReason, GetFeaturesRequest, GetFeaturesResponse, PredictRequest};
use ort::session::Session;
use ort::value::TensorRef;

use crate::common;

/// Suggestions of the committed catalogue (demo/suggestions.csv) and one it does not hold.
const ITEMS: [&str; 5] = ["brévepa vs gift", "brévepa xl black", "revé review set", "stigive white", "not listed"];

fn suggest_request(user: &str, query: Option<&str>, items: &[&str]) -> PredictRequest {
    let mut context = std::collections::HashMap::from([("device".to_string(), common::string("ios"))]);
    if let Some(query) = query {
        context.insert("query".into(), common::string(query));
    }
    PredictRequest {
        request_id: String::new(),
        scene: "search_suggest".into(),
        user_id: user.into(),
        context,
        candidates: items.iter().map(|i| Candidate { item_id: (*i).into(), features: Default::default() }).collect(),
        model_version: String::new(),
    }
}

fn features_request(request: PredictRequest) -> GetFeaturesRequest {
    GetFeaturesRequest {
        scene: request.scene,
        user_id: request.user_id,
        context: request.context,
        candidates: request.candidates,
    }
}

/// (feature, reason, candidates) of every fallback.
fn fallbacks(list: &[augur::proto::Fallback]) -> Vec<(&str, FallbackReason, Vec<u32>)> {
    list.iter().map(|f| (f.feature.as_str(), f.reason(), f.candidates.clone())).collect()
}

#[tokio::test]
async fn predict_scores_every_suggestion_and_follows_the_query() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    let brev = client.predict(suggest_request("u1", Some("brév"), &ITEMS)).await.unwrap().into_inner();
    assert_eq!(brev.scores.len(), ITEMS.len());
    assert!(brev.scores.iter().all(|s| s.is_finite() && (0.0..=1.0).contains(s)), "{:?}", brev.scores);
    assert_eq!((brev.model_name.as_str(), brev.model_version.as_str()), ("search_suggest", "1"));

    // The unlisted suggestion's stored features (and crosses with them) fall back for it alone;
    // its text features and the prefix length come from the id itself and do not.
    let missing = fallbacks(&brev.fallbacks);
    for feature in ["suggestion_category", "suggestion_popularity", "query_x_category", "segment_x_category"] {
        assert!(missing.contains(&(feature, FallbackReason::MissingRow, vec![4])), "{feature}: {missing:?}");
    }
    assert_eq!(missing.len(), 4, "{missing:?}");

    // Another query reorders the same suggestions: completions of what was typed score higher.
    let rev = client.predict(suggest_request("u1", Some("rev"), &ITEMS)).await.unwrap().into_inner();
    assert_ne!(rev.scores, brev.scores);
    assert!(rev.scores[2] > brev.scores[2], "`revé review set` under rev {} vs brév {}", rev.scores[2], brev.scores[2]);
    assert!(brev.scores[0] > rev.scores[0], "`brévepa vs gift` under brév {} vs rev {}", brev.scores[0], rev.scores[0]);
    // Same request, same scores; anonymous typing is scored too (the user is optional here).
    let again = client.predict(suggest_request("u1", Some("brév"), &ITEMS)).await.unwrap().into_inner();
    assert_eq!(again.scores, brev.scores);
    let anonymous = client.predict(suggest_request("", Some("brév"), &ITEMS)).await.unwrap().into_inner();
    assert_eq!(anonymous.scores.len(), ITEMS.len());
    server.stop().await;
}

#[tokio::test]
async fn get_features_shows_the_prefix_length_of_a_known_pair() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    // "BRÉV" and "brévepa vs gift" share 4 characters case-insensitively (5 bytes: é is two).
    let request = suggest_request("u1", Some("BRÉV"), &["brévepa vs gift", "stigive white"]);
    let response = client.get_features(features_request(request)).await.unwrap().into_inner();
    let layout = |name: &str| response.layout.iter().find(|l| l.feature == name).unwrap_or_else(|| panic!("{name}"));
    let prefix = layout("query_prefix_len");
    assert_eq!((prefix.input.as_str(), prefix.width), ("dense", 1));
    let dense = response.inputs.iter().find(|t| t.name == "dense").unwrap();
    let width = dense.shape[1] as usize;
    let at = |row: usize| dense.float_values[row * width + prefix.offset as usize];
    // features/search_suggest.yaml: clip to [0, 12], then (x - 2.5) / 3.
    assert!((at(0) - (4.0 - 2.5) / 3.0).abs() < 1e-6, "{}", at(0));
    assert!((at(1) - (0.0 - 2.5) / 3.0).abs() < 1e-6, "{}", at(1));

    // Query text features are shared by both rows, suggestion tokens are not; the lists have
    // their declared widths.
    let ids = response.inputs.iter().find(|t| t.name == "ids").unwrap();
    let width = ids.shape[1] as usize;
    let cols = |name: &str, row: usize| {
        let l = layout(name);
        ids.int64_values[row * width + l.offset as usize..row * width + (l.offset + l.width) as usize].to_vec()
    };
    assert_eq!((layout("query_tokens").width, layout("query_trigrams").width), (4, 12));
    assert_eq!(cols("query_trigrams", 0), cols("query_trigrams", 1));
    assert_ne!(cols("suggestion_tokens", 0), cols("suggestion_tokens", 1));
    // "BRÉV" is one token (then padding); "#BRÉV#" lowercased gives four trigrams (then padding).
    let tokens = cols("query_tokens", 0);
    assert!(tokens[0] != tokens[1] && tokens[1..].iter().all(|t| *t == tokens[1]), "{tokens:?}");
    let grams = cols("query_trigrams", 0);
    assert!(grams[4..].iter().all(|g| *g == grams[11]) && !grams[..4].contains(&grams[11]), "{grams:?}");
    assert!(response.fallbacks.is_empty(), "{:?}", response.fallbacks);
    server.stop().await;
}

#[tokio::test]
async fn query_is_validated_as_text_and_a_missing_query_falls_back() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    let mut request = suggest_request("u1", None, &ITEMS[..2]);
    request.context.insert("query".into(), common::int(7));
    let status = client.predict(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("context.query") && status.message().contains("string"), "{}", status.message());

    let response = client.predict(suggest_request("u1", None, &ITEMS[..2])).await.unwrap().into_inner();
    assert_eq!(response.scores.len(), 2);
    let missing = fallbacks(&response.fallbacks);
    // Shared query features fall back once (no candidate list); derived per-candidate ones name
    // every candidate, with the query's reason.
    for expected in [
        ("query_tokens", FallbackReason::MissingField, vec![]),
        ("query_trigrams", FallbackReason::MissingField, vec![]),
        ("query_x_category", FallbackReason::MissingField, vec![0, 1]),
        ("query_prefix_len", FallbackReason::MissingField, vec![0, 1]),
    ] {
        assert!(missing.contains(&expected), "{expected:?} not in {missing:?}");
    }
    assert_eq!(missing.len(), 4, "{missing:?}");
    server.stop().await;
}

fn run_direct(session: &mut Session, features: &GetFeaturesResponse) -> Vec<f32> {
    let ids = features.inputs.iter().find(|t| t.name == "ids").unwrap();
    let dense = features.inputs.iter().find(|t| t.name == "dense").unwrap();
    let ids_shape = [ids.shape[0] as usize, ids.shape[1] as usize];
    let dense_shape = [dense.shape[0] as usize, dense.shape[1] as usize];
    let outputs = session
        .run(ort::inputs![
            "ids" => TensorRef::from_array_view((ids_shape, ids.int64_values.as_slice())).unwrap(),
            "dense" => TensorRef::from_array_view((dense_shape, dense.float_values.as_slice())).unwrap(),
        ])
        .unwrap();
    let (_, scores) = outputs["ctr"].try_extract_tensor::<f32>().unwrap();
    scores.to_vec()
}

#[tokio::test]
async fn predict_equals_direct_ort_on_get_features_output() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    let catalogue = std::fs::read_to_string(common::root().join("demo/suggestions.csv")).unwrap();
    let mut items: Vec<&str> = catalogue.lines().skip(1).step_by(17).map(|l| l.split(',').next().unwrap()).collect();
    items.push("not listed");
    let env = augur::model::runtime::environment(None).expect("ort runtime");
    let mut session = Session::builder(env)
        .unwrap()
        .commit_from_file(common::root().join("models/search_suggest/1/model.onnx"))
        .unwrap();
    let cases = [
        ("u1", Some("brév")),
        ("u500", Some("revé rev")),
        ("u7", Some("stigxve")), // a typo
        ("nobody", Some("日本 ÜBER")),
        ("", Some("")),
        ("u3", None),
    ];
    let mut compared = 0;
    for (user, query) in cases {
        let request = suggest_request(user, query, &items);
        let predicted = client.predict(request.clone()).await.unwrap().into_inner().scores;
        let features = client.get_features(features_request(request)).await.unwrap().into_inner();
        let direct = run_direct(&mut session, &features);
        assert_eq!(direct.len(), predicted.len());
        let max_diff = direct.iter().zip(&predicted).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_diff <= 1e-6, "user {user:?} query {query:?}: max abs diff {max_diff}");
        compared += direct.len();
    }
    assert_eq!(compared, cases.len() * items.len());
    server.stop().await;
}
