//! Steady Predict load in the background for reload tests: responses counted by the model
//! version that answered, failures kept, so a test can assert "switched with zero failures".

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Predict load in the background: responses counted by model version, failures kept.
pub struct PredictLoad {
    stop: Arc<AtomicBool>,
    versions: Arc<Mutex<BTreeMap<String, u64>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl PredictLoad {
    pub async fn start(server: &super::TestServer, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let versions: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut tasks = Vec::new();
        for worker in 0..workers {
            let (stop, versions, failures) = (Arc::clone(&stop), Arc::clone(&versions), Arc::clone(&failures));
            let mut client = server.client().await;
            tasks.push(tokio::spawn(async move {
                let items: Vec<String> = (0..20).map(|i| format!("i{}", i * 13 + worker)).collect();
                let items: Vec<&str> = items.iter().map(String::as_str).collect();
                while !stop.load(Ordering::Relaxed) {
                    match client.predict(super::ranking_request("u3", &items)).await {
                        Ok(r) => *versions.lock().unwrap().entry(r.into_inner().model_version).or_default() += 1,
                        Err(s) => failures.lock().unwrap().push(format!("{:?}: {}", s.code(), s.message())),
                    }
                }
            }));
        }
        PredictLoad { stop, versions, failures, tasks }
    }

    pub fn seen(&self, version: &str) -> u64 {
        self.versions.lock().unwrap().get(version).copied().unwrap_or(0)
    }

    /// Waits for `n` more responses from `version`.
    pub async fn wait_more(&self, version: &str, n: u64) {
        let before = self.seen(version);
        super::wait_for(&format!("{n} more responses from version {version}"), async || {
            self.seen(version) >= before + n
        })
        .await;
    }

    /// Stops the load and returns the failures.
    pub async fn stop(self) -> (BTreeMap<String, u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let versions = self.versions.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (versions, failures)
    }
}
