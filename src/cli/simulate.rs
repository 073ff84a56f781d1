//! `augur simulate`: the users of the demo catalogue, calling a running augur the way a feed
//! would. Each request picks a user, `candidates` items by popularity and an (hour, device)
//! context, calls Predict, "shows" the `shown` best-scored items (for an `explore` share of
//! requests, `shown` random ones) as impression events — each with its propensity, the
//! probability this policy had of showing it, as the event's `value` — and draws a
//! click for each from the demo's true click model ([`World::click_probability`], the one
//! `augur demo-data` labels with), then reports the events with ReportEvents. So the sample log
//! fills with labels a trainer can learn the hidden world from, and `scripts/loop.sh` can close
//! the hourly loop on one machine.
//!
//! Failures are counted, never retried: the loop asserts a model swap costs zero failed requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tonic::transport::Channel;

use super::demo::{DEVICES, DemoSpec, World, draw_item, popularity};
use super::predict;
use crate::proto::feature_value::Kind;
use crate::proto::prediction_client::PredictionClient;
use crate::proto::{Event, EventStatus, FeatureValue, ReportEventsRequest};

/// What to send.
#[derive(Debug, Clone)]
pub struct SimulateConfig {
    /// `http://host:port` of the Prediction service.
    pub addr: String,
    /// Scene to call (its spec must read the demo catalogue: `ranking`).
    pub scene: String,
    /// The catalogue the server serves (`augur demo-data` sizes and seed).
    pub world: DemoSpec,
    /// Requests to send; with `until_version`, the minimum.
    pub requests: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Candidates per request.
    pub candidates: usize,
    /// Top-scored candidates shown (impressed) per request.
    pub shown: usize,
    /// Share of requests (0..1) that show `shown` random candidates instead of the best-scored:
    /// without exploration the log only holds what the serving model already ranks high, and a
    /// model trained on it learns little about the rest.
    pub explore: f64,
    /// Seed of the simulated users' choices and clicks.
    pub seed: u64,
    /// Keep sending until a response comes from this model version.
    pub until_version: Option<String>,
    /// Give up (and report it) after this long.
    pub max_duration: Duration,
    /// Events are reported this long after their Predict answered, as a user sees a page after
    /// it was served: an event that overtakes its prediction's snapshot on the way to the join
    /// store would be an orphan.
    pub report_delay: Duration,
}

/// What happened.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SimulateReport {
    /// Predict calls sent.
    pub requests: u64,
    /// Calls (Predict or ReportEvents) answered with a non-OK status, by "rpc: code".
    pub failures: BTreeMap<String, u64>,
    /// OK Predict responses by model version.
    pub versions: BTreeMap<String, u64>,
    /// Impression events reported.
    pub impressions: u64,
    /// Click events reported.
    pub clicks: u64,
    /// Events the server answered REJECTED (a simulator bug, or a server one).
    pub rejected: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// `until_version` answered (true when none was asked for).
    pub reached_version: bool,
}

impl SimulateReport {
    /// Failed calls in total.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Nothing failed, nothing was rejected, and the awaited version answered.
    pub fn ok(&self) -> bool {
        self.failed() == 0 && self.rejected == 0 && self.reached_version
    }

    fn merge(&mut self, other: SimulateReport) {
        self.requests += other.requests;
        self.impressions += other.impressions;
        self.clicks += other.clicks;
        self.rejected += other.rejected;
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        for (k, v) in other.versions {
            *self.versions.entry(k).or_default() += v;
        }
    }
}

impl std::fmt::Display for SimulateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = if self.impressions == 0 { 0.0 } else { self.clicks as f64 / self.impressions as f64 };
        writeln!(
            f,
            "simulate: {} requests in {:.1}s, {} failed; {} impressions, {} clicks (CTR {:.3}), {} events rejected",
            self.requests,
            self.seconds,
            self.failed(),
            self.impressions,
            self.clicks,
            rate,
            self.rejected
        )?;
        let versions: Vec<String> = self.versions.iter().map(|(v, n)| format!("v{v}: {n}")).collect();
        writeln!(f, "model versions answering: {}", versions.join(", "))?;
        for (what, n) in &self.failures {
            writeln!(f, "failed: {what}: {n}")?;
        }
        if !self.reached_version {
            writeln!(f, "the awaited model version never answered")?;
        }
        Ok(())
    }
}

/// Errors before any traffic.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The server never accepted a connection.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// Nothing to draw from.
    #[error(
        "--candidates must be between 1 and the catalogue's {items} items, --shown at most --candidates, --explore in 0..1"
    )]
    Sizes {
        /// Items in the catalogue.
        items: usize,
    },
}

/// State the workers share.
struct SimState {
    world: World,
    config: SimulateConfig,
    /// Tickets handed out: one per request.
    next: AtomicU64,
    /// `until_version` has answered.
    reached: AtomicBool,
    started: Instant,
}

/// Sends the traffic and reports. Failed calls are in the report, not an `Err`.
pub async fn run(config: &SimulateConfig) -> Result<SimulateReport, SimulateError> {
    let world = World::new(&config.world);
    let sizes_ok = config.candidates > 0 && config.candidates <= world.items() && config.shown <= config.candidates;
    if !sizes_ok || !(0.0..=1.0).contains(&config.explore) {
        return Err(SimulateError::Sizes { items: world.items() });
    }
    let client = predict::connect(&config.addr, Duration::from_secs(30))
        .await
        .map_err(|source| SimulateError::Connect { addr: config.addr.clone(), source })?;
    let shared = Arc::new(SimState {
        world,
        config: config.clone(),
        next: AtomicU64::new(0),
        reached: AtomicBool::new(config.until_version.is_none()),
        started: Instant::now(),
    });
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..config.concurrency.max(1) {
        // Each worker its own stream of draws: the run is reproducible up to interleaving.
        let rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(w as u64 * 0x9E37_79B9));
        // Bounded: a reporter that falls behind slows its worker down instead of piling up events.
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        workers.spawn(reporter(client.clone(), rx, config.report_delay));
        workers.spawn(worker(shared.clone(), client.clone(), rng, tx));
    }
    let mut report = SimulateReport::default();
    while let Some(done) = workers.join_next().await {
        report.merge(done.expect("simulate worker panicked"));
    }
    report.seconds = shared.started.elapsed().as_secs_f64();
    report.reached_version = shared.reached.load(Ordering::Relaxed);
    Ok(report)
}

/// Reports each batch of events `delay` after its Predict answered, in order.
async fn reporter(
    mut client: PredictionClient<Channel>,
    mut rx: tokio::sync::mpsc::Receiver<(Instant, Vec<Event>)>,
    delay: Duration,
) -> SimulateReport {
    let mut tally = SimulateReport::default();
    while let Some((answered, events)) = rx.recv().await {
        tokio::time::sleep_until((answered + delay).into()).await;
        match client.report_events(ReportEventsRequest { events }).await {
            Ok(response) => {
                let rejected = EventStatus::Rejected as i32;
                tally.rejected += response.into_inner().results.iter().filter(|r| r.status == rejected).count() as u64;
            }
            Err(status) => *tally.failures.entry(format!("ReportEvents: {:?}", status.code())).or_default() += 1,
        }
    }
    tally
}

async fn worker(
    shared: Arc<SimState>,
    mut client: PredictionClient<Channel>,
    mut rng: ChaCha8Rng,
    events_tx: tokio::sync::mpsc::Sender<(Instant, Vec<Event>)>,
) -> SimulateReport {
    let config = &shared.config;
    let zipf = popularity(&config.world);
    let mut tally = SimulateReport::default();
    loop {
        let ticket = shared.next.fetch_add(1, Ordering::Relaxed);
        let enough = ticket >= config.requests && shared.reached.load(Ordering::Relaxed);
        if enough || shared.started.elapsed() > config.max_duration {
            return tally;
        }
        let user = rng.random_range(0..shared.world.users());
        let items = candidates(&zipf, shared.world.items(), config.candidates, &mut rng);
        let hour = rng.random_range(0..24u32);
        let device = DEVICES[rng.random_range(0..DEVICES.len())];
        let context = [
            ("hour".to_owned(), FeatureValue { kind: Some(Kind::IntValue(i64::from(hour))) }),
            ("device".to_owned(), FeatureValue { kind: Some(Kind::StringValue(device.to_owned())) }),
        ];
        let ids: Vec<String> = items.iter().map(|i| format!("i{i}")).collect();
        let request = predict::request(&config.scene, &format!("u{user}"), &ids, context.into_iter().collect());
        tally.requests += 1;
        let response = match client.predict(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                *tally.failures.entry(format!("Predict: {:?}", status.code())).or_default() += 1;
                continue;
            }
        };
        *tally.versions.entry(response.model_version.clone()).or_default() += 1;
        if config.until_version.as_deref() == Some(response.model_version.as_str()) {
            shared.reached.store(true, Ordering::Relaxed);
        }
        // The feed shows the best-scored candidates (or, exploring, random ones); only those can
        // be clicked. Each impression carries its propensity, the probability this policy had of
        // showing the item: what a trainer needs to undo the serving model's choice (IPW).
        let mut ranked: Vec<usize> = (0..items.len()).collect();
        ranked.sort_by(|&a, &b| response.scores[b].total_cmp(&response.scores[a]));
        let random_share = config.explore * config.shown as f64 / items.len() as f64;
        let mut top = vec![false; items.len()];
        ranked.iter().take(config.shown).for_each(|&k| top[k] = true);
        let mut order = ranked;
        if rng.random_bool(config.explore) {
            order.shuffle(&mut rng);
        }
        let mut events = Vec::with_capacity(config.shown * 2);
        for &k in order.iter().take(config.shown) {
            let propensity = random_share + if top[k] { 1.0 - config.explore } else { 0.0 };
            let event = |kind: &str, value: Option<f64>| Event {
                request_id: response.request_id.clone(),
                item_id: ids[k].clone(),
                r#type: kind.to_owned(),
                timestamp_ms: 0,
                value,
            };
            events.push(event("impression", Some(propensity)));
            tally.impressions += 1;
            if rng.random_bool(shared.world.click_probability(user, items[k], hour, device)) {
                events.push(event("click", None));
                tally.clicks += 1;
            }
        }
        // The reporter lives until this worker drops the sender, so the send cannot fail.
        let _ = events_tx.send((Instant::now(), events)).await;
    }
}

/// `n` distinct items by popularity (a feed never lists an item twice).
fn candidates(zipf: &rand_distr::Zipf<f64>, items: usize, n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    let mut draws = 0;
    while out.len() < n {
        draws += 1;
        // When n is most of the catalogue the popular head is soon used up: finish uniformly.
        let i = if draws <= n * 100 { draw_item(zipf, items, rng) } else { rng.random_range(0..items) };
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_distinct_and_in_the_catalogue() {
        let spec = DemoSpec::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let c = candidates(&popularity(&spec), spec.items, 20, &mut rng);
            let mut sorted = c.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 20, "{c:?}");
            assert!(c.iter().all(|&i| i < spec.items));
        }
    }

    #[test]
    fn a_failed_call_a_rejected_event_or_a_missing_version_fails_the_run() {
        let clean = SimulateReport { requests: 3, reached_version: true, ..SimulateReport::default() };
        assert!(clean.ok());
        let mut failed = clean.clone();
        failed
            .merge(SimulateReport { failures: [("Predict: Unavailable".to_owned(), 1)].into(), ..Default::default() });
        assert_eq!((failed.failed(), failed.requests), (1, 3));
        assert!(!failed.ok());
        assert!(!SimulateReport { rejected: 1, ..clean.clone() }.ok());
        assert!(!SimulateReport { reached_version: false, ..clean }.ok());
    }
}
