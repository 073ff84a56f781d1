//! MovieLens-100K end to end on real data: prepare (time-ordered 80/20 split) → export with the
//! serving code → train (tools/train) → serve → score the held-out 20% over gRPC. The AUC of the
//! served scores must equal the trainer's offline AUC and every score must match the offline
//! ONNX Runtime score to 1e-6.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use augur::config::Config;
use augur::proto::{Candidate, PredictRequest};

use crate::common;

fn run(cmd: &mut Command) {
    let output = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Rank-based AUC (Mann–Whitney U), ties get their average rank — as tools/train/metrics.py.
fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[order[k]] = rank;
        }
        i = j + 1;
    }
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let rank_sum: f64 = ranks.iter().zip(labels).filter(|(_, l)| **l).map(|(r, _)| r).sum();
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

#[test]
fn auc_matches_a_hand_computed_case() {
    // pairs (pos, neg): (0.9,0.1) win, (0.9,0.5) win, (0.5,0.1) win, (0.5,0.5) tie → 3.5/4
    assert_eq!(auc(&[0.9, 0.5, 0.1, 0.5], &[true, true, false, false]), 0.875);
}

#[tokio::test]
async fn movielens_served_auc_equals_offline_auc() {
    common::require!(Python, MovieLens, Ort);
    let data = common::root().join("../shared/data/movielens-100k");
    assert!(data.join("u.data").exists(), "{} missing (shared data is part of the workspace)", data.display());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let python = common::venv_python();
    run(Command::new(&python).arg("tools/movielens/prepare.py").arg("--data").arg(&data).arg("--out").arg(work));

    let model_dir = work.join("models/movielens");
    let config_path = work.join("augur.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nkind = \"memory\"\n\
             [[store.tables]]\nname = \"users\"\npath = \"{w}/users.csv\"\nkey = \"user_id\"\n\
             [[store.tables]]\nname = \"items\"\npath = \"{w}/items.csv\"\nkey = \"item_id\"\n\
             [[scenes]]\nname = \"movielens\"\nspec = \"features/movielens.yaml\"\nmodel = \"{m}\"\n",
            w = work.display(),
            m = model_dir.display()
        ),
    )
    .unwrap();
    for split in ["train", "test"] {
        run(common::process::cli()
            .args(["features", "export", "--scene", "movielens", "--config"])
            .arg(&config_path)
            .arg("--impressions")
            .arg(work.join(format!("{split}.csv")))
            .arg("--out")
            .arg(work.join(format!("export-{split}"))));
    }
    std::fs::create_dir_all(model_dir.join("1")).unwrap();
    run(Command::new(&python)
        .arg("tools/train/train.py")
        .arg("--train")
        .arg(work.join("export-train"))
        .arg("--valid")
        .arg(work.join("export-test"))
        .arg("--out")
        .arg(model_dir.join("1/model.onnx"))
        .arg("--report")
        .arg(work.join("report.json"))
        .arg("--scores")
        .arg(work.join("scores.npy"))
        .args(["--epochs", "2", "--seed", "7"]));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(work.join("report.json")).unwrap()).unwrap();
    let offline_auc = report["valid_auc"].as_f64().unwrap();
    let offline: ndarray::Array1<f32> = ndarray_npy::read_npy(work.join("scores.npy")).unwrap();

    // Serve the trained model and score the held-out rows, one request per user.
    let config = Config::load(Some(&config_path)).unwrap();
    let server = common::start(config).await;
    let mut client = server.client().await;
    let (rows, labels) = read_test(&work.join("test.csv"));
    let mut by_user: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (user, _)) in rows.iter().enumerate() {
        by_user.entry(user.as_str()).or_default().push(i);
    }
    let mut served = vec![f32::NAN; rows.len()];
    for (user, indexes) in &by_user {
        let request = PredictRequest {
            scene: "movielens".into(),
            user_id: (*user).into(),
            candidates: indexes
                .iter()
                .map(|&i| Candidate { item_id: rows[i].1.clone(), features: Default::default() })
                .collect(),
            ..Default::default()
        };
        let scores = client.predict(request).await.unwrap().into_inner().scores;
        for (&i, score) in indexes.iter().zip(scores) {
            served[i] = score;
        }
    }
    server.stop().await;

    assert_eq!(offline.len(), served.len());
    let max_diff = offline.iter().zip(&served).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let served_auc = auc(&served.iter().map(|&s| f64::from(s)).collect::<Vec<_>>(), &labels);
    let offline_recomputed = auc(&offline.iter().map(|&s| f64::from(s)).collect::<Vec<_>>(), &labels);
    println!(
        "movielens-100k: {} test rows, offline AUC {offline_auc:.6} (recomputed {offline_recomputed:.6}), served AUC {served_auc:.6}, max |score diff| {max_diff:e}",
        served.len()
    );
    assert!(max_diff <= 1e-6, "per-row scores differ by up to {max_diff}");
    assert!((offline_recomputed - offline_auc).abs() < 1e-9, "trainer AUC {offline_auc} vs {offline_recomputed}");
    assert!((served_auc - offline_auc).abs() < 1e-6, "served AUC {served_auc} != offline AUC {offline_auc}");
    assert!(offline_auc > 0.6, "the model should learn something real (AUC {offline_auc})");
}

fn read_test(path: &Path) -> (Vec<(String, String)>, Vec<bool>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        rows.push((record[0].to_owned(), record[1].to_owned()));
        labels.push(&record[2] == "1");
    }
    (rows, labels)
}
