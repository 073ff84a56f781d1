//! The model-loading thread's CPU policy: `SCHED_IDLE` by default, so serving threads preempt it
//! at once during a hot reload, and the normal policy at nice 19 once a load outlasts
//! `model.load_idle_limit_ms`, so a host with no idle CPU cannot starve a new version.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use augur::assemble::Spec;
use augur::model::{Model, ModelError, ModelLoader};
use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy};

use crate::common;
use crate::common::fake_model::{FakeLoader, fake_config, fake_repository};

const IDLE: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
const OTHER: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);

/// Opens fake models, recording the policy of the thread that opens them. With `hold`, an open
/// lasts until that policy is no longer `SCHED_IDLE` (at most a minute), as a load starved on a
/// busy host would, and records the policy again at the end.
#[derive(Debug, Clone, Default)]
struct PolicyLoader {
    hold: bool,
    seen: Arc<Mutex<Vec<ThreadSchedulePolicy>>>,
}

impl ModelLoader for PolicyLoader {
    fn open(&self, path: &Path, spec: &Spec) -> Result<Box<dyn Model>, ModelError> {
        let policy = || thread_schedule_policy().expect("the thread's policy");
        self.seen.lock().unwrap().push(policy());
        if self.hold {
            let give_up = Instant::now() + Duration::from_secs(60);
            while policy() == IDLE && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(10));
            }
            self.seen.lock().unwrap().push(policy());
        }
        FakeLoader::default().open(path, spec)
    }
}

/// Starts augur on `loader` with `extra` config, checks it serves, and returns the policies seen.
async fn load_with(loader: PolicyLoader, extra: &str) -> Vec<ThreadSchedulePolicy> {
    let dir = tempfile::tempdir().unwrap();
    let config = fake_config(&fake_repository(dir.path()), extra);
    let parts = augur::app::Parts { loader: Some(Arc::new(loader.clone())), ..Default::default() };
    let server = common::start_with(config, parts).await;
    let mut client = server.client().await;
    let scores = client.predict(common::ranking_request("u1", &["i1", "i2"])).await.expect("served").into_inner();
    assert_eq!(scores.scores.len(), 2);
    server.stop().await;
    loader.seen.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_runs_under_sched_idle_by_default() {
    // The limit well out of reach, so a busy test machine cannot turn this into the raise below.
    let seen = load_with(PolicyLoader::default(), "[model]\nload_idle_limit_ms = 3600000\n").await;
    assert!(!seen.is_empty() && seen.iter().all(|p| *p == IDLE), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_outlasts_the_idle_limit_continues_under_the_normal_policy() {
    let loader = PolicyLoader { hold: true, ..Default::default() };
    let seen = load_with(loader, "[model]\nload_idle_limit_ms = 200\n").await;
    // The first open starts idle and is raised after 200 ms; any later open of the same load
    // already runs under the normal policy.
    assert_eq!(seen.first(), Some(&IDLE), "{seen:?}");
    assert_eq!(seen.last(), Some(&OTHER), "{seen:?}");
    assert_eq!(seen[1..].iter().filter(|p| **p == IDLE).count(), 0, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_priority_low_never_uses_sched_idle() {
    let seen = load_with(PolicyLoader::default(), "[model]\nload_priority = \"low\"\n").await;
    assert!(!seen.is_empty() && seen.iter().all(|p| *p == OTHER), "{seen:?}");
}
