//! The bucket source of a scene's repository: polls `<prefix>/<model>/LATEST` and materialises
//! the version it names into the local repository directory, so the repository's own load →
//! validate → warm up → atomic swap path (and its rejection counters) serves it unchanged.
//!
//! One poll is one conditional GET of `LATEST` (`If-None-Match`; 304 when nothing changed).
//! When it changes, the version's completion marker is read, every file it lists is downloaded
//! to `<dir>/.staging/<version>/`, checked against its size and SHA-256, synced, and renamed to
//! `<dir>/<version>/` in one step, with the marker beside it (so a restart does not download it
//! again). Local versions newer than `LATEST` are removed: pointing `LATEST` at an older version
//! is the rollback; of those below it, `keep_versions` bounds how many stay on disk. A version without a marker, with a wrong size or checksum, or too big is
//! rejected with a counter and a log line, nothing of it reaches the repository, and the loaded
//! versions keep serving; it is retried when `LATEST` or its marker changes (then each poll
//! also re-checks the marker, one more request, until it is fixed or `LATEST` moves).
//! A version that downloads fine but does not match the feature spec is the repository's to
//! reject, as for a local directory.
//!
//! For a scene with a rollout policy each poll also reconciles the canary decisions of the local
//! versions with `<version>/rollout.json` objects in the bucket ([`Source::sync_decisions`]), so
//! replicas that each keep their own directory follow one decision.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Repository;
use super::bucket::{self, Bucket, BucketError, Conditional, FetchError, MARKER, Reason, Rejection};
use super::rollout::{self, DECISION_FILE, Decision};
use crate::repository::config::SourceConfig;
use crate::repository::metrics::{ModelMetrics, SourcePollLabels, SourceRejectLabels};
use crate::telemetry::Metrics;

/// Rejections remembered for `ListModels` (the newest; older ones live in logs and counters).
const REMEMBERED_REJECTIONS: usize = 16;

/// What one poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// `LATEST` (and a pending marker) unchanged: nothing to do.
    NotModified,
    /// The bucket has no `LATEST` yet.
    Missing,
    /// Version now present locally (downloaded, or already there): the repository should
    /// rescan.
    Ready(u64),
    /// The version `LATEST` names was refused.
    Rejected(Rejection),
    /// The bucket could not be read; retried at the next poll.
    Error(String),
}

/// What `ListModels` shows about a source.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus {
    /// `s3://bucket/<prefix>/<model>`.
    pub url: String,
    /// The version `LATEST` names, once read.
    pub latest: Option<u64>,
    /// Refused versions with when (ms since the Unix epoch), newest last; a version leaves the
    /// list once it is materialised after all (fixed and re-uploaded).
    pub rejected: Vec<(Rejection, i64)>,
}

#[derive(Debug, Default)]
struct State {
    /// `LATEST`'s ETag at the last successful materialisation or rejection.
    latest_etag: Option<String>,
    latest: Option<u64>,
    /// A rejected `LATEST` target and its marker's ETag: re-checked each poll.
    pending: Option<(u64, Option<String>)>,
    rejected: VecDeque<(Rejection, i64)>,
    /// Per local version, the decision object last seen in the bucket and its ETag
    /// ([`Source::sync_decisions`]); `None`: none seen there.
    decisions: std::collections::BTreeMap<u64, (Option<Decision>, Option<String>)>,
}

/// Polls one bucket for one repository directory.
#[derive(Debug)]
pub struct Source {
    model: String,
    bucket: Bucket,
    dir: PathBuf,
    interval: Duration,
    jitter: f64,
    max_version_bytes: u64,
    keep_versions: usize,
    metrics: Metrics,
    /// The scene has a rollout policy: canary decisions are shared through the bucket.
    share_decisions: bool,
    /// Serialises polls (the background task and start-up), and holds what they learnt.
    state: tokio::sync::Mutex<State>,
}

// === impl Source ===

impl Source {
    /// The source of the repository in `dir` (whose name is the model's name in the bucket).
    pub fn new(config: &SourceConfig, dir: &Path, metrics: &Metrics) -> Result<Self, BucketError> {
        let model = dir.file_name().map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned());
        let bucket = Bucket::open(config, &model)?;
        // Every series exists from the start at 0, so `increase()` sees the first refusal.
        for reason in Reason::ALL {
            let labels = SourceRejectLabels { model: model.clone(), reason: reason.as_str().to_owned() };
            drop(metrics.of::<ModelMetrics>().source_rejected.get_or_create(&labels));
        }
        for outcome in ["not_modified", "changed", "missing", "error"] {
            let labels = SourcePollLabels { model: model.clone(), outcome: outcome.into() };
            drop(metrics.of::<ModelMetrics>().source_polls.get_or_create(&labels));
        }
        Ok(Source {
            model,
            bucket,
            dir: dir.to_path_buf(),
            interval: Duration::from_millis(config.poll_interval_ms),
            jitter: config.jitter,
            max_version_bytes: config.max_version_bytes,
            keep_versions: config.keep_versions,
            metrics: metrics.clone(),
            share_decisions: false,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// Shares canary decisions through the bucket ([`sync_decisions`](Self::sync_decisions)):
    /// for a scene with a rollout policy.
    pub fn sharing_decisions(mut self) -> Self {
        self.share_decisions = true;
        self
    }

    /// Reconciles the canary decisions of the local versions with the bucket's
    /// (`<version>/rollout.json` beside the marker), so replicas that each keep their own local
    /// copy follow one decision. Per version, one conditional GET (304 when unchanged), then:
    /// - a local decision the bucket does not have is uploaded create-if-absent (`If-None-Match:
    ///   *`): when two replicas decide at once the first upload wins, as the first hard link
    ///   does in a shared directory, and the other replica takes it at its next sync;
    /// - an operator's local decision that replaced the one last synced replaces the bucket's;
    /// - one removed locally after it was synced (an operator's `RESUME`) is deleted there;
    /// - otherwise the bucket's decision is the one that stands: copied into the directory,
    ///   or the local one removed when the bucket's was deleted.
    ///
    /// Returns whether the directory changed (the repository should rescan). Errors are logged
    /// and retried at the next poll. A no-op unless [`sharing_decisions`](Self::sharing_decisions).
    pub async fn sync_decisions(&self) -> bool {
        if !self.share_decisions {
            return false;
        }
        let mut state = self.state.lock().await;
        let mut changed = false;
        for version in local_versions(&self.dir) {
            match self.sync_decision(&mut state, version).await {
                Ok(c) => changed |= c,
                Err(e) => {
                    tracing::warn!(model = %self.model, version, error = %e, "cannot share a canary decision through the bucket; retrying at the next poll");
                }
            }
        }
        let present = local_versions(&self.dir);
        state.decisions.retain(|v, _| present.contains(v));
        changed
    }

    async fn sync_decision(&self, state: &mut State, version: u64) -> Result<bool, BucketError> {
        let relative = format!("{version}/{DECISION_FILE}");
        let (seen, etag) = state.decisions.get(&version).cloned().unwrap_or((None, None));
        let remote = match self.bucket.get_if_changed(&relative, etag.as_deref()).await? {
            Conditional::NotModified => seen.clone(),
            Conditional::Missing => None,
            Conditional::Found { bytes, etag } => {
                let parsed = serde_json::from_slice::<Decision>(&bytes).ok().filter(|d| d.version == version);
                state.decisions.insert(version, (parsed.clone(), etag));
                parsed
            }
        };
        if remote.is_none() {
            state.decisions.insert(version, (None, None));
        }
        let local = rollout::read(&self.dir, version);
        let io = |source| BucketError::Io { path: self.dir.join(&relative).display().to_string(), source };
        match (local, remote) {
            (Some(l), Some(r)) if l == r => Ok(false),
            (Some(l), None) if seen.is_none() => {
                // Decided here, not yet shared: first upload wins.
                if !self.bucket.put_if_absent(&relative, serde_json::to_vec_pretty(&l).unwrap_or_default()).await? {
                    tracing::info!(model = %self.model, version, "canary decision: another replica's was shared first; taking it at the next poll");
                    state.decisions.remove(&version);
                }
                Ok(false)
            }
            (Some(_), None) => {
                // Deleted in the bucket after it was shared: resumed elsewhere.
                rollout::clear(&self.dir, version).map_err(io)?;
                Ok(true)
            }
            (None, Some(_)) if seen.is_some() && seen == state.decisions.get(&version).and_then(|d| d.0.clone()) => {
                // Removed here after it was shared: an operator's RESUME on this replica.
                self.bucket.delete(&relative).await?;
                state.decisions.insert(version, (None, None));
                Ok(false)
            }
            (Some(l), Some(r)) if l.by == "operator" && seen.as_ref() != Some(&l) && l.at_ms >= r.at_ms => {
                // An operator here replaced the shared decision (the later of two operators wins).
                self.bucket.put(&relative, serde_json::to_vec_pretty(&l).unwrap_or_default()).await?;
                state.decisions.remove(&version);
                Ok(false)
            }
            (_, Some(r)) => {
                rollout::write(&self.dir, &r, true).map_err(io)?;
                tracing::info!(model = %self.model, version, decision = r.verdict.as_str(), by = %r.by, replica = %r.replica, "canary decision taken from the bucket");
                Ok(true)
            }
            (None, None) => Ok(false),
        }
    }

    /// Where the model lives in the bucket.
    pub fn url(&self) -> &str {
        self.bucket.url()
    }

    /// What the source knows now.
    pub async fn status(&self) -> SourceStatus {
        let state = self.state.lock().await;
        SourceStatus {
            url: self.bucket.url().to_owned(),
            latest: state.latest,
            rejected: state.rejected.iter().cloned().collect(),
        }
    }

    fn polls(&self, outcome: &str) -> Counter {
        let labels = SourcePollLabels { model: self.model.clone(), outcome: outcome.to_owned() };
        self.metrics.of::<ModelMetrics>().source_polls.get_or_create(&labels).clone()
    }

    /// The next wait: the interval times `1 ± jitter`.
    fn next_wait(&self) -> Duration {
        let factor =
            if self.jitter > 0.0 { rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter) } else { 1.0 };
        self.interval.mul_f64(factor)
    }

    /// One poll: a conditional GET of `LATEST`, and the materialisation of what it names when
    /// it changed. Never fails: errors are counted, logged and reported in the outcome.
    pub async fn poll(&self) -> PollOutcome {
        let mut state = self.state.lock().await;
        let latest = match self.bucket.latest(state.latest_etag.as_deref()).await {
            Ok(latest) => latest,
            Err(e) => {
                self.polls("error").inc();
                tracing::warn!(model = %self.model, error = %e, "cannot poll the model bucket; retrying at the next poll");
                return PollOutcome::Error(e.to_string());
            }
        };
        match latest {
            Conditional::NotModified => {
                self.polls("not_modified").inc();
                let Some((version, marker_etag)) = state.pending.clone() else { return PollOutcome::NotModified };
                // The version LATEST names was refused: only a new marker can change that.
                let relative = format!("{version}/{MARKER}");
                match self.bucket.get_if_changed(&relative, marker_etag.as_deref()).await {
                    Ok(Conditional::NotModified) => PollOutcome::NotModified,
                    Ok(Conditional::Missing) if marker_etag.is_none() => PollOutcome::NotModified,
                    Ok(_) => self.materialise(&mut state, version).await,
                    Err(e) => {
                        tracing::warn!(model = %self.model, version, error = %e, "cannot re-check a rejected version's marker");
                        PollOutcome::Error(e.to_string())
                    }
                }
            }
            Conditional::Missing => {
                self.polls("missing").inc();
                tracing::debug!(model = %self.model, url = %self.bucket.url(), "no LATEST in the model bucket yet");
                PollOutcome::Missing
            }
            Conditional::Found { bytes, etag } => {
                self.polls("changed").inc();
                state.latest_etag = etag;
                match bucket::parse_latest(&bytes) {
                    Ok(version) => {
                        state.latest = Some(version);
                        self.materialise(&mut state, version).await
                    }
                    Err(rejection) => {
                        state.pending = None;
                        self.reject(&mut state, rejection)
                    }
                }
            }
        }
    }

    async fn materialise(&self, state: &mut State, version: u64) -> PollOutcome {
        if bucket::local_marker(&self.dir, version).is_none() {
            let mut marker_etag = None;
            match self.fetch(version, &mut marker_etag).await {
                Ok(()) => {}
                Err(FetchError::Rejected(rejection)) => {
                    // The marker's ETag decides when to look again; a missing marker has none.
                    state.pending = Some((version, marker_etag));
                    return self.reject(state, rejection);
                }
                Err(FetchError::Bucket(e)) => {
                    // Forget LATEST's ETag so the next poll fetches it again and retries.
                    state.latest_etag = None;
                    self.polls("error").inc();
                    tracing::warn!(model = %self.model, version, error = %e, "cannot download a model version; retrying at the next poll");
                    return PollOutcome::Error(e.to_string());
                }
            }
        }
        state.pending = None;
        // Fixed and served after all: no longer a rejected version.
        state.rejected.retain(|(r, _)| r.version != version);
        self.tidy(version);
        PollOutcome::Ready(version)
    }

    fn reject(&self, state: &mut State, rejection: Rejection) -> PollOutcome {
        let labels = SourceRejectLabels { model: self.model.clone(), reason: rejection.reason.as_str().to_owned() };
        self.metrics.of::<ModelMetrics>().source_rejected.get_or_create(&labels).inc();
        tracing::error!(
            model = %self.model, version = rejection.version, reason = rejection.reason.as_str(), detail = %rejection.detail,
            "bucket model version rejected; loaded versions keep serving"
        );
        if state.rejected.len() == REMEMBERED_REJECTIONS {
            state.rejected.pop_front();
        }
        state.rejected.push_back((rejection.clone(), crate::sample_log::snapshot::now_ms()));
        PollOutcome::Rejected(rejection)
    }

    /// Downloads and verifies `version` into the repository directory.
    async fn fetch(&self, version: u64, marker_etag: &mut Option<String>) -> Result<(), FetchError> {
        let reject = |reason, detail| FetchError::Rejected(Rejection { version, reason, detail });
        let (marker, etag) = match self.bucket.marker(version).await? {
            Ok(found) => found,
            Err((rejection, etag)) => {
                *marker_etag = etag;
                return Err(FetchError::Rejected(rejection));
            }
        };
        *marker_etag = etag;
        let Some(marker) = marker else {
            return Err(reject(Reason::NoMarker, format!("no {MARKER}: the upload is incomplete")));
        };
        if marker.total_bytes() > self.max_version_bytes {
            return Err(reject(
                Reason::TooLarge,
                format!("{} bytes; max_version_bytes is {}", marker.total_bytes(), self.max_version_bytes),
            ));
        }
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| FetchError::Bucket(BucketError::Io { path, source })
        };
        let staging = self.dir.join(".staging").join(version.to_string());
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let started = std::time::Instant::now();
        let result = self.download_into(&staging, version, &marker).await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
            return result;
        }
        let target = bucket::local_version(&self.dir, version);
        if target.exists() {
            // A local copy without a marker (copied by hand, or half-removed): the bucket wins.
            std::fs::remove_dir_all(&target).map_err(io(&target))?;
        }
        std::fs::rename(&staging, &target).map_err(io(&target))?;
        sync_dir(&self.dir).map_err(io(&self.dir))?;
        tracing::info!(
            model = %self.model, version, bytes = marker.total_bytes(), download_ms = started.elapsed().as_millis() as u64,
            "bucket model version downloaded and verified"
        );
        Ok(())
    }

    async fn download_into(&self, staging: &Path, version: u64, marker: &bucket::Marker) -> Result<(), FetchError> {
        for file in &marker.files {
            self.bucket.download(version, file, Some(&staging.join(&file.path))).await?;
        }
        // The marker last: its presence locally means "verified".
        let path = staging.join(MARKER);
        let io = |source| FetchError::Bucket(BucketError::Io { path: path.display().to_string(), source });
        std::fs::write(&path, marker.to_json()).map_err(io)?;
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io)?;
        sync_dir(staging).map_err(io)
    }

    /// Rollback: versions newer than `LATEST` leave the directory (and so the routing table).
    /// Bound: of the materialised versions below it, only the newest `keep_versions - 1` stay.
    fn tidy(&self, latest: u64) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut older: Vec<u64> = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let Some(number) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else { continue };
            if number > latest {
                self.remove(number, "version newer than LATEST removed");
            } else if number < latest && bucket::local_marker(&self.dir, number).is_some() {
                older.push(number);
            }
        }
        if self.keep_versions > 0 {
            older.sort_unstable_by(|a, b| b.cmp(a));
            for &number in older.iter().skip(self.keep_versions - 1) {
                self.remove(number, "old version removed (keep_versions)");
            }
        }
    }

    fn remove(&self, number: u64, why: &'static str) {
        match std::fs::remove_dir_all(bucket::local_version(&self.dir, number)) {
            Ok(()) => tracing::info!(model = %self.model, version = number, "{why}"),
            Err(e) => {
                tracing::warn!(model = %self.model, version = number, error = %e, "cannot remove a local model version")
            }
        }
    }
}

/// Version directories with a marker in `dir` (materialised ones).
fn local_versions(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut versions: Vec<u64> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|v| bucket::local_marker(dir, *v).is_some())
        .collect();
    versions.sort_unstable();
    versions
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Polls `source` every interval (± jitter) and rescans `repo` when a version became ready.
/// Spawned on the app's tracker; ends when shutdown starts or the repository is dropped.
pub fn spawn(source: Arc<Source>, repo: Weak<Repository>, tracker: &TaskTracker, shutdown: CancellationToken) {
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(source.next_wait()) => {}
            }
            let outcome = tokio::select! {
                () = shutdown.cancelled() => return,
                outcome = source.poll() => outcome,
            };
            let decided = tokio::select! {
                () = shutdown.cancelled() => return,
                changed = source.sync_decisions() => changed,
            };
            if matches!(outcome, PollOutcome::Ready(_)) || decided {
                let Some(repo) = repo.upgrade() else { return };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = repo.rescan() => {}
                }
            }
        }
    });
}
