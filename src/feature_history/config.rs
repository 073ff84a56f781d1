//! `[feature_history]`: where the changelog is kept and how often its parts are committed.

use std::path::PathBuf;

use serde::Deserialize;

use crate::validate::{Invalid, in_range, invalid};

/// `[feature_history]`: the changelog of store changes ([`crate::feature_history`]). Off unless
/// `dir` is set (and `enabled` is not `false`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// `false` turns history off while keeping the section (e.g. in a layered config).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The changelog directory (`dt=YYYY-MM-DD/hour=HH/part-<writer>-<seq>.parquet` under it).
    /// Every replica and `augur features load` may share it: part names never collide.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A part is committed at most this long after its first change was applied. It bounds how
    /// long a stream's Kafka offsets wait (they are committed only once the updates are in a
    /// committed part), so it is how much a crash re-delivers; the store write is not delayed,
    /// so freshness does not depend on it. Shorter: more, smaller files.
    #[serde(default = "default_roll_interval_ms")]
    pub roll_interval_ms: u64,
    /// A part is committed once it holds this many changes (file size and read batch count).
    #[serde(default = "default_max_rows_per_part")]
    pub max_rows_per_part: usize,
    /// Changes a writer holds in memory before they are committed (kept whole so a failed commit
    /// can be retried). Beyond it appends are refused and counted, and a stream waits for the
    /// disk; must hold a whole stream batch (`feature_streams[].max_batch`).
    #[serde(default = "default_max_uncommitted_rows")]
    pub max_uncommitted_rows: usize,
    /// A writer starting up removes the temporary parts (`.part-*.tmp`) under `dir` untouched for
    /// longer than this: what a writer killed mid-commit left. Age, not the writer id, decides
    /// (a restarted writer has a new id, and replicas share `dir`): a live writer writes its
    /// temporary part from start to rename within one commit, far shorter than this.
    #[serde(default = "default_stale_temp_after_s")]
    pub stale_temp_after_s: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: default_enabled(),
            dir: None,
            roll_interval_ms: default_roll_interval_ms(),
            max_rows_per_part: default_max_rows_per_part(),
            max_uncommitted_rows: default_max_uncommitted_rows(),
            stale_temp_after_s: default_stale_temp_after_s(),
        }
    }
}

const fn default_enabled() -> bool {
    true
}

const fn default_roll_interval_ms() -> u64 {
    5_000
}

const fn default_max_rows_per_part() -> usize {
    100_000
}

const fn default_max_uncommitted_rows() -> usize {
    200_000
}

const fn default_stale_temp_after_s() -> u64 {
    3_600
}

impl HistoryConfig {
    /// The directory, when history is on.
    pub fn active_dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref().filter(|_| self.enabled)
    }

    /// Checks the section; `largest_batch` is the largest `feature_streams[].max_batch` (with its
    /// key), which one append must hold.
    pub fn validate(&self, largest_batch: Option<(String, usize)>) -> Result<(), Invalid> {
        let Some(dir) = self.active_dir() else { return Ok(()) };
        if !cfg!(feature = "parquet") {
            return Err(invalid(
                "feature_history.dir",
                "this build has no Parquet support (cargo feature `parquet`): remove the section or set enabled = false",
            ));
        }
        if dir.as_os_str().is_empty() {
            return Err(invalid("feature_history.dir", "must not be empty"));
        }
        in_range("feature_history.roll_interval_ms", self.roll_interval_ms as usize, 100, 3_600_000)?;
        in_range("feature_history.max_rows_per_part", self.max_rows_per_part, 1, 10_000_000)?;
        in_range("feature_history.max_uncommitted_rows", self.max_uncommitted_rows, self.max_rows_per_part, 10_000_000)
            .map_err(|e| Invalid { problem: format!("{} (at least max_rows_per_part)", e.problem), ..e })?;
        // At least a minute: a live writer's commit (one part, fsynced) must never look stale.
        in_range("feature_history.stale_temp_after_s", self.stale_temp_after_s as usize, 60, 7 * 86_400)?;
        if let Some((key, batch)) = largest_batch
            && batch > self.max_uncommitted_rows
        {
            return Err(invalid(
                "feature_history.max_uncommitted_rows",
                &format!("must hold one stream batch: {key} is {batch} (got {})", self.max_uncommitted_rows),
            ));
        }
        Ok(())
    }
}
