//! Every kind of bad input gets the right status and a message naming the field and the limit;
//! none panics the server (it keeps answering afterwards).

use augur::proto::feature_value::Kind;
use augur::proto::{Candidate, FeatureValue, FloatList, PredictRequest, StringList};
use tonic::Code;

use crate::common;

async fn expect(
    client: &mut augur::proto::prediction_client::PredictionClient<tonic::transport::Channel>,
    request: PredictRequest,
    code: Code,
    needles: &[&str],
) {
    let status = client.predict(request).await.expect_err("must fail");
    assert_eq!(status.code(), code, "{}", status.message());
    for needle in needles {
        assert!(status.message().contains(needle), "{needle:?} not in {:?}", status.message());
    }
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    common::require!(Ort);
    let server =
        common::start(common::demo_config("[server]\nmax_candidates = 10\nmax_string_bytes = 64\nmax_list_len = 4\n"))
            .await;
    let mut client = server.client().await;
    let base = || common::ranking_request("u1", &["i0", "i1"]);

    let mut empty = base();
    empty.candidates.clear();
    expect(&mut client, empty, Code::InvalidArgument, &["candidates", "at least one"]).await;

    let items: Vec<String> = (0..11).map(|i| format!("i{i}")).collect();
    let too_many = common::ranking_request("u1", &items.iter().map(String::as_str).collect::<Vec<_>>());
    expect(&mut client, too_many, Code::InvalidArgument, &["candidates", "11", "limit of 10", "server.max_candidates"])
        .await;

    let mut scene = base();
    scene.scene = "nope".into();
    expect(&mut client, scene, Code::NotFound, &["scene", "nope", "ranking"]).await;

    let mut no_user = base();
    no_user.user_id.clear();
    expect(&mut client, no_user, Code::InvalidArgument, &["user_id", "required"]).await;

    let mut wrong_type = base();
    wrong_type.context.insert("hour".into(), common::string("evening"));
    expect(&mut client, wrong_type, Code::InvalidArgument, &["context.hour", "expected int", "got string"]).await;

    let mut wrong_item_type = base();
    wrong_item_type.candidates[1].features.insert("price".into(), common::string("cheap"));
    expect(&mut client, wrong_item_type, Code::InvalidArgument, &["candidates[1].features.price", "expected float"])
        .await;

    let mut unknown = base();
    unknown.context.insert("weather".into(), common::string("rain"));
    expect(&mut client, unknown, Code::InvalidArgument, &["context.weather", "not a context field"]).await;

    let mut long_string = base();
    long_string.context.insert("device".into(), common::string(&"x".repeat(65)));
    expect(
        &mut client,
        long_string,
        Code::InvalidArgument,
        &["context.device", "65 bytes", "limit of 64", "server.max_string_bytes"],
    )
    .await;

    let mut long_id = base();
    long_id.candidates[0].item_id = "i".repeat(100);
    expect(&mut client, long_id, Code::InvalidArgument, &["candidates[0].item_id", "limit of 64"]).await;

    let mut long_list = base();
    long_list.candidates[0].features.insert(
        "tags".into(),
        FeatureValue { kind: Some(Kind::StringList(StringList { values: vec!["t1".into(); 5] })) },
    );
    expect(
        &mut client,
        long_list,
        Code::InvalidArgument,
        &["candidates[0].features.tags", "5 values", "limit of 4", "server.max_list_len"],
    )
    .await;

    let mut nan = base();
    nan.candidates[0].features.insert("price".into(), FeatureValue { kind: Some(Kind::FloatValue(f64::NAN)) });
    expect(&mut client, nan, Code::InvalidArgument, &["candidates[0].features.price", "not finite"]).await;

    let mut nan_list = base();
    nan_list.candidates[0].features.insert(
        "price".into(),
        FeatureValue { kind: Some(Kind::FloatList(FloatList { values: vec![f64::INFINITY] })) },
    );
    expect(&mut client, nan_list, Code::InvalidArgument, &["candidates[0].features.price"]).await;

    let mut unset = base();
    unset.context.insert("hour".into(), FeatureValue { kind: None });
    expect(&mut client, unset, Code::InvalidArgument, &["context.hour", "no type"]).await;

    let mut empty_item = base();
    empty_item.candidates.push(Candidate { item_id: String::new(), features: Default::default() });
    expect(&mut client, empty_item, Code::InvalidArgument, &["candidates[2].item_id", "empty"]).await;

    // After all that, the server still answers a good request.
    let ok = client.predict(base()).await.expect("server still healthy").into_inner();
    assert_eq!(ok.scores.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn missing_entities_are_defaults_not_errors() {
    common::require!(Ort);
    let server = common::start(common::demo_config("")).await;
    let mut client = server.client().await;
    let mut request = common::ranking_request("no-such-user", &["no-such-item"]);
    request.context.clear();
    let response = client.predict(request).await.expect("missing rows are not an error").into_inner();
    assert_eq!(response.scores.len(), 1);
    let fell_back: Vec<&str> = response.fallbacks.iter().map(|f| f.feature.as_str()).collect();
    for feature in ["user_age", "user_segment", "item_category", "item_price", "hour", "device"] {
        assert!(fell_back.contains(&feature), "{feature} not reported in {fell_back:?}");
    }
    server.stop().await;
}
