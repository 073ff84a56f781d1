//! The embedded store: tables loaded from CSV or JSONL into memory at start-up.
//!
//! CSV cells stay text ([`Value::Str`], lists joined by `|`) and are parsed by assembly against
//! the spec, exactly as values read from Redis will be; JSONL keeps JSON's types.
//!
//! Feature streams ([`crate::feature_stream`]) upsert into it while it serves: the tables sit
//! behind a std `RwLock` (held only to look up or swap `Arc<Row>`s, never across an await), and
//! [`MemoryStore::upsert`] keeps, per row and field, the event time of the value held, so an older
//! update never overwrites a newer one.
//!
//! Bounded by `store.max_streamed_rows`: the rows streams may add to a table beyond those loaded
//! from its file. Without it, every new entity id a producer sends would grow the table, and its
//! event-time stamps with it, for as long as the process lives. The stamps need no bound of their
//! own: they are kept only for rows that exist (loaded, or added within the bound), one per field
//! a stream wrote to the row, so they grow with the rows and fields held, never beyond. An update
//! that would add a row to a full table is refused whole ([`Upserted::refused`]; a stream counts
//! and dead-letters it as a store refusal); updates of rows held are never refused. The store a
//! changelog replay rebuilds ([`MemoryStore::default`]) is unbounded: it must hold what was served.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::{BoxFuture, FeatureStore, FetchError, Row, StoreOpenError, Value};
use crate::fetch::config::TableConfig;

/// Tables held in memory, by name then id.
#[derive(Debug)]
pub struct MemoryStore {
    tables: RwLock<HashMap<String, Table>>,
    /// Rows [`upsert`](Self::upsert) may add to one table (`store.max_streamed_rows`).
    max_streamed_rows: usize,
}

impl Default for MemoryStore {
    /// Empty and unbounded (tests, and the store a changelog replay rebuilds).
    fn default() -> Self {
        MemoryStore { tables: RwLock::default(), max_streamed_rows: usize::MAX }
    }
}

/// One table: its rows, and the event times of streamed values (rows loaded from files have none:
/// any streamed update is newer).
#[derive(Debug, Default)]
struct Table {
    rows: HashMap<String, Arc<Row>>,
    /// id → field → event time (ms) of the value held.
    stamps: HashMap<String, HashMap<String, i64>>,
    /// Rows [`MemoryStore::upsert`] added (ids not held when their first update came).
    streamed_rows: usize,
}

/// What [`MemoryStore::upsert`] did with an update's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Fields written (the update was newer than the value held, or there was none).
    pub applied: usize,
    /// Fields left alone: the value held is as new or newer.
    pub stale: usize,
    /// Fields refused: the update would have added a row to a table already holding
    /// `store.max_streamed_rows` streamed rows (nothing of it was written).
    pub refused: usize,
}

impl MemoryStore {
    /// Loads every configured table; the first bad file or line fails start-up.
    pub fn load(tables: &[TableConfig]) -> Result<Self, StoreOpenError> {
        let mut loaded = HashMap::new();
        for table in tables {
            let rows = load_table(&table.path, &table.key)?;
            tracing::info!(table = %table.name, rows = rows.len(), path = %table.path.display(), "loaded table");
            loaded.insert(table.name.clone(), Table { rows, ..Table::default() });
        }
        Ok(MemoryStore { tables: RwLock::new(loaded), max_streamed_rows: usize::MAX })
    }

    /// At most `max` rows added to each table by [`upsert`](Self::upsert) (`store.max_streamed_rows`).
    pub fn with_max_streamed_rows(mut self, max: usize) -> Self {
        self.max_streamed_rows = max;
        self
    }

    /// Adds or replaces one row (tests and tools).
    pub fn insert(&mut self, table: &str, id: &str, row: Row) {
        let tables = self.tables.get_mut().unwrap_or_else(|e| e.into_inner());
        tables.entry(table.to_owned()).or_default().rows.insert(id.to_owned(), Arc::new(row));
    }

    /// Adds `table` with no rows if it is not there (a read then finds no rows instead of an
    /// unknown table): a store rebuilt from a changelog has the spec's tables from the start.
    pub fn create_table(&self, table: &str) {
        self.tables.write().unwrap_or_else(|e| e.into_inner()).entry(table.to_owned()).or_default();
    }

    /// Event-time last-writer-wins upsert of some fields of one row (a feature stream's update):
    /// a field is written only when `event_time_ms` is strictly newer than the event time of the
    /// value it holds, so a replayed or late update changes nothing. Other fields keep their
    /// values. The row is replaced by a new `Arc` (readers holding the old one keep it, and
    /// assembly's memo is not carried over); an unknown table or id is created, unless the table
    /// already holds `max_streamed_rows` rows added this way (then the update is refused whole).
    pub fn upsert(&self, table: &str, id: &str, event_time_ms: i64, fields: Vec<(String, Value)>) -> Upserted {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        let table = tables.entry(table.to_owned()).or_default();
        let new_row = !table.rows.contains_key(id) && !table.stamps.contains_key(id);
        if new_row && !fields.is_empty() && table.streamed_rows >= self.max_streamed_rows {
            return Upserted { refused: fields.len(), ..Upserted::default() };
        }
        if fields.is_empty() {
            return Upserted::default();
        }
        if new_row {
            table.streamed_rows += 1;
        }
        let stamps = table.stamps.entry(id.to_owned()).or_default();
        let mut newer = Vec::with_capacity(fields.len());
        let mut done = Upserted::default();
        for (field, value) in fields {
            match stamps.get(&field) {
                Some(&held) if held >= event_time_ms => done.stale += 1,
                _ => {
                    stamps.insert(field.clone(), event_time_ms);
                    newer.push((field, value));
                }
            }
        }
        done.applied = newer.len();
        if newer.is_empty() {
            return done;
        }
        let mut row = Row::new();
        if let Some(old) = table.rows.get(id) {
            for (field, value) in old.iter() {
                row.insert(field.to_owned(), value.clone());
            }
        }
        for (field, value) in newer {
            row.insert(field, value);
        }
        table.rows.insert(id.to_owned(), Arc::new(row));
        done
    }

    /// Sets (`Some`) or deletes (`None`) `fields` of one row unconditionally, as a bulk load's
    /// `HSET`/`HDEL` does in Redis: the fields' event times are left as they were, so a later
    /// streamed update still compares against the last streamed one.
    pub fn overwrite(&self, table: &str, id: &str, fields: Vec<(String, Option<Value>)>) {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        let table = tables.entry(table.to_owned()).or_default();
        let mut row = Row::new();
        if let Some(old) = table.rows.get(id) {
            for (field, value) in old.iter() {
                row.insert(field.to_owned(), value.clone());
            }
        }
        for (field, value) in fields {
            match value {
                Some(value) => {
                    row.insert(field, value);
                }
                None => {
                    row.remove(&field);
                }
            }
        }
        // Redis drops a hash whose last field is deleted: the row is absent, not empty.
        if row.iter().next().is_none() {
            table.rows.remove(id);
        } else {
            table.rows.insert(id.to_owned(), Arc::new(row));
        }
    }

    /// Number of rows in `table`.
    pub fn len(&self, table: &str) -> usize {
        self.tables.read().unwrap_or_else(|e| e.into_inner()).get(table).map_or(0, |t| t.rows.len())
    }

    /// True when no table holds a row.
    pub fn is_empty(&self) -> bool {
        self.tables.read().unwrap_or_else(|e| e.into_inner()).values().all(|t| t.rows.is_empty())
    }
}

impl FeatureStore for MemoryStore {
    fn get_rows<'a>(
        &'a self,
        table: &'a str,
        ids: &'a [&'a str],
        _fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<Row>>>, FetchError>> {
        Box::pin(async move {
            let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
            let rows = &tables.get(table).ok_or_else(|| FetchError::UnknownTable(table.to_owned()))?.rows;
            Ok(ids.iter().map(|id| rows.get(*id).cloned()).collect())
        })
    }
}

fn load_table(path: &Path, key: &str) -> Result<HashMap<String, Arc<Row>>, StoreOpenError> {
    let shown = path.display().to_string();
    let io = |source| StoreOpenError::Io { path: shown.clone(), source };
    let parse = |line: u64, problem: String| StoreOpenError::Parse { path: shown.clone(), line, problem };
    let mut out = HashMap::new();
    if path.extension().is_some_and(|e| e == "jsonl") {
        let text = std::fs::read_to_string(path).map_err(io)?;
        for (i, line) in text.lines().enumerate() {
            let n = i as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).map_err(|e| parse(n, e.to_string()))?;
            let mut row = Row::with_capacity(object.len());
            for (field, json) in object {
                if let Some(value) = from_json(&json) {
                    row.insert(field, value);
                }
            }
            let id = match row.remove(key) {
                Some(Value::Str(s)) => s,
                Some(Value::Int(i)) => i.to_string(),
                _ => return Err(parse(n, format!("missing string or int key field `{key}`"))),
            };
            out.insert(id, Arc::new(row));
        }
        return Ok(out);
    }
    let mut reader = csv::Reader::from_path(path).map_err(|e| parse(0, e.to_string()))?;
    let headers = reader.headers().map_err(|e| parse(1, e.to_string()))?.clone();
    let key_col =
        headers.iter().position(|h| h == key).ok_or_else(|| parse(1, format!("no key column `{key}` in header")))?;
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            parse(line, e.to_string())
        })?;
        let mut row = Row::with_capacity(headers.len());
        for (col, (name, cell)) in headers.iter().zip(record.iter()).enumerate() {
            // An empty cell is a missing field, so assembly reports it as such.
            if col != key_col && !cell.is_empty() {
                row.insert(name.to_owned(), Value::Str(cell.to_owned()));
            }
        }
        out.insert(record[key_col].to_owned(), Arc::new(row));
    }
    Ok(out)
}

fn from_json(json: &serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match json {
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Bool(b) => Value::Int(i64::from(*b)),
        J::Array(items) => {
            if items.iter().all(|v| v.is_i64()) {
                Value::IntList(items.iter().filter_map(serde_json::Value::as_i64).collect())
            } else if items.iter().all(serde_json::Value::is_number) {
                Value::FloatList(items.iter().filter_map(serde_json::Value::as_f64).collect())
            } else {
                Value::StrList(items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect())
            }
        }
        J::Null | J::Object(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_load_with_line_numbers_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("u.csv");
        std::fs::write(&csv, "user_id,age,tags\nu1,31,a|b\nu2,,\n").unwrap();
        let rows = load_table(&csv, "user_id").unwrap();
        assert_eq!(rows["u1"]["age"], Value::Str("31".into()));
        assert!(!rows["u2"].contains_key("age"), "empty cell must be a missing field");

        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"user_id\":\"u1\",\"age\":3}\n{oops\n").unwrap();
        let err = load_table(&bad, "user_id").unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:2"), "{err}");

        let good = dir.path().join("ok.jsonl");
        std::fs::write(&good, "{\"user_id\":7,\"age\":3,\"w\":[1.5,2]}\n").unwrap();
        let rows = load_table(&good, "user_id").unwrap();
        assert_eq!(rows["7"]["age"], Value::Int(3));
        assert_eq!(rows["7"]["w"], Value::FloatList(vec![1.5, 2.0]));
    }

    #[test]
    fn upsert_is_event_time_last_writer_wins_per_field() {
        let store = MemoryStore::default();
        let f = |name: &str, v: i64| (name.to_owned(), Value::Int(v));
        let done = |applied, stale| Upserted { applied, stale, refused: 0 };
        assert_eq!(store.upsert("items", "i1", 20, vec![f("a", 2), f("b", 2)]), done(2, 0));
        // Older for `a`, newer for `c`; a replay of the first changes nothing.
        assert_eq!(store.upsert("items", "i1", 10, vec![f("a", 1), f("c", 1)]), done(1, 1));
        assert_eq!(store.upsert("items", "i1", 20, vec![f("a", 2), f("b", 2)]), done(0, 2));
        let tables = store.tables.read().unwrap();
        let row = &tables["items"].rows["i1"];
        assert_eq!(
            (row["a"].clone(), row["b"].clone(), row["c"].clone()),
            (Value::Int(2), Value::Int(2), Value::Int(1))
        );
    }

    #[test]
    fn streams_add_at_most_max_streamed_rows_and_keep_updating_the_rows_held() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("items.csv");
        std::fs::write(&csv, "item_id,price\ni0,1\n").unwrap();
        let table = TableConfig { name: "items".into(), path: csv, key: "item_id".into() };
        let store = MemoryStore::load(&[table]).unwrap().with_max_streamed_rows(2);
        let f = |v: i64| vec![("price".to_owned(), Value::Int(v))];
        for id in ["i1", "i2"] {
            assert_eq!(store.upsert("items", id, 10, f(2)).applied, 1, "{id} is added within the bound");
        }
        let refused = store.upsert("items", "i3", 10, f(3));
        assert_eq!(refused, Upserted { applied: 0, stale: 0, refused: 1 });
        // The rows held (loaded or streamed) still take updates; no stamp is kept for the refused id.
        assert_eq!(store.upsert("items", "i0", 10, f(4)).applied, 1);
        assert_eq!(store.upsert("items", "i2", 11, f(5)).applied, 1);
        assert_eq!(store.len("items"), 3);
        let tables = store.tables.read().unwrap();
        assert_eq!(tables["items"].stamps.len(), 3, "stamps only for rows held");
        assert!(!tables["items"].rows.contains_key("i3"));
        assert_eq!(tables["items"].rows["i2"]["price"], Value::Int(5));
    }
}
