//! The embedded store: tables loaded from CSV or JSONL into memory at start-up.
//!
//! CSV cells stay text ([`Value::Str`], lists joined by `|`) and are parsed by assembly against
//! the spec, exactly as values read from Redis will be; JSONL keeps JSON's types.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::{BoxFuture, FeatureStore, FetchError, Row, StoreOpenError, Value};
use crate::fetch::config::TableConfig;

/// Tables held in memory, by name then id.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: HashMap<String, HashMap<String, Arc<Row>>>,
}

impl MemoryStore {
    /// Loads every configured table; the first bad file or line fails start-up.
    pub fn load(tables: &[TableConfig]) -> Result<Self, StoreOpenError> {
        let mut store = MemoryStore::default();
        for table in tables {
            let rows = load_table(&table.path, &table.key)?;
            tracing::info!(table = %table.name, rows = rows.len(), path = %table.path.display(), "loaded table");
            store.tables.insert(table.name.clone(), rows);
        }
        Ok(store)
    }

    /// Adds or replaces one row (tests and tools).
    pub fn insert(&mut self, table: &str, id: &str, row: Row) {
        self.tables.entry(table.to_owned()).or_default().insert(id.to_owned(), Arc::new(row));
    }

    /// Number of rows in `table`.
    pub fn len(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, HashMap::len)
    }

    /// True when no table holds a row.
    pub fn is_empty(&self) -> bool {
        self.tables.values().all(HashMap::is_empty)
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
            let rows = self.tables.get(table).ok_or_else(|| FetchError::UnknownTable(table.to_owned()))?;
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
}
