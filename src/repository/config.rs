//! `scenes[].source`: the bucket a scene's model versions are published to and polled from,
//! owned by the control plane that polls it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::validate::{Invalid, in_range, invalid};

/// A bucket that model versions are published to (`augur models publish`) and polled from.
///
/// Layout under `url`: `<prefix>/<model>/LATEST` names the served version,
/// `<prefix>/<model>/<version>/` holds its files and `_COMPLETE.json` (sizes and SHA-256), where
/// `<model>` is the last component of the scene's `model` directory. Credentials come from the
/// standard AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, ...) or `options`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `s3://bucket[/prefix]`.
    pub url: String,
    /// An S3-compatible endpoint (MinIO, moto, Ceph, ...); absent: AWS itself (or
    /// `AWS_ENDPOINT_URL`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Bucket region; absent: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint (local object stores, tests). Off by default so credentials
    /// never cross the network in clear by accident.
    #[serde(default)]
    pub allow_http: bool,
    /// How often `LATEST` is polled (one conditional GET when nothing changed).
    #[serde(default = "default_source_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Each wait is the interval times a random factor in `1 ± jitter`, so a fleet of replicas
    /// does not poll in lockstep.
    #[serde(default = "default_source_jitter")]
    pub jitter: f64,
    /// The largest version (sum of its files) that is downloaded; a bigger marker is rejected
    /// before anything is fetched, so a wrong upload cannot fill the disk.
    #[serde(default = "default_source_max_version_bytes")]
    pub max_version_bytes: u64,
    /// Materialised versions kept locally below `LATEST` (it included), so the disk holds a
    /// bounded number of models however often they are published; older ones are deleted
    /// (rolling back further downloads them again). 0 keeps every version. Raise it when
    /// `model.yaml` pins or canaries older versions.
    #[serde(default = "default_source_keep_versions")]
    pub keep_versions: usize,
    /// How long one request to the bucket may take before the poll counts as failed.
    #[serde(default = "default_source_timeout_ms")]
    pub timeout_ms: u64,
    /// Further `object_store` S3 options by their string keys (`aws_access_key_id`,
    /// `aws_virtual_hosted_style_request`, ...); prefer the environment for secrets.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

const fn default_source_poll_interval_ms() -> u64 {
    30_000
}

const fn default_source_jitter() -> f64 {
    0.1
}

const fn default_source_max_version_bytes() -> u64 {
    4 << 30
}

const fn default_source_keep_versions() -> usize {
    5
}

const fn default_source_timeout_ms() -> u64 {
    30_000
}

impl SourceConfig {
    /// A source for `url` with every other setting at its default (the `AWS_*` environment
    /// fills in endpoint, region and credentials): what the tools use without a scene source.
    pub fn from_url(url: &str) -> Self {
        SourceConfig {
            url: url.to_owned(),
            endpoint: None,
            region: None,
            allow_http: false,
            poll_interval_ms: default_source_poll_interval_ms(),
            jitter: default_source_jitter(),
            max_version_bytes: default_source_max_version_bytes(),
            timeout_ms: default_source_timeout_ms(),
            keep_versions: default_source_keep_versions(),
            options: BTreeMap::new(),
        }
    }

    /// Checks the values serde cannot; `key` is the dotted path of this table.
    pub fn validate(&self, key: &str) -> Result<(), Invalid> {
        if !cfg!(feature = "bucket") {
            return Err(invalid(key, "needs the `bucket` feature, which this build of augur lacks"));
        }
        let Some(rest) = self.url.strip_prefix("s3://") else {
            return Err(invalid(&format!("{key}.url"), &format!("`{}` is not an s3://bucket[/prefix] URL", self.url)));
        };
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(invalid(&format!("{key}.url"), "names no bucket (want s3://bucket[/prefix])"));
        }
        in_range(&format!("{key}.poll_interval_ms"), self.poll_interval_ms as usize, 10, 86_400_000)?;
        if !(0.0..=0.9).contains(&self.jitter) {
            return Err(invalid(&format!("{key}.jitter"), &format!("must be between 0 and 0.9 (got {})", self.jitter)));
        }
        if self.max_version_bytes == 0 {
            return Err(invalid(&format!("{key}.max_version_bytes"), "must be positive"));
        }
        in_range(&format!("{key}.timeout_ms"), self.timeout_ms as usize, 1, 3_600_000)?;
        in_range(&format!("{key}.keep_versions"), self.keep_versions, 0, 10_000)?;
        Ok(())
    }
}
