//! Model-based crash test of the sample pipeline, against the real binary.
//!
//! The invariant (docs/samples.md, "The promise"): after any sequence of restarts and crashes,
//! - every event answered ACCEPTED ends in the labels of a sample (any revision) of its
//!   (request_id, item_id), or in an orphan record of it;
//! - every event answered ORPHAN ends in an orphan record;
//! - no (sample_id, revision) is written twice;
//! - every sample belongs to a prediction that was answered OK, at a position holding its item.
//!
//! A seeded generator drives `augur serve` (window 3 s, positive wait 2 s, so waits outlive
//! windows): bursts of predictions, impressions and clicks stamped now, in the past and ahead
//! (inside the skew allowance), duplicates, events for unknown requests and candidates, reused
//! request ids, and clock advances across the wait and window boundaries. Each round ends at a
//! kill point: SIGKILL while a burst of samples falls due (sometimes followed by an outage longer
//! than a window), SIGTERM then SIGKILL during the shutdown flush, or no kill. The process restarts on the same directories. At the end the
//! checker reads the sample log and compares it with the client's own record of answers.
//!
//! SIGKILL alone loses nothing written (the log and the journal are appended to the page
//! cache before a call is answered), so the checker holds every acknowledgement to account.
//!
//! Replay a seed: `AUGUR_IT_EXTERNAL=1 AUGUR_MODEL_SEEDS=<seed> cargo test --test it samples_model::`;
//! more rounds: `AUGUR_MODEL_ROUNDS=<n>`; many seeds: `scripts/samples_model.sh`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use augur::proto::{EventStatus, PredictRequest, ReportEventsRequest, log_record};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;

use crate::common;
use crate::common::process::AugurProcess;
use crate::common::samples::{metric, read_log};

const WINDOW_MS: i64 = 3_000;
const WAIT_MS: i64 = 2_000;
const ITEMS: usize = 40;

/// What the client was told.
#[derive(Default)]
struct Record {
    /// request_id -> candidates of the prediction answered OK first under that id.
    predictions: HashMap<String, Vec<String>>,
    /// (request_id, item_id, type) answered ACCEPTED.
    accepted: BTreeSet<(String, String, String)>,
    /// (request_id, item_id, type) answered ORPHAN.
    orphaned: BTreeSet<(String, String, String)>,
    answered: BTreeMap<&'static str, usize>,
}

enum Kill {
    /// SIGKILL while the round's burst of samples falls due.
    DuringBurst,
    /// The same, then down for longer than a window before the restart (an outage, or a start
    /// slowed by a busy host: every held window has closed by the replay).
    DuringBurstThenOutage,
    /// SIGTERM, then SIGKILL shortly after: during the shutdown flush.
    DuringShutdown,
    None,
}

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("augur.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n\
             [samples]\nenabled = true\n[samples.log]\ndir = \"{}\"\nfsync_interval_ms = 100\n\
             [samples.join]\nwindow_s = {}\ntick_ms = 20\npositive_wait_s = {{ click = {} }}\n",
            dir.join("samples").display(),
            WINDOW_MS / 1000,
            WAIT_MS / 1000,
        ),
    )
    .unwrap();
    path
}

fn now_ms() -> i64 {
    augur::sample_log::snapshot::now_ms()
}

fn event(request_id: &str, item_id: &str, kind: &str, timestamp_ms: i64) -> augur::proto::Event {
    augur::proto::Event {
        request_id: request_id.into(),
        item_id: item_id.into(),
        r#type: kind.into(),
        timestamp_ms,
        value: None,
    }
}

/// Sends `events` in random slices; records what each answer acknowledged. A call cut by a
/// kill acknowledged nothing.
async fn report(augur: &AugurProcess, rng: &mut ChaCha8Rng, events: Vec<augur::proto::Event>, record: &mut Record) {
    let Ok(mut client) =
        augur::proto::prediction_client::PredictionClient::connect(format!("http://{}", augur.addr)).await
    else {
        return;
    };
    let mut rest = events.as_slice();
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(40));
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        let Ok(answer) = client.report_events(ReportEventsRequest { events: batch.to_vec() }).await else { return };
        for (e, r) in batch.iter().zip(answer.into_inner().results) {
            let key = (e.request_id.clone(), e.item_id.clone(), e.r#type.clone());
            let status = EventStatus::try_from(r.status).unwrap();
            *record.answered.entry(status.as_str_name()).or_default() += 1;
            match status {
                EventStatus::Accepted => {
                    record.accepted.insert(key);
                }
                EventStatus::Orphan => {
                    record.orphaned.insert(key);
                }
                EventStatus::Duplicate | EventStatus::Rejected | EventStatus::Unspecified => {}
            }
        }
    }
}

/// One round: predictions, events around the wait and window boundaries, a kill point.
async fn round(
    augur: &AugurProcess,
    rng: &mut ChaCha8Rng,
    tag: &str,
    record: &mut Record,
) -> (Vec<augur::proto::Event>, i64) {
    let mut client = augur.client().await;
    let mut served: Vec<(String, Vec<String>)> = Vec::new();
    for k in 0..rng.random_range(60..200) {
        let mut items: Vec<String> = (0..ITEMS).map(|i| format!("i{i}")).collect();
        items.shuffle(rng);
        items.truncate(rng.random_range(3..7));
        let mut request_id = format!("{tag}-{k}");
        // Reused ids: a retry with the same candidates, or another prediction under a held id.
        if !served.is_empty() && rng.random_bool(0.04) {
            let (id, first) = served.choose(rng).unwrap().clone();
            request_id = id;
            if rng.random_bool(0.5) {
                items = first;
            }
        }
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        let mut r: PredictRequest = common::ranking_request(&format!("u{}", rng.random_range(0..20)), &refs);
        r.request_id = request_id.clone();
        match client.predict(r).await {
            Ok(_) => {
                record.predictions.entry(request_id.clone()).or_insert_with(|| items.clone());
                served.push((request_id, items));
            }
            Err(status) => assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}"),
        }
    }
    // First events now: impressions of most candidates (some stamped ahead), a few clicks,
    // duplicates, unknown requests and candidates.
    let burst_at = now_ms();
    let mut first = Vec::new();
    let mut later = Vec::new();
    for (id, items) in &served {
        for item in items {
            if rng.random_bool(0.75) {
                let ts = if rng.random_bool(0.1) { burst_at + rng.random_range(1_000..30_000) } else { 0 };
                first.push(event(id, item, "impression", ts));
                if rng.random_bool(0.15) {
                    first.push(event(id, item, "impression", 0));
                }
                if rng.random_bool(0.2) {
                    later.push(event(id, item, "click", 0));
                }
            }
        }
        if rng.random_bool(0.05) {
            first.push(event(id, "not-a-candidate", "impression", 0));
        }
    }
    for k in 0..rng.random_range(0..5) {
        first.push(event(&format!("{tag}-unknown-{k}"), "i1", "click", 0));
    }
    first.shuffle(rng);
    later.shuffle(rng);
    report(augur, rng, first, record).await;
    (later, burst_at)
}

async fn run_seed(seed: u64, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut record = Record::default();
    let mut augur = AugurProcess::start(&config).await;
    let mut kills = 0;
    // Every run's log, for the failure message.
    let mut history: Vec<String> = Vec::new();
    for r in 0..rounds {
        let (later, burst_at) = round(&augur, &mut rng, &format!("s{seed}r{r}"), &mut record).await;
        // Clicks land across the boundaries: before the wait ends, after it (corrections), after
        // the window closed (orphans).
        let (early, late) = later.split_at(later.len() / 2);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1_500))).await;
        report(&augur, &mut rng, early.to_vec(), &mut record).await;
        let kill = match rng.random_range(0..10) {
            0..=3 => Kill::DuringBurst,
            4 => Kill::DuringBurstThenOutage,
            5..=6 => Kill::DuringShutdown,
            _ => Kill::None,
        };
        match kill {
            Kill::DuringBurst | Kill::DuringBurstThenOutage => {
                // The impressions fall due WAIT_MS after they were sent: kill around then, while
                // the rest of the clicks are being reported.
                let at = burst_at + WAIT_MS + rng.random_range(-150..250);
                let wait = (at - now_ms()).max(0) as u64;
                let late = late.to_vec();
                let reporting = async {
                    tokio::time::sleep(Duration::from_millis(wait / 2)).await;
                    report(&augur, &mut rng, late, &mut record).await;
                };
                let _ = tokio::time::timeout(Duration::from_millis(wait), reporting).await;
                history.extend(augur.kill());
                kills += 1;
                if matches!(kill, Kill::DuringBurstThenOutage) {
                    tokio::time::sleep(Duration::from_millis(WINDOW_MS as u64 + 500)).await;
                }
                augur = AugurProcess::start(&config).await;
            }
            Kill::DuringShutdown => {
                report(&augur, &mut rng, late.to_vec(), &mut record).await;
                augur.signal(libc::SIGTERM);
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..80))).await;
                history.extend(augur.kill());
                kills += 1;
                augur = AugurProcess::start(&config).await;
            }
            Kill::None => {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..WINDOW_MS as u64))).await;
                report(&augur, &mut rng, late.to_vec(), &mut record).await;
            }
        }
    }
    // Every window closes and every held candidate is emitted: nothing pending.
    tokio::time::sleep(Duration::from_millis((WINDOW_MS + WAIT_MS) as u64)).await;
    let mut pending = f64::NAN;
    for _ in 0..600 {
        pending = metric(&augur.metrics().await, "augur_samples_pending");
        if pending == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0.0, "seed {seed}: predictions still held long after their windows");
    augur.signal(libc::SIGTERM);
    let log = augur.wait();
    assert!(log.iter().any(|l| l.contains("samples flushed")), "seed {seed}: {log:#?}");
    history.extend(log);

    let checked = std::panic::catch_unwind(|| check(seed, &record, &read_log(&dir.path().join("samples"))));
    if let Err(failure) = checked {
        // What the restarts said of the sample pipeline, to start from.
        for line in history.iter().filter(|l| {
            ["sample log open", "pending joins", "samples flush", "shutdown", "WARN", "ERROR"]
                .iter()
                .any(|k| l.contains(k))
        }) {
            eprintln!("{line}");
        }
        std::panic::resume_unwind(failure);
    }
    eprintln!(
        "seed {seed}: {rounds} rounds, {kills} kills, {} predictions, answers {:?}",
        record.predictions.len(),
        record.answered
    );
}

/// The invariant of the module doc.
fn check(seed: u64, record: &Record, log: &[augur::proto::LogRecord]) {
    let replay = format!("replay: AUGUR_IT_EXTERNAL=1 AUGUR_MODEL_SEEDS={seed} cargo test --test it samples_model::");
    let mut labelled: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut orphans: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut written: HashMap<(String, u32), usize> = HashMap::new();
    for r in log {
        match &r.record {
            Some(log_record::Record::Sample(s)) => {
                *written.entry((s.sample_id.clone(), s.revision)).or_default() += 1;
                let items = record
                    .predictions
                    .get(&s.request_id)
                    .unwrap_or_else(|| panic!("sample {} of no answered prediction; {replay}", s.sample_id));
                assert_eq!(
                    items.get(s.position as usize),
                    Some(&s.item_id),
                    "sample {} is not its prediction's candidate; {replay}",
                    s.sample_id
                );
                for l in &s.labels {
                    labelled.insert((s.request_id.clone(), s.item_id.clone(), l.r#type.clone()));
                }
            }
            Some(log_record::Record::Orphan(e)) => {
                orphans.insert((e.request_id.clone(), e.item_id.clone(), e.r#type.clone()));
            }
            None => panic!("an empty record; {replay}"),
        }
    }
    let twice: Vec<_> = written.iter().filter(|(_, n)| **n > 1).map(|(k, n)| (k.clone(), *n)).collect();
    assert!(twice.is_empty(), "samples written twice with the same (sample_id, revision): {twice:?}; {replay}");
    let lost: Vec<_> = record.accepted.iter().filter(|k| !labelled.contains(*k) && !orphans.contains(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} ACCEPTED events are in no sample and no orphan record, e.g. {:?}; {replay}",
        lost.len(),
        record.accepted.len(),
        &lost[..lost.len().min(5)]
    );
    let unrecorded: Vec<_> = record.orphaned.iter().filter(|k| !orphans.contains(*k)).collect();
    assert!(unrecorded.is_empty(), "ORPHAN answers without an orphan record: {unrecorded:?}; {replay}");
    assert!(record.accepted.len() > 100, "the workload acknowledged too little to mean anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_survives_kills_and_window_closes() {
    common::require!(Ort);
    let seeds: Vec<u64> = std::env::var("AUGUR_MODEL_SEEDS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .map(|s| s.trim().parse().expect("AUGUR_MODEL_SEEDS: comma-separated integers"))
        .collect();
    let rounds = std::env::var("AUGUR_MODEL_ROUNDS").map_or(4, |r| r.parse().expect("AUGUR_MODEL_ROUNDS"));
    for seed in seeds {
        run_seed(seed, rounds).await;
    }
}
