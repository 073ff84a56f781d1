//! The canary that decides, end to end with two replicas sharing one model repository: a fake
//! model per version (no ONNX Runtime) scores rows as a known function of their tensors, and
//! clicks are drawn from a "true click model" of the same tensors. v1 (stable) is a noisy copy of
//! the truth; v2, inverted, is published as canary under traffic on replica A and rolled back by
//! A's decider; v3, the truth itself, is promoted. Replica B gets no traffic, so it never decides:
//! it follows the decisions A recorded in the repository and ends up routing as A does. Both
//! decisions show in ModelAdmin (A and B) and in A's `/metrics`; an operator's rollback through
//! B's ModelAdmin takes both back to v1.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use augur::assemble::{Spec, Tensor, TensorData};
use augur::config::{Config, RolloutConfig};
use augur::model::{Model, ModelError, ModelLoader};
use augur::proto::model_admin_client::ModelAdminClient;
use augur::proto::{
    CanaryAction, DecideCanaryRequest, GetFeaturesResponse, ListModelsRequest, ModelStatus, ReportEventsRequest,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::fake_model::fake_config;
use crate::common::http::scrape;
use crate::common::samples::{event, metric, request};
use crate::common::{self, TestServer};

/// Deterministic pseudo-random fraction of a row's feature sum (golden-ratio hashing), `salt`
/// picking an independent one.
fn fraction(tensors: &[Tensor], r: usize, salt: f64) -> f64 {
    let mut sum = 0.0f64;
    for t in tensors {
        let w = t.width;
        match &t.data {
            TensorData::I64(v) => sum += v[r * w..(r + 1) * w].iter().map(|&x| (x % 997) as f64).sum::<f64>(),
            TensorData::F32(v) => sum += v[r * w..(r + 1) * w].iter().map(|&x| f64::from(x)).sum::<f64>(),
        }
    }
    ((sum + salt) * 0.618_033_988_75).rem_euclid(1.0)
}

/// The true click probability of a row, in [0.05, 0.65).
fn truth(tensors: &[Tensor], r: usize) -> f64 {
    0.05 + 0.6 * fraction(tensors, r, 0.0)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Half truth, half noise: the stable v1.
    Noisy,
    /// 0.7 − truth: ranks backwards (v2, worse).
    Inverted,
    /// The truth (v3, better than v1).
    Truth,
}

/// Opens a model of the kind its file names.
#[derive(Debug, Clone, Default)]
struct KindLoader;

impl ModelLoader for KindLoader {
    fn open(&self, path: &Path, _: &Spec) -> Result<Box<dyn Model>, ModelError> {
        let kind = match std::fs::read_to_string(path).unwrap_or_default().trim() {
            "inverted" => Kind::Inverted,
            "truth" => Kind::Truth,
            _ => Kind::Noisy,
        };
        Ok(Box::new(KindModel(kind)))
    }
}

struct KindModel(Kind);

impl Model for KindModel {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        let rows = tensors[0].rows();
        Ok((0..rows)
            .map(|r| {
                let t = truth(tensors, r);
                let score = match self.0 {
                    Kind::Noisy => 0.5 * t + 0.5 * (0.05 + 0.6 * fraction(tensors, r, 7.5)),
                    Kind::Inverted => 0.7 - t,
                    Kind::Truth => t,
                };
                score as f32
            })
            .collect())
    }
}

fn publish(repo: &Path, version: u64, kind: &str) {
    let tmp = repo.join(format!(".tmp-{version}"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("model.onnx"), kind).unwrap();
    std::fs::rename(&tmp, repo.join(version.to_string())).unwrap();
}

fn tensors(features: &GetFeaturesResponse) -> Vec<Tensor> {
    features
        .inputs
        .iter()
        .map(|t| Tensor {
            name: t.name.clone(),
            width: t.shape[1] as usize,
            data: if t.float_values.is_empty() && !t.int64_values.is_empty() {
                TensorData::I64(t.int64_values.clone())
            } else {
                TensorData::F32(t.float_values.clone())
            },
        })
        .collect()
}

/// A replica: fake models, samples on (its own log), quality in 1 s buckets, the rollout policy
/// small enough for a test, the repository watched.
fn replica_config(repo: &Path, log: &Path) -> Config {
    let mut config = fake_config(repo, "");
    let samples =
        crate::common::samples::samples_config(log, "[samples.quality]\nbucket_s = 1\nbuckets = 60\nbins = 2048\n");
    config.samples = samples.samples;
    config.model.watch = true;
    config.model.poll_interval_ms = 300;
    config.scenes[0].rollout = Some(RolloutConfig {
        canary_share: 0.5,
        min_impressions: 200,
        max_auc_drop: 0.02,
        max_calibration_error: 0.5,
        decision_window_s: 4,
        check_interval_ms: 200,
    });
    config.validate().expect("the test config validates");
    config
}

async fn listed(server: &TestServer) -> ModelStatus {
    let mut admin = ModelAdminClient::new(server.admin_channel().await);
    admin.list_models(ListModelsRequest {}).await.unwrap().into_inner().models.remove(0)
}

fn decision_of(status: &ModelStatus, version: u64) -> Option<(String, String)> {
    let r = status.rollout.as_ref()?;
    r.decisions.iter().find(|d| d.version == version).map(|d| (d.decision.clone(), d.by.clone()))
}

/// Traffic on `server` (Predict, then impressions and clicks from the true click model) until
/// `version` has a recorded decision; returns it.
async fn traffic_until_decided(server: &TestServer, rng: &mut ChaCha8Rng, next: &mut usize, version: u64) -> String {
    let mut client = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut events = Vec::new();
        for _ in 0..20 {
            let r = request(*next);
            *next += 1;
            let response = client.predict(r.clone()).await.expect("predict").into_inner();
            let features = client.get_features(common::features_request(&r)).await.unwrap().into_inner();
            let t = tensors(&features);
            for (row, c) in r.candidates.iter().enumerate() {
                events.push(event(&r.request_id, &c.item_id, "impression"));
                if rng.random::<f64>() < truth(&t, row) {
                    events.push(event(&r.request_id, &c.item_id, "click"));
                }
            }
            assert_eq!(response.scores.len(), r.candidates.len());
        }
        // The snapshots are stored off the hot path: give them a moment before the labels.
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.report_events(ReportEventsRequest { events }).await.expect("report");
        if let Some((d, by)) = decision_of(&listed(server).await, version) {
            assert_eq!(by, "auto");
            return d;
        }
        assert!(Instant::now() < deadline, "no decision on v{version}: {:?}", listed(server).await.rollout);
    }
}

/// Versions B routes un-pinned users to (100 users).
async fn routed(server: &TestServer) -> std::collections::BTreeSet<String> {
    let mut client = server.client().await;
    let mut seen = std::collections::BTreeSet::new();
    for k in 0..100 {
        let r = common::ranking_request(&format!("user-{k}"), &["i1"]);
        seen.insert(client.predict(r).await.unwrap().into_inner().model_version);
    }
    seen
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_worse_canary_is_rolled_back_and_a_better_one_promoted_on_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let repo: PathBuf = dir.path().join("ranking_model");
    std::fs::create_dir_all(&repo).unwrap();
    publish(&repo, 1, "noisy");
    let parts = || augur::app::Parts { loader: Some(Arc::new(KindLoader)), ..Default::default() };
    let a = common::start_with(replica_config(&repo, &dir.path().join("log-a")), parts()).await;
    let b = common::start_with(replica_config(&repo, &dir.path().join("log-b")), parts()).await;
    let start = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut next = 0;

    // v1 is the bootstrap stable, recorded once for both replicas.
    for server in [&a, &b] {
        let status = listed(server).await;
        assert_eq!(decision_of(&status, 1), Some(("promote".into(), "bootstrap".into())), "{status:?}");
    }

    // A worse canary: rolled back by A, followed by B.
    publish(&repo, 2, "inverted");
    for server in [&a, &b] {
        until("v2 as canary", async || listed(server).await.rollout.unwrap().canary_version == 2).await;
    }
    assert_eq!(traffic_until_decided(&a, &mut rng, &mut next, 2).await, "rollback");
    for server in [&a, &b] {
        until("v2 rolled back everywhere", async || {
            let s = listed(server).await;
            let r = s.rollout.clone().unwrap();
            r.canary_version == 0 && r.stable_version == 1 && s.versions.iter().all(|v| v.version != 2)
        })
        .await;
        let s = listed(server).await;
        assert_eq!(decision_of(&s, 2), Some(("rollback".into(), "auto".into())));
        let rejected = s.rejected_versions.iter().find(|r| r.version == 2).expect("v2 listed as rejected");
        assert_eq!((rejected.stage.as_str(), rejected.reason.as_str()), ("rollout", "rollback"));
        assert_eq!(routed(server).await, ["1".to_owned()].into());
    }
    let numbers = listed(&b).await.rollout.unwrap().decisions.into_iter().find(|d| d.version == 2).unwrap();
    eprintln!("rollback: {}", numbers.reason);
    assert!(numbers.canary_auc.unwrap() < numbers.stable_auc.unwrap(), "{numbers:?}");
    assert!(numbers.canary_impressions >= 200 && numbers.stable_impressions >= 200, "{numbers:?}");

    // A better canary: promoted by A at the end of its window, followed by B.
    publish(&repo, 3, "truth");
    for server in [&a, &b] {
        until("v3 as canary", async || listed(server).await.rollout.unwrap().canary_version == 3).await;
    }
    assert_eq!(traffic_until_decided(&a, &mut rng, &mut next, 3).await, "promote");
    for server in [&a, &b] {
        until("v3 stable everywhere", async || {
            let r = listed(server).await.rollout.unwrap();
            r.canary_version == 0 && r.stable_version == 3
        })
        .await;
        assert_eq!(routed(server).await, ["3".to_owned()].into());
    }
    let promoted = listed(&b).await.rollout.unwrap().decisions.into_iter().find(|d| d.version == 3).unwrap();
    eprintln!("promote: {}", promoted.reason);
    assert!(promoted.canary_auc.unwrap() > promoted.stable_auc.unwrap(), "{promoted:?}");

    // Counted where decided: A decided both, B followed.
    let series = |decision: &str| {
        format!(
            "augur_canary_decisions_total{{scene=\"ranking\",model=\"ranking_model\",decision=\"{decision}\",by=\"auto\"}} "
        )
    };
    let (on_a, on_b) = (scrape(&a).await, scrape(&b).await);
    assert_eq!(metric(&on_a, &series("rollback")), 1.0, "{on_a}");
    assert_eq!(metric(&on_a, &series("promote")), 1.0);
    assert_eq!(metric(&on_b, &series("rollback")) + metric(&on_b, &series("promote")), 0.0);

    // An operator overrides through B: v3 rolled back by hand; both replicas return to v1.
    let mut admin = ModelAdminClient::new(b.admin_channel().await);
    admin
        .decide_canary(DecideCanaryRequest {
            model: "ranking_model".into(),
            version: 3,
            action: CanaryAction::Rollback as i32,
            reason: "operator: back to v1".into(),
        })
        .await
        .expect("operator decision");
    let refused = admin
        .decide_canary(DecideCanaryRequest {
            model: "ranking_model".into(),
            version: 9,
            action: 1,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    for server in [&a, &b] {
        until("v3 rolled back by the operator everywhere", async || {
            let s = listed(server).await;
            decision_of(&s, 3) == Some(("rollback".into(), "operator".into())) && s.rollout.unwrap().stable_version == 1
        })
        .await;
        assert_eq!(routed(server).await, ["1".to_owned()].into());
    }
    let on_b = scrape(&b).await;
    assert_eq!(
        metric(
            &on_b,
            "augur_canary_decisions_total{scene=\"ranking\",model=\"ranking_model\",decision=\"rollback\",by=\"operator\"} "
        ),
        1.0
    );
    eprintln!("both decisions in {:?}", start.elapsed());
    a.stop().await;
    b.stop().await;
}
