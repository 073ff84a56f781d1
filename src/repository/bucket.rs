//! The bucket layout that makes "export = deploy" safe, shared by the poller ([`super::source`])
//! and the tools that write and read it (`augur models publish|list`).
//!
//! Under `s3://bucket/<prefix>/<model>/`:
//!
//! ```text
//! LATEST                      the served version number, as text; flipped last
//! <version>/model.onnx        the files of a version (model.yaml and others beside it)
//! <version>/_COMPLETE.json    the completion marker: every file's size and SHA-256
//! ```
//!
//! A version counts only once its marker is there, and it is trusted only after every file
//! listed was downloaded and matched its size and checksum: a reader never acts on a
//! half-uploaded version (tensorflow/serving#1086, #631) and never lists the bucket to find one
//! (ListBucket bills, #1291). `LATEST` is one small object, so an unchanged poll is one
//! conditional GET answered 304.

use std::path::{Path as FsPath, PathBuf};
#[cfg(feature = "bucket")]
use std::sync::Arc;
#[cfg(feature = "bucket")]
use std::time::Duration;

#[cfg(feature = "bucket")]
use futures_util::StreamExt;
#[cfg(feature = "bucket")]
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
#[cfg(feature = "bucket")]
use object_store::path::Path;
#[cfg(feature = "bucket")]
use object_store::{
    ClientConfigKey, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};
#[cfg(feature = "bucket")]
use tokio::io::AsyncWriteExt;

use crate::repository::config::SourceConfig;
use crate::repository::provenance::{Evaluation, Lineage};

/// The object naming the served version.
pub const LATEST: &str = "LATEST";
/// A version's completion marker.
pub const MARKER: &str = "_COMPLETE.json";
/// The file every version must have.
pub const MODEL_FILE: &str = "model.onnx";
/// Files per version: a marker listing more is refused (bound on requests and disk entries).
pub const MAX_FILES: usize = 64;

/// Why the bucket could not be read or written (network, permissions, bad URL, local disk).
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The configured URL or options are unusable.
    #[error("{url}: {problem}")]
    Config {
        /// The `s3://` URL.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A request to the object store failed.
    #[cfg(feature = "bucket")]
    #[error("{location}: {source}")]
    Store {
        /// The object or prefix.
        location: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// The local copy could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The local file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a version in the bucket is not servable; each is counted by its [`Reason::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `LATEST` does not hold a version number.
    BadLatest,
    /// The version has no completion marker: its upload did not finish.
    NoMarker,
    /// The marker does not parse or lists unusable files.
    BadMarker,
    /// A file the marker lists is not in the bucket.
    MissingFile,
    /// A file's size differs from the marker's.
    Size,
    /// A file's SHA-256 differs from the marker's.
    Checksum,
    /// The version is bigger than `max_version_bytes`.
    TooLarge,
}

impl Reason {
    /// Every reason, for pre-creating its counter.
    pub const ALL: [Reason; 7] = [
        Reason::BadLatest,
        Reason::NoMarker,
        Reason::BadMarker,
        Reason::MissingFile,
        Reason::Size,
        Reason::Checksum,
        Reason::TooLarge,
    ];

    /// The metric label and the word `ListModels` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadLatest => "bad_latest",
            Reason::NoMarker => "no_marker",
            Reason::BadMarker => "bad_marker",
            Reason::MissingFile => "missing_file",
            Reason::Size => "size",
            Reason::Checksum => "checksum",
            Reason::TooLarge => "too_large",
        }
    }
}

/// A version refused before loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The version (0 when `LATEST` itself was unreadable).
    pub version: u64,
    /// Why, as a label.
    pub reason: Reason,
    /// The details: which file, what was expected and found.
    pub detail: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "version {} rejected ({}): {}", self.version, self.reason.as_str(), self.detail)
    }
}

/// Either the version is refused (counted, not retried until the bucket changes) or the bucket
/// could not be read (retried at the next poll).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The version is not servable.
    #[error("{0}")]
    Rejected(Rejection),
    /// A transient failure.
    #[error(transparent)]
    Bucket(#[from] BucketError),
}

/// The completion marker, `<version>/_COMPLETE.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// The version it completes (must equal its directory).
    pub version: u64,
    /// Every file of the version.
    pub files: Vec<MarkerFile>,
    /// The publish gate's evaluation against the version `LATEST` named (`augur models
    /// publish`); absent in markers written before the gate, or by `upload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// What the trainer says made the model; absent unless the publisher was given it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
}

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerFile {
    /// File name inside the version directory (no `/`).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

// === impl Marker ===

impl Marker {
    /// Describes `files` (name, content) as version `version`.
    pub fn describe(version: u64, files: &[(String, Vec<u8>)]) -> Self {
        let files = files
            .iter()
            .map(|(path, bytes)| MarkerFile { path: path.clone(), size: bytes.len() as u64, sha256: sha256_hex(bytes) })
            .collect();
        Marker { version, files, evaluation: None, lineage: None }
    }

    /// Parses and checks a marker of `version`; `Err` says what is wrong. File names are plain
    /// names, so a marker can never make the poller write outside the version's directory.
    pub fn parse(version: u64, bytes: &[u8]) -> Result<Self, String> {
        let marker: Marker = serde_json::from_slice(bytes).map_err(|e| format!("{MARKER}: {e}"))?;
        if marker.version != version {
            return Err(format!("{MARKER} is for version {}, found under version {version}", marker.version));
        }
        if marker.files.len() > MAX_FILES {
            return Err(format!("{MARKER} lists {} files; at most {MAX_FILES}", marker.files.len()));
        }
        if !marker.files.iter().any(|f| f.path == MODEL_FILE) {
            return Err(format!("{MARKER} does not list {MODEL_FILE}"));
        }
        for (i, f) in marker.files.iter().enumerate() {
            let plain = !f.path.is_empty()
                && f.path != "."
                && f.path != ".."
                && f.path != MARKER
                && !f.path.contains(['/', '\\', '\0']);
            if !plain {
                return Err(format!("{MARKER}: file `{}` is not a plain file name", f.path));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(format!("{MARKER}: file `{}` has no lower-case hex sha256", f.path));
            }
            if marker.files[..i].iter().any(|g| g.path == f.path) {
                return Err(format!("{MARKER}: file `{}` is listed twice", f.path));
            }
        }
        Ok(marker)
    }

    /// The bytes the version takes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The marker as stored.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a marker always serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a conditional GET found.
#[derive(Debug)]
pub enum Conditional {
    /// The ETag still matches: nothing was transferred.
    NotModified,
    /// No such object.
    Missing,
    /// The object and its ETag.
    Found {
        /// Content.
        bytes: bytes::Bytes,
        /// For the next conditional GET.
        etag: Option<String>,
    },
}

/// A marker read: `Ok((marker or None if absent, ETag))` or `Err((why unusable, ETag))`.
pub type MarkerRead = Result<(Option<Marker>, Option<String>), (Rejection, Option<String>)>;

#[cfg(feature = "bucket")]
/// One model's objects in a bucket: `s3://bucket/<prefix>/<model>/`.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
}

// === impl Bucket ===

#[cfg(feature = "bucket")]
impl Bucket {
    /// Opens model `model` under `config.url`. Credentials and other settings come from the
    /// `AWS_*` environment first, then the config's fields and `options`.
    pub fn open(config: &SourceConfig, model: &str) -> Result<Self, BucketError> {
        let url = &config.url;
        let problem = |problem: String| BucketError::Config { url: url.clone(), problem };
        let rest = url.strip_prefix("s3://").ok_or_else(|| problem("not an s3:// URL".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(problem("names no bucket".into()));
        }
        install_crypto_provider();
        let timeout = Duration::from_millis(config.timeout_ms);
        // A poll must fail within the timeout and be retried at the next poll, not hidden behind
        // minutes of client retries.
        let retry = RetryConfig { max_retries: 2, retry_timeout: timeout, ..RetryConfig::default() };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), format!("{}ms", config.timeout_ms));
        // Only ever switched on here: `AWS_ALLOW_HTTP=true` in the environment stays in force.
        if config.allow_http {
            builder = builder.with_allow_http(true);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        for (key, value) in &config.options {
            let key: AmazonS3ConfigKey = key.parse().map_err(|e| problem(format!("option `{key}`: {e}")))?;
            builder = builder.with_config(key, value);
        }
        let store = builder.build().map_err(|e| problem(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        let root = Path::from(if prefix.is_empty() { model.to_owned() } else { format!("{prefix}/{model}") });
        Ok(Bucket { store: Arc::new(store), url: format!("s3://{bucket}/{root}"), root })
    }

    /// `s3://bucket/<prefix>/<model>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn object(&self, relative: &str) -> Path {
        Path::from(format!("{}/{relative}", self.root))
    }

    fn store_error(&self, relative: &str, source: object_store::Error) -> BucketError {
        BucketError::Store { location: format!("{}/{relative}", self.url), source }
    }

    /// GETs `relative` unless its ETag is still `etag`.
    pub async fn get_if_changed(&self, relative: &str, etag: Option<&str>) -> Result<Conditional, BucketError> {
        let options = GetOptions { if_none_match: etag.map(str::to_owned), ..GetOptions::default() };
        let result = match self.store.get_opts(&self.object(relative), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotModified { .. }) => return Ok(Conditional::NotModified),
            Err(object_store::Error::NotFound { .. }) => return Ok(Conditional::Missing),
            Err(e) => return Err(self.store_error(relative, e)),
        };
        let etag = result.meta.e_tag.clone();
        let bytes = result.bytes().await.map_err(|e| self.store_error(relative, e))?;
        Ok(Conditional::Found { bytes, etag })
    }

    /// Reads `LATEST` unless unchanged since `etag`: `Found` carries its raw content.
    pub async fn latest(&self, etag: Option<&str>) -> Result<Conditional, BucketError> {
        self.get_if_changed(LATEST, etag).await
    }

    /// Reads and checks version `version`'s marker: the marker (`None` if there is none) and
    /// its ETag, or why it is unusable (and its ETag).
    pub async fn marker(&self, version: u64) -> Result<MarkerRead, BucketError> {
        let relative = format!("{version}/{MARKER}");
        Ok(match self.get_if_changed(&relative, None).await? {
            Conditional::Found { bytes, etag } => match Marker::parse(version, &bytes) {
                Ok(marker) => Ok((Some(marker), etag)),
                Err(detail) => Err((Rejection { version, reason: Reason::BadMarker, detail }, etag)),
            },
            Conditional::Missing | Conditional::NotModified => Ok((None, None)),
        })
    }

    /// Streams one file of `version` to `dest` (or nowhere: only checking it), hashing as it
    /// goes, and checks it against the marker; stops reading as soon as the object is longer
    /// than declared. Synced to disk.
    pub async fn download(&self, version: u64, file: &MarkerFile, dest: Option<&FsPath>) -> Result<(), FetchError> {
        let relative = format!("{version}/{}", file.path);
        let reject = |reason, detail| FetchError::Rejected(Rejection { version, reason, detail });
        let result = match self.store.get(&self.object(&relative)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(reject(Reason::MissingFile, format!("{} is listed in {MARKER} but absent", file.path)));
            }
            Err(e) => return Err(self.store_error(&relative, e).into()),
        };
        let io = |source| BucketError::Io { path: dest.map(|d| d.display().to_string()).unwrap_or_default(), source };
        let mut out = match dest {
            Some(dest) => Some(tokio::fs::File::create(dest).await.map_err(io)?),
            None => None,
        };
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut size = 0u64;
        let mut stream = result.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.store_error(&relative, e))?;
            size += chunk.len() as u64;
            if size > file.size {
                return Err(reject(
                    Reason::Size,
                    format!("{} is longer than the {} bytes declared", file.path, file.size),
                ));
            }
            hash.update(&chunk);
            if let Some(out) = &mut out {
                out.write_all(&chunk).await.map_err(io)?;
            }
        }
        if size != file.size {
            return Err(reject(Reason::Size, format!("{} has {size} bytes, {MARKER} says {}", file.path, file.size)));
        }
        let sha256 = hex(hash.finish().as_ref());
        if sha256 != file.sha256 {
            return Err(reject(
                Reason::Checksum,
                format!("{}: sha256 {sha256}, {MARKER} says {}", file.path, file.sha256),
            ));
        }
        if let Some(out) = out {
            out.sync_all().await.map_err(io)?;
        }
        Ok(())
    }

    /// Uploads one object of the model (`<version>/<file>` or `LATEST`).
    pub async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), BucketError> {
        self.store
            .put(&self.object(relative), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.store_error(relative, e))
    }

    /// Creates `relative` only if no object has that name (S3 `If-None-Match: *`): `false` when
    /// one exists, which then stands.
    pub async fn put_if_absent(&self, relative: &str, bytes: Vec<u8>) -> Result<bool, BucketError> {
        let options = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(&self.object(relative), PutPayload::from(bytes), options).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.store_error(relative, e)),
        }
    }

    /// Deletes `relative` (absent is fine).
    pub async fn delete(&self, relative: &str) -> Result<(), BucketError> {
        match self.store.delete(&self.object(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error(relative, e)),
        }
    }

    /// Version directories present in the bucket (one delimited LIST; tools only, never the
    /// poller).
    pub async fn versions(&self) -> Result<Vec<u64>, BucketError> {
        let listing = self.store.list_with_delimiter(Some(&self.root)).await.map_err(|e| self.store_error("", e))?;
        let mut versions: Vec<u64> =
            listing.common_prefixes.iter().filter_map(|p| p.filename()?.parse().ok()).collect();
        versions.sort_unstable();
        Ok(versions)
    }
}

#[cfg(feature = "bucket")]
/// Makes ring rustls' process-wide default. reqwest (under `object_store`) is built without a
/// crypto provider of its own and panics without a default; ring is the one tonic's TLS already
/// links, so there is no second TLS stack. Idempotent; if another provider was installed first,
/// that one stays, which is just as good.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Built without the `bucket` feature there is no object-store client: [`Bucket::open`] refuses
/// (config validation already refused `scenes[].source`), so no value exists and the other
/// methods are never called. The layout above (markers, `LATEST`, checksums) stays: `augur
/// models` publishes to a directory without the feature.
#[cfg(not(feature = "bucket"))]
#[derive(Debug)]
pub struct Bucket(std::convert::Infallible);

#[cfg(not(feature = "bucket"))]
#[allow(missing_docs, clippy::unused_async)]
impl Bucket {
    pub fn open(config: &SourceConfig, _model: &str) -> Result<Self, BucketError> {
        let problem = "this build of augur lacks the `bucket` feature".to_owned();
        Err(BucketError::Config { url: config.url.clone(), problem })
    }
    pub fn url(&self) -> &str {
        match self.0 {}
    }
    pub async fn get_if_changed(&self, _relative: &str, _etag: Option<&str>) -> Result<Conditional, BucketError> {
        match self.0 {}
    }
    pub async fn latest(&self, _etag: Option<&str>) -> Result<Conditional, BucketError> {
        match self.0 {}
    }
    pub async fn marker(&self, _version: u64) -> Result<MarkerRead, BucketError> {
        match self.0 {}
    }
    pub async fn download(&self, _version: u64, _file: &MarkerFile, _dest: Option<&FsPath>) -> Result<(), FetchError> {
        match self.0 {}
    }
    pub async fn put(&self, _relative: &str, _bytes: Vec<u8>) -> Result<(), BucketError> {
        match self.0 {}
    }
    pub async fn put_if_absent(&self, _relative: &str, _bytes: Vec<u8>) -> Result<bool, BucketError> {
        match self.0 {}
    }
    pub async fn delete(&self, _relative: &str) -> Result<(), BucketError> {
        match self.0 {}
    }
    pub async fn versions(&self) -> Result<Vec<u64>, BucketError> {
        match self.0 {}
    }
}

/// Nothing to install without the object-store client.
#[cfg(not(feature = "bucket"))]
pub fn install_crypto_provider() {}

/// Parses `LATEST`'s content.
pub fn parse_latest(bytes: &[u8]) -> Result<u64, Rejection> {
    std::str::from_utf8(bytes).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(|| Rejection {
        version: 0,
        reason: Reason::BadLatest,
        detail: format!(
            "{LATEST} holds {:?}, not a version number",
            String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
        ),
    })
}

/// A version directory's marker in a local repository, if it was materialised from a bucket
/// or published with one.
pub fn local_marker(dir: &FsPath, version: u64) -> Option<Marker> {
    let bytes = std::fs::read(dir.join(version.to_string()).join(MARKER)).ok()?;
    Marker::parse(version, &bytes).ok()
}

/// Local directory path of a version.
pub fn local_version(dir: &FsPath, version: u64) -> PathBuf {
    dir.join(version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker_json(version: u64, path: &str) -> Vec<u8> {
        Marker::describe(version, &[(path.to_owned(), b"onnx".to_vec())]).to_json()
    }

    #[test]
    fn marker_round_trips_and_refuses_what_could_escape_or_mislead() {
        let marker = Marker::parse(3, &marker_json(3, MODEL_FILE)).unwrap();
        assert_eq!(marker.files[0].size, 4);
        assert_eq!(marker.files[0].sha256, sha256_hex(b"onnx"));
        assert!(Marker::parse(4, &marker_json(3, MODEL_FILE)).unwrap_err().contains("version 3"));
        assert!(Marker::parse(3, &marker_json(3, "weights.bin")).unwrap_err().contains(MODEL_FILE));
        let escape = Marker {
            evaluation: None,
            lineage: None,
            version: 3,
            files: vec![
                MarkerFile { path: MODEL_FILE.into(), size: 1, sha256: sha256_hex(b"x") },
                MarkerFile { path: "../../etc/x".into(), size: 1, sha256: sha256_hex(b"x") },
            ],
        };
        assert!(Marker::parse(3, &escape.to_json()).unwrap_err().contains("plain file name"));
        assert!(Marker::parse(3, b"{\"version\": 3").is_err());
    }

    #[test]
    fn markers_without_an_evaluation_still_load_and_one_with_it_round_trips() {
        use crate::repository::provenance::{Decision, Evaluation, Lineage, Scores, Tolerance, TrainedOn};
        // Written before the gate: no evaluation, no lineage; and it is written back the same.
        let old = format!(
            "{{\"version\": 2, \"files\": [{{\"path\": \"model.onnx\", \"size\": 4, \"sha256\": \"{}\"}}]}}",
            sha256_hex(b"onnx")
        );
        let marker = Marker::parse(2, old.as_bytes()).unwrap();
        assert_eq!((marker.evaluation.as_ref(), marker.lineage.as_ref()), (None, None));
        assert!(!String::from_utf8(marker.to_json()).unwrap().contains("evaluation"));
        let scores = Scores { auc: Some(0.7), log_loss: 0.4, mean_score: 0.1, calibration: None };
        let mut marker = Marker::parse(3, &marker_json(3, MODEL_FILE)).unwrap();
        marker.evaluation = Some(Evaluation {
            decision: Decision::Refused,
            forced: true,
            reasons: vec!["AUC 0.5 vs 0.7".into()],
            baseline_version: Some(2),
            rows: 500,
            positives: 50,
            positive_event: "click".into(),
            window_start_ms: 1,
            window_end_ms: 2,
            held_out_from_ms: Some(1),
            samples: "/var/lib/augur/samples".into(),
            candidate: Some(Scores { auc: Some(0.5), ..scores }),
            baseline: Some(scores),
            tolerance: Tolerance { max_auc_drop: 0.01, max_log_loss_rise: 0.01, max_calibration_error: 0.1 },
            evaluated_at_ms: 3,
        });
        marker.lineage = Some(Lineage {
            samples: Some(TrainedOn { from_ms: 0, to_ms: 1, rows: 9, positives: 1 }),
            warm_start_version: Some(2),
            ..Lineage::default()
        });
        assert_eq!(Marker::parse(3, &marker.to_json()).unwrap(), marker);
    }

    #[test]
    fn sha256_matches_the_known_digest() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn latest_must_be_a_number() {
        assert_eq!(parse_latest(b"12\n").unwrap(), 12);
        assert_eq!(parse_latest(b"v12").unwrap_err().reason, Reason::BadLatest);
    }
}
