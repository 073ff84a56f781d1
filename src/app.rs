//! The lifecycle owner: builds everything that lives as long as the process (store, scenes,
//! metrics registry, health reporter, the task tracker every spawned task and thread reports to)
//! and runs the ordered shutdown, whose steps later work fills in.
//!
//! On the first shutdown request: (1) health NOT_SERVING + deregister from the service registry
//! (when configured) → (2) wait `server.drain_delay_ms` while still serving, so clients and load
//! balancers move away → (3) stop accepting, end long-lived streams (health Watch,
//! StreamFeatures) and the repository watchers → (4) in-flight RPCs finish → (5) batchers flush
//! (routing tables emptied; inference threads answer what is queued and exit) → (6) [samples
//! flush], and last, when traces are exported, their flush (the spans of the last requests,
//! ended in steps 4 and 5, are sent before the process exits). Everything after the signal up
//! to the trace flush is bounded by `server.grace_ms`; a second request or the end of the grace
//! cuts the drain short and [`App::serve`] returns [`ServeError::Cut`] naming what was cut.
//!
//! The admin HTTP port ([`crate::admin::http`]) is bound at build time (a taken port fails
//! start-up at once), serves from [`App::serve`] on, reports `/readyz` from the same moments as
//! the gRPC health, and closes only after step 4 so `/metrics` can be scraped during the drain.
//! The admin gRPC port (`ModelAdmin`, [`admin::serve_admin`]) is bound at build time too, has
//! its own health reporter switched with the public one, and stops accepting at step 3 with the
//! public port; it runs on the task tracker, so step 5 also waits for its in-flight calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::{
    self,
    http::{self as admin_http, Readiness},
};
use crate::batch::metrics::BatchMetrics;
use crate::config::{Config, RegistryConfig, StoreConfig};
use crate::drift::Drift;
use crate::feature_stream::{RedisTarget, SpecReads, StreamError, StreamMetrics, Target};
use crate::fetch::metrics::CacheMetrics;
use crate::fetch::{FeatureStore, MemoryStore, StoreOpenError};
use crate::model::ModelLoader;
use crate::model::onnx::{OnnxLoader, SessionOptions};
use crate::predict::Predictor;
use crate::registry::metrics::RegistryMetrics;
use crate::registry::{Registry, RegistryError};
use crate::repository::metrics::ModelMetrics;
use crate::repository::{RepositoryContext, source, watch};
use crate::sample_log::pipeline::{SampleError, SamplePipeline};
use crate::scene::metrics::PathMetrics;
use crate::scene::{Scene, SceneError};
use crate::server::metrics::{ListenerMetrics, RpcMetrics};
use crate::server::{self, ServeError, ServiceState};
use crate::shutdown::Requests;
use crate::telemetry::trace::OtlpTraces;
use crate::telemetry::{Metrics, StageMetrics};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A store table could not be loaded.
    #[error("store: {0}")]
    Store(#[from] StoreOpenError),
    /// A scene could not be loaded.
    #[error(transparent)]
    Scene(#[from] SceneError),
    /// The admin HTTP port could not be bound.
    #[error("admin.listen: cannot bind {addr}: {source}")]
    AdminBind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The admin gRPC port could not be bound.
    #[error("admin.grpc_listen: cannot bind {addr}: {source}")]
    AdminGrpcBind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The service registry did not answer within `registry.connect_timeout_ms`.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The sample pipeline could not start.
    #[error(transparent)]
    Samples(#[from] SampleError),
    /// A feature stream could not start.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Each listener's health reporter and the service it reports besides the whole server (`""`):
/// the public port knows only Prediction, the admin port only ModelAdmin. The public port also
/// reports each scene as `augur.v1.Prediction/<scene>`, which a release-first reload turns
/// NOT_SERVING while that scene has nothing to serve (and `""` with Prediction too, and
/// `/readyz`, while no scene has).
struct Health {
    reporters: [(HealthReporter, &'static str); 2],
    /// Per scene: its health service name and whether its repository has a version to serve.
    scenes: Vec<(String, bool)>,
    /// From shutdown step 1 on, scene changes no longer move any status.
    draining: bool,
    readiness: Readiness,
}

impl Health {
    fn new(reporters: [(HealthReporter, &'static str); 2], scenes: &[String], readiness: Readiness) -> Self {
        let scenes = scenes.iter().map(|scene| (scene_service(scene), true)).collect();
        Health { reporters, scenes, draining: false, readiness }
    }

    /// Every status, scenes included: start-up (SERVING) and shutdown step 1 (NOT_SERVING, and
    /// from then on scene changes are ignored).
    async fn set(&mut self, status: ServingStatus) {
        self.draining = status != ServingStatus::Serving;
        for (reporter, service) in &self.reporters {
            reporter.set_service_status("", status).await;
            reporter.set_service_status(*service, status).await;
        }
        for (service, _) in &self.scenes {
            self.reporters[0].0.set_service_status(service, status).await;
        }
        self.readiness.set(status == ServingStatus::Serving);
    }

    /// A scene's repository gained or lost its last servable version.
    async fn scene(&mut self, index: usize, serving: bool) {
        if self.draining {
            return;
        }
        let status = |up: bool| if up { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.scenes[index].1 = serving;
        let public = &self.reporters[0];
        public.0.set_service_status(&self.scenes[index].0, status(serving)).await;
        let any = self.scenes.iter().any(|(_, up)| *up);
        public.0.set_service_status("", status(any)).await;
        public.0.set_service_status(public.1, status(any)).await;
        self.readiness.set(any);
    }

    /// Removing a status ends its Watch streams (after they saw the last status).
    async fn clear(&mut self) {
        for (reporter, service) in &mut self.reporters {
            reporter.clear_service_status("").await;
            reporter.clear_service_status(service).await;
        }
        for (service, _) in &self.scenes {
            self.reporters[0].0.clear_service_status(service).await;
        }
    }
}

/// The grpc.health.v1 service name of one scene on the public port.
pub fn scene_service(scene: &str) -> String {
    format!("{}/{scene}", server::PREDICTION)
}

/// Follows each scene's repository into the health statuses until shutdown step 1.
fn follow_scenes(
    health: &Arc<tokio::sync::Mutex<Health>>,
    predictor: &Predictor,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) {
    for (index, scene) in predictor.scenes().enumerate() {
        let (health, stop, mut serving) = (Arc::clone(health), stop.clone(), scene.repo.serving());
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = serving.changed() => if changed.is_err() { return },
                }
                let up = *serving.borrow_and_update();
                health.lock().await.scene(index, up).await;
            }
        });
    }
}

/// Builds the configured store: memory tables are loaded, Redis is connected (and wrapped in the
/// local cache when `store.cache` lists tables).
pub async fn store(config: &Config, metrics: &Metrics) -> Result<Arc<dyn FeatureStore>, StartError> {
    Ok(store_and_target(config, metrics).await?.0)
}

/// The configured store, and the same store as feature streams write it (typed: the memory
/// tables, or Redis and the cache in front of it).
async fn store_and_target(config: &Config, metrics: &Metrics) -> Result<(Arc<dyn FeatureStore>, Target), StartError> {
    match &config.store {
        StoreConfig::Memory { tables, max_streamed_rows } => {
            let store = Arc::new(MemoryStore::load(tables)?.with_max_streamed_rows(*max_streamed_rows));
            Ok((Arc::clone(&store) as Arc<dyn FeatureStore>, Target::Memory(store)))
        }
        StoreConfig::Redis(redis) => {
            let store = crate::fetch::RedisFeatureStore::connect(redis).await?;
            let cache =
                redis.cache.tables.values().any(|t| t.enabled).then(|| {
                    Arc::new(crate::fetch::CachedStore::new(store.clone(), &redis.cache.tables, &metrics.of()))
                });
            let target = Target::Redis(RedisTarget {
                store: store.clone(),
                cache: cache.clone(),
                channel: crate::feature_stream::target::channel(&redis.namespace),
                read_timeout: Duration::from_millis(redis.timeout_ms),
            });
            let served: Arc<dyn FeatureStore> = match cache {
                Some(cache) => cache,
                None => Arc::new(store),
            };
            Ok((served, target))
        }
    }
}

/// Everything a running augur owns.
#[derive(Debug)]
pub struct App {
    config: Config,
    predictor: Arc<Predictor>,
    metrics: Metrics,
    /// Cancelled when shutdown starts: watchers and long-lived streams end on it.
    shutdown: CancellationToken,
    /// Every spawned task and thread (watchers, inference and loading threads, admin HTTP, the
    /// registry keepalive).
    tracker: TaskTracker,
    /// The admin HTTP listener, bound at build time; `None` when `admin.enabled = false`.
    admin_http: Option<TcpListener>,
    /// The admin gRPC listener (`ModelAdmin`), bound at build time.
    admin_grpc: TcpListener,
    /// Its address (the real port when `admin.grpc_listen` asked for port 0).
    admin_grpc_addr: SocketAddr,
    /// `/readyz`: true exactly while the gRPC health reports SERVING.
    readiness: Readiness,
    /// Where this instance announces itself, when configured.
    registry: Option<Arc<dyn Registry>>,
    /// The sample pipeline, when `samples.enabled`.
    samples: Option<SamplePipeline>,
    /// The OTLP trace pipeline, flushed last; `None` when tracing is off.
    traces: Option<OtlpTraces>,
}

/// How to build an [`App`] other than from the config alone (tests, embedding).
#[derive(Debug, Default)]
pub struct Parts {
    /// The model loader; default: ONNX Runtime with the config's session options.
    pub loader: Option<Arc<dyn ModelLoader>>,
    /// The feature store; default: the configured one.
    pub store: Option<Arc<dyn FeatureStore>>,
    /// The metrics registry; default: a fresh one.
    pub metrics: Option<Metrics>,
    /// The trace pipeline whose layer the process's subscriber holds (built with the
    /// subscriber, before the app), for the app to flush at shutdown; default: none.
    pub traces: Option<OtlpTraces>,
}

impl App {
    /// Builds store and scenes as configured, with ONNX Runtime.
    pub async fn build(config: Config) -> Result<App, StartError> {
        Self::build_with(config, Parts::default()).await
    }

    /// Builds with some parts supplied. Scenes load one after another (each already uses the
    /// cores); start-up fails if a scene has no servable version.
    pub async fn build_with(config: Config, parts: Parts) -> Result<App, StartError> {
        let metrics = parts.metrics.unwrap_or_default();
        // Every module's families are in the first scrape, zero until used, so an alert or a
        // dashboard never mistakes "absent" for "fine". The sample pipeline registers its own
        // when it starts: absent means sample logging is off.
        let _ = (metrics.of::<RpcMetrics>(), metrics.of::<StageMetrics>(), metrics.of::<PathMetrics>());
        let _ = (metrics.of::<BatchMetrics>(), metrics.of::<ModelMetrics>(), metrics.of::<CacheMetrics>());
        let _ = (metrics.of::<RegistryMetrics>(), metrics.of::<ListenerMetrics>());
        let admin_http = if config.admin.enabled {
            let addr = config.admin.listen;
            Some(TcpListener::bind(addr).await.map_err(|source| StartError::AdminBind { addr, source })?)
        } else {
            None
        };
        let addr = config.admin.grpc_listen;
        let bind_error = |source| StartError::AdminGrpcBind { addr, source };
        let admin_grpc = TcpListener::bind(addr).await.map_err(bind_error)?;
        let admin_grpc_addr = admin_grpc.local_addr().map_err(bind_error)?;
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let store = match parts.store {
            Some(store) if config.feature_streams.is_empty() => store,
            Some(_) => {
                return Err(StreamError::Unsupported(
                    "they write the configured store, not one supplied in Parts".into(),
                )
                .into());
            }
            None => {
                let (store, target) = store_and_target(&config, &metrics).await?;
                // Consumers run until shutdown step 3, beside the scenes' watchers.
                let redis = match &config.store {
                    StoreConfig::Redis(redis) => Some(redis),
                    StoreConfig::Memory { .. } => None,
                };
                let stream_metrics = metrics.of::<StreamMetrics>();
                // The specs again (the scenes load them below, after their models): parsing is
                // cheap, and a stream writing a table nothing reads fails start-up before any
                // model is loaded.
                let mut specs = Vec::new();
                if !config.feature_streams.is_empty() {
                    for scene in &config.scenes {
                        specs.push(crate::assemble::Spec::load(&scene.spec).map_err(SceneError::from)?);
                    }
                }
                let history = config.feature_history.active_dir().map(|_| crate::feature_stream::History {
                    config: &config.feature_history,
                    metrics: metrics.of::<crate::feature_history::HistoryMetrics>(),
                });
                crate::feature_stream::start(
                    &config.feature_streams,
                    &SpecReads::of(&specs),
                    target,
                    redis,
                    &stream_metrics,
                    history,
                    &tracker,
                    shutdown.clone(),
                )?;
                store
            }
        };
        let loader = parts.loader.unwrap_or_else(|| {
            Arc::new(OnnxLoader::new(SessionOptions {
                intra_op_threads: config.model.intra_op_threads,
                library: config.model.ort_library.clone(),
            }))
        });
        let context = RepositoryContext { metrics: metrics.clone(), tracker: tracker.clone() };
        let poll = (config.model.poll_interval_ms > 0).then(|| Duration::from_millis(config.model.poll_interval_ms));
        let mut scenes = Vec::with_capacity(config.scenes.len());
        for scene in &config.scenes {
            let scene = Scene::load(scene, &config.model, Arc::clone(&loader), context.clone()).await?;
            watch::watch(Arc::clone(&scene.repo), config.model.watch, poll, &tracker, shutdown.clone());
            if let Some(source) = &scene.source {
                source::spawn(Arc::clone(source), Arc::downgrade(&scene.repo), &tracker, shutdown.clone());
            }
            scenes.push(scene);
        }
        let drift = metrics.of::<Drift>();
        drift.start(&config.drift);
        let mut predictor = Predictor::new(scenes, store, config.fetch.clone()).with_drift(drift);
        let samples = if config.samples.enabled {
            let pipeline = SamplePipeline::start(&config.samples, &metrics.of()).await?;
            predictor = predictor.with_samples(pipeline.samples());
            Some(pipeline)
        } else {
            None
        };
        let predictor = Arc::new(predictor);
        // Deciders of the scenes with a rollout policy (validation made sure quality is on).
        let quality = metrics.get::<crate::sample_log::metrics::SampleMetrics>().map(|m| m.quality);
        for scene in config.scenes.iter().filter_map(|s| s.rollout.clone().map(|r| (s.name.as_str(), r))) {
            let (name, policy) = scene;
            if let (Some(quality), Ok(served)) = (&quality, predictor.scene(name)) {
                let _ = metrics.of::<crate::rollout::metrics::RolloutMetrics>();
                crate::rollout::Decider::new(name, Arc::clone(&served.repo), policy, quality.clone(), &metrics)
                    .spawn(&tracker, shutdown.clone());
            }
        }
        // Connected now so an unreachable registry fails start-up naming its endpoints;
        // registration itself waits until the server is listening and SERVING.
        let registry = crate::registry::build(&config.registry, &metrics).await?;
        Ok(App {
            config,
            predictor,
            metrics,
            shutdown,
            tracker,
            admin_http,
            admin_grpc,
            admin_grpc_addr,
            readiness: Readiness::default(),
            registry,
            samples,
            traces: parts.traces,
        })
    }

    /// The bound admin HTTP address (the real port when `admin.listen` asked for port 0).
    pub fn admin_http_addr(&self) -> Option<SocketAddr> {
        self.admin_http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound admin gRPC address, where `ModelAdmin` is served (the real port when
    /// `admin.grpc_listen` asked for port 0).
    pub fn admin_grpc_addr(&self) -> SocketAddr {
        self.admin_grpc_addr
    }

    /// The readiness flag `/readyz` reports.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The scenes and the store.
    pub fn predictor(&self) -> &Arc<Predictor> {
        &self.predictor
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves on `listener` until the first shutdown request, then drains in order (module doc).
    pub async fn serve(self, listener: TcpListener, mut requests: Requests) -> Result<(), ServeError> {
        let App {
            config,
            predictor,
            metrics,
            shutdown,
            tracker,
            admin_http,
            admin_grpc,
            readiness,
            registry,
            samples,
            traces,
            ..
        } = self;
        let bound = listener.local_addr().map_err(ServeError::Listener)?;
        // Cancelled after the gRPC server has drained (step 4), or when it fails.
        let admin_stop = CancellationToken::new();
        let shared =
            ServiceState { predictor: Arc::clone(&predictor), metrics: metrics.clone(), shutdown: shutdown.clone() };
        if let Some(listener) = admin_http {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "admin HTTP listening: / /metrics /healthz /readyz");
            }
            let models = Arc::new(admin::grpc::AdminService::new(shared.clone()));
            admin_http::spawn(listener, metrics.clone(), readiness.clone(), models, &tracker, admin_stop.clone());
        }
        let (public_health, health_service) = tonic_health::server::health_reporter();
        let (admin_health, admin_health_service) = tonic_health::server::health_reporter();
        let scenes: Vec<String> = predictor.scenes().map(|s| s.spec.scene.clone()).collect();
        let mut health = Health::new(
            [(public_health, server::PREDICTION), (admin_health, admin::MODEL_ADMIN)],
            &scenes,
            readiness.clone(),
        );
        // SERVING only now: every scene's model is loaded and warmed up and the store answered
        // at build time.
        health.set(ServingStatus::Serving).await;
        let health = Arc::new(tokio::sync::Mutex::new(health));
        let scenes_stop = CancellationToken::new();
        follow_scenes(&health, &predictor, &tracker, &scenes_stop);
        let stop_accepting = CancellationToken::new();
        tracker.spawn(crate::telemetry::log_limit::report_suppressed(
            std::time::Duration::from_secs(10),
            stop_accepting.clone(),
        ));
        let (server_config, admin_token) = (config.server.clone(), config.admin.auth_token.clone());
        let (stop, admin_shared) = (stop_accepting.clone(), shared.clone());
        // On the tracker: step 5 waits for the admin calls still in flight after step 3.
        tracker.spawn(async move {
            let stop = stop.cancelled_owned();
            let serving = admin::serve_admin(
                admin_grpc,
                &server_config,
                admin_token.as_deref(),
                admin_shared,
                admin_health_service,
                stop,
            );
            if let Err(e) = serving.await {
                tracing::error!(error = %e, "admin gRPC server failed");
            }
        });
        let server_config = config.server.clone();
        let (stop, starved) = (stop_accepting.clone(), readiness.listener().clone());
        let mut server = tokio::spawn(async move {
            server::serve(listener, &server_config, shared, health_service, starved, stop.cancelled_owned()).await
        });

        // Register only now: the listener accepts and health says SERVING. A failed first attempt
        // is retried by the keepalive task, which runs until shutdown step (1).
        let registry_stop = shutdown.child_token();
        if let Some(registry) = &registry {
            let advertise = advertise(&config, bound);
            if let Err(e) = registry.register(&advertise).await {
                tracing::error!(
                    registry = registry.kind(),
                    advertise = %advertise,
                    error = %crate::registry::error_chain(&e),
                    "registration failed; retrying in the background"
                );
            }
            let (registry, stop) = (Arc::clone(registry), registry_stop.clone());
            tracker.spawn(async move { registry.keep_alive(stop).await });
        }

        tokio::select! {
            result = &mut server => {
                // The server failed on its own (it only returns early on an error).
                readiness.set(false);
                scenes_stop.cancel();
                shutdown.cancel();
                stop_accepting.cancel();
                admin_stop.cancel();
                return result?;
            }
            () = next(&mut requests) => {}
        }
        let grace = Duration::from_millis(config.server.grace_ms);
        let deadline = Instant::now() + grace;
        let mut cut: Vec<String> = Vec::new();
        // Set by a second request: every later wait is skipped, not just the current one.
        let mut forced = false;

        // (1) Stop advertising: probes and health-checking clients stop sending new calls.
        tracing::info!(grace_ms = config.server.grace_ms, "shutdown 1/6: health NOT_SERVING");
        scenes_stop.cancel();
        health.lock().await.set(ServingStatus::NotServing).await;
        // ... and leave the registry, so resolvers drop this instance before it stops accepting
        // (bounded by `registry.deregister_timeout_ms`; a lost lease expires on its own).
        registry_stop.cancel();
        if let Some(registry) = registry.as_ref() {
            match registry.deregister().await {
                Ok(()) => tracing::info!(registry = registry.kind(), "shutdown 1/6: deregistered"),
                Err(e) => tracing::warn!(
                    registry = registry.kind(),
                    error = %crate::registry::error_chain(&e),
                    "shutdown 1/6: deregistration failed; the lease expires on its own"
                ),
            }
        }
        // (2) Keep serving while clients and load balancers move away.
        let drain_delay = Duration::from_millis(config.server.drain_delay_ms);
        if !drain_delay.is_zero() {
            tracing::info!(drain_delay_ms = config.server.drain_delay_ms, "shutdown 2/6: drain delay");
            if until(deadline, drain_delay, &mut requests).await {
                forced = true;
                cut.push("the drain delay".into());
            }
        }
        // (3) Stop accepting on both gRPC ports; end long-lived streams so they cannot hold
        // connections open: removing a health status ends its Watch streams (after they saw
        // NOT_SERVING).
        tracing::info!("shutdown 3/6: stop accepting, end streams and watchers");
        shutdown.cancel();
        stop_accepting.cancel();
        health.lock().await.clear().await;
        // (4) In-flight RPCs finish (tonic's graceful shutdown waits for every connection).
        tracing::info!(in_flight = metrics.of::<RpcMetrics>().in_flight.get(), "shutdown 4/6: in-flight calls finish");
        let remaining = if forced { Duration::ZERO } else { deadline.saturating_duration_since(Instant::now()) };
        let finished = tokio::select! {
            r = tokio::time::timeout(remaining, &mut server) => r.ok(),
            () = next(&mut requests) => None,
        };
        forced |= finished.is_none() && Instant::now() < deadline;
        match finished {
            Some(result) => {
                if let Err(e) = result.map_err(ServeError::from).and_then(|r| r) {
                    tracing::error!(error = %e, "server failed while draining");
                }
            }
            None => {
                server.abort();
                cut.push(format!("{} in-flight calls", metrics.of::<RpcMetrics>().in_flight.get()));
            }
        }
        // The drain is over: the admin port closes with the other tasks.
        admin_stop.cancel();
        // (5) Batchers flush: without routing tables the last `Arc<Version>` goes with the last
        // request, the queues close and the inference threads answer what is queued and exit.
        tracing::info!("shutdown 5/6: batchers flush");
        predictor.unload_all();
        drop(predictor);
        tracker.close();
        let remaining = if forced { Duration::ZERO } else { deadline.saturating_duration_since(Instant::now()) };
        let flushed = tokio::select! {
            r = tokio::time::timeout(remaining, tracker.wait()) => r.is_ok(),
            () = next(&mut requests) => false,
        };
        if !flushed {
            cut.push(format!("{} inference threads or tasks still running", tracker.len()));
        }
        // (6) Samples flush: the last snapshot is queued (no request is left), so the joiner
        // holds everything accepted before the signal; pending joins are saved, the log
        // fsynced, and the sinks get their drain timeout.
        if let Some(samples) = samples {
            tracing::info!("shutdown 6/6: samples flush");
            let remaining = if forced { Duration::ZERO } else { deadline.saturating_duration_since(Instant::now()) };
            let flushed = samples.shutdown(remaining, next(&mut requests)).await;
            tracing::info!(
                pending = flushed.pending,
                durable_sequence = flushed.durable_sequence,
                "shutdown 6/6: samples flushed"
            );
            if let Some(step) = flushed.cut {
                cut.push(format!("the samples flush ({step})"));
            }
        }
        tracing::info!("shutdown 6/6: done");
        // Then traces flush: every span has ended by now (the inference threads are gone, unless
        // cut above). Not bounded by the grace: `trace.export_timeout_ms` bounds it.
        if let Some(traces) = traces {
            tracing::info!("shutdown: traces flush");
            traces.shutdown().await;
        }
        if cut.is_empty() {
            tracing::info!("shutdown complete");
            Ok(())
        } else {
            let what = cut.join(", ");
            tracing::error!(cut = %what, "shutdown cut short by a second signal or server.grace_ms");
            Err(ServeError::Cut(what))
        }
    }
}

/// The `host:port` registered: `registry.advertise`, else the bound address (validation requires
/// `advertise` when the listen address is a wildcard or port 0).
fn advertise(config: &Config, bound: SocketAddr) -> String {
    match &config.registry {
        RegistryConfig::Etcd(etcd) => etcd.advertise.clone().unwrap_or_else(|| bound.to_string()),
        RegistryConfig::None => bound.to_string(),
    }
}

/// Sleeps `delay` but no later than `deadline`; `true` when a second request cut it short.
async fn until(deadline: Instant, delay: Duration, requests: &mut Requests) -> bool {
    let end = (Instant::now() + delay).min(deadline);
    tokio::select! {
        () = tokio::time::sleep_until(end.into()) => false,
        () = next(requests) => true,
    }
}

/// The next shutdown request; never, once every sender is gone.
async fn next(requests: &mut Requests) {
    if requests.recv().await.is_none() {
        std::future::pending::<()>().await;
    }
}
