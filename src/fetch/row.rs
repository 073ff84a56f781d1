//! One entity's fields as the store returned them, and a memo slot for what readers derive from it.
//!
//! A row is immutable once shared (`Arc<Row>`): the in-memory store hands out the same `Arc` for
//! the life of the table, the local cache for its TTL, Redis a fresh one per read. Work that
//! depends only on the row — assembly's encoding of item features (parse, transform, hash) — is
//! therefore done once per `Arc` and kept here, so a hot item is not re-parsed and re-hashed on
//! every request. The slot is typed `Any` because the deriving code (assembly) sits after fetch
//! on the path; its `tag` says which derivation the value is (a fingerprint of the spec's item
//! features), so a second spec reading the same row computes its own encoding instead of using
//! another's.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use super::Value;

/// One entity's fields, by field name. Reads go through `Deref` to the map.
#[derive(Default)]
pub struct Row {
    fields: HashMap<String, Value>,
    memo: OnceLock<Memo>,
}

/// A value derived from the row, tagged by what derived it.
struct Memo {
    tag: u64,
    value: Box<dyn Any + Send + Sync>,
}

impl Row {
    /// An empty row.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty row with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Row { fields: HashMap::with_capacity(n), memo: OnceLock::new() }
    }

    /// Sets a field (while the row is still being built: drops any memo).
    pub fn insert(&mut self, field: String, value: Value) -> Option<Value> {
        self.memo = OnceLock::new();
        self.fields.insert(field, value)
    }

    /// Removes a field (drops any memo).
    pub fn remove(&mut self, field: &str) -> Option<Value> {
        self.memo = OnceLock::new();
        self.fields.remove(field)
    }

    /// The value derived under `tag`, computing it with `make` the first time. `None` when the
    /// slot already holds another tag's value (the caller derives without the memo).
    pub fn memo<T: Any + Send + Sync>(&self, tag: u64, make: impl FnOnce(&Self) -> T) -> Option<&T> {
        let memo = self.memo.get_or_init(|| Memo { tag, value: Box::new(make(self)) });
        if memo.tag == tag { memo.value.downcast_ref() } else { None }
    }
}

impl Deref for Row {
    type Target = HashMap<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.fields
    }
}

impl Clone for Row {
    /// The fields; the memo is recomputed on demand.
    fn clone(&self) -> Self {
        Row { fields: self.fields.clone(), memo: OnceLock::new() }
    }
}

impl PartialEq for Row {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fields.fmt(f)
    }
}

impl From<HashMap<String, Value>> for Row {
    fn from(fields: HashMap<String, Value>) -> Self {
        Row { fields, memo: OnceLock::new() }
    }
}

impl IntoIterator for Row {
    type Item = (String, Value);
    type IntoIter = std::collections::hash_map::IntoIter<String, Value>;

    fn into_iter(self) -> Self::IntoIter {
        self.fields.into_iter()
    }
}

impl FromIterator<(String, Value)> for Row {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Row::from(iter.into_iter().collect::<HashMap<_, _>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_is_computed_once_per_tag_and_refused_to_another_tag() {
        let row: Row = [("a".to_string(), Value::Int(1))].into_iter().collect();
        let mut calls = 0;
        let first = *row
            .memo(7, |r| {
                calls += 1;
                r.len()
            })
            .unwrap();
        assert_eq!(first, 1);
        assert_eq!(row.memo(7, |_| unreachable!("computed once")).copied(), Some(1usize));
        assert_eq!(calls, 1);
        assert!(row.memo(8, |_| 0usize).is_none(), "slot taken by tag 7");
        assert!(row.memo::<String>(7, |_| String::new()).is_none(), "same tag, other type");
        let mut copy = row.clone();
        assert_eq!(copy, row);
        assert_eq!(copy.memo(8, |_| 5usize).copied(), Some(5), "a clone starts without a memo");
        copy.insert("b".into(), Value::Int(2));
        assert_eq!(copy.memo(9, |r| r.len()).copied(), Some(2), "insert drops the memo");
    }
}
