//! `augur models publish|list|set-latest`: the writing side of "export is deploy".
//!
//! `publish` opens the model against the scene's feature spec first (the same check the service
//! runs before serving), so a mismatched model never reaches the repository; then it uploads the
//! files, then the completion marker with their sizes and SHA-256, and flips `LATEST` last — the
//! order the poller ([`crate::repository::source`]) relies on. `list` shows a repository's versions,
//! their marker state (and, with [`Verify`], whether the files match it and the model the spec)
//! and which is `LATEST`.
//!
//! A repository is either a bucket (`s3://bucket/prefix`, the scene's `source.url`: the model's
//! objects are under `<prefix>/<model>/`) or a directory (the scene's `model` directory itself),
//! written with the same layout; a directory version appears in one rename.

use std::fmt;
use std::path::{Path, PathBuf};

use super::gate::{self, Gate, GateError};
use crate::assemble::Spec;
use crate::config::{SceneConfig, SourceConfig};
use crate::drift::reference::{REFERENCE_FILE, Reference, ReferenceError};
use crate::model::{ModelError, ModelLoader};
use crate::repository::bucket::{
    self, Bucket, BucketError, Conditional, FetchError, LATEST, MARKER, MODEL_FILE, Marker,
};
use crate::repository::provenance::{Decision, Evaluation, Lineage};

/// Why a models command failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// The bucket could not be read or written.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The model does not open or does not match the scene's spec: nothing was uploaded.
    #[error("not published: {0}")]
    Invalid(#[source] ModelError),
    /// Versions are immutable: a reader may already hold this one.
    #[error("version {version} already exists in {location}; publish a new version instead")]
    Exists {
        /// The version asked for.
        version: u64,
        /// The repository.
        location: String,
    },
    /// `set-latest` to a version that is not complete.
    #[error("version {version} in {location} is not complete: {problem}")]
    Incomplete {
        /// The version asked for.
        version: u64,
        /// The repository.
        location: String,
        /// What is missing.
        problem: String,
    },
    /// The first file must be the model.
    #[error("the model file is published as {MODEL_FILE}; other files may not be named {MODEL_FILE} or {MARKER}")]
    FileName,
    /// The model opening thread died.
    #[error("model validation thread: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The gate could not evaluate the candidate (samples unreadable, a model failed to score).
    #[error("not published: {0}")]
    Gate(#[from] GateError),
    /// The candidate is worse than the version `LATEST` names beyond a tolerance, or that
    /// version could not be read to compare with: nothing was uploaded.
    #[error("not published: {}; `--force` publishes it anyway (recorded in its marker)", gate::summary(.evaluation, *.version))]
    Refused {
        /// The version it would have been.
        version: u64,
        /// The numbers.
        evaluation: Box<Evaluation>,
    },
    /// A `reference.json` among the files is not a training reference this build reads.
    #[error("not published: {0}")]
    Reference(#[from] ReferenceError),
    /// `--lineage` does not hold a lineage.
    #[error("{path}: not a lineage (JSON object with run, samples, warm_start_version): {problem}")]
    Lineage {
        /// The file.
        path: String,
        /// What serde said.
        problem: String,
    },
}

/// A model repository to publish to or list.
#[derive(Debug)]
pub enum Repo {
    /// `s3://bucket/<prefix>/<model>`.
    Bucket(Bucket),
    /// A local repository directory.
    Dir(PathBuf),
}

/// A finished publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The version written (and now `LATEST`).
    pub version: u64,
    /// Where.
    pub location: String,
    /// Its marker.
    pub marker: Marker,
}

/// One version in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Version number.
    pub version: u64,
    /// `complete`, `no_marker`, `bad_marker`, or with [`Verify`] a failure (`size`, `checksum`,
    /// `missing_file`; `mismatch` with the spec, `invalid` model).
    pub state: String,
    /// Files and bytes per the marker.
    pub files: usize,
    /// Sum of the file sizes per the marker.
    pub bytes: u64,
    /// What is wrong, if anything.
    pub detail: String,
    /// The publish gate's decision per the marker, with both AUCs (empty: published ungated).
    pub gate: String,
}

/// A repository's versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The repository.
    pub location: String,
    /// What `LATEST` names (a directory without `LATEST` serves its highest version).
    pub latest: Option<u64>,
    /// Oldest first.
    pub versions: Vec<Listed>,
}

// === impl Repo ===

impl Repo {
    /// `target` as the scene config takes it: an `s3://` URL is a source URL (endpoint, region
    /// and options taken from the scene's `source` if it has one, else from the `AWS_*`
    /// environment), anything else the model directory. `None`: the scene's source if it has
    /// one, else its directory.
    pub fn open(scene: &SceneConfig, target: Option<&str>) -> Result<Self, ModelsError> {
        let name = scene.model.file_name().map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
        match target {
            Some(url) if url.starts_with("s3://") => {
                let mut config = scene.source.clone().unwrap_or_else(|| SourceConfig::from_url(url));
                config.url = url.to_owned();
                Ok(Repo::Bucket(Bucket::open(&config, &name)?))
            }
            Some(dir) => Ok(Repo::Dir(PathBuf::from(dir))),
            None => match &scene.source {
                Some(source) => Ok(Repo::Bucket(Bucket::open(source, &name)?)),
                None => Ok(Repo::Dir(scene.model.clone())),
            },
        }
    }

    /// Where it is, for messages.
    pub fn location(&self) -> String {
        match self {
            Repo::Bucket(b) => b.url().to_owned(),
            Repo::Dir(d) => d.display().to_string(),
        }
    }

    async fn latest(&self) -> Result<Option<u64>, ModelsError> {
        match self {
            Repo::Bucket(b) => match b.latest(None).await? {
                Conditional::Found { bytes, .. } => Ok(bucket::parse_latest(&bytes).ok()),
                Conditional::Missing | Conditional::NotModified => Ok(None),
            },
            Repo::Dir(d) => Ok(std::fs::read(d.join(LATEST)).ok().and_then(|b| bucket::parse_latest(&b).ok())),
        }
    }

    async fn versions(&self) -> Result<Vec<u64>, ModelsError> {
        match self {
            Repo::Bucket(b) => Ok(b.versions().await?),
            Repo::Dir(d) => {
                let Ok(entries) = std::fs::read_dir(d) else { return Ok(Vec::new()) };
                let mut versions: Vec<u64> = entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect();
                versions.sort_unstable();
                Ok(versions)
            }
        }
    }

    /// The marker of `version`: `Ok(Ok(marker))`, or `Ok(Err((state, detail)))` when absent or
    /// unusable.
    async fn marker(&self, version: u64) -> Result<Result<Marker, (String, String)>, ModelsError> {
        let bytes = match self {
            Repo::Bucket(b) => match b.get_if_changed(&format!("{version}/{MARKER}"), None).await? {
                Conditional::Found { bytes, .. } => Some(bytes.to_vec()),
                Conditional::Missing | Conditional::NotModified => None,
            },
            Repo::Dir(d) => std::fs::read(d.join(version.to_string()).join(MARKER)).ok(),
        };
        Ok(match bytes {
            None => Err(("no_marker".into(), format!("no {MARKER}"))),
            Some(bytes) => Marker::parse(version, &bytes).map_err(|e| ("bad_marker".into(), e)),
        })
    }

    /// Checks every file of `marker` against it and, with `check`, opens the model against the
    /// spec: `Some((state, detail))` on a problem. A bucket version is downloaded to a
    /// temporary directory (removed after) so the model can be opened.
    async fn verify(&self, marker: &Marker, check: &Verify<'_>) -> Result<Option<(String, String)>, ModelsError> {
        let version = marker.version;
        let (dir, temporary) = match self {
            Repo::Bucket(_) => {
                let tmp = std::env::temp_dir().join(format!("augur-verify-{}-{version}", std::process::id()));
                let _ = std::fs::remove_dir_all(&tmp);
                std::fs::create_dir_all(&tmp)
                    .map_err(|source| ModelsError::Io { path: tmp.display().to_string(), source })?;
                (tmp, true)
            }
            Repo::Dir(d) => (d.join(version.to_string()), false),
        };
        let result = self.verify_in(&dir, marker, check).await;
        if temporary {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    async fn verify_in(
        &self,
        dir: &Path,
        marker: &Marker,
        check: &Verify<'_>,
    ) -> Result<Option<(String, String)>, ModelsError> {
        for file in &marker.files {
            let problem = match self {
                Repo::Bucket(b) => match b.download(marker.version, file, Some(&dir.join(&file.path))).await {
                    Ok(()) => None,
                    Err(FetchError::Rejected(r)) => Some((r.reason.as_str().to_owned(), r.detail)),
                    Err(FetchError::Bucket(e)) => return Err(e.into()),
                },
                Repo::Dir(_) => match std::fs::read(dir.join(&file.path)) {
                    Err(_) => Some(("missing_file".to_owned(), format!("{} is absent", file.path))),
                    Ok(bytes) if bytes.len() as u64 != file.size => Some((
                        "size".to_owned(),
                        format!("{} has {} bytes, {MARKER} says {}", file.path, bytes.len(), file.size),
                    )),
                    Ok(bytes) if bucket::sha256_hex(&bytes) != file.sha256 => {
                        Some(("checksum".to_owned(), format!("{}: sha256 differs from {MARKER}", file.path)))
                    }
                    Ok(_) => None,
                },
            };
            if problem.is_some() {
                return Ok(problem);
            }
        }
        if let Some((spec, loader)) = &check.spec
            && let Err(e) = open_checked(spec, std::sync::Arc::clone(loader), dir.join(MODEL_FILE)).await?
        {
            let state = if matches!(e, ModelError::Mismatch { .. }) { "mismatch" } else { "invalid" };
            return Ok(Some((state.to_owned(), e.to_string())));
        }
        Ok(None)
    }

    /// Version `version`'s model file, checked against its marker: from a bucket downloaded to
    /// a temporary directory (removed when the [`Fetched`] drops). `Ok(Err(problem))` when the
    /// version is incomplete or its file does not match.
    async fn fetch_model(&self, version: u64) -> Result<Result<Fetched, String>, ModelsError> {
        let marker = match self.marker(version).await? {
            Ok(marker) => marker,
            Err((_, problem)) => return Ok(Err(problem)),
        };
        let Some(file) = marker.files.iter().find(|f| f.path == MODEL_FILE) else {
            return Ok(Err(format!("{MARKER} lists no {MODEL_FILE}")));
        };
        match self {
            Repo::Dir(d) => {
                let path = d.join(version.to_string()).join(MODEL_FILE);
                Ok(match std::fs::read(&path) {
                    Err(e) => Err(format!("{}: {e}", path.display())),
                    Ok(bytes) if bucket::sha256_hex(&bytes) != file.sha256 => {
                        Err(format!("{}: sha256 differs from {MARKER}", path.display()))
                    }
                    Ok(_) => Ok(Fetched { path, temporary: None }),
                })
            }
            Repo::Bucket(b) => {
                let tmp = std::env::temp_dir().join(format!("augur-gate-{}-{version}", std::process::id()));
                let _ = std::fs::remove_dir_all(&tmp);
                std::fs::create_dir_all(&tmp)
                    .map_err(|source| ModelsError::Io { path: tmp.display().to_string(), source })?;
                let fetched = Fetched { path: tmp.join(MODEL_FILE), temporary: Some(tmp) };
                match b.download(version, file, Some(&fetched.path)).await {
                    Ok(()) => Ok(Ok(fetched)),
                    Err(FetchError::Rejected(r)) => Ok(Err(r.to_string())),
                    Err(FetchError::Bucket(e)) => Err(e.into()),
                }
            }
        }
    }

    async fn exists(&self, version: u64) -> Result<bool, ModelsError> {
        Ok(match self {
            Repo::Bucket(_) => self.versions().await?.contains(&version),
            Repo::Dir(d) => d.join(version.to_string()).exists(),
        })
    }

    async fn write_latest(&self, version: u64) -> Result<(), ModelsError> {
        let content = format!("{version}\n").into_bytes();
        match self {
            Repo::Bucket(b) => Ok(b.put(LATEST, content).await?),
            Repo::Dir(d) => {
                let tmp = d.join(format!(".{LATEST}.tmp"));
                let io = |source| ModelsError::Io { path: tmp.display().to_string(), source };
                std::fs::write(&tmp, content).map_err(io)?;
                std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
                std::fs::rename(&tmp, d.join(LATEST)).map_err(io)
            }
        }
    }
}

/// A model file to score; a temporary copy is removed on drop.
#[derive(Debug)]
struct Fetched {
    path: PathBuf,
    temporary: Option<PathBuf>,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        if let Some(dir) = &self.temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What `list` checks beyond the markers.
#[derive(Debug, Default)]
pub struct Verify<'a> {
    /// Download (or read) every file and check it against its marker.
    pub files: bool,
    /// Also open each complete version's model against this spec (implies `files`).
    pub spec: Option<(&'a Spec, std::sync::Arc<dyn ModelLoader>)>,
}

/// Opens `model` against `spec` off the async workers (it takes a core for a while).
async fn open_checked(
    spec: &Spec,
    loader: std::sync::Arc<dyn ModelLoader>,
    model: PathBuf,
) -> Result<Result<(), ModelError>, ModelsError> {
    let spec = spec.clone();
    Ok(tokio::task::spawn_blocking(move || loader.open(&model, &spec).map(drop)).await?)
}

/// Checks `files[0]` (the model) against `spec` with `loader`, then [`upload`]s: not gated
/// (tools and tests that place a version as-is; `augur models publish` is [`publish_gated`]).
pub async fn publish(
    spec: &Spec,
    loader: std::sync::Arc<dyn ModelLoader>,
    repo: &Repo,
    files: &[PathBuf],
    version: Option<u64>,
) -> Result<Published, ModelsError> {
    let named = validated(spec, loader, files).await?;
    upload(repo, version, named).await
}

/// What a gated publish is given beside the files.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Version number; `None`: one above every version present.
    pub version: Option<u64>,
    /// How the candidate is judged against `LATEST`.
    pub gate: Gate,
    /// What the trainer says made the model; its sample window decides the held-out rows.
    pub lineage: Option<Lineage>,
}

/// `augur models publish`: checks `files[0]` against `spec`, evaluates it against the version
/// `LATEST` names on recent joined samples ([`gate`]), and uploads it with the evaluation and
/// lineage in its marker — unless the gate refuses it ([`ModelsError::Refused`], nothing
/// uploaded) and `options.gate.force` is off.
pub async fn publish_gated(
    spec: &Spec,
    loader: std::sync::Arc<dyn ModelLoader>,
    repo: &Repo,
    files: &[PathBuf],
    options: &PublishOptions,
) -> Result<Published, ModelsError> {
    let named = validated(spec, std::sync::Arc::clone(&loader), files).await?;
    let version = next_version(repo, options.version).await?;
    if repo.exists(version).await? {
        return Err(ModelsError::Exists { version, location: repo.location() });
    }
    let mut evaluation = evaluate(spec, loader, repo, &files[0], &options.gate, options.lineage.as_ref()).await?;
    if matches!(evaluation.decision, Decision::Refused | Decision::NoBaseline) {
        if !options.gate.force {
            return Err(ModelsError::Refused { version, evaluation: Box::new(evaluation) });
        }
        evaluation.forced = true;
    }
    upload_with(repo, Some(version), named, Some(evaluation), options.lineage.clone()).await
}

/// `files` (the model first) plus the training reference the trainer wrote beside the model
/// (`reference.json`, for drift), unless absent or already among them: a version published from
/// a trainer's output directory carries it without naming it.
pub fn with_reference(mut files: Vec<PathBuf>) -> Vec<PathBuf> {
    let beside = files.first().and_then(|m| m.parent()).map(|d| d.join(REFERENCE_FILE));
    let named = files.iter().skip(1).any(|f| f.file_name().is_some_and(|n| n == REFERENCE_FILE));
    if let Some(reference) = beside.filter(|r| !named && r.is_file()) {
        files.push(reference);
    }
    files
}

/// Reads a `--lineage` file.
pub fn read_lineage(path: &Path) -> Result<Lineage, ModelsError> {
    let bytes = std::fs::read(path).map_err(|source| ModelsError::Io { path: path.display().to_string(), source })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ModelsError::Lineage { path: path.display().to_string(), problem: e.to_string() })
}

/// The candidate `model` against `LATEST`'s on the gate's rows.
async fn evaluate(
    spec: &Spec,
    loader: std::sync::Arc<dyn ModelLoader>,
    repo: &Repo,
    model: &Path,
    gate: &Gate,
    lineage: Option<&Lineage>,
) -> Result<Evaluation, ModelsError> {
    let held_out_from_ms = lineage.and_then(|l| l.samples.as_ref()).map(|s| s.to_ms);
    let unevaluated =
        |decision, reason: String, baseline| gate::unevaluated(decision, reason, gate, baseline, held_out_from_ms);
    let Some(baseline_version) = repo.latest().await? else {
        return Ok(unevaluated(
            Decision::FirstVersion,
            format!("no {LATEST} in {}: nothing to compare with", repo.location()),
            None,
        ));
    };
    let Some(dir) = gate.samples.clone() else {
        let reason = "no sample log to evaluate on (--samples, or samples.log.dir with samples.enabled)".to_owned();
        return Ok(unevaluated(Decision::NoSamples, reason, Some(baseline_version)));
    };
    let rows = {
        let gate = gate.clone();
        tokio::task::spawn_blocking(move || gate::read_rows(&dir, &gate, held_out_from_ms)).await??
    };
    let positives = rows.positives();
    if (rows.len() as u64) < gate.min_rows || positives == 0 || positives == rows.len() as u64 {
        let held =
            held_out_from_ms.map_or(String::new(), |t| format!(" predicted from {t} ms (after the training window)"));
        let reason = format!(
            "{} joined samples{held} ({positives} {}) in {}: fewer than {} rows or one class only",
            rows.len(),
            gate.positive_event,
            gate.samples.as_ref().map_or(String::new(), |p| p.display().to_string()),
            gate.min_rows
        );
        return Ok(unevaluated(Decision::NoSamples, reason, Some(baseline_version)));
    }
    let baseline = match repo.fetch_model(baseline_version).await? {
        Ok(fetched) => fetched,
        Err(problem) => {
            let reason = format!("{LATEST} names version {baseline_version}, which cannot be read: {problem}");
            return Ok(unevaluated(Decision::NoBaseline, reason, Some(baseline_version)));
        }
    };
    let (spec, model, rows_for_scoring) = (spec.clone(), model.to_path_buf(), std::sync::Arc::new(rows));
    let rows = std::sync::Arc::clone(&rows_for_scoring);
    let baseline_path = baseline.path.clone();
    let scored = tokio::task::spawn_blocking(move || {
        let score = |path: &Path, version: String| {
            let fail = |source| GateError::Score { version: version.clone(), source };
            let mut m = loader.open(path, &spec).map_err(fail)?;
            gate::score(m.as_mut(), &spec, &rows_for_scoring).map_err(fail)
        };
        Ok::<_, GateError>((score(&model, "candidate".into())?, score(&baseline_path, baseline_version.to_string())?))
    })
    .await?;
    drop(baseline);
    let (candidate, baseline) = scored?;
    Ok(gate::evaluate(gate, &rows, &candidate, &baseline, baseline_version, held_out_from_ms))
}

/// Opens `files[0]` against `spec` and reads every file, named as the version will hold them.
async fn validated(
    spec: &Spec,
    loader: std::sync::Arc<dyn ModelLoader>,
    files: &[PathBuf],
) -> Result<Vec<(String, Vec<u8>)>, ModelsError> {
    let model = files.first().cloned().ok_or(ModelsError::FileName)?;
    open_checked(spec, loader, model).await?.map_err(ModelsError::Invalid)?;
    let mut named = Vec::with_capacity(files.len());
    for (i, path) in files.iter().enumerate() {
        let name = if i == 0 {
            MODEL_FILE.to_owned()
        } else {
            path.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or(ModelsError::FileName)?
        };
        if i > 0 && (name == MODEL_FILE || name == MARKER) {
            return Err(ModelsError::FileName);
        }
        let bytes =
            std::fs::read(path).map_err(|source| ModelsError::Io { path: path.display().to_string(), source })?;
        if name == REFERENCE_FILE {
            // Served versions read it for drift: a file augur cannot read is caught here, not
            // as "no reference" on every replica later.
            Reference::parse(&bytes, &path.display().to_string())?;
        }
        named.push((name, bytes));
    }
    Ok(named)
}

/// `version`, else one above every version present (and `LATEST`).
async fn next_version(repo: &Repo, version: Option<u64>) -> Result<u64, ModelsError> {
    Ok(match version {
        Some(v) => v,
        None => repo.versions().await?.last().copied().max(repo.latest().await?).unwrap_or(0) + 1,
    })
}

/// Writes `files` (name, content) as a new version without validating them — files, then
/// marker, then `LATEST`. `version`: the given one, else one above every version present.
/// Tools and tests that must place a version as-is use this; [`publish`] validates first.
pub async fn upload(
    repo: &Repo,
    version: Option<u64>,
    files: Vec<(String, Vec<u8>)>,
) -> Result<Published, ModelsError> {
    upload_with(repo, version, files, None, None).await
}

/// [`upload`] with an evaluation and a lineage in the marker.
async fn upload_with(
    repo: &Repo,
    version: Option<u64>,
    files: Vec<(String, Vec<u8>)>,
    evaluation: Option<Evaluation>,
    lineage: Option<Lineage>,
) -> Result<Published, ModelsError> {
    let version = next_version(repo, version).await?;
    if repo.exists(version).await? {
        return Err(ModelsError::Exists { version, location: repo.location() });
    }
    let mut marker = Marker::describe(version, &files);
    marker.evaluation = evaluation;
    marker.lineage = lineage;
    match repo {
        Repo::Bucket(b) => {
            for (name, bytes) in files {
                b.put(&format!("{version}/{name}"), bytes).await?;
            }
            b.put(&format!("{version}/{MARKER}"), marker.to_json()).await?;
        }
        Repo::Dir(d) => write_dir_version(d, version, files, &marker)?,
    }
    repo.write_latest(version).await?;
    Ok(Published { version, location: repo.location(), marker })
}

/// Writes a version beside the repository and renames it in, so a watcher never sees it half
/// written.
fn write_dir_version(
    dir: &Path,
    version: u64,
    files: Vec<(String, Vec<u8>)>,
    marker: &Marker,
) -> Result<(), ModelsError> {
    let staging = dir.join(format!(".publish-{version}"));
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ModelsError::Io { path, source }
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    for (name, bytes) in files.into_iter().chain([(MARKER.to_owned(), marker.to_json())]) {
        let path = staging.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))?;
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io(&path))?;
    }
    let target = dir.join(version.to_string());
    std::fs::rename(&staging, &target).map_err(io(&target))?;
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

/// Points `LATEST` at `version` (rollback or roll forward) after checking its marker.
pub async fn set_latest(repo: &Repo, version: u64) -> Result<(), ModelsError> {
    if let Err((_, problem)) = repo.marker(version).await? {
        return Err(ModelsError::Incomplete { version, location: repo.location(), problem });
    }
    repo.write_latest(version).await
}

/// The versions in `repo`; `verify` says what to check beyond the markers' presence.
pub async fn list(repo: &Repo, verify: &Verify<'_>) -> Result<Listing, ModelsError> {
    let latest = repo.latest().await?;
    let mut versions = Vec::new();
    for version in repo.versions().await? {
        let listed = match repo.marker(version).await? {
            Err((state, detail)) => Listed { version, state, files: 0, bytes: 0, detail, gate: String::new() },
            Ok(marker) => {
                let problem = match verify.files || verify.spec.is_some() {
                    true => repo.verify(&marker, verify).await?,
                    false => None,
                };
                let (state, detail) = problem.unwrap_or_else(|| ("complete".into(), String::new()));
                let gate = marker.evaluation.as_ref().map(gate_column).unwrap_or_default();
                Listed { version, state, files: marker.files.len(), bytes: marker.total_bytes(), detail, gate }
            }
        };
        versions.push(listed);
    }
    Ok(Listing { location: repo.location(), latest, versions })
}

/// `passed vs 3 (AUC 0.6612/0.6590)`, `refused, forced vs 3 (...)`, `first_version`.
fn gate_column(e: &Evaluation) -> String {
    let mut text = e.decision.as_str().to_owned();
    if e.forced {
        text.push_str(",forced");
    }
    if let Some(b) = e.baseline_version {
        text.push_str(&format!(" vs {b}"));
    }
    if let (Some(c), Some(b)) = (e.candidate.and_then(|s| s.auc), e.baseline.and_then(|s| s.auc)) {
        text.push_str(&format!(" (AUC {c:.4}/{b:.4})"));
    }
    text
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.latest {
            Some(v) => writeln!(f, "{}  LATEST = {v}", self.location)?,
            None => writeln!(f, "{}  (no LATEST)", self.location)?,
        }
        writeln!(f, "{:>8}  {:<12}  {:>5}  {:>12}  {:<6}  GATE", "VERSION", "STATE", "FILES", "BYTES", "")?;
        for v in &self.versions {
            let latest = if self.latest == Some(v.version) { "LATEST" } else { "" };
            let mut line =
                format!("{:>8}  {:<12}  {:>5}  {:>12}  {latest:<6}  {}", v.version, v.state, v.files, v.bytes, v.gate);
            if !v.detail.is_empty() {
                line.push_str(&format!("  {}", v.detail));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(dir: &Path) -> SceneConfig {
        let toml = format!(
            "[[scenes]]\nname = \"ranking\"\nspec = \"features/ranking.yaml\"\nmodel = \"{}\"\n",
            dir.display()
        );
        crate::config::Config::from_toml(&toml).unwrap().scenes.remove(0)
    }

    #[tokio::test]
    async fn directory_upload_writes_marker_and_latest_and_list_verifies() {
        let tmp = std::env::temp_dir().join(format!("augur-models-{}", std::process::id()));
        let dir = tmp.join("ranking");
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Repo::open(&scene(&dir), None).unwrap();
        let one = upload(&repo, None, vec![(MODEL_FILE.into(), b"one".to_vec())]).await.unwrap();
        let two = upload(&repo, None, vec![(MODEL_FILE.into(), b"two".to_vec())]).await.unwrap();
        assert_eq!((one.version, two.version), (1, 2));
        assert!(matches!(
            upload(&repo, Some(2), vec![(MODEL_FILE.into(), b"x".to_vec())]).await,
            Err(ModelsError::Exists { version: 2, .. })
        ));
        // Corrupt version 2 in place: only `verify` notices.
        std::fs::write(dir.join("2").join(MODEL_FILE), b"twO").unwrap();
        let verify = Verify { files: true, spec: None };
        let listing = list(&repo, &verify).await.unwrap();
        assert_eq!(listing.latest, Some(2));
        let states: Vec<(u64, &str)> = listing.versions.iter().map(|v| (v.version, v.state.as_str())).collect();
        assert_eq!(states, [(1, "complete"), (2, "checksum")]);
        let unverified = list(&repo, &Verify::default()).await.unwrap();
        assert_eq!(unverified.versions[1].state, "complete", "without verify only the marker is read");
        let text = listing.to_string();
        assert!(
            text.contains("LATEST = 2") && text.lines().any(|l| l.contains("checksum") && l.contains("LATEST")),
            "{text}"
        );
        set_latest(&repo, 1).await.unwrap();
        assert_eq!(list(&repo, &Verify::default()).await.unwrap().latest, Some(1));
        assert!(matches!(set_latest(&repo, 7).await, Err(ModelsError::Incomplete { version: 7, .. })));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
