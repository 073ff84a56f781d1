//! Hour-partitioned directories of immutable files, shared by the Parquet writers beside the
//! path (the sample sink, [`sample_log::parquet`](crate::sample_log), and the feature changelog,
//! [`feature_history`](crate::feature_history)): the Hive-style `dt=YYYY-MM-DD/hour=HH` names
//! every data tool reads as partition columns, and the commit that makes a file visible whole or
//! not at all (written under a hidden temporary name, fsynced, renamed, the directory fsynced).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;

/// `<dir>/dt=YYYY-MM-DD/hour=HH` of the hour starting at `hour_ms` (UTC).
pub fn hour_dir(dir: &Path, hour_ms: i64) -> PathBuf {
    let days = hour_ms.div_euclid(24 * HOUR_MS);
    let (y, m, d) = civil_from_days(days);
    let h = hour_ms.rem_euclid(24 * HOUR_MS) / HOUR_MS;
    dir.join(format!("dt={y:04}-{m:02}-{d:02}")).join(format!("hour={h:02}"))
}

/// The hours under `dir` (`dt=*/hour=*` directories), in time order: (hour start ms, path).
/// Anything else in `dir` is ignored; a missing `dir` has none.
pub fn hours(dir: &Path) -> std::io::Result<Vec<(i64, PathBuf)>> {
    let mut hours = Vec::new();
    if !dir.is_dir() {
        return Ok(hours);
    }
    for day in list(dir)? {
        let Some(days) = day.file_name().and_then(|n| n.to_str()).and_then(parse_day) else { continue };
        if !day.is_dir() {
            continue;
        }
        for hour in list(&day)? {
            let name = hour.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some(h) = name.strip_prefix("hour=").and_then(|h| h.parse::<i64>().ok()) else { continue };
            if (0..24).contains(&h) && hour.is_dir() {
                hours.push((days * 24 * HOUR_MS + h * HOUR_MS, hour));
            }
        }
    }
    hours.sort();
    Ok(hours)
}

/// Days since the Unix epoch of `dt=YYYY-MM-DD`.
pub fn parse_day(name: &str) -> Option<i64> {
    let date = name.strip_prefix("dt=")?;
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then(|| days_from_civil(y, m, d))
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let (m, d) = (i64::from(m), i64::from(d));
    let doy = (153 * if m > 2 { m - 3 } else { m + 9 } + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Whether `path` names a committed part, `part-*.parquet`: a part being written is hidden
/// (`.part-*.tmp`, see [`commit`]) and a marker (`_SUCCESS`) is not a part.
pub fn is_part(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
}

/// The committed parts directly in `dir`, sorted by name.
pub fn parts_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(list(dir)?.into_iter().filter(|p| is_part(p) && p.is_file()).collect())
}

/// Whether `path` names a temporary file of a commit in progress (`.<name>.tmp`, see [`commit`]).
pub fn is_temp(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
}

/// Every committed part under the hours of `dir`: hours in time order, and within an hour in path
/// order, whether the parts sit in the hour's directory (the changelog, the backfill) or in
/// partitions below it (the sample sink's `scene=`).
pub fn parts(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    files(dir, is_part)
}

/// The files under the hours of `dir` (at any depth below an hour) that `keep` names, in [`parts`]'
/// order.
fn files(dir: &Path, keep: fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (_, hour) in hours(dir)? {
        let mut found = Vec::new();
        let mut stack = vec![hour];
        while let Some(dir) = stack.pop() {
            for path in list(&dir)? {
                if path.is_dir() {
                    stack.push(path);
                } else if keep(&path) {
                    found.push(path);
                }
            }
        }
        found.sort();
        out.append(&mut found);
    }
    Ok(out)
}

/// Removes the temporary files under the hours of `dir` last modified more than `older_than` ago:
/// what a writer killed mid-commit left. A live writer's temporary file is younger (a commit
/// writes it from start to rename in one go), so writers sharing `dir` can each run this at
/// start-up. Returns the files removed; one already gone (another writer's clean-up) is not
/// counted, one whose age cannot be read is left.
pub fn remove_stale_temps(dir: &Path, older_than: std::time::Duration) -> std::io::Result<Vec<PathBuf>> {
    let now = std::time::SystemTime::now();
    let mut removed = Vec::new();
    for path in files(dir, is_temp)? {
        let modified = match fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(modified) => modified,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if now.duration_since(modified).is_ok_and(|age| age > older_than) {
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// A directory's entries, sorted by name.
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        out.push(entry?.path());
    }
    out.sort();
    Ok(out)
}

/// A failed step of [`commit`]: which, on which path.
#[derive(Debug)]
pub struct CommitError {
    /// `fsyncing`, `renaming to`, ...
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// What the OS said.
    pub source: std::io::Error,
}

/// Makes the finished temporary file `tmp` (handed over as `file`) visible as `path`, in the same
/// directory: fsync of the data, rename, fsync of the directory (so the rename survives a power
/// loss). Returns the file's size. Readers never see a part-written `path`.
pub fn commit(file: File, tmp: &Path, path: &Path) -> Result<u64, CommitError> {
    let error = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| CommitError { op, path, source }
    };
    file.sync_all().map_err(error("fsyncing", tmp))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    drop(file);
    fs::rename(tmp, path).map_err(error("renaming to", path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(error("fsyncing", dir))?;
    Ok(bytes)
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}
