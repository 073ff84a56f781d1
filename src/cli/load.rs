//! `augur features load`: bulk-load a table from CSV or JSONL into the configured Redis.
//!
//! One `HSET key field value ...` per row under the store's key template, in pipelined batches
//! (`--batch` rows each, a few batches in flight on the multiplexed connection while the next is
//! parsed). Re-running a load is idempotent: `HSET` overwrites. An empty CSV cell (or a JSON
//! `null`) means "no value" and is written as an `HDEL` of that field, so a re-load also clears a
//! value that was removed from the file; fields absent from the file are left alone.
//!
//! Values are written as the text assembly parses: CSV cells verbatim; JSON strings verbatim,
//! integers in decimal, floats in Rust's shortest round-trip form (`format!("{}", f64)`, so the
//! served `f64` is bit-identical to the file's), booleans as `1`/`0`, arrays joined by `|`.
//!
//! With `[feature_history]` on, each row written is also appended to the changelog as a
//! [`Load`](crate::feature_history::ChangeKind::Load) change (present cells `Some`, empty ones
//! `None`), stamped with the time its batch's write returned, and the changelog is committed
//! before the load reports success; a row Redis refused is not recorded. The commits run on the
//! load's own task (a CLI tool: a part's write blocks it briefly).
//!
//! A line that cannot be used (wrong field count, bad JSON, no id) is reported with its 1-based
//! line number and skipped ([`OnError::Skip`]) or ends the load ([`OnError::Stop`]; the rows
//! before it are written).

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use redis::Cmd;
use tokio::task::JoinHandle;

use crate::config::{RedisConfig, TableConfig};
use crate::feature_history::write::HistoryWriter;
use crate::feature_history::{Change, ChangeKind, HistoryError};
use crate::fetch::{FetchError, RedisFeatureStore, StoreOpenError, Value};

/// Batches written concurrently while the next one is parsed.
const IN_FLIGHT: usize = 4;
/// Line errors kept for the summary; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 20;
/// Bound on writing one batch (far above a healthy server's time for it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do with a line that cannot be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Report it and go on.
    #[default]
    Skip,
    /// Report it and stop (rows before it are loaded).
    Stop,
}

/// How to load one file.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Table name (the `{table}` of the key template).
    pub table: String,
    /// Column / JSON field holding the entity id. CSV default: the first column; JSONL: required.
    pub key_column: Option<String>,
    /// Rows per pipeline.
    pub batch: usize,
    /// Bad-line policy.
    pub on_error: OnError,
}

/// One line that was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the file.
    pub line: u64,
    /// What is wrong.
    pub problem: String,
}

/// What a load did.
#[derive(Debug, Clone)]
pub struct LoadSummary {
    /// Rows written.
    pub rows: u64,
    /// Lines not loaded.
    pub error_count: u64,
    /// The first [`MAX_REPORTED_ERRORS`] of them, in line order.
    pub errors: Vec<LineError>,
    /// Line at which [`OnError::Stop`] ended the load.
    pub stopped_at: Option<u64>,
    /// Wall time.
    pub elapsed: Duration,
}

impl LoadSummary {
    /// Rows written per second.
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The report `augur features load` prints.
impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loaded {} rows in {:.2} s ({:.0} rows/s); {} line(s) not loaded",
            self.rows,
            self.elapsed.as_secs_f64(),
            self.rows_per_sec(),
            self.error_count
        )?;
        for error in &self.errors {
            write!(f, "\n  line {}: {}", error.line, error.problem)?;
        }
        let unlisted = self.error_count.saturating_sub(self.errors.len() as u64);
        if unlisted > 0 {
            write!(f, "\n  ... and {unlisted} more")?;
        }
        if let Some(line) = self.stopped_at {
            write!(f, "\nstopped at line {line} (--on-error stop); the rows before it are loaded")?;
        }
        Ok(())
    }
}

impl FromStr for OnError {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(OnError::Skip),
            "stop" => Ok(OnError::Stop),
            other => Err(format!("`{other}`: expected `skip` or `stop`")),
        }
    }
}

/// Connects for loading: like [`RedisFeatureStore::connect`], but a batch may take up to
/// 30 s to answer instead of `store.timeout_ms` (sized for one request's reads).
pub async fn connect(config: &RedisConfig) -> Result<RedisFeatureStore, StoreOpenError> {
    let config = RedisConfig { timeout_ms: WRITE_TIMEOUT.as_millis() as u64, ..config.clone() };
    RedisFeatureStore::connect(&config).await
}

/// The file and key column a table is loaded from by default: its `store.tables` entry.
pub fn table_source<'a>(config: &'a RedisConfig, table: &str) -> Option<&'a TableConfig> {
    config.tables.iter().find(|t| t.name == table)
}

/// Why a load could not run or finish (bad lines are not errors: they are in the summary).
#[derive(Debug, thiserror::Error)]
pub enum LoadFileError {
    /// The file could not be read, or its header is unusable.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// Redis failed; rows of unfinished batches may or may not be written (re-run the load).
    #[error(transparent)]
    Store(#[from] FetchError),
    /// The changelog could not be written; the rows are in Redis (re-run the load to record
    /// them).
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// A batch being written: the batch back, with each command's error (if any).
type Written = JoinHandle<(Batch, Result<Vec<Option<String>>, FetchError>)>;

/// A batch on its way: commands, the file line each belongs to, rows in it.
struct Batch {
    cmds: Vec<Cmd>,
    lines: Vec<u64>,
    rows: u64,
    /// With history: each row's change and its line (applied time set once written).
    changes: Vec<(u64, Change)>,
}

/// Loads `path` (`.jsonl` = JSON lines, anything else = CSV with a header) into `store`.
/// `progress` is advanced by bytes read (set its length to the file size).
pub async fn load_file(
    store: &RedisFeatureStore,
    path: &Path,
    options: &LoadOptions,
    progress: &ProgressBar,
) -> Result<LoadSummary, LoadFileError> {
    load_file_with_history(store, path, options, progress, None).await
}

/// [`load_file`], each row written also appended to `history` (committed before this returns).
pub async fn load_file_with_history(
    store: &RedisFeatureStore,
    path: &Path,
    options: &LoadOptions,
    progress: &ProgressBar,
    history: Option<&mut HistoryWriter>,
) -> Result<LoadSummary, LoadFileError> {
    let started = Instant::now();
    let shown = path.display().to_string();
    let file_error = |problem: String| LoadFileError::File { path: shown.clone(), problem };
    let file = File::open(path).map_err(|e| file_error(e.to_string()))?;
    let mut loader = Loader {
        store,
        options,
        progress,
        batch: Batch::new(options.batch),
        key: String::new(),
        history,
        in_flight: VecDeque::new(),
        summary: LoadSummary { rows: 0, error_count: 0, errors: Vec::new(), stopped_at: None, elapsed: Duration::ZERO },
    };
    if path.extension().is_some_and(|e| e == "jsonl") {
        let key = options.key_column.as_deref().ok_or_else(|| file_error("JSONL needs --key-column".into()))?;
        loader.jsonl(BufReader::new(file), key, &file_error).await?;
    } else {
        loader.csv(file, &file_error).await?;
    }
    loader.flush().await?;
    while let Some(handle) = loader.in_flight.pop_front() {
        loader.finish(handle).await?;
    }
    if let Some(history) = loader.history.as_mut() {
        history.commit()?;
    }
    let mut summary = loader.summary;
    summary.errors.sort_by_key(|e| e.line);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

struct Loader<'a> {
    store: &'a RedisFeatureStore,
    options: &'a LoadOptions,
    progress: &'a ProgressBar,
    batch: Batch,
    /// Reused for every row's key.
    key: String,
    history: Option<&'a mut HistoryWriter>,
    in_flight: VecDeque<Written>,
    summary: LoadSummary,
}

impl Loader<'_> {
    async fn csv(&mut self, file: File, file_error: &dyn Fn(String) -> LoadFileError) -> Result<(), LoadFileError> {
        let mut reader = csv::ReaderBuilder::new().from_reader(file);
        let headers = reader.headers().map_err(|e| file_error(format!("header: {e}")))?.clone();
        let key_col = match &self.options.key_column {
            Some(key) => headers
                .iter()
                .position(|h| h == key)
                .ok_or_else(|| file_error(format!("no key column `{key}` in the header")))?,
            None if headers.is_empty() => return Err(file_error("empty header".into())),
            None => 0,
        };
        let mut record = csv::StringRecord::new();
        loop {
            let line = reader.position().line();
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let line = record.position().map_or(line, |p| p.line());
                    let id = &record[key_col];
                    if id.is_empty() {
                        self.line_error(line, format!("empty key column `{}`", &headers[key_col]));
                    } else {
                        let cells = headers
                            .iter()
                            .zip(record.iter())
                            .enumerate()
                            .filter(|(col, _)| *col != key_col)
                            .map(|(_, (field, cell))| (field, (!cell.is_empty()).then_some(cell)));
                        self.push_row(line, id, headers.len() - 1, cells);
                    }
                }
                Err(e) => {
                    let line = e.position().map_or(line, |p| p.line());
                    self.line_error(line, e.to_string());
                }
            }
            if self.summary.stopped_at.is_some() {
                break;
            }
            if self.batch.rows as usize >= self.options.batch {
                self.progress.set_position(reader.position().byte());
                self.flush().await?;
            }
        }
        self.progress.set_position(reader.position().byte());
        Ok(())
    }

    async fn jsonl(
        &mut self,
        mut reader: impl BufRead,
        key: &str,
        file_error: &dyn Fn(String) -> LoadFileError,
    ) -> Result<(), LoadFileError> {
        let mut text = Vec::new();
        let (mut line, mut bytes) = (0u64, 0u64);
        loop {
            text.clear();
            let read =
                reader.read_until(b'\n', &mut text).map_err(|e| file_error(format!("line {}: {e}", line + 1)))?;
            if read == 0 {
                break;
            }
            line += 1;
            bytes += read as u64;
            if text.trim_ascii().is_empty() {
                continue;
            }
            match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&text) {
                Err(e) => self.line_error(line, e.to_string()),
                Ok(object) => match object.get(key).and_then(json_id) {
                    None => self.line_error(line, format!("missing string or int key `{key}`")),
                    Some(id) => {
                        let cells: Vec<(&str, Option<String>)> = object
                            .iter()
                            .filter(|(field, _)| field.as_str() != key)
                            .map(|(field, value)| (field.as_str(), json_text(value)))
                            .collect();
                        self.push_row(line, &id, cells.len(), cells.iter().map(|(f, v)| (*f, v.as_deref())));
                    }
                },
            }
            if self.summary.stopped_at.is_some() {
                break;
            }
            if self.batch.rows as usize >= self.options.batch {
                self.progress.set_position(bytes);
                self.flush().await?;
            }
        }
        self.progress.set_position(bytes);
        Ok(())
    }

    /// Adds one row: `HSET` of the present cells, `HDEL` of the empty ones. `width` = cells, to
    /// size the command in one allocation (this runs a million times per million rows).
    fn push_row<'c>(
        &mut self,
        line: u64,
        id: &str,
        width: usize,
        cells: impl Iterator<Item = (&'c str, Option<&'c str>)>,
    ) {
        self.key.clear();
        self.store.key_template().write_key(&mut self.key, &self.options.table, id);
        let key = self.key.as_str();
        let mut set = Cmd::with_capacity(2 + 2 * width, 16 + key.len() + 24 * width);
        set.arg("HSET").arg(key);
        let mut del: Option<Cmd> = None;
        let mut sets = 0;
        let mut features = Vec::new();
        for (field, value) in cells {
            if self.history.is_some() {
                features.push((field.to_owned(), value.map(|v| Value::Str(v.to_owned()))));
            }
            match value {
                Some(value) => {
                    set.arg(field).arg(value);
                    sets += 1;
                }
                None => {
                    del.get_or_insert_with(|| {
                        let mut del = redis::cmd("HDEL");
                        del.arg(key);
                        del
                    })
                    .arg(field);
                }
            }
        }
        if sets > 0 {
            self.batch.cmds.push(set);
            self.batch.lines.push(line);
        }
        if let Some(del) = del {
            self.batch.cmds.push(del);
            self.batch.lines.push(line);
        }
        if self.history.is_some() {
            let change = Change {
                table: self.options.table.clone(),
                entity_id: id.to_owned(),
                event_time_ms: 0,
                applied_time_ms: 0,
                kind: ChangeKind::Load,
                features,
            };
            self.batch.changes.push((line, change));
        }
        self.batch.rows += 1;
    }

    fn line_error(&mut self, line: u64, problem: String) {
        self.summary.error_count += 1;
        if self.summary.errors.len() < MAX_REPORTED_ERRORS {
            self.summary.errors.push(LineError { line, problem });
        }
        if self.options.on_error == OnError::Stop && self.summary.stopped_at.is_none() {
            self.summary.stopped_at = Some(line);
        }
    }

    /// Sends the current batch; waits for the oldest one when too many are in flight.
    async fn flush(&mut self) -> Result<(), LoadFileError> {
        if self.batch.rows == 0 {
            return Ok(());
        }
        if self.in_flight.len() >= IN_FLIGHT {
            let oldest = self.in_flight.pop_front().expect("non-empty");
            self.finish(oldest).await?;
        }
        let batch = std::mem::replace(&mut self.batch, Batch::new(self.options.batch));
        let store = self.store.clone();
        self.in_flight.push_back(tokio::spawn(async move {
            let mut batch = batch;
            let cmds = std::mem::take(&mut batch.cmds);
            let result = store
                .run(cmds, WRITE_TIMEOUT)
                .await
                .map(|replies| replies.into_iter().map(|r| r.err().map(|e| e.to_string())).collect());
            (batch, result)
        }));
        Ok(())
    }

    async fn finish(&mut self, handle: Written) -> Result<(), LoadFileError> {
        let (batch, result) = handle.await.map_err(|e| FetchError::Unavailable {
            store: "redis write task".into(),
            source: std::sync::Arc::new(e),
        })?;
        let mut failed: Vec<u64> = Vec::new();
        for (line, error) in batch.lines.iter().zip(result?) {
            if let Some(problem) = error {
                if failed.last() != Some(line) {
                    failed.push(*line);
                }
                self.line_error(*line, format!("redis: {problem}"));
            }
        }
        self.summary.rows += batch.rows - failed.len() as u64;
        if let Some(history) = self.history.as_deref_mut() {
            // A load is unconditional (no event-time compare): its event time is when it was
            // applied.
            let applied_ms = crate::feature_stream::now_ms();
            let changes: Vec<Change> = batch
                .changes
                .into_iter()
                .filter(|(line, _)| !failed.contains(line))
                .map(|(_, change)| Change { event_time_ms: applied_ms, applied_time_ms: applied_ms, ..change })
                .collect();
            if let Err(HistoryError::Full { .. }) = history.append(changes.iter().cloned()) {
                history.commit()?;
                history.append(changes)?;
            }
            if history.due() {
                history.commit()?;
            }
        }
        Ok(())
    }
}

impl Batch {
    fn new(rows: usize) -> Self {
        Batch { cmds: Vec::with_capacity(rows), lines: Vec::with_capacity(rows), rows: 0, changes: Vec::new() }
    }
}

/// A JSON id: string or integer.
fn json_id(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The stored text of a JSON value; `None` = no value (null, object).
fn json_text(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value as J;
    Some(match value {
        J::Null | J::Object(_) => return None,
        J::Bool(b) => u8::from(*b).to_string(),
        J::Number(n) => number_text(n),
        J::String(s) => s.clone(),
        J::Array(items) => items
            .iter()
            .map(|v| match v {
                J::String(s) => s.clone(),
                J::Number(n) => number_text(n),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("|"),
    })
}

/// Integers exactly; floats in the shortest text that parses back to the same `f64`.
fn number_text(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() { n.to_string() } else { n.as_f64().map_or_else(|| n.to_string(), |x| format!("{x}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_through_their_text() {
        for x in [0.1, 1.0 / 3.0, 4.11, 1e-300, 123_456_789.123_456_78, -0.0] {
            let text = number_text(&serde_json::Number::from_f64(x).unwrap());
            assert_eq!(text.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{text}");
        }
        let v: serde_json::Value = serde_json::from_str(r#"[1, 2.5, "a"]"#).unwrap();
        assert_eq!(json_text(&v).unwrap(), "1|2.5|a");
        assert_eq!(json_text(&serde_json::Value::Bool(true)).unwrap(), "1");
        assert_eq!(json_text(&serde_json::Value::Null), None);
    }
}
