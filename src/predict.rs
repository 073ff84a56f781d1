//! Step 7: the request path as one readable async fn — check, fetch, assemble, infer.
//!
//! The `fetch` and `assemble` trace spans open here, as children of the RPC's server span
//! (`telemetry::trace`); the batcher adds `queue` and `inference`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::assemble::encode::RequestView;
use crate::assemble::{Assembled, Fallback, FallbackReason, Spec, assemble};
use crate::drift::Drift;
use crate::error::{Error, RequestError};
use crate::fetch::config::FetchConfig;
use crate::fetch::{FeatureStore, FetchError, Row, Value};
use crate::sample_log::Samples;
use crate::sample_log::join::{JoinError, Reuse};
use crate::sample_log::snapshot::{Served, now_ms};
use crate::scene::{Scene, Stage};

/// A scoring request in domain form (already checked against the server's generic limits).
#[derive(Debug, Clone, Default)]
pub struct ScoreRequest {
    /// Caller's id for the request (generated when empty).
    pub request_id: String,
    /// Scene to score in.
    pub scene: String,
    /// User id; may be empty when the scene does not require one.
    pub user_id: String,
    /// Context values by field name.
    pub context: HashMap<String, Value>,
    /// Item id and request-time item values, per candidate.
    pub candidates: Vec<(String, HashMap<String, Value>)>,
    /// Pinned model version or label; empty = routing decides.
    pub model_version: String,
}

/// Scores aligned with the candidates.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Echoed or generated request id.
    pub request_id: String,
    /// One score per candidate.
    pub scores: Vec<f32>,
    /// Model repository name.
    pub model_name: String,
    /// Model version.
    pub model_version: String,
    /// Features served from defaults.
    pub fallbacks: Vec<Fallback>,
}

/// The served scenes and the store they read.
#[derive(Debug)]
pub struct Predictor {
    scenes: HashMap<String, Scene>,
    store: Arc<dyn FeatureStore>,
    fetch: FetchConfig,
    /// The sample pipeline's ends: snapshots out, events in (`None`: sample logging off).
    samples: Option<Samples>,
    /// Served values against each version's training reference (inert unless started).
    drift: Drift,
}

impl Predictor {
    /// Wires scenes to a store.
    pub fn new(scenes: Vec<Scene>, store: Arc<dyn FeatureStore>, fetch: FetchConfig) -> Self {
        let scenes = scenes.into_iter().map(|s| (s.spec.scene.clone(), s)).collect();
        Predictor { scenes, store, fetch, samples: None, drift: Drift::default() }
    }

    /// Turns sample logging on.
    pub fn with_samples(mut self, samples: Samples) -> Self {
        self.samples = Some(samples);
        self
    }

    /// Feeds one request in `drift.sample_every` to `drift`.
    pub fn with_drift(mut self, drift: Drift) -> Self {
        self.drift = drift;
        self
    }

    /// ReportEvents: one result per event; FAILED_PRECONDITION when sample logging is off.
    pub async fn report_events(
        &self,
        events: Vec<crate::proto::Event>,
        max_id_bytes: usize,
    ) -> Result<Vec<crate::proto::EventResult>, Error> {
        let Some(samples) = &self.samples else { return Err(Error::SamplesOff) };
        Ok(samples.joiner.report(events, max_id_bytes).await?)
    }

    /// Scene by name, or NOT_FOUND listing the served ones.
    pub fn scene(&self, name: &str) -> Result<&Scene, Error> {
        self.scenes.get(name).ok_or_else(|| {
            let mut served: Vec<&str> = self.scenes.keys().map(String::as_str).collect();
            served.sort_unstable();
            Error::UnknownScene { scene: name.to_owned(), served: served.join(", ") }
        })
    }

    /// The local cache's counters, if the store has a cache.
    pub fn cache_stats(&self) -> Option<crate::fetch::CacheStats> {
        self.store.cache_stats()
    }

    /// The served scenes.
    pub fn scenes(&self) -> impl Iterator<Item = &Scene> {
        self.scenes.values()
    }

    /// Shutdown: empties every scene's routing table, so the batchers close (and their threads
    /// answer what is queued and exit) as soon as requests in flight let go of their versions.
    pub fn unload_all(&self) {
        for scene in self.scenes.values() {
            scene.repo.unload_all();
        }
    }

    /// Predict: one score per candidate.
    pub async fn predict(&self, mut request: ScoreRequest, deadline: Option<Instant>) -> Result<Prediction, Error> {
        if request.request_id.is_empty() {
            request.request_id = uuid::Uuid::new_v4().to_string();
        }
        let started = Instant::now();
        let scene = self.scene(&request.scene)?;
        // Route first: a pinned version that is not loaded fails before any fetch.
        let version = scene.repo.route(&request.user_id, &request.model_version)?;
        let logged = self.samples.as_ref().filter(|s| s.queue.wants(&request.scene, &request.request_id));
        if let Some(samples) = logged {
            // Events name a prediction by request_id: a second prediction under a held id
            // would have its events joined to the first, so it is refused before any work.
            let item_ids: Vec<&str> = request.candidates.iter().map(|(id, _)| id.as_str()).collect();
            if samples.joiner.store().reuse(&request.request_id, &item_ids) == Some(Reuse::Conflict) {
                return Err(JoinError::Reused { request_id: request.request_id }.into());
            }
        }
        // The prediction's time is when its features are read: a point-in-time backfill gives
        // it every change applied by then, so a change applied during inference is not counted
        // as served (`cli::backfill`).
        let timestamp_ms = now_ms();
        let assembled = self.features_for(scene, &request, deadline).await?;
        let infer_started = Instant::now();
        let tensors: Arc<[crate::assemble::Tensor]> = assembled.tensors.into();
        let scores = version.batcher.infer(Arc::clone(&tensors), deadline).await?;
        scene.stage(Stage::Infer).record(infer_started.elapsed());
        let reference = version.reference.as_deref();
        self.drift.observe(&scene.spec, scene.repo.name(), version.number, reference, &tensors, &assembled.fallbacks);
        if let Some(samples) = logged {
            // Moved, not copied: the request is not read after this.
            let item_ids = std::mem::take(&mut request.candidates).into_iter().map(|(id, _)| id).collect();
            samples
                .queue
                .offer(Served {
                    request_id: request.request_id.clone(),
                    timestamp_ms,
                    scene: request.scene.clone(),
                    model_name: scene.repo.name().to_owned(),
                    model_version: version.number.to_string(),
                    user_id: std::mem::take(&mut request.user_id),
                    item_ids,
                    scores: scores.clone(),
                    // Samples keep every candidate's full row: request-level columns expanded
                    // (copied here only for a spec with request-level inputs).
                    inputs: if scene.spec.has_request_level() {
                        scene.spec.stored_form(&tensors, scores.len()).into()
                    } else {
                        tensors
                    },
                    fallbacks: assembled.fallbacks.clone(),
                })
                .await;
        }
        scene.stage(Stage::Total).record(started.elapsed());
        scene.count_scored(scores.len());
        Ok(Prediction {
            request_id: request.request_id,
            scores,
            model_name: scene.repo.name().to_owned(),
            model_version: version.number.to_string(),
            fallbacks: assembled.fallbacks,
        })
    }

    /// GetFeatures: the tensors Predict would feed the model, in the stored form (every
    /// candidate's full row, as samples and exports hold them).
    pub async fn features(&self, request: &ScoreRequest) -> Result<(&Spec, Assembled), Error> {
        let scene = self.scene(&request.scene)?;
        Ok((&scene.spec, self.features_for(scene, request, None).await?.into_stored(&scene.spec)))
    }

    async fn features_for(
        &self,
        scene: &Scene,
        request: &ScoreRequest,
        deadline: Option<Instant>,
    ) -> Result<Assembled, Error> {
        check(&scene.spec, request)?;
        let spec = &scene.spec;
        let item_ids: Vec<&str> = request.candidates.iter().map(|(id, _)| id.as_str()).collect();
        let user_ids = [request.user_id.as_str()];
        let budget = self.fetch_budget(deadline);
        let user_rows = async {
            if spec.user_fields.is_empty() || request.user_id.is_empty() {
                return Ok(vec![None]);
            }
            self.store.get_rows(&spec.user_table, &user_ids, &spec.user_fields).await
        };
        let item_rows = async {
            if spec.item_fields.is_empty() {
                return Ok(vec![None; item_ids.len()]);
            }
            self.store.get_rows(&spec.item_table, &item_ids, &spec.item_fields).await
        };
        let fetch_started = Instant::now();
        let (user_rows, item_rows) = async { tokio::join!(bounded(user_rows, budget), bounded(item_rows, budget)) }
            .instrument(tracing::debug_span!("fetch", items = item_ids.len() as i64))
            .await;
        scene.stage(Stage::Fetch).record(fetch_started.elapsed());
        let mut view = RequestView::new(&request.user_id, &request.context, &request.candidates);
        let user_rows = user_rows?.unwrap_or_else(|reason| {
            view.user_absent = reason;
            vec![None]
        });
        let item_rows = item_rows?.unwrap_or_else(|reason| {
            view.items_absent = reason;
            vec![None; item_ids.len()]
        });
        let assemble_started = Instant::now();
        let assembled = tracing::debug_span!("assemble")
            .in_scope(|| assemble(spec, view, user_rows.first().and_then(Option::as_ref), &item_rows));
        scene.stage(Stage::Assemble).record(assemble_started.elapsed());
        scene.count_fallbacks(&assembled.fallbacks, item_ids.len());
        if let Some(f) = assembled.fallbacks.iter().find(|f| spec.is_required(&f.feature)) {
            return Err(Error::RequiredFeature {
                scene: spec.scene.clone(),
                feature: f.feature.clone(),
                reason: f.reason,
                candidates: f.candidates.clone(),
            });
        }
        Ok(assembled)
    }

    /// min(cap, deadline − inference reserve); `None` when nothing is left for the fetch.
    fn fetch_budget(&self, deadline: Option<Instant>) -> Option<Duration> {
        let cap = Duration::from_millis(self.fetch.max_budget_ms);
        let Some(deadline) = deadline else { return Some(cap) };
        let reserve = Duration::from_millis(self.fetch.inference_reserve_ms);
        let left = deadline.checked_duration_since(Instant::now())?.checked_sub(reserve)?;
        Some(left.min(cap))
    }
}

/// Runs a store read within `budget`. A slow or failing store degrades the request (the rows
/// count as absent, with the reason) instead of failing it; a misconfigured table is an error.
async fn bounded(
    read: impl Future<Output = Result<Vec<Option<Arc<Row>>>, FetchError>>,
    budget: Option<Duration>,
) -> Result<Result<Vec<Option<Arc<Row>>>, FallbackReason>, Error> {
    let Some(budget) = budget else { return Ok(Err(FallbackReason::Timeout)) };
    match tokio::time::timeout(budget, read).await {
        Err(_) => Ok(Err(FallbackReason::Timeout)),
        Ok(Ok(rows)) => Ok(Ok(rows)),
        Ok(Err(e @ FetchError::Unavailable { .. })) => {
            tracing::debug!(error = %e, "store unavailable; serving defaults");
            Ok(Err(FallbackReason::StoreError))
        }
        Ok(Err(e @ FetchError::Timeout { .. })) => {
            tracing::debug!(error = %e, "store timed out; serving defaults");
            Ok(Err(FallbackReason::Timeout))
        }
        Ok(Err(e @ FetchError::UnknownTable(_))) => Err(e.into()),
    }
}

/// Scene-specific checks: required user, known and well-typed context and item fields.
fn check(spec: &Spec, request: &ScoreRequest) -> Result<(), RequestError> {
    if request.candidates.is_empty() {
        return Err(RequestError::new("candidates", "must hold at least one candidate"));
    }
    if spec.user_required && request.user_id.is_empty() {
        return Err(RequestError::new("user_id", format!("required by scene `{}`", spec.scene)));
    }
    for (key, value) in &request.context {
        let Some(ty) = spec.context_fields.get(key) else {
            return Err(RequestError::new(
                format!("context.{key}"),
                format!("not a context field of scene `{}`", spec.scene),
            ));
        };
        if !ty.accepts(value) {
            return Err(RequestError::new(
                format!("context.{key}"),
                format!("expected {}, got {}", ty.name(), value.type_name()),
            ));
        }
    }
    for (index, (item_id, features)) in request.candidates.iter().enumerate() {
        if item_id.is_empty() {
            return Err(RequestError::new(format!("candidates[{index}].item_id"), "must not be empty"));
        }
        for (key, value) in features {
            let field = || format!("candidates[{index}].features.{key}");
            let Some(ty) = spec.item_field_types.get(key) else {
                return Err(RequestError::new(field(), format!("not an item field of scene `{}`", spec.scene)));
            };
            if !ty.accepts(value) {
                return Err(RequestError::new(field(), format!("expected {}, got {}", ty.name(), value.type_name())));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::fetch::BoxFuture;

    /// A store whose reads take `delay` on tokio's clock: under a paused clock the test, not the
    /// machine's load, decides which of a read and the fetch budget ends first.
    #[derive(Debug)]
    struct Slow {
        delay: Duration,
        reads: AtomicUsize,
    }

    impl Slow {
        fn new(delay: Duration) -> Arc<Self> {
            Arc::new(Slow { delay, reads: AtomicUsize::new(0) })
        }
        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    impl FeatureStore for Slow {
        fn get_rows<'a>(
            &'a self,
            _table: &'a str,
            ids: &'a [&'a str],
            _fields: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<Option<Arc<Row>>>, FetchError>> {
            Box::pin(async move {
                self.reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                Ok(vec![Some(Arc::new(Row::new())); ids.len()])
            })
        }
    }

    /// A predictor without scenes, for its fetch budget: 50 ms at most, 10 ms kept back.
    fn predictor(store: &Arc<Slow>) -> Predictor {
        let store: Arc<dyn FeatureStore> = Arc::clone(store) as _;
        Predictor::new(Vec::new(), store, FetchConfig { max_budget_ms: 50, inference_reserve_ms: 10 })
    }

    /// The read `features_for` would run: the store is only called once the future is polled.
    async fn read(store: &Slow) -> Result<Vec<Option<Arc<Row>>>, FetchError> {
        store.get_rows("users", &["u1"], &[]).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_store_is_cut_at_the_budget_and_served_as_timeout() {
        let store = Slow::new(Duration::from_secs(3600));
        let budget = predictor(&store).fetch_budget(None);
        assert_eq!(budget, Some(Duration::from_millis(50)), "no deadline: the cap");
        assert!(matches!(bounded(read(&store), budget).await, Ok(Err(FallbackReason::Timeout))));
        assert_eq!(store.reads(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_inside_the_budget_is_served_and_one_past_it_is_not() {
        let budget = Some(Duration::from_millis(50));
        let inside = Slow::new(Duration::from_millis(49));
        let rows = bounded(read(&inside), budget).await.unwrap().expect("answered 1 ms before the budget ran out");
        assert_eq!(rows.len(), 1);
        let past = Slow::new(Duration::from_millis(51));
        assert!(matches!(bounded(read(&past), budget).await, Ok(Err(FallbackReason::Timeout))));
    }

    #[tokio::test]
    async fn a_deadline_inside_the_inference_reserve_leaves_no_fetch_at_all() {
        let store = Slow::new(Duration::ZERO);
        let predictor = predictor(&store);
        // 5 ms left, 10 ms reserved: nothing for the store, whatever the clock says by now.
        let budget = predictor.fetch_budget(Some(Instant::now() + Duration::from_millis(5)));
        assert_eq!(budget, None);
        assert!(matches!(bounded(read(&store), budget).await, Ok(Err(FallbackReason::Timeout))));
        assert_eq!(store.reads(), 0, "the store was not even asked");
        // A far deadline is cut to the cap; a near one below the cap bounds the budget.
        assert_eq!(
            predictor.fetch_budget(Some(Instant::now() + Duration::from_secs(3600))),
            predictor.fetch_budget(None)
        );
        let near = predictor.fetch_budget(Some(Instant::now() + Duration::from_millis(40)));
        assert!(near.is_none_or(|b| b <= Duration::from_millis(30)), "{near:?}");
    }

    #[tokio::test]
    async fn store_errors_degrade_and_an_unknown_table_fails() {
        let down = async {
            Err(FetchError::Unavailable { store: "test".into(), source: Arc::new(std::io::Error::other("refused")) })
        };
        assert!(matches!(bounded(down, Some(Duration::from_secs(1))).await, Ok(Err(FallbackReason::StoreError))));
        let slow = async { Err(FetchError::Timeout { store: "test".into(), after_ms: 1 }) };
        assert!(matches!(bounded(slow, Some(Duration::from_secs(1))).await, Ok(Err(FallbackReason::Timeout))));
        let unknown = async { Err(FetchError::UnknownTable("nope".into())) };
        assert!(bounded(unknown, Some(Duration::from_secs(1))).await.is_err());
    }
}
