//! One serde configuration tree: embedded defaults, then a file, then `AUGUR__` environment
//! variables, validated once at start-up so a bad value fails with a message naming its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

/// The defaults compiled into the binary (`config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable did not parse into the tree (figment names the key).
    #[error("config: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value parsed but is out of range.
    #[error("config: `{key}` {problem}")]
    Invalid {
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC listener and request limits.
    pub server: ServerConfig,
    /// Inference threads and queue.
    pub model: ModelConfig,
    /// Where feature rows come from.
    pub store: StoreConfig,
    /// The scenes served: each pairs a feature spec with a model repository directory.
    pub scenes: Vec<SceneConfig>,
}

/// gRPC listener and request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Candidates per request above which Predict answers INVALID_ARGUMENT: bounds the work one
    /// caller can ask for.
    #[serde(default = "default_max_candidates")]
    pub max_candidates: usize,
    /// Longest string value (ids, string features), in bytes.
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Longest list feature value accepted in a request.
    #[serde(default = "default_max_list_len")]
    pub max_list_len: usize,
    /// Largest decoded gRPC message, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Requests handled at once; the rest wait in tonic's queue.
    #[serde(default = "default_concurrency_limit")]
    pub concurrency_limit: usize,
    /// augur answers DEADLINE_EXCEEDED this long before the caller's `grpc-timeout` runs out, so
    /// the caller gets augur's status rather than a transport cancellation.
    #[serde(default = "default_deadline_margin_us")]
    pub deadline_margin_us: u64,
}

const fn default_deadline_margin_us() -> u64 {
    1000
}

const fn default_max_candidates() -> usize {
    4000
}
const fn default_max_string_bytes() -> usize {
    1024
}
const fn default_max_list_len() -> usize {
    256
}
const fn default_max_message_bytes() -> usize {
    16 * 1024 * 1024
}
const fn default_concurrency_limit() -> usize {
    256
}

/// Inference threads and their queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Dedicated inference threads per model, each with its own ONNX Runtime session (`run` needs
    /// `&mut`). One keeps a 2-core machine free for the async workers.
    #[serde(default = "default_inference_threads")]
    pub inference_threads: usize,
    /// ONNX Runtime intra-op threads per session.
    #[serde(default = "default_intra_op_threads")]
    pub intra_op_threads: usize,
    /// Inference jobs waiting for a thread; beyond this Predict fails fast with RESOURCE_EXHAUSTED
    /// instead of queueing without bound.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Explicit ONNX Runtime library; else `ORT_DYLIB_PATH`, else the project's `.venv`.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// Rows per model run; a repository's `model.yaml` may override it.
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// How long a queued request waits for others to share its model run, in microseconds;
    /// `model.yaml` may override it.
    #[serde(default = "default_max_queue_delay_us")]
    pub max_queue_delay_us: u64,
    /// Rescan model repositories this often even without a file-system event (the inotify
    /// fallback); 0 disables polling.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// React to file-system events in the repositories (inotify via `notify`).
    #[serde(default = "default_true")]
    pub watch: bool,
}

const fn default_max_batch_rows() -> usize {
    256
}
const fn default_max_queue_delay_us() -> u64 {
    1000
}
const fn default_poll_interval_ms() -> u64 {
    5000
}
const fn default_true() -> bool {
    true
}

const fn default_inference_threads() -> usize {
    1
}
const fn default_intra_op_threads() -> usize {
    1
}
const fn default_queue_capacity() -> usize {
    1024
}

/// Where feature rows come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// Tables loaded from CSV or JSONL files into memory at start-up.
    Memory {
        /// The tables; a feature spec refers to them by name.
        #[serde(default)]
        tables: Vec<TableConfig>,
    },
}

/// One in-memory table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Name the feature specs use (`entities.user.table`).
    pub name: String,
    /// `.csv` (header row; list values joined by `|`) or `.jsonl` (one object per line).
    pub path: PathBuf,
    /// Column holding the entity id.
    pub key: String,
}

/// One served scene.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneConfig {
    /// Name callers put in `PredictRequest.scene`.
    pub name: String,
    /// The feature spec (YAML).
    pub spec: PathBuf,
    /// Model repository directory: `<model>/<version>/model.onnx`; the highest version is served.
    pub model: PathBuf,
}

// === impl Config ===

impl Config {
    /// Defaults, then `file` (if any), then `AUGUR__` environment variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        Self::from_figment(figment.merge(Env::prefixed("AUGUR__").split("__")))
    }

    /// Parses and validates a TOML document layered over the defaults (tests, embedding).
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(toml)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        in_range("server.max_candidates", s.max_candidates, 1, 100_000)?;
        in_range("server.max_string_bytes", s.max_string_bytes, 1, 1 << 20)?;
        in_range("server.max_list_len", s.max_list_len, 1, 100_000)?;
        in_range("server.max_message_bytes", s.max_message_bytes, 1024, 1 << 30)?;
        in_range("server.concurrency_limit", s.concurrency_limit, 1, 1 << 20)?;
        let m = &self.model;
        in_range("model.inference_threads", m.inference_threads, 1, 256)?;
        in_range("model.intra_op_threads", m.intra_op_threads, 1, 256)?;
        in_range("model.queue_capacity", m.queue_capacity, 1, 1 << 20)?;
        in_range("model.max_batch_rows", m.max_batch_rows, 1, 1 << 16)?;
        in_range("model.max_queue_delay_us", m.max_queue_delay_us as usize, 0, 1_000_000)?;
        if self.scenes.is_empty() {
            return Err(invalid("scenes", "must list at least one scene"));
        }
        for (i, scene) in self.scenes.iter().enumerate() {
            if scene.name.is_empty() {
                return Err(invalid(&format!("scenes[{i}].name"), "must not be empty"));
            }
            if self.scenes[..i].iter().any(|s| s.name == scene.name) {
                return Err(invalid(&format!("scenes[{i}].name"), &format!("`{}` is listed twice", scene.name)));
            }
        }
        let StoreConfig::Memory { tables } = &self.store;
        for (i, table) in tables.iter().enumerate() {
            if tables[..i].iter().any(|t| t.name == table.name) {
                return Err(invalid(&format!("store.tables[{i}].name"), &format!("`{}` is listed twice", table.name)));
            }
        }
        Ok(())
    }
}

fn in_range(key: &str, value: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(invalid(key, &format!("must be between {min} and {max} (got {value})")))
    }
}

fn invalid(key: &str, problem: &str) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), problem: problem.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_validates() {
        let config = Config::from_toml("").expect("default config");
        assert_eq!(config.scenes[0].name, "ranking");
        assert_eq!(config.model.inference_threads, 1);
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let err = Config::from_toml("[server]\nlisten = \"127.0.0.1:0\"\nmax_candidatez = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_candidatez"), "{err}");
    }

    #[test]
    fn out_of_range_value_names_the_key() {
        let err = Config::from_toml("[model]\nqueue_capacity = 0\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("model.queue_capacity") && msg.contains("got 0"), "{msg}");
    }
}
