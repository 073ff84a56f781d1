//! The publish gate through the real binary (`augur models publish`), on real joined samples: a
//! served augur (demo model = v1, sample logging on) answers Predict, every candidate is
//! impressed and clicked with the probability v1 served (seeded), the join writes the samples.
//! Then, into a fresh directory repository: v1 goes through as the first version; v1 with its
//! output inverted (1 - score) is refused with exit 1, both versions' numbers on stderr, nothing
//! written and LATEST unmoved; v1 with its scores scaled by 0.98 (the same ranking, slightly
//! lower) goes through as v2; the inverted model with `--force` becomes v3 and its marker records
//! the refusal, the override and the lineage it was given; `models list` and ModelAdmin's
//! ListModels show them.

use std::path::Path;
use std::process::Output;

use augur::proto::model_admin_client::ModelAdminClient;
use augur::proto::{ListModelsRequest, ReportEventsRequest, log_record};
use augur::quality::estimator::exact_auc;
use augur::repository::bucket::local_marker;
use augur::repository::provenance::Decision;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common;
use crate::common::samples::{EMITTED, event, read_log, request, samples_config, wait_for};

/// Writes `src` with its output `ctr` replaced by `a + b * ctr` (the venv's `onnx` package).
fn affine_model(src: &Path, dst: &Path, a: f32, b: f32) {
    let script = r#"
import sys
import numpy as np
import onnx
from onnx import helper, numpy_helper
src, dst, a, b = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
m = onnx.load(src)
g = m.graph
out = g.output[0].name
for n in g.node:
    for i, o in enumerate(n.output):
        if o == out:
            n.output[i] = out + "_raw"
g.initializer.extend([numpy_helper.from_array(np.array([a], np.float32), "gate_test/a"),
                      numpy_helper.from_array(np.array([b], np.float32), "gate_test/b")])
g.node.extend([helper.make_node("Mul", [out + "_raw", "gate_test/b"], [out + "_scaled"]),
               helper.make_node("Add", ["gate_test/a", out + "_scaled"], [out])])
onnx.checker.check_model(m)
onnx.save(m, dst)
"#;
    let status = std::process::Command::new(common::venv_python())
        .args(["-c", script])
        .arg(src)
        .arg(dst)
        .args([a.to_string(), b.to_string()])
        .status()
        .expect("python");
    assert!(status.success(), "building {}", dst.display());
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> f64 {
    let at = text.find(prefix).unwrap_or_else(|| panic!("no `{prefix}` in: {text}")) + prefix.len();
    let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after `{prefix}` in: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_model_is_refused_with_both_numbers_force_is_recorded_and_a_good_one_goes_through() {
    common::require!(Ort, Python);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("samples");

    // Real joined samples: served by the demo model (v1), clicked as v1 predicts.
    let server = common::start(samples_config(&log, "")).await;
    let mut client = server.client().await;
    let n = 240;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut events = Vec::new();
    for k in 0..n {
        let r = request(k);
        let response = client.predict(r.clone()).await.expect("predict").into_inner();
        for (c, score) in r.candidates.iter().zip(&response.scores) {
            events.push(event(&r.request_id, &c.item_id, "impression"));
            if rng.random::<f32>() < *score {
                events.push(event(&r.request_id, &c.item_id, "click"));
            }
        }
    }
    wait_for(&server.metrics, "augur_samples_pending", n as f64).await;
    for chunk in events.chunks(400) {
        client.report_events(ReportEventsRequest { events: chunk.to_vec() }).await.expect("report");
    }
    wait_for(&server.metrics, EMITTED, (n * 5) as f64).await;
    server.stop().await;
    let samples: Vec<augur::proto::Sample> = read_log(&log)
        .into_iter()
        .filter_map(|r| match r.record {
            Some(log_record::Record::Sample(s)) => Some(s),
            _ => None,
        })
        .collect();
    let pairs: Vec<(f32, bool)> =
        samples.iter().map(|s| (s.score, s.labels.iter().any(|l| l.r#type == "click"))).collect();
    let v1_auc = exact_auc(&pairs).expect("both classes");
    let first_ms = samples.iter().map(|s| s.timestamp_ms).min().unwrap();
    assert!(v1_auc > 0.6, "clicks follow v1's scores: AUC {v1_auc}");

    // The candidates.
    let v1 = common::root().join("models/ranking/1/model.onnx");
    let inverted = dir.path().join("inverted.onnx");
    let scaled = dir.path().join("scaled.onnx");
    affine_model(&v1, &inverted, 1.0, -1.0);
    affine_model(&v1, &scaled, 0.0, 0.98);
    let repo = dir.path().join("repo/ranking");
    std::fs::create_dir_all(&repo).unwrap();
    let config = dir.path().join("augur.toml");
    std::fs::write(
        &config,
        format!(
            "[[scenes]]\nname = \"ranking\"\nspec = \"{}\"\nmodel = \"{}\"\n[samples]\nenabled = true\n[samples.log]\ndir = \"{}\"\n",
            common::root().join("features/ranking.yaml").display(),
            repo.display(),
            log.display()
        ),
    )
    .unwrap();
    let publish = |model: &Path, extra: &[&str]| {
        common::process::cli()
            .args(["models", "publish", "--config"])
            .arg(&config)
            .arg("--model")
            .arg(model)
            .args(extra)
            .output()
            .unwrap()
    };
    let latest = || std::fs::read_to_string(repo.join("LATEST")).unwrap().trim().to_owned();

    // v1: nothing to compare with.
    let out = publish(&v1, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("gate: first_version"), "{}", text(&out));
    let marker = local_marker(&repo, 1).expect("v1 marker");
    assert_eq!(marker.evaluation.as_ref().map(|e| e.decision), Some(Decision::FirstVersion));

    // The inverted model: refused, with both versions' numbers; nothing written.
    let out = publish(&inverted, &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("gate: refused") && said.contains("--force"), "{said}");
    let rows = number_after(&said, "refused; ");
    assert_eq!(rows as usize, samples.len(), "every joined sample is a row: {said}");
    let candidate_auc = number_after(&said, "version 2: AUC ");
    let baseline_auc = number_after(&said, "LATEST version 1: AUC ");
    assert!((baseline_auc - v1_auc).abs() < 6e-5, "v1 scored in-process {baseline_auc} vs served scores {v1_auc}");
    assert!((candidate_auc - (1.0 - v1_auc)).abs() < 2e-3, "inverted: {candidate_auc} vs 1 - {v1_auc}");
    assert!(said.contains(&format!("AUC {candidate_auc:.4} vs {baseline_auc:.4}: drop")), "{said}");
    assert!(!repo.join("2").exists() && latest() == "1", "nothing published by the refusal");

    // The same ranking, scores 2% lower: within the tolerances.
    let out = publish(&scaled, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("gate: passed"), "{}", text(&out));
    assert_eq!(latest(), "2");
    let passed = local_marker(&repo, 2).unwrap().evaluation.expect("evaluation");
    assert_eq!((passed.decision, passed.forced, passed.baseline_version), (Decision::Passed, false, Some(1)));
    assert_eq!(passed.rows as usize, samples.len());
    let (c, b) = (passed.candidate.unwrap(), passed.baseline.unwrap());
    assert!((c.auc.unwrap() - b.auc.unwrap()).abs() < 2e-3, "same ranking: {c:?} {b:?}");
    assert!((c.mean_score - 0.98 * b.mean_score).abs() < 1e-4, "{c:?} {b:?}");

    // Forced: published, the refusal and the override recorded with the lineage given.
    let lineage = dir.path().join("lineage.json");
    std::fs::write(
        &lineage,
        format!(
            r#"{{"run": {{"epochs": 0, "note": "v1 inverted"}}, "samples": {{"from_ms": 0, "to_ms": {first_ms}, "rows": 0}}, "warm_start_version": 1}}"#
        ),
    )
    .unwrap();
    let out = publish(&inverted, &["--force", "--lineage", lineage.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("gate: refused (forced)"), "{}", text(&out));
    assert_eq!(latest(), "3");
    let marker = local_marker(&repo, 3).unwrap();
    let forced = marker.evaluation.clone().expect("evaluation");
    assert_eq!((forced.decision, forced.forced, forced.baseline_version), (Decision::Refused, true, Some(2)));
    assert_eq!(forced.held_out_from_ms, Some(first_ms), "rows from the end of the training window on");
    assert!(forced.reasons.iter().any(|r| r.starts_with("AUC ")), "{:?}", forced.reasons);
    let recorded = marker.lineage.clone().expect("lineage");
    assert_eq!((recorded.warm_start_version, recorded.run["note"].as_str()), (Some(1), Some("v1 inverted")));

    let out = common::process::cli().args(["models", "list", "--config"]).arg(&config).output().unwrap();
    let listing = text(&out);
    assert!(out.status.success(), "{listing}");
    assert!(listing.lines().any(|l| l.trim_start().starts_with("1 ") && l.contains("first_version")), "{listing}");
    assert!(listing.lines().any(|l| l.trim_start().starts_with("2 ") && l.contains("passed vs 1 (AUC")), "{listing}");
    assert!(listing.lines().any(|l| l.contains("refused,forced vs 2") && l.contains("LATEST")), "{listing}");

    // ModelAdmin shows what the served version's marker says.
    let served = common::start(common::demo_config(&format!(
        "[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\n",
        repo.display()
    )))
    .await;
    let listed = ModelAdminClient::new(served.admin_channel().await)
        .list_models(ListModelsRequest {})
        .await
        .expect("list models")
        .into_inner();
    served.stop().await;
    let version = listed.models[0].versions.iter().find(|v| v.version == 3).expect("v3 served");
    let e = version.evaluation.as_ref().expect("evaluation listed");
    assert_eq!((e.decision.as_str(), e.forced, e.baseline_version), ("refused", true, 2));
    assert_eq!(e.candidate.as_ref().and_then(|s| s.auc), forced.candidate.and_then(|s| s.auc));
    let l = version.lineage.as_ref().expect("lineage listed");
    assert_eq!((l.warm_start_version, l.trained_to_ms), (Some(1), first_ms));
    assert!(l.run_json.contains("v1 inverted"), "{}", l.run_json);
}

/// The gate on a split scene: one augur serves the demo model on `ranking` and its split twin
/// (tools/train/split.py, the same weights) on `ranking_split`; every request goes to both with
/// the same user and items, and the same impressions and clicks (drawn from the flat score) are
/// reported for both. Then each scene's gate evaluates its own model against a LATEST of its own
/// kind (flat vs flat, split vs split) on its own joined samples: the split scene's numbers equal
/// the flat one's (AUC and log loss within 1e-6), rows and positives exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_model_is_gated_with_the_numbers_of_its_flat_twin() {
    use std::sync::Arc;

    use augur::cli::gate::{DEFAULT_TOLERANCE, Gate};
    use augur::cli::models::{self, PublishOptions, Repo};

    common::require!(Ort, Python);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("samples");
    let split_model = dir.path().join("split/1/model.onnx");
    std::fs::create_dir_all(split_model.parent().unwrap()).unwrap();
    let out = std::process::Command::new(common::venv_python())
        .args(["tools/train/split.py", "--model", "models/ranking/1/model.onnx", "--spec"])
        .arg("features/ranking_split.yaml")
        .arg("--out")
        .arg(&split_model)
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(out.status.success(), "split.py: {}", String::from_utf8_lossy(&out.stderr));
    let extra = format!(
        "[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\n\
         [[scenes]]\nname = \"ranking_split\"\nspec = \"features/ranking_split.yaml\"\nmodel = \"{}\"\n",
        common::root().join("models/ranking").display(),
        dir.path().join("split").display()
    );
    let server = common::start(samples_config(&log, &extra)).await;
    let mut client = server.client().await;
    let n = 200;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut events = Vec::new();
    for k in 0..n {
        let flat = request(k);
        let mut split = flat.clone();
        split.scene = "ranking_split".into();
        split.request_id = format!("split-{k}");
        let scores = client.predict(flat.clone()).await.expect("predict").into_inner().scores;
        client.predict(split.clone()).await.expect("predict split");
        for (c, score) in flat.candidates.iter().zip(&scores) {
            let click = rng.random::<f32>() < *score;
            for r in [&flat, &split] {
                events.push(event(&r.request_id, &c.item_id, "impression"));
                if click {
                    events.push(event(&r.request_id, &c.item_id, "click"));
                }
            }
        }
    }
    wait_for(&server.metrics, "augur_samples_pending", (2 * n) as f64).await;
    for chunk in events.chunks(400) {
        client.report_events(ReportEventsRequest { events: chunk.to_vec() }).await.expect("report");
    }
    wait_for(&server.metrics, EMITTED, (2 * n * 5) as f64).await;
    server.stop().await;

    let loader: Arc<dyn augur::model::ModelLoader> =
        Arc::new(augur::model::onnx::OnnxLoader::new(augur::model::onnx::SessionOptions {
            intra_op_threads: 1,
            library: None,
        }));
    let gate = |scene: &str| Gate {
        samples: Some(log.clone()),
        scene: scene.to_owned(),
        positive_event: "click".into(),
        tolerance: DEFAULT_TOLERANCE,
        min_rows: 100,
        max_rows: 100_000,
        window_ms: i64::MAX,
        force: false,
    };
    let mut evaluations = Vec::new();
    for (scene, spec, model) in [
        ("ranking", "features/ranking.yaml", common::root().join("models/ranking/1/model.onnx")),
        ("ranking_split", "features/ranking_split.yaml", split_model.clone()),
    ] {
        let spec = augur::assemble::Spec::load(&common::root().join(spec)).unwrap();
        let repo = Repo::Dir(dir.path().join("repos").join(scene));
        let options = PublishOptions { version: None, gate: gate(scene), lineage: None };
        // LATEST of the same kind (version 1), then the same model again as the candidate.
        models::publish_gated(&spec, Arc::clone(&loader), &repo, std::slice::from_ref(&model), &options).await.unwrap();
        let published =
            models::publish_gated(&spec, Arc::clone(&loader), &repo, std::slice::from_ref(&model), &options)
                .await
                .unwrap();
        let evaluation = published.marker.evaluation.expect("evaluated");
        assert_eq!(evaluation.decision, Decision::Passed, "{scene}: {evaluation:?}");
        evaluations.push(evaluation);
    }
    let (flat, split) = (&evaluations[0], &evaluations[1]);
    eprintln!("flat: {:?}\nsplit: {:?}", flat.candidate, split.candidate);
    assert_eq!((flat.rows, flat.positives), (split.rows, split.positives));
    assert_eq!(flat.rows, (n * 5) as u64);
    for (f, s) in
        [(flat.candidate.unwrap(), split.candidate.unwrap()), (flat.baseline.unwrap(), split.baseline.unwrap())]
    {
        let (fa, sa) = (f.auc.unwrap(), s.auc.unwrap());
        assert!((fa - sa).abs() <= 1e-6, "AUC flat {fa} vs split {sa}");
        assert!((f.log_loss - s.log_loss).abs() <= 1e-6, "log loss flat {} vs split {}", f.log_loss, s.log_loss);
        assert!((f.mean_score - s.mean_score).abs() <= 1e-6);
    }
    assert!(flat.candidate.unwrap().auc.unwrap() > 0.6, "clicks follow the scores");
}
