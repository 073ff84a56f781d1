//! One serde configuration tree: embedded defaults, then a file, then `AUGUR__` environment
//! variables, validated once at start-up so a bad value fails with a message naming its key.
//!
//! This module only composes: each subsystem owns its section (struct, defaults, checks) in its
//! own `config.rs` — [`server`](crate::server::config), [`model`](crate::model::config),
//! [`store` and `fetch`](crate::fetch::config), [`scenes`](crate::scene::config) with their
//! bucket [`source`](crate::repository::config), [`admin`](crate::admin::config),
//! [`log` and `trace`](crate::telemetry::config), [`registry`](crate::registry::config) and
//! [`samples`](crate::sample_log::config), [`feature_streams`](crate::feature_stream::config),
//! [`feature_history`](crate::feature_history::config) and [`drift`](crate::drift::config). Here are the tree, the layering, the checks that span
//! sections, and the test that `config/default.toml` and the code's defaults agree.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

pub use crate::admin::config::AdminConfig;
pub use crate::drift::config::DriftConfig;
pub use crate::feature_history::config::HistoryConfig;
pub use crate::feature_stream::config::{EntityKind, FeatureStreamConfig, UpdateFormat};
pub use crate::fetch::config::{
    CacheConfig, FetchConfig, KeyTemplate, RedisConfig, StoreConfig, TableCacheConfig, TableConfig,
};
pub use crate::model::config::{LoadPriority, ModelConfig};
pub use crate::registry::config::{EtcdConfig, RegistryConfig};
pub use crate::repository::config::SourceConfig;
pub use crate::rollout::config::RolloutConfig;
pub use crate::sample_log::config::{
    BUILTIN_EVENT_TYPES, JoinConfig, JoinStoreConfig, KafkaSinkConfig, RedisStreamSinkConfig, SampleLogConfig,
    SamplesConfig, SinkConfig, TailConfig, WhenFull,
};
pub use crate::scene::config::SceneConfig;
pub use crate::server::config::{Http2Config, ServerConfig, TlsConfig};
pub use crate::telemetry::config::{DEFAULT_LOG_LEVEL, LogConfig, LogFormat, TraceConfig};
pub use crate::validate::{Invalid, redact_url};

/// The defaults compiled into the binary (`config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable did not parse into the tree (figment names the key).
    #[error("config: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value parsed but is out of range (the section's check names the key).
    #[error("config: {0}")]
    Invalid(#[from] Invalid),
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
    /// Time budget of the feature fetch.
    #[serde(default)]
    pub fetch: FetchConfig,
    /// The scenes served: each pairs a feature spec with a model repository directory.
    pub scenes: Vec<SceneConfig>,
    /// The operator's listeners: admin HTTP (`/metrics`, `/healthz`, `/readyz`) and admin gRPC
    /// (`ModelAdmin`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Log format and filter of `augur serve`.
    #[serde(default)]
    pub log: LogConfig,
    /// Where this instance announces itself (off by default).
    #[serde(default)]
    pub registry: RegistryConfig,
    /// Sample logging: snapshots of what was served, joined with reported events into training
    /// samples (off by default).
    #[serde(default)]
    pub samples: SamplesConfig,
    /// OpenTelemetry traces of `augur serve` (off unless an OTLP endpoint is set).
    #[serde(default)]
    pub trace: TraceConfig,
    /// Kafka topics of feature updates upserted into `[store]` as they arrive (none by default).
    #[serde(default)]
    pub feature_streams: Vec<FeatureStreamConfig>,
    /// Served feature values against each version's training reference (PSI, fallback rates).
    #[serde(default)]
    pub drift: DriftConfig,
    /// The changelog of every store change (stream updates, bulk loads), for point-in-time
    /// backfill (off unless a directory is set).
    #[serde(default)]
    pub feature_history: HistoryConfig,
}

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

    /// Each section's checks, then those that span sections (ports that must differ, sample
    /// rates naming scenes, the advertised address of a wildcard listener).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.admin.validate(self.server.listen)?;
        self.fetch.validate()?;
        self.model.validate()?;
        crate::scene::config::validate(&self.scenes)?;
        self.log.validate()?;
        self.store.validate()?;
        self.registry.validate(self.server.listen)?;
        if self.samples.enabled {
            let scenes: Vec<&str> = self.scenes.iter().map(|s| s.name.as_str()).collect();
            self.samples.validate(&scenes)?;
        }
        for (i, scene) in self.scenes.iter().enumerate() {
            let Some(rollout) = &scene.rollout else { continue };
            // A rollout keeps the stable serving beside the canary it is compared with; releasing
            // one to load the other would take the comparison (and the scene) down with it.
            if self.model.reload == crate::model::config::ReloadStrategy::ReleaseFirst {
                return Err(crate::validate::invalid(
                    "model.reload",
                    &format!(
                        "release_first cannot serve scenes[{i}].rollout (scene `{}`): a canary needs its stable loaded beside it; use overlap",
                        scene.name
                    ),
                )
                .into());
            }
            // The decider judges versions by the label join's online quality: without it a
            // canary would never be decided.
            if !self.samples.enabled || !self.samples.quality.enabled {
                return Err(crate::validate::invalid(
                    &format!("scenes[{i}].rollout"),
                    "needs sample logging with online quality (samples.enabled and samples.quality.enabled)",
                )
                .into());
            }
            let quality_s = self.samples.quality.window_ms() / 1000;
            if rollout.decision_window_s as i64 > quality_s {
                return Err(crate::validate::invalid(
                    &format!("scenes[{i}].rollout.decision_window_s"),
                    &format!(
                        "must be at most the quality window, samples.quality.bucket_s x buckets = {quality_s} s (got {})",
                        rollout.decision_window_s
                    ),
                )
                .into());
            }
        }
        self.trace.validate()?;
        crate::feature_stream::config::validate(&self.feature_streams)?;
        self.drift.validate()?;
        let largest_batch = (self.feature_streams.iter().enumerate())
            .max_by_key(|(_, s)| s.max_batch)
            .map(|(i, s)| (format!("feature_streams[{i}].max_batch"), s.max_batch));
        self.feature_history.validate(largest_batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
