//! A fake model for gRPC tests that need no ONNX Runtime: handed to the app as its
//! `ModelLoader`, it goes through the same repository, batcher and layer stack as ONNX models.
//! Its score is a fixed function of the row's tensors, so mis-routed rows show; a gate can hold
//! runs (requests stay in flight) and a switch makes the next run panic.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use augur::assemble::{Spec, Tensor, TensorData};
use augur::config::Config;
use augur::model::{Model, ModelError, ModelLoader};

/// Shared controls of every instance a [`FakeLoader`] opens.
#[derive(Debug, Default)]
pub struct Controls {
    /// Instances opened so far (initial sessions + replacements after panics).
    pub opened: AtomicUsize,
    /// Model runs so far.
    pub runs: AtomicUsize,
    /// The next run panics (once).
    pub panic_next: AtomicBool,
    /// While closed, runs wait (requests stay in flight).
    gate: Mutex<bool>,
    opened_gate: Condvar,
    /// Runs currently waiting at the closed gate.
    pub waiting: AtomicUsize,
}

impl Controls {
    /// Closes the gate: runs wait until [`Controls::open`].
    pub fn close(&self) {
        *self.gate.lock().unwrap() = true;
    }

    /// Opens the gate and wakes every waiting run.
    pub fn open(&self) {
        *self.gate.lock().unwrap() = false;
        self.opened_gate.notify_all();
    }
}

/// A `ModelLoader` that opens [`FakeModel`]s whatever the file holds.
#[derive(Debug, Clone, Default)]
pub struct FakeLoader {
    pub controls: Arc<Controls>,
}

impl ModelLoader for FakeLoader {
    fn open(&self, _path: &Path, _spec: &Spec) -> Result<Box<dyn Model>, ModelError> {
        self.controls.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeModel { controls: Arc::clone(&self.controls) }))
    }
}

/// Scores a row as a fixed function of its values.
pub struct FakeModel {
    controls: Arc<Controls>,
}

impl Model for FakeModel {
    fn run(&mut self, tensors: &[Tensor]) -> Result<Vec<f32>, ModelError> {
        {
            let mut closed = self.controls.gate.lock().unwrap();
            if *closed {
                self.controls.waiting.fetch_add(1, Ordering::SeqCst);
                while *closed {
                    closed = self.controls.opened_gate.wait(closed).unwrap();
                }
                self.controls.waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.controls.runs.fetch_add(1, Ordering::SeqCst);
        if self.controls.panic_next.swap(false, Ordering::SeqCst) {
            panic!("fake model told to panic");
        }
        let rows = tensors[0].rows();
        Ok((0..rows).map(|r| row_score(tensors, r)).collect())
    }
}

/// The fake model's score of row `r`: in (0, 1), different for different rows.
pub fn row_score(tensors: &[Tensor], r: usize) -> f32 {
    let mut sum = 0.0f64;
    for t in tensors {
        let w = t.width;
        match &t.data {
            TensorData::I64(v) => sum += v[r * w..(r + 1) * w].iter().map(|&x| (x % 997) as f64).sum::<f64>(),
            TensorData::F32(v) => sum += v[r * w..(r + 1) * w].iter().map(|&x| f64::from(x)).sum::<f64>(),
        }
    }
    (1.0 / (1.0 + (-(sum % 17.0 - 8.0) / 4.0).exp())) as f32
}

/// A model repository with one version whose file is not an ONNX model at all (the fake loader
/// never reads it): proof that nothing but the loader touches the file.
pub fn fake_repository(dir: &Path) -> PathBuf {
    let repo = dir.join("fake_ranking");
    std::fs::create_dir_all(repo.join("1")).unwrap();
    std::fs::write(repo.join("1/model.onnx"), b"not an onnx model").unwrap();
    repo
}

/// The embedded defaults with only the ranking scene, served from `repo`, plus `extra` TOML.
pub fn fake_config(repo: &Path, extra: &str) -> Config {
    let mut config = super::demo_config(extra);
    config.scenes.truncate(1);
    config.scenes[0].model = repo.to_path_buf();
    config.model.watch = false;
    config.model.poll_interval_ms = 0;
    config
}

/// augur on [`fake_config`] with `loader` as its model loader; the returned directory holds the
/// repository and must live as long as the server.
pub async fn start_fake(loader: &FakeLoader, extra: &str) -> (tempfile::TempDir, super::TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let config = fake_config(&fake_repository(dir.path()), extra);
    let parts = augur::app::Parts { loader: Some(Arc::new(loader.clone())), ..Default::default() };
    (dir, super::start_with(config, parts).await)
}
