//! Finds the ONNX Runtime shared library and initialises the one ORT environment of the process.
//!
//! ort is built with `load-dynamic` (its binary download cannot work on these machines), so the
//! library comes from the PyPI `onnxruntime` wheel that `scripts/setup.sh` installs into `.venv`.
//! Order: the configured path, `ORT_DYLIB_PATH`, then `.venv` under the working directory or any
//! ancestor of the executable.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

/// The one-line instruction printed when no library is found.
pub const HOW_TO_GET_IT: &str = "ONNX Runtime library not found: run `scripts/setup.sh` (installs the onnxruntime wheel into .venv) or set ORT_DYLIB_PATH to libonnxruntime.so";

/// Why the runtime could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// No library anywhere we look.
    #[error("{HOW_TO_GET_IT}")]
    NotFound,
    /// A library was found but could not be loaded or initialised.
    #[error("ONNX Runtime library {path}: {message}")]
    Load {
        /// The library path.
        path: String,
        /// The loader's message.
        message: String,
    },
}

static ENV: OnceLock<Result<Environment, RuntimeError>> = OnceLock::new();

/// The process-wide ORT environment, initialised on first use from `explicit` or the search path.
/// Later calls return the first result (ORT allows one environment per process).
pub fn environment(explicit: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    ENV.get_or_init(|| {
        let path = explicit.map(Path::to_path_buf).or_else(find_library).ok_or(RuntimeError::NotFound)?;
        let shown = path.display().to_string();
        let load = |message: String| RuntimeError::Load { path: shown.clone(), message };
        let builder = ort::init_from(&path).map_err(|e| load(e.to_string()))?;
        let env = builder.with_name("augur").build().map_err(|e| load(e.to_string()))?;
        tracing::info!(library = %shown, "onnx runtime loaded");
        Ok(env)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Where the library would be loaded from, without loading it.
pub fn find_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.iter().find_map(|root| venv_library(root))
}

fn venv_library(root: &Path) -> Option<PathBuf> {
    let lib = root.join(".venv").join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/onnxruntime/capi"))
        .filter_map(|capi| std::fs::read_dir(capi).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
        .collect();
    found.sort();
    found.pop()
}
