//! The ModelAdmin service: list repositories and versions, reload now, set the canary share.
//! Its model listing also feeds the admin HTTP status page; each loaded version carries what its
//! marker recorded at publish (the gate's evaluation and the trainer's lineage) and, with drift
//! on, its features' drift against the training reference (`crate::drift`).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use tonic::{Request, Response, Status};

use super::status::{BoxFuture, ModelSource};
use crate::assemble::FallbackReason;
use crate::error::Error;
use crate::predict::Predictor;
use crate::proto::model_admin_server::ModelAdmin;
use crate::proto::{
    CacheStats, FeatureDrift, FeatureFallbacks, GetStatsRequest, GetStatsResponse, Lineage, ListModelsRequest,
    ListModelsResponse, ModelStatus, OfflineScores, PublishEvaluation, RejectedVersion, ReloadRequest, SceneStats,
    SetCanaryRequest, StageLatency, VersionDrift, VersionQuality, VersionStatus,
};
use crate::proto::{CanaryAction, CanaryDecision, DecideCanaryRequest, RolloutStatus};
use crate::repository::bucket;
use crate::repository::provenance::{self, Evaluation};
use crate::repository::rollout::{Comparison, Decision, Evaluation as RolloutEvaluation, Verdict};
use crate::rollout::Action;
use crate::sample_log::metrics::SampleMetrics;
use crate::scene::{Scene, Stage};
use crate::telemetry::Metrics;

/// gRPC handler for `augur.v1.ModelAdmin`.
#[derive(Debug, Clone)]
pub struct AdminService {
    predictor: Arc<Predictor>,
    metrics: Metrics,
}

impl AdminService {
    /// Operates the predictor's repositories.
    pub fn new(shared: crate::server::ServiceState) -> Self {
        AdminService { predictor: shared.predictor, metrics: shared.metrics }
    }

    /// The registry `GetStats` reads.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn scene_for(&self, model: &str) -> Result<&Scene, Error> {
        self.predictor.scenes().find(|s| s.repo.name() == model).ok_or_else(|| {
            let mut served: Vec<&str> = self.predictor.scenes().map(|s| s.repo.name()).collect();
            served.sort_unstable();
            Error::UnknownModel { model: model.to_owned(), served: served.join(", ") }
        })
    }

    async fn list(&self) -> ListModelsResponse {
        let mut models = Vec::new();
        for scene in self.predictor.scenes() {
            models.push(self.with_quality(status(scene).await));
        }
        self.with_drift(&mut models);
        models.sort_by(|a, b| a.name.cmp(&b.name));
        ListModelsResponse { models }
    }
}

impl AdminService {
    /// `status` with its versions' online quality (`crate::quality`), when sample logging and
    /// quality are on: read from the tracker the joiner feeds, found through the metrics registry
    /// (the sample pipeline registers it), so the admin service needs no handle of its own.
    fn with_quality(&self, mut status: ModelStatus) -> ModelStatus {
        let Some(quality) = self.metrics.get::<SampleMetrics>().map(|m| m.quality) else { return status };
        let Some(positive_event) = quality.config().map(|c| c.positive_event.clone()) else { return status };
        let snapshot = quality.snapshot(crate::quality::now_ms());
        let mut versions: Vec<VersionQuality> = snapshot
            .versions
            .into_iter()
            .filter(|v| v.key.scene == status.scene && v.key.model == status.name)
            .map(|v| VersionQuality {
                version: v.key.version,
                window_start_ms: v.window_ms.0,
                window_end_ms: v.window_ms.1,
                impressions: v.window.impressions,
                positives: v.window.positives,
                ctr: v.window.ctr,
                mean_score: v.window.mean_score,
                calibration: v.window.calibration,
                calibration_difference: v.window.calibration_difference,
                log_loss: v.window.log_loss,
                auc: v.window.auc,
                auc_error_bound: v.window.auc_error_bound,
                impressions_total: v.impressions_total,
                events_total: v.events_total.into_iter().collect(),
                corrections_total: v.corrections_total,
                positive_event: positive_event.clone(),
            })
            .collect();
        // Numeric versions in number order ("9" before "10"), others after, by name.
        versions.sort_by(|a, b| {
            let n = |v: &str| v.parse::<u64>().ok();
            (n(&a.version).is_none(), n(&a.version), &a.version).cmp(&(
                n(&b.version).is_none(),
                n(&b.version),
                &b.version,
            ))
        });
        status.quality = versions;
        status
    }
}

impl AdminService {
    /// Each listed version's drift (`crate::drift`), when drift is on: read from the tracker the
    /// predictor feeds, found through the metrics registry as the status page finds it.
    fn with_drift(&self, models: &mut [ModelStatus]) {
        let Some(drift) = self.metrics.get::<crate::drift::Drift>() else { return };
        let Some(threshold) = drift.config().map(|c| c.psi_threshold) else { return };
        let snapshot = drift.snapshot(crate::drift::now_ms());
        for model in models.iter_mut() {
            for version in &mut model.versions {
                let tracked = snapshot.versions.iter().find(|v| {
                    v.key.scene == model.scene && v.key.model == model.name && v.key.version == version.version
                });
                version.drift = tracked.map(|v| version_drift(v, threshold));
            }
        }
    }
}

/// A tracked version's drift as ListModels shows it: worst PSI first.
fn version_drift(v: &crate::drift::VersionDrift, psi_threshold: f64) -> VersionDrift {
    let mut features: Vec<FeatureDrift> = v
        .features
        .iter()
        .map(|f| FeatureDrift {
            feature: f.name.clone(),
            psi: f.psi,
            flagged: f.flagged,
            fallback_rate: f.fallback_rate,
            reference_fallback_rate: f.reference_fallback_rate,
            in_reference: f.in_reference,
        })
        .collect();
    // Stable: features without a PSI keep spec order after the others.
    features.sort_by(|a, b| match (a.psi, b.psi) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    VersionDrift {
        has_reference: v.has_reference,
        rows: v.rows,
        rows_total: v.rows_total,
        window_start_ms: v.window_ms.0,
        window_end_ms: v.window_ms.1,
        psi_threshold,
        flagged: features.iter().filter(|f| f.flagged).count() as u32,
        features,
    }
}

/// The status page lists what `ListModels` answers.
impl ModelSource for AdminService {
    fn models(&self) -> BoxFuture<'_, Vec<ModelStatus>> {
        Box::pin(async move { self.list().await.models })
    }
}

async fn status(scene: &Scene) -> ModelStatus {
    let repo = &scene.repo;
    let routing = repo.routing();
    let stats = repo.stats();
    let versions = routing
        .versions
        .values()
        .map(|v| {
            let mut labels = Vec::new();
            let canary = routing.canary.filter(|(c, _)| *c == v.number).map(|(_, w)| w);
            if routing.stable == Some(v.number) {
                labels.push("stable".to_owned());
            }
            if canary.is_some() {
                labels.push("canary".to_owned());
            }
            let weight = match (routing.stable == Some(v.number), canary, routing.canary) {
                (_, Some(w), _) => w,
                (true, None, Some((_, w))) => 1.0 - w,
                (true, None, None) => 1.0,
                (false, None, _) => 0.0,
            };
            let b = v.batcher.stats();
            let config = v.batcher.config();
            // A small file per loaded version, written once when the version was published or
            // materialised from the bucket.
            let marker = bucket::local_marker(repo.dir(), v.number);
            VersionStatus {
                version: v.number,
                state: "READY".into(),
                labels,
                traffic_weight: weight,
                loaded_at_unix_ms: v.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64),
                load_ms: v.load_time.as_secs_f64() * 1e3,
                warmup_ms: v.warmup.duration.as_secs_f64() * 1e3,
                warmup_rows: v.warmup.rows,
                batches: b.batches,
                rows: b.rows,
                expired: b.expired,
                rejected: b.rejected,
                max_batch_rows: config.max_batch_rows as u32,
                max_queue_delay_us: config.max_queue_delay.as_micros() as u32,
                inference_cpu_seconds: b.cpu_seconds,
                evaluation: marker.as_ref().and_then(|m| m.evaluation.as_ref()).map(evaluation),
                lineage: marker.as_ref().and_then(|m| m.lineage.as_ref()).map(lineage),
                // Filled by `AdminService::with_drift`, which holds the tracker.
                drift: None,
            }
        })
        .collect();
    let (source, source_latest, mut rejected_versions) = match &scene.source {
        Some(source) => {
            let status = source.status().await;
            let rejected = status
                .rejected
                .iter()
                .map(|(r, at)| RejectedVersion {
                    version: r.version,
                    stage: "source".into(),
                    reason: r.reason.as_str().into(),
                    detail: r.detail.clone(),
                    rejected_at_ms: *at,
                })
                .collect();
            (status.url, status.latest.unwrap_or(0), rejected)
        }
        None => (String::new(), 0, Vec::new()),
    };
    rejected_versions.extend(repo.rejected_versions().await.into_iter().map(|(version, detail, at)| RejectedVersion {
        version,
        stage: "repository".into(),
        reason: "load".into(),
        detail,
        rejected_at_ms: at,
    }));
    let rollout = rollout_status(scene).await;
    if let Some(r) = &rollout {
        // A rolled-back canary is refused like a version that failed to load.
        rejected_versions.extend(r.decisions.iter().filter(|d| d.decision == Verdict::Rollback.as_str()).map(|d| {
            RejectedVersion {
                version: d.version,
                stage: "rollout".into(),
                reason: "rollback".into(),
                detail: format!("{} ({}): {}", d.by, d.replica, d.reason),
                rejected_at_ms: d.at_ms,
            }
        }));
    }
    ModelStatus {
        name: repo.name().to_owned(),
        scene: scene.spec.scene.clone(),
        directory: repo.dir().display().to_string(),
        versions,
        rescans: stats.rescans,
        loads: stats.loads,
        rejected: stats.rejected,
        unloads: stats.unloads,
        last_error: repo.last_error().await.unwrap_or_default(),
        source,
        source_latest,
        rejected_versions,
        quality: Vec::new(),
        rollout,
    }
}

/// The publish gate's record, as ListModels shows it.
fn evaluation(e: &Evaluation) -> PublishEvaluation {
    let scores = |s: &provenance::Scores| OfflineScores {
        auc: s.auc,
        log_loss: s.log_loss,
        mean_score: s.mean_score,
        calibration: s.calibration,
    };
    PublishEvaluation {
        decision: e.decision.as_str().into(),
        forced: e.forced,
        reasons: e.reasons.iter().filter(|r| !r.is_empty()).cloned().collect(),
        baseline_version: e.baseline_version.unwrap_or(0),
        rows: e.rows,
        positives: e.positives,
        positive_event: e.positive_event.clone(),
        window_start_ms: e.window_start_ms,
        window_end_ms: e.window_end_ms,
        held_out_from_ms: e.held_out_from_ms.unwrap_or(0),
        candidate: e.candidate.as_ref().map(scores),
        baseline: e.baseline.as_ref().map(scores),
        max_auc_drop: e.tolerance.max_auc_drop,
        max_log_loss_rise: e.tolerance.max_log_loss_rise,
        max_calibration_error: e.tolerance.max_calibration_error,
        evaluated_at_ms: e.evaluated_at_ms,
        samples: e.samples.clone(),
    }
}

/// The trainer's lineage, as ListModels shows it.
fn lineage(l: &provenance::Lineage) -> Lineage {
    let window = l.samples.clone().unwrap_or_default();
    Lineage {
        run_json: if l.run.is_empty() { String::new() } else { serde_json::Value::Object(l.run.clone()).to_string() },
        trained_from_ms: window.from_ms,
        trained_to_ms: window.to_ms,
        trained_rows: window.rows,
        trained_positives: window.positives,
        warm_start_version: l.warm_start_version,
    }
}

/// The scene's rollout policy, its recorded decisions (newest first) and this replica's last look.
async fn rollout_status(scene: &Scene) -> Option<RolloutStatus> {
    let policy = scene.rollout.as_ref()?;
    let view = scene.repo.rollout().await.unwrap_or_default();
    let mut decisions: Vec<CanaryDecision> = view.decisions.values().map(decision).collect();
    decisions.sort_by_key(|d| std::cmp::Reverse((d.at_ms, d.version)));
    Some(RolloutStatus {
        canary_share: policy.canary_share,
        min_impressions: policy.min_impressions,
        max_auc_drop: policy.max_auc_drop,
        max_calibration_error: policy.max_calibration_error,
        decision_window_s: policy.decision_window_s,
        stable_version: view.stable.unwrap_or(0),
        canary_version: view.canary.map_or(0, |c| c.0),
        canary_since_ms: view.canary.map_or(0, |c| c.2),
        decisions,
        last_evaluation: scene.repo.evaluation().map(|e| rollout_evaluation(&e)),
    })
}

fn with_numbers(mut d: CanaryDecision, c: &Comparison) -> CanaryDecision {
    d.stable_impressions = c.stable_impressions;
    d.canary_impressions = c.canary_impressions;
    d.stable_auc = c.stable_auc;
    d.canary_auc = c.canary_auc;
    d.auc_difference = c.auc_difference;
    d.standard_error = c.standard_error;
    d.z = c.z.filter(|z| z.is_finite());
    d.canary_calibration = c.canary_calibration;
    d.window_start_ms = c.window_start_ms;
    d.window_end_ms = c.window_end_ms;
    d
}

fn decision(d: &Decision) -> CanaryDecision {
    let base = CanaryDecision {
        version: d.version,
        decision: d.verdict.as_str().into(),
        by: d.by.clone(),
        at_ms: d.at_ms,
        stable_version: d.stable.unwrap_or(0),
        reason: d.reason.clone(),
        replica: d.replica.clone(),
        ..CanaryDecision::default()
    };
    match &d.comparison {
        Some(c) => with_numbers(base, c),
        None => base,
    }
}

fn rollout_evaluation(e: &RolloutEvaluation) -> CanaryDecision {
    let base = CanaryDecision {
        version: e.version,
        decision: e.outcome.clone(),
        by: "auto".into(),
        at_ms: e.at_ms,
        stable_version: e.stable,
        reason: e.reason.clone(),
        replica: crate::repository::rollout::replica_name(),
        ..CanaryDecision::default()
    };
    with_numbers(base, &e.comparison)
}

/// Polls the scene's bucket (when it has one) and rescans its repository.
async fn reload(scene: &Scene) {
    if let Some(source) = &scene.source {
        source.poll().await;
    }
    scene.repo.rescan().await;
}

fn scene_stats(scene: &Scene, reset: bool) -> SceneStats {
    let ms = |us: u64| us as f64 / 1000.0;
    let stages = Stage::ALL
        .iter()
        .map(|&stage| {
            let s = scene.stage(stage).summary(reset);
            StageLatency {
                stage: stage.name().into(),
                count: s.count,
                p50_ms: ms(s.p50_us),
                p90_ms: ms(s.p90_us),
                p99_ms: ms(s.p99_us),
                max_ms: ms(s.max_us),
            }
        })
        .collect();
    let reasons = FallbackReason::ALL;
    let fallbacks = scene
        .spec
        .features
        .iter()
        .flat_map(|f| reasons.iter().map(move |&r| (f, r)))
        .filter_map(|(f, reason)| {
            let count = scene.fallback_count(&f.name, reason);
            (count > 0).then(|| FeatureFallbacks { feature: f.name.clone(), reason: format!("{reason:?}"), count })
        })
        .collect();
    SceneStats { scene: scene.spec.scene.clone(), stages, fallbacks }
}

#[tonic::async_trait]
impl ModelAdmin for AdminService {
    async fn list_models(&self, _: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        Ok(Response::new(self.list().await))
    }

    async fn reload(&self, request: Request<ReloadRequest>) -> Result<Response<ListModelsResponse>, Status> {
        let model = request.into_inner().model;
        if model.is_empty() {
            for scene in self.predictor.scenes() {
                reload(scene).await;
            }
        } else {
            reload(self.scene_for(&model)?).await;
        }
        Ok(Response::new(self.list().await))
    }

    async fn get_stats(&self, request: Request<GetStatsRequest>) -> Result<Response<GetStatsResponse>, Status> {
        let reset = request.into_inner().reset;
        let mut scenes: Vec<SceneStats> = self.predictor.scenes().map(|scene| scene_stats(scene, reset)).collect();
        scenes.sort_by(|a, b| a.scene.cmp(&b.scene));
        let cache = self.predictor.cache_stats().map(|c| {
            let lookups = c.hits + c.negative_hits + c.misses;
            CacheStats {
                hits: c.hits,
                negative_hits: c.negative_hits,
                misses: c.misses,
                coalesced: c.coalesced,
                store_reads: c.store_reads,
                evictions: c.evictions,
                hit_ratio: if lookups == 0 { 0.0 } else { (c.hits + c.negative_hits) as f64 / lookups as f64 },
            }
        });
        Ok(Response::new(GetStatsResponse { scenes, cache }))
    }

    async fn set_canary(&self, request: Request<SetCanaryRequest>) -> Result<Response<ModelStatus>, Status> {
        let r = request.into_inner();
        let scene = self.scene_for(&r.model)?;
        scene.repo.set_canary(r.version, r.weight).await.map_err(Error::from)?;
        let mut listed = [self.with_quality(status(scene).await)];
        self.with_drift(&mut listed);
        let [listed] = listed;
        Ok(Response::new(listed))
    }

    async fn decide_canary(&self, request: Request<DecideCanaryRequest>) -> Result<Response<ModelStatus>, Status> {
        let r = request.into_inner();
        let scene = self.scene_for(&r.model)?;
        let action = match CanaryAction::try_from(r.action) {
            Ok(CanaryAction::Promote) => Action::Promote,
            Ok(CanaryAction::Rollback) => Action::Rollback,
            Ok(CanaryAction::Hold) => Action::Hold,
            Ok(CanaryAction::Resume) => Action::Resume,
            Ok(CanaryAction::Unspecified) | Err(_) => {
                return Err(Error::from(crate::repository::CanaryError::Action { action: r.action }).into());
            }
        };
        crate::rollout::operator(&scene.spec.scene, &scene.repo, r.version, action, &r.reason, &self.metrics)
            .await
            .map_err(Error::from)?;
        let mut listed = [self.with_quality(status(scene).await)];
        self.with_drift(&mut listed);
        let [listed] = listed;
        Ok(Response::new(listed))
    }
}
