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
use std::sync::{Arc, OnceLock};

use super::Value;

/// One entity's fields, by field name.
#[derive(Default)]
pub struct Row {
    fields: Fields,
    memo: OnceLock<Memo>,
}

/// Two layouts: by name (tables loaded from files, tests), or positional, as a store read the
/// fields a caller asked for: the names are shared by every row of the read (no per-row map, no
/// per-row copy of the names), a lookup is a scan of a handful of names.
enum Fields {
    Map(HashMap<String, Value>),
    Positional { names: Arc<[String]>, values: Vec<Option<Value>> },
}

impl Default for Fields {
    fn default() -> Self {
        Fields::Map(HashMap::new())
    }
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
        Row::from(HashMap::with_capacity(n))
    }

    /// A row read positionally: `values[i]` is field `names[i]`, `None` = absent. `names` is
    /// shared by every row of one read.
    pub fn positional(names: Arc<[String]>, values: Vec<Option<Value>>) -> Self {
        debug_assert_eq!(names.len(), values.len());
        Row { fields: Fields::Positional { names, values }, memo: OnceLock::new() }
    }

    /// The value of `field`, if present.
    pub fn get(&self, field: &str) -> Option<&Value> {
        match &self.fields {
            Fields::Map(map) => map.get(field),
            Fields::Positional { names, values } => {
                names.iter().position(|n| n == field).and_then(|i| values[i].as_ref())
            }
        }
    }

    /// Whether `field` is present.
    pub fn contains_key(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// Present fields, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        let (map, positional) = match &self.fields {
            Fields::Map(map) => (Some(map.iter().map(|(k, v)| (k.as_str(), v))), None),
            Fields::Positional { names, values } => {
                (None, Some(names.iter().zip(values).filter_map(|(n, v)| v.as_ref().map(|v| (n.as_str(), v)))))
            }
        };
        map.into_iter().flatten().chain(positional.into_iter().flatten())
    }

    /// Number of present fields.
    pub fn len(&self) -> usize {
        match &self.fields {
            Fields::Map(map) => map.len(),
            Fields::Positional { values, .. } => values.iter().filter(|v| v.is_some()).count(),
        }
    }

    /// No field present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets a field (while the row is still being built: drops any memo).
    pub fn insert(&mut self, field: String, value: Value) -> Option<Value> {
        self.memo = OnceLock::new();
        self.map_mut().insert(field, value)
    }

    /// Removes a field (drops any memo).
    pub fn remove(&mut self, field: &str) -> Option<Value> {
        self.memo = OnceLock::new();
        self.map_mut().remove(field)
    }

    /// The by-name layout, converting a positional row (rare: rows are built, then read).
    fn map_mut(&mut self) -> &mut HashMap<String, Value> {
        if let Fields::Positional { names, values } = &mut self.fields {
            let map = names.iter().zip(values.drain(..)).filter_map(|(n, v)| Some((n.clone(), v?))).collect();
            self.fields = Fields::Map(map);
        }
        match &mut self.fields {
            Fields::Map(map) => map,
            Fields::Positional { .. } => unreachable!("converted above"),
        }
    }

    /// The value derived under `tag`, computing it with `make` the first time. `None` when the
    /// slot already holds another tag's value (the caller derives without the memo).
    pub fn memo<T: Any + Send + Sync>(&self, tag: u64, make: impl FnOnce(&Self) -> T) -> Option<&T> {
        let memo = self.memo.get_or_init(|| Memo { tag, value: Box::new(make(self)) });
        if memo.tag == tag { memo.value.downcast_ref() } else { None }
    }
}

impl Clone for Row {
    /// The fields; the memo is recomputed on demand.
    fn clone(&self) -> Self {
        let fields = match &self.fields {
            Fields::Map(map) => Fields::Map(map.clone()),
            Fields::Positional { names, values } => {
                Fields::Positional { names: Arc::clone(names), values: values.clone() }
            }
        };
        Row { fields, memo: OnceLock::new() }
    }
}

impl PartialEq for Row {
    /// Same present fields with the same values, whatever the layout.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Row {
    type Output = Value;

    /// Panics when the field is absent, like `HashMap`'s index.
    fn index(&self, field: &str) -> &Value {
        self.get(field).unwrap_or_else(|| panic!("row has no field `{field}`"))
    }
}

impl From<HashMap<String, Value>> for Row {
    fn from(fields: HashMap<String, Value>) -> Self {
        Row { fields: Fields::Map(fields), memo: OnceLock::new() }
    }
}

impl IntoIterator for Row {
    type Item = (String, Value);
    type IntoIter = std::collections::hash_map::IntoIter<String, Value>;

    fn into_iter(mut self) -> Self::IntoIter {
        std::mem::take(self.map_mut()).into_iter()
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

    #[test]
    fn positional_rows_read_like_maps() {
        let names: Arc<[String]> = ["a", "b", "c"].map(String::from).into();
        let row = Row::positional(Arc::clone(&names), vec![Some(Value::Int(1)), None, Some(Value::Str("x".into()))]);
        assert_eq!(row.get("a"), Some(&Value::Int(1)));
        assert_eq!(row.get("b"), None, "absent field");
        assert_eq!(row.get("zz"), None, "field not read");
        assert_eq!(row["c"], Value::Str("x".into()));
        assert_eq!(row.len(), 2);
        let by_name: Row =
            [("c".to_string(), Value::Str("x".into())), ("a".to_string(), Value::Int(1))].into_iter().collect();
        assert_eq!(row, by_name);
        let mut grown = row.clone();
        grown.insert("b".into(), Value::Int(2));
        assert_eq!(grown.len(), 3);
        assert_eq!(grown["a"], Value::Int(1), "converted to the by-name layout with every field");
        assert!(Row::positional(names, vec![None, None, None]).is_empty());
    }
}
