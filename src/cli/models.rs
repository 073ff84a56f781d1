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

use crate::assemble::Spec;
use crate::config::{SceneConfig, SourceConfig};
use crate::model::{ModelError, ModelLoader};
use crate::repository::bucket::{
    self, Bucket, BucketError, Conditional, FetchError, LATEST, MARKER, MODEL_FILE, Marker,
};

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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Checks `files[0]` (the model) against `spec` with `loader`, then [`upload`]s.
pub async fn publish(
    spec: &Spec,
    loader: std::sync::Arc<dyn ModelLoader>,
    repo: &Repo,
    files: &[PathBuf],
    version: Option<u64>,
) -> Result<Published, ModelsError> {
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
        named.push((name, bytes));
    }
    upload(repo, version, named).await
}

/// Writes `files` (name, content) as a new version without validating them — files, then
/// marker, then `LATEST`. `version`: the given one, else one above every version present.
/// Tools and tests that must place a version as-is use this; [`publish`] validates first.
pub async fn upload(
    repo: &Repo,
    version: Option<u64>,
    files: Vec<(String, Vec<u8>)>,
) -> Result<Published, ModelsError> {
    let version = match version {
        Some(v) => v,
        None => {
            let highest = repo.versions().await?.last().copied().max(repo.latest().await?).unwrap_or(0);
            highest + 1
        }
    };
    if repo.exists(version).await? {
        return Err(ModelsError::Exists { version, location: repo.location() });
    }
    let marker = Marker::describe(version, &files);
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
            Err((state, detail)) => Listed { version, state, files: 0, bytes: 0, detail },
            Ok(marker) => {
                let problem = match verify.files || verify.spec.is_some() {
                    true => repo.verify(&marker, verify).await?,
                    false => None,
                };
                let (state, detail) = problem.unwrap_or_else(|| ("complete".into(), String::new()));
                Listed { version, state, files: marker.files.len(), bytes: marker.total_bytes(), detail }
            }
        };
        versions.push(listed);
    }
    Ok(Listing { location: repo.location(), latest, versions })
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.latest {
            Some(v) => writeln!(f, "{}  LATEST = {v}", self.location)?,
            None => writeln!(f, "{}  (no LATEST)", self.location)?,
        }
        writeln!(f, "{:>8}  {:<12}  {:>5}  {:>12}  ", "VERSION", "STATE", "FILES", "BYTES")?;
        for v in &self.versions {
            let latest = if self.latest == Some(v.version) { "LATEST" } else { "" };
            let mut line = format!("{:>8}  {:<12}  {:>5}  {:>12}  {latest}", v.version, v.state, v.files, v.bytes);
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
