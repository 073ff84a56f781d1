//! Rollout decisions as shared state: one `<dir>/<version>/rollout.json` per decided version, in
//! the model repository every replica watches. A decision is what routing follows (the highest
//! promoted version is stable, a rolled-back version is refused like a corrupt one, the newest
//! undecided or held version above stable is the canary), so every replica that sees the
//! directory routes the same way whichever of them decided. With a bucket source the directory
//! is each replica's own copy: the poller shares the files through the bucket
//! ([`crate::repository::source::Source::sync_decisions`]).
//!
//! Writers never overwrite each other by accident: an automatic decision is created only if the
//! version has none yet (write a temporary file, then `hard_link` it into place, which fails when
//! the name exists — an atomic create-if-absent with the whole content), so when two replicas
//! reach a verdict at once the first link wins and the other follows it. An operator's decision
//! (`ModelAdmin.DecideCanary`) replaces whatever is there (temporary file, then `rename`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file a version's decision lives in, inside its version directory.
pub const DECISION_FILE: &str = "rollout.json";

/// What was decided about a canary version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The version becomes stable.
    Promote,
    /// The version is refused: unloaded, never routed to, listed as rejected.
    Rollback,
    /// The version stays canary and the automatic decider leaves it alone (operator only).
    Hold,
}

impl Verdict {
    /// Lower-case name (the `decision` label, the API's string).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Promote => "promote",
            Verdict::Rollback => "rollback",
            Verdict::Hold => "hold",
        }
    }
}

/// The canary-vs-stable numbers a decision was taken on (absent for an operator's or a
/// bootstrap decision).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Impressions of each arm in the window.
    pub stable_impressions: u64,
    /// ...
    pub canary_impressions: u64,
    /// AUC of each arm (histogram estimate).
    pub stable_auc: Option<f64>,
    /// ...
    pub canary_auc: Option<f64>,
    /// canary AUC − stable AUC.
    pub auc_difference: Option<f64>,
    /// Standard error of the difference (DeLong variances of the two independent arms).
    pub standard_error: Option<f64>,
    /// Binning error bound of the difference (sum of both arms' AUC error bounds).
    pub binning_error: Option<f64>,
    /// (difference + max_auc_drop) / standard error: the non-inferiority statistic.
    pub z: Option<f64>,
    /// The canary's mean score / observed positive rate (1 = calibrated).
    pub canary_calibration: Option<f64>,
    /// The window compared, ms since the Unix epoch.
    pub window_start_ms: i64,
    /// ...
    pub window_end_ms: i64,
}

/// One version's decision, as `rollout.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The decided version.
    pub version: u64,
    /// What was decided.
    pub verdict: Verdict,
    /// `auto` (the decider), `operator` (ModelAdmin) or `bootstrap` (the stable a repository
    /// started rollout with).
    pub by: String,
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// The stable version it was compared with.
    #[serde(default)]
    pub stable: Option<u64>,
    /// Why, in words (the test's outcome, the operator's note).
    #[serde(default)]
    pub reason: String,
    /// Which replica wrote it (host name and pid), for the audit trail.
    #[serde(default)]
    pub replica: String,
    /// The numbers of an automatic decision.
    #[serde(default)]
    pub comparison: Option<Comparison>,
}

/// One look of the decider at a canary on this replica (kept in memory, shown by ModelAdmin and
/// the status page, so an operator sees why it has not decided yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// The canary.
    pub version: u64,
    /// The stable it was compared with.
    pub stable: u64,
    /// `wait`, `promote` or `rollback`.
    pub outcome: String,
    /// Why, in words.
    pub reason: String,
    /// The numbers.
    pub comparison: Comparison,
}

/// How writing a decision went.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// This decision is now the version's.
    Recorded,
    /// Another writer decided first (create-if-absent only): its decision stands.
    AlreadyDecided(Box<Decision>),
}

fn path(dir: &Path, version: u64) -> PathBuf {
    dir.join(version.to_string()).join(DECISION_FILE)
}

/// This replica's name in decision records.
pub fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!("{host}:{}", std::process::id())
}

/// The decision of `version`, if one is recorded and readable (an unreadable file counts as none
/// and is logged: a half-copied file must not roll a version back).
pub fn read(dir: &Path, version: u64) -> Option<Decision> {
    let file = path(dir, version);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "rollout decision unreadable; ignored");
            return None;
        }
    };
    match serde_json::from_str::<Decision>(&text) {
        Ok(d) if d.version == version => Some(d),
        Ok(d) => {
            tracing::warn!(file = %file.display(), names = d.version, "rollout decision names another version; ignored");
            None
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "rollout decision does not parse; ignored");
            None
        }
    }
}

/// The decisions of `versions`.
pub fn read_all(dir: &Path, versions: impl IntoIterator<Item = u64>) -> BTreeMap<u64, Decision> {
    versions.into_iter().filter_map(|v| read(dir, v).map(|d| (v, d))).collect()
}

/// Records `decision`: only if the version has none yet (`replace` false, the decider), or
/// replacing any (`replace` true, an operator).
pub fn write(dir: &Path, decision: &Decision, replace: bool) -> io::Result<Written> {
    let target = path(dir, decision.version);
    let json = serde_json::to_vec_pretty(decision).map_err(io::Error::other)?;
    let tmp = target.with_file_name(format!(".{DECISION_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &json)?;
    let placed = if replace { std::fs::rename(&tmp, &target) } else { std::fs::hard_link(&tmp, &target) };
    let _ = std::fs::remove_file(&tmp);
    match placed {
        Ok(()) => Ok(Written::Recorded),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read(dir, decision.version) {
            Some(theirs) => Ok(Written::AlreadyDecided(Box::new(theirs))),
            None => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Removes the decision of `version` (an operator hands it back to the decider).
pub fn clear(dir: &Path, version: u64) -> io::Result<()> {
    match std::fs::remove_file(path(dir, version)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Stable and canary under a rollout policy, from the versions that may serve (`candidates`:
/// present, not refused, not rolled back; ascending) and their decisions: stable is the highest
/// promoted candidate or model.yaml's `labels.stable`, whichever is higher; the canary is the
/// newest candidate above it that is undecided or held. `None` stable: nothing promoted yet (the
/// repository then records its highest candidate as the bootstrap stable).
pub fn plan(
    candidates: &[u64],
    labels_stable: Option<u64>,
    decisions: &BTreeMap<u64, Decision>,
) -> (Option<u64>, Option<u64>) {
    let verdict = |v: &u64| decisions.get(v).map(|d| d.verdict);
    let promoted = candidates.iter().rev().find(|v| verdict(v) == Some(Verdict::Promote)).copied();
    let labelled = labels_stable.filter(|v| candidates.contains(v));
    let stable = promoted.max(labelled);
    let canary = stable.and_then(|s| {
        candidates.iter().rev().find(|&&v| v > s && matches!(verdict(&v), None | Some(Verdict::Hold))).copied()
    });
    (stable, canary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(version: u64, verdict: Verdict, by: &str) -> Decision {
        Decision {
            version,
            verdict,
            by: by.into(),
            at_ms: 1,
            stable: Some(1),
            reason: String::new(),
            replica: replica_name(),
            comparison: None,
        }
    }

    #[test]
    fn the_first_automatic_decision_wins_and_an_operator_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("2")).unwrap();
        assert_eq!(read(dir.path(), 2), None);
        let first = decision(2, Verdict::Rollback, "auto");
        assert_eq!(write(dir.path(), &first, false).unwrap(), Written::Recorded);
        let second = decision(2, Verdict::Promote, "auto");
        assert_eq!(write(dir.path(), &second, false).unwrap(), Written::AlreadyDecided(Box::new(first.clone())));
        assert_eq!(read(dir.path(), 2), Some(first));
        let operator = decision(2, Verdict::Promote, "operator");
        assert_eq!(write(dir.path(), &operator, true).unwrap(), Written::Recorded);
        assert_eq!(read_all(dir.path(), [1, 2]).into_values().collect::<Vec<_>>(), vec![operator]);
        clear(dir.path(), 2).unwrap();
        clear(dir.path(), 2).unwrap();
        assert_eq!(read(dir.path(), 2), None);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("2")).unwrap().collect();
        assert!(leftovers.is_empty(), "no temporary file left behind");
    }

    #[test]
    fn plan_follows_the_decisions() {
        let mut decisions = BTreeMap::new();
        assert_eq!(plan(&[1, 2], None, &decisions), (None, None), "nothing promoted: bootstrap first");
        decisions.insert(1, decision(1, Verdict::Promote, "bootstrap"));
        assert_eq!(plan(&[1, 2, 3], None, &decisions), (Some(1), Some(3)), "the newest undecided is canary");
        decisions.insert(3, decision(3, Verdict::Hold, "operator"));
        assert_eq!(plan(&[1, 2, 3], None, &decisions), (Some(1), Some(3)), "held stays canary");
        decisions.insert(3, decision(3, Verdict::Promote, "auto"));
        assert_eq!(plan(&[1, 2, 3], None, &decisions), (Some(3), None), "promoted is stable, 2 is passed over");
        assert_eq!(plan(&[1, 2, 3, 4], Some(1), &decisions), (Some(3), Some(4)));
        assert_eq!(plan(&[1, 2, 3, 4], Some(4), &decisions), (Some(4), None), "a higher label wins");
    }

    #[test]
    fn a_damaged_file_is_no_decision() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("3")).unwrap();
        std::fs::write(dir.path().join("3").join(DECISION_FILE), "{\"version\": 3, \"verd").unwrap();
        assert_eq!(read(dir.path(), 3), None);
    }
}
