//! `augur bench`: a load generator for a running augur, and ([`raw_ort`]) the raw ONNX Runtime
//! ceiling it is compared with.
//!
//! Closed loop: `concurrency` callers send back to back (max throughput). Open loop: requests
//! are *scheduled* at a constant rate and latency is measured from the scheduled time, so a
//! stalled server shows up in the percentiles instead of silently lowering the offered load
//! (coordinated omission). Requests are drawn from the synthetic catalogue: uniform users, Zipf
//! item popularity, random hour and device.

pub mod raw_ort;
mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use serde::Serialize;
use tonic::client::Grpc;
use tonic::transport::Channel;

use crate::proto::GetStatsRequest;
use crate::proto::model_admin_client::ModelAdminClient;
use crate::proto::{Candidate, PredictRequest};

/// How load is offered.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `concurrency` callers, each sending its next request when the last one returns.
    Closed {
        /// Concurrent callers.
        concurrency: usize,
    },
    /// `rate` requests per second on a fixed schedule, at most `max_in_flight` outstanding.
    Open {
        /// Requests per second.
        rate: f64,
        /// Outstanding requests beyond which the generator records a client-side drop.
        max_in_flight: usize,
    },
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Server address (`http://host:port`); unused with `discover`.
    pub addr: String,
    /// The server's admin gRPC address (`http://host:port`, `admin.grpc_listen`): GetStats.
    pub admin_addr: String,
    /// A discovery target ([`crate::client::Discovery`]): balance over every instance found
    /// there instead of `addr`. `connections` does not apply (one connection per instance) and the
    /// server stages are skipped: `ModelAdmin` belongs to one instance, not to the service.
    pub discover: Option<String>,
    /// Scene to score in.
    pub scene: String,
    /// Closed or open loop.
    pub mode: Mode,
    /// Measured duration.
    pub duration: Duration,
    /// Unmeasured lead-in.
    pub warmup: Duration,
    /// Candidates per request.
    pub candidates: usize,
    /// Users in the catalogue (`u0..`).
    pub users: usize,
    /// Items in the catalogue (`i0..`).
    pub items: usize,
    /// Zipf exponent of item popularity.
    pub zipf: f64,
    /// RNG seed.
    pub seed: u64,
    /// Distinct requests cycled through ([`DISTINCT`] by default). 1 sends the same body every
    /// time, as a fixed-body driver such as h2load does: the same rows stay hot in the caches.
    pub distinct: usize,
    /// HTTP/2 connections to spread callers over.
    pub connections: usize,
    /// `grpc-timeout` sent with each request.
    pub timeout: Option<Duration>,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// Worst.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "closed c=32" or "open 2000/s".
    pub mode: String,
    /// Measured seconds.
    pub seconds: f64,
    /// Candidates per request.
    pub candidates: usize,
    /// Distinct requests cycled through.
    pub distinct: usize,
    /// Requests completed in the measured window (any status).
    pub requests: u64,
    /// Requests answered OK.
    pub ok: u64,
    /// Non-OK answers by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// OK requests per second.
    pub requests_per_s: f64,
    /// Scored candidates per second.
    pub items_per_s: f64,
    /// Latency of OK requests.
    pub latency_ms: Latency,
    /// The server's own stage latencies over the measured window (from `ModelAdmin.GetStats`).
    pub server_stages: Vec<ServerStage>,
    /// The server's feature-cache hit ratio since it started, if it has a cache.
    pub cache_hit_ratio: Option<f64>,
}

/// One stage as the server measured it, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStage {
    /// fetch, assemble, infer or total.
    pub stage: String,
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

#[derive(Debug)]
struct Tally {
    latency: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            ok: 0,
            errors: BTreeMap::new(),
        }
    }

    fn record(&mut self, result: &Result<(), tonic::Code>, latency: Duration) {
        match result {
            Ok(()) => {
                self.ok += 1;
                let _ = self.latency.record((latency.as_micros() as u64).max(1));
            }
            Err(code) => *self.errors.entry(format!("{code:?}")).or_default() += 1,
        }
    }
}

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// Connecting to `addr` failed.
    #[error("loadgen: cannot connect to {addr}")]
    Connect {
        /// The address.
        addr: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The discovery target is wrong or names no instance.
    #[error("loadgen: discovery")]
    Discover(#[source] crate::client::ClientError),
    /// `--admin-addr` is not a URI.
    #[error("loadgen: --admin-addr: {0}")]
    AdminAddr(String),
}

/// How long a discovering run waits for the first instance.
const DISCOVER_WAIT: Duration = Duration::from_secs(10);

/// Runs the load and reports.
pub async fn run(config: &LoadConfig) -> Result<Report, LoadgenError> {
    let connect = |addr: String| async move {
        Channel::from_shared(addr.clone())
            .expect("valid address")
            .connect()
            .await
            .map_err(|source| LoadgenError::Connect { addr, source })
    };
    // Kept alive for the run: dropping the discovering client stops its resolver.
    let mut _discovering = None;
    let (clients, mut admin) = match &config.discover {
        Some(target) => {
            let client = crate::client::PredictionClient::discover(target).map_err(LoadgenError::Discover)?;
            client.wait_for_endpoints(DISCOVER_WAIT).await.map_err(LoadgenError::Discover)?;
            let clients = vec![Grpc::new(client.channel())];
            _discovering = Some(client);
            (clients, None)
        }
        None => {
            let mut clients = Vec::with_capacity(config.connections.max(1));
            for _ in 0..config.connections.max(1) {
                clients.push(Grpc::new(connect(config.addr.clone()).await?));
            }
            // Lazy: an admin port that is not reachable only costs the server-side numbers.
            let admin = Channel::from_shared(config.admin_addr.clone())
                .map_err(|e| LoadgenError::AdminAddr(e.to_string()))?
                .connect_lazy();
            (clients, Some(ModelAdminClient::new(admin)))
        }
    };
    let pool: Arc<Vec<Bytes>> = Arc::new(encoded_pool(config, config.distinct.max(1)));
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let end = measure_from + config.duration;
    let reset = {
        let admin = admin.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            if let Some(mut admin) = admin {
                let _ = admin.get_stats(GetStatsRequest { reset: true }).await;
            }
        })
    };
    let tally = Arc::new(Mutex::new(Tally::new()));
    let mode = match config.mode {
        Mode::Closed { concurrency } => {
            let mut tasks = Vec::with_capacity(concurrency);
            for worker in 0..concurrency {
                let (mut client, pool, tally) =
                    (clients[worker % clients.len()].clone(), Arc::clone(&pool), Arc::clone(&tally));
                let timeout = config.timeout;
                tasks.push(tokio::spawn(async move {
                    let mut local = Tally::new();
                    let mut n = worker;
                    while Instant::now() < end {
                        let sent = Instant::now();
                        let result = call(&mut client, pool[n % pool.len()].clone(), timeout).await;
                        if sent >= measure_from {
                            local.record(&result, sent.elapsed());
                        }
                        n += concurrency;
                    }
                    merge(&tally, local);
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            format!("closed c={concurrency}")
        }
        Mode::Open { rate, max_in_flight } => {
            let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
            let in_flight = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
            // The schedule is kept by a thread of its own: tokio's timer has a resolution of
            // 1 ms, so `sleep_until` sent each request up to a millisecond after its slot (in
            // bursts on the tick at rates above 1k/s) and every latency, measured from the slot,
            // carried that wait. `std::thread::sleep` wakes within tens of microseconds.
            let runtime = tokio::runtime::Handle::current();
            let (clients, tally, pool) = (clients.clone(), Arc::clone(&tally), Arc::clone(&pool));
            let pacer = {
                let in_flight = Arc::clone(&in_flight);
                let timeout = config.timeout;
                std::thread::Builder::new()
                    .name("augur-bench-pacer".into())
                    .spawn(move || {
                        let mut n: u64 = 0;
                        loop {
                            let scheduled = start + interval.mul_f64(n as f64);
                            if scheduled >= end {
                                break;
                            }
                            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                            let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                                if scheduled >= measure_from {
                                    *tally
                                        .lock()
                                        .expect("tally")
                                        .errors
                                        .entry("ClientBackpressure".into())
                                        .or_default() += 1;
                                }
                                n += 1;
                                continue;
                            };
                            let (mut client, pool, tally) =
                                (clients[n as usize % clients.len()].clone(), Arc::clone(&pool), Arc::clone(&tally));
                            let index = n as usize;
                            runtime.spawn(async move {
                                let result = call(&mut client, pool[index % pool.len()].clone(), timeout).await;
                                // Measured from the schedule, not from the send: no coordinated omission.
                                if scheduled >= measure_from {
                                    tally.lock().expect("tally").record(&result, scheduled.elapsed());
                                }
                                drop(permit);
                            });
                            n += 1;
                        }
                    })
                    .expect("spawning the load generator's pacer thread")
            };
            let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
            // Every outstanding request holds a permit: having them all back means all answered.
            let _ = in_flight.acquire_many(max_in_flight as u32).await;
            format!("open {rate}/s")
        }
    };
    let _ = reset.await;
    let stats = match admin.as_mut() {
        Some(admin) => admin.get_stats(GetStatsRequest { reset: false }).await.ok(),
        None => None,
    };
    let (server_stages, cache_hit_ratio) = match stats {
        Some(stats) => {
            let stats = stats.into_inner();
            let cache = stats.cache.map(|c| c.hit_ratio);
            let stages = stats
                .scenes
                .into_iter()
                .filter(|s| s.scene == config.scene)
                .flat_map(|s| s.stages)
                .map(|s| ServerStage { stage: s.stage, count: s.count, p50: s.p50_ms, p99: s.p99_ms })
                .collect();
            (stages, cache)
        }
        // Discovering, or a server without the admin API: client-side numbers only.
        None => (Vec::new(), None),
    };
    let seconds = config.duration.as_secs_f64();
    let tally = Arc::try_unwrap(tally).map(|m| m.into_inner().expect("tally")).unwrap_or_else(|arc| {
        let t = arc.lock().expect("tally");
        Tally { latency: t.latency.clone(), ok: t.ok, errors: t.errors.clone() }
    });
    let ms = |v: u64| v as f64 / 1000.0;
    let h = &tally.latency;
    Ok(Report {
        mode,
        seconds,
        candidates: config.candidates,
        distinct: pool.len(),
        requests: tally.ok + tally.errors.values().sum::<u64>(),
        ok: tally.ok,
        errors: tally.errors.clone(),
        requests_per_s: tally.ok as f64 / seconds,
        items_per_s: (tally.ok * config.candidates as u64) as f64 / seconds,
        latency_ms: Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        },
        server_stages,
        cache_hit_ratio,
    })
}

fn merge(tally: &Mutex<Tally>, local: Tally) {
    let mut t = tally.lock().expect("tally");
    let _ = t.latency.add(&local.latency);
    t.ok += local.ok;
    for (code, n) in local.errors {
        *t.errors.entry(code).or_default() += n;
    }
}

async fn call(client: &mut Grpc<Channel>, body: Bytes, timeout: Option<Duration>) -> Result<(), tonic::Code> {
    wire::predict(client, body, timeout).await
}

/// Distinct requests a run cycles through unless told otherwise: enough that consecutive
/// requests share few rows, few enough to encode up front.
pub const DISTINCT: usize = 512;

/// The first request a run with `config` sends, as a gRPC length-prefixed message (0x00, 4-byte
/// big-endian length, the encoded `PredictRequest`): the body for an external HTTP/2 driver
/// (h2load `-d`) that sends one fixed body, so it scores the very request `augur bench` does.
pub fn framed_request(config: &LoadConfig) -> Vec<u8> {
    let message = encoded_pool(config, 1).swap_remove(0);
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0); // not compressed
    framed.extend_from_slice(&u32::try_from(message.len()).expect("request under 4 GiB").to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

/// The pool encoded once: the same bytes go out on every send.
fn encoded_pool(config: &LoadConfig, size: usize) -> Vec<Bytes> {
    request_pool(config, size).into_iter().map(|r| Bytes::from(encode_stable(r))).collect()
}

/// `PredictRequest.context` alone, as a `BTreeMap`: prost writes a map in its iteration order,
/// which for the generated `HashMap` differs from one map to the next.
#[derive(Clone, PartialEq, prost::Message)]
struct ContextInKeyOrder {
    /// Same tag as `PredictRequest.context`.
    #[prost(btree_map = "string, message", tag = "4")]
    context: BTreeMap<String, crate::proto::FeatureValue>,
}

/// `request` encoded with its context entries in key order, so the same seed gives the same
/// bytes (the body written for h2load). Protobuf reads a message's fields in any order and
/// repeated map entries are merged, so the request appended with its context is the request.
fn encode_stable(mut request: PredictRequest) -> Vec<u8> {
    let context = ContextInKeyOrder { context: std::mem::take(&mut request.context).into_iter().collect() };
    let mut bytes = prost::Message::encode_to_vec(&request);
    prost::Message::encode(&context, &mut bytes).expect("a Vec grows as needed");
    bytes
}

/// Pre-built requests, so the generator spends its CPU on sending, not on building.
fn request_pool(config: &LoadConfig, size: usize) -> Vec<PredictRequest> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let zipf = Zipf::new(config.items.max(1) as f64, config.zipf).expect("valid zipf");
    (0..size)
        .map(|_| {
            let user = format!("u{}", rng.random_range(0..config.users.max(1)));
            let candidates = (0..config.candidates)
                .map(|_| {
                    let item = (zipf.sample(&mut rng) as usize).clamp(1, config.items.max(1)) - 1;
                    Candidate { item_id: format!("i{item}"), features: Default::default() }
                })
                .collect();
            let hour = crate::proto::FeatureValue {
                kind: Some(crate::proto::feature_value::Kind::IntValue(rng.random_range(0..24))),
            };
            let device = crate::proto::FeatureValue {
                kind: Some(crate::proto::feature_value::Kind::StringValue(
                    ["ios", "android", "web"][rng.random_range(0..3)].into(),
                )),
            };
            PredictRequest {
                request_id: String::new(),
                scene: config.scene.clone(),
                user_id: user,
                context: [("hour".to_string(), hour), ("device".to_string(), device)].into(),
                candidates,
                model_version: String::new(),
            }
        })
        .collect()
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.latency_ms;
        writeln!(
            f,
            "{} for {:.1}s, {} candidates/request: {} ok ({:.0} req/s, {:.0} items/s)",
            self.mode, self.seconds, self.candidates, self.ok, self.requests_per_s, self.items_per_s
        )?;
        writeln!(
            f,
            "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        for s in &self.server_stages {
            writeln!(f, "server {:<8} p50 {:.3} ms  p99 {:.3} ms  ({} samples)", s.stage, s.p50, s.p99, s.count)?;
        }
        if let Some(ratio) = self.cache_hit_ratio {
            writeln!(f, "server feature cache hit ratio {ratio:.3}")?;
        }
        if self.errors.is_empty() { writeln!(f, "errors: none") } else { writeln!(f, "errors: {:?}", self.errors) }
    }
}
