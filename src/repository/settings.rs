//! `model.yaml`, the optional per-repository settings (batching overrides, version policy,
//! labels, canary share), parsed and range-checked on every rescan.

use std::path::Path;

use serde::Deserialize;

/// Why `model.yaml` is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file exists but cannot be read.
    #[error("model repository {dir}: model.yaml: {source}")]
    Read {
        /// The repository directory.
        dir: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse (unknown key, wrong type).
    #[error("model repository {dir}: model.yaml: {source}")]
    Parse {
        /// The repository directory.
        dir: String,
        /// serde's error, naming the key.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A value is out of range.
    #[error("model repository {dir}: model.yaml: {problem}")]
    Invalid {
        /// The repository directory.
        dir: String,
        /// Which key and what is allowed.
        problem: String,
    },
}

/// `model.yaml`: everything optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Overrides `model.max_batch_rows`.
    #[serde(default)]
    pub max_batch_rows: Option<usize>,
    /// Overrides `model.max_queue_delay_us`.
    #[serde(default)]
    pub max_queue_delay_us: Option<u64>,
    /// Which versions to keep loaded.
    #[serde(default, with = "serde_yaml_ng::with::singleton_map")]
    pub version_policy: VersionPolicy,
    /// Pinned labels; without them `stable` is the highest loaded version and there is no canary.
    #[serde(default)]
    pub labels: Labels,
    /// Share of users (0..=1) routed to the `canary` label.
    #[serde(default)]
    pub canary_weight: f64,
}

/// Which versions are loaded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    /// The highest N versions.
    Latest(usize),
    /// Exactly these versions (those present).
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

/// Version labels.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    /// Version serving the bulk of the traffic.
    #[serde(default)]
    pub stable: Option<u64>,
    /// Version serving `canary_weight` of users.
    #[serde(default)]
    pub canary: Option<u64>,
}

impl Settings {
    /// Reads `<dir>/model.yaml`; a missing file means all defaults.
    pub fn read(dir: &Path) -> Result<Settings, SettingsError> {
        let shown = || dir.display().to_string();
        let settings: Settings = match std::fs::read_to_string(dir.join("model.yaml")) {
            Ok(text) => {
                serde_yaml_ng::from_str(&text).map_err(|source| SettingsError::Parse { dir: shown(), source })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Settings::default(),
            Err(source) => return Err(SettingsError::Read { dir: shown(), source }),
        };
        let invalid = |problem: String| SettingsError::Invalid { dir: shown(), problem };
        if let Some(rows) = settings.max_batch_rows
            && !(1..=1 << 16).contains(&rows)
        {
            return Err(invalid(format!("max_batch_rows must be between 1 and 65536 (got {rows})")));
        }
        if !(0.0..=1.0).contains(&settings.canary_weight) {
            return Err(invalid(format!("canary_weight must be between 0 and 1 (got {})", settings.canary_weight)));
        }
        if settings.version_policy == VersionPolicy::Latest(0) {
            return Err(invalid("version_policy latest must be at least 1".into()));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_yaml_parses_policies_and_labels() {
        let s: Settings = serde_yaml_ng::from_str(
            "max_batch_rows: 64\nversion_policy: {specific: [1, 3]}\nlabels: {stable: 1, canary: 3}\ncanary_weight: 0.25\n",
        )
        .unwrap();
        assert_eq!(s.version_policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!((s.labels.stable, s.labels.canary, s.canary_weight), (Some(1), Some(3), 0.25));
        let s: Settings = serde_yaml_ng::from_str("version_policy: {latest: 2}\n").unwrap();
        assert_eq!(s.version_policy, VersionPolicy::Latest(2));
        assert!(serde_yaml_ng::from_str::<Settings>("max_batch_rowz: 3\n").is_err());
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.yaml"), "canary_weight: 2\n").unwrap();
        let err = Settings::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("canary_weight") && err.contains("got 2"), "{err}");
    }
}
