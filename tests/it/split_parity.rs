//! Request-level inputs end to end (issue 23 item 1): a split model (user and context part once
//! per request, gathered per candidate by the request index) made from the same weights as a flat
//! one scores the same through augur, within 1e-6, on the demo ranking model (split by
//! tools/train/split.py) and on the benchmark model (`make_deepfm.py` and its `--split` twin);
//! GetFeatures of the split scene (the stored form samples keep) equals the flat scene's; and
//! concurrent requests merged into one run and a request split into chunks by `max_batch_rows`
//! score as they do alone.

use std::path::Path;

use augur::proto::PredictRequest;

use crate::common;

fn python(args: &[&str]) {
    let out = std::process::Command::new(common::venv_python())
        .args(args)
        .current_dir(common::root())
        .output()
        .expect("run the venv's python");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn scene(name: &str, spec: &str, model: &Path) -> String {
    format!("[[scenes]]\nname = \"{name}\"\nspec = \"{spec}\"\nmodel = \"{}\"\n", model.display())
}

fn request(scene: &str, user: &str, items: &[String]) -> PredictRequest {
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    PredictRequest { scene: scene.into(), ..common::ranking_request(user, &refs) }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_models_score_as_their_flat_twins_and_store_the_flat_form() {
    common::require!(Ort, Python);
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path();
    let ranking_split = models.join("ranking_split/1/model.onnx");
    std::fs::create_dir_all(ranking_split.parent().unwrap()).unwrap();
    python(&[
        "tools/train/split.py",
        "--model",
        "models/ranking/1/model.onnx",
        "--spec",
        "features/ranking_split.yaml",
        "--out",
        ranking_split.to_str().unwrap(),
    ]);
    for (name, split) in [("bench", false), ("bench_split", true)] {
        let out = models.join(format!("{name}/1/model.onnx"));
        let mut args = vec!["tools/bench_model/make_deepfm.py", "--out", out.to_str().unwrap()];
        if split {
            args.push("--split");
        }
        python(&args);
    }
    // 64 rows per run: the 151-candidate requests run in three chunks, each with its request row.
    let extra = format!(
        "[model]\nwatch = false\npoll_interval_ms = 0\nmax_batch_rows = 64\ninference_threads = 2\n{}{}{}{}",
        scene("ranking", "features/ranking.yaml", &common::root().join("models/ranking")),
        scene("ranking_split", "features/ranking_split.yaml", &models.join("ranking_split")),
        scene("bench", "features/bench.yaml", &models.join("bench")),
        scene("bench_split", "features/bench_split.yaml", &models.join("bench_split")),
    );
    let server = common::start(common::demo_config(&extra)).await;
    let mut client = server.client().await;
    let items: Vec<String> = (0..150).map(|i| format!("i{}", i * 31 % 5000)).chain(["ghost".to_string()]).collect();
    for (flat, split) in [("ranking", "ranking_split"), ("bench", "bench_split")] {
        for user in ["u1", "u500", "nobody"] {
            let a = client.predict(request(flat, user, &items)).await.unwrap().into_inner().scores;
            let b = client.predict(request(split, user, &items)).await.unwrap().into_inner().scores;
            let diff = max_diff(&a, &b);
            assert!(diff <= 1e-6, "{split} vs {flat}, user {user}: max abs diff {diff}");
            let spread = a.iter().copied().fold(f32::MIN, f32::max) - a.iter().copied().fold(f32::MAX, f32::min);
            assert!(spread > 1e-4, "{flat}: scores too flat to tell rows apart ({spread})");
            // The stored form: what GetFeatures returns and samples keep is the flat scene's.
            let fa =
                client.get_features(common::features_request(&request(flat, user, &items))).await.unwrap().into_inner();
            let fb = client
                .get_features(common::features_request(&request(split, user, &items)))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(fa.inputs, fb.inputs, "{split}: stored inputs differ from {flat}'s");
            assert_eq!(fa.layout, fb.layout, "{split}: layout differs from {flat}'s");
        }
        // Concurrent requests of several users and sizes: merged runs (one request row each,
        // the index renumbered) score as each request does alone.
        let sizes = [1usize, 5, 40, 151, 17, 64, 3, 100];
        let mut alone = Vec::new();
        for (n, size) in sizes.iter().enumerate() {
            let r = request(split, &format!("u{}", n * 37), &items[..*size]);
            alone.push(client.predict(r).await.unwrap().into_inner().scores);
        }
        for _ in 0..3 {
            let calls: Vec<_> = sizes
                .iter()
                .enumerate()
                .map(|(n, size)| {
                    let mut client = client.clone();
                    let r = request(split, &format!("u{}", n * 37), &items[..*size]);
                    tokio::spawn(async move { client.predict(r).await.unwrap().into_inner().scores })
                })
                .collect();
            let mut together = Vec::new();
            for call in calls {
                together.push(call.await.unwrap());
            }
            for (n, (a, b)) in alone.iter().zip(&together).enumerate() {
                assert_eq!(a.len(), sizes[n]);
                let diff = max_diff(a, b);
                assert!(diff <= 1e-6, "{split}: request {n} merged vs alone: {diff}");
            }
        }
    }
    server.stop().await;
}

/// The stored form a split spec's samples keep is the flat spec's, byte for byte: the same
/// request assembled under `bench.yaml` and `bench_split.yaml`, the split tensors expanded as
/// Predict does before offering a sample, encode to the same snapshot (fast tier: no model).
#[test]
fn split_spec_snapshots_encode_exactly_as_the_flat_specs() {
    use std::collections::HashMap;
    use std::sync::Arc;

    use augur::assemble::encode::RequestView;
    use augur::assemble::{RowKind, Spec, TensorData, assemble};
    use augur::fetch::{Row, Value};
    use augur::sample_log::snapshot::Served;

    let flat = Spec::load(&common::root().join("features/bench.yaml")).unwrap();
    let split = Spec::load(&common::root().join("features/bench_split.yaml")).unwrap();
    let str_row = |pairs: &[(&str, &str)]| -> Arc<Row> {
        Arc::new(pairs.iter().map(|(k, v)| (k.to_string(), Value::Str(v.to_string()))).collect())
    };
    let user = str_row(&[("age", "31"), ("gender", "f"), ("segment", "s3"), ("activity", "12.5")]);
    let context: HashMap<String, Value> =
        [("hour".to_string(), Value::Int(20)), ("device".to_string(), Value::Str("ios".into()))].into();
    let candidates: Vec<(String, HashMap<String, Value>)> =
        (0..37).map(|i| (format!("i{i}"), HashMap::new())).collect();
    // Some items missing and some partial, so fallbacks and defaults are compared too.
    let items: Vec<Option<Arc<Row>>> = (0..37)
        .map(|i| match i % 5 {
            0 => None,
            1 => Some(str_row(&[("category", "c1")])),
            _ => Some(str_row(&[
                ("category", &format!("c{}", i % 7)),
                ("brand", &format!("b{i}")),
                ("tags", "a|b|c"),
                ("price", &format!("{}.5", i * 3)),
            ])),
        })
        .collect();
    let view = RequestView::new("u42", &context, &candidates);
    let a = assemble(&flat, view, Some(&user), &items);
    let b = assemble(&split, view, Some(&user), &items);
    // The model form: 9 + 1 per-row columns, 7 + 3 once, the index all zeros.
    assert_eq!(
        split.row_kinds(),
        [RowKind::Candidate, RowKind::Candidate, RowKind::Request, RowKind::Request, RowKind::RequestIndex]
    );
    let widths: Vec<(usize, usize)> = b.tensors.iter().map(|t| (t.width, t.rows())).collect();
    assert_eq!(widths, [(9, 37), (1, 37), (7, 1), (3, 1), (1, 37)]);
    assert_eq!(b.tensors[4].data, TensorData::I64(vec![0; 37]));
    assert_eq!(a.fallbacks, b.fallbacks);
    let stored = split.stored_form(&b.tensors, b.rows);
    assert_eq!(stored, a.tensors);
    // And back: the model form of stored rows (each its own request) expands to the same rows.
    assert_eq!(split.stored_form(&split.model_form(&stored, 37), 37), a.tensors);
    let served = |inputs: Vec<augur::assemble::Tensor>| Served {
        request_id: "r1".into(),
        timestamp_ms: 1,
        scene: "bench".into(),
        model_name: "bench".into(),
        model_version: "1".into(),
        user_id: "u42".into(),
        item_ids: candidates.iter().map(|c| c.0.clone()).collect(),
        scores: vec![0.5; 37],
        inputs: inputs.into(),
        fallbacks: a.fallbacks.clone(),
    };
    assert_eq!(served(stored).encode(), served(a.tensors.clone()).encode());
}
