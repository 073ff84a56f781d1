//! A local cache in front of any [`FeatureStore`]: hot rows (popular items) are served from the
//! process instead of a Redis round trip.
//!
//! Per table (`store.cache.tables.<name>`): bounded entry count, a TTL for rows, a separate and
//! usually shorter TTL for ids the store does not have (negative caching: a flood of requests for
//! an unknown item costs one read per TTL, not one per request), and single-flight — concurrent
//! misses on one key wait for a single store read. Tables not listed pass straight through.
//!
//! The cache key is `(field set, id)`: a row is cached as fetched for the exact field list the
//! caller asked for (a scene's spec always asks the same list for a table, so there is one field
//! set per table and scene). Caching whole rows and always fetching the union of fields would save
//! memory when several scenes share a table, but would read fields a scene never uses on every
//! miss and tie the cache to knowing every spec up front; a second copy for a second scene is
//! cheaper than that.
//!
//! Built on `moka`'s async cache (TinyLFU admission, per-entry expiry, per-key coalescing of
//! loads). One `get_rows` call looks every id up first; the misses are then loaded through moka's
//! `entry().or_try_insert_with`, whose initialisers share ONE batched store read for all misses of
//! the call (a `OnceCell`), so a call costs at most one store read however many ids miss, and a key
//! already being loaded by another call is waited for, not read again.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use tokio::sync::OnceCell;

use super::{BoxFuture, FeatureStore, FetchError, Row};
use crate::config::TableCacheConfig;

/// What the cache did, since start-up. Plain numbers, read with [`CachedStore::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Ids answered with a cached row.
    pub hits: u64,
    /// Ids answered with a cached "no such row".
    pub negative_hits: u64,
    /// Ids not in the cache on lookup (each is then loaded, or joins a load already running).
    pub misses: u64,
    /// Misses answered by another call's load of the same key (single-flight at work).
    pub coalesced: u64,
    /// Reads sent to the wrapped store (one per `get_rows` call with misses, at most).
    pub store_reads: u64,
    /// Entries dropped to stay within `max_entries` (expiry is not counted).
    pub evictions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    coalesced: AtomicU64,
    store_reads: AtomicU64,
    evictions: AtomicU64,
}

/// Cache key: interned field set of the call, then entity id.
type Key = (u32, String);
/// Cached value: the row, or `None` for an id the store does not have.
type Entry = Option<Arc<Row>>;

/// One table's cache.
struct TableCache {
    rows: Cache<Key, Entry>,
    /// Field lists seen for this table → small id used in keys.
    field_sets: RwLock<HashMap<Vec<String>, u32>>,
}

/// Row TTL for rows, the negative TTL for missing ids.
struct Ttl {
    row: Duration,
    missing: Duration,
}

/// A [`FeatureStore`] that caches rows of the configured tables in front of `S`.
pub struct CachedStore<S> {
    inner: S,
    tables: HashMap<String, TableCache>,
    counters: Arc<Counters>,
}

// === impl CachedStore ===

impl<S: FeatureStore> CachedStore<S> {
    /// Wraps `inner`; only the tables in `tables` are cached (entries with `enabled = false` are
    /// skipped).
    pub fn new<'a>(inner: S, tables: impl IntoIterator<Item = (&'a String, &'a TableCacheConfig)>) -> Self {
        let counters = Arc::new(Counters::default());
        let tables = tables
            .into_iter()
            .filter(|(_, c)| c.enabled)
            .map(|(name, c)| {
                let evicted = Arc::clone(&counters);
                let rows = Cache::builder()
                    .name(name)
                    .max_capacity(c.max_entries)
                    .expire_after(Ttl {
                        row: Duration::from_millis(c.ttl_ms),
                        missing: Duration::from_millis(c.negative_ttl_ms),
                    })
                    .eviction_listener(move |_key, _value, cause| {
                        if cause == RemovalCause::Size {
                            evicted.evictions.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .build();
                let table = TableCache { rows, field_sets: RwLock::default() };
                (name.clone(), table)
            })
            .collect();
        CachedStore { inner, tables, counters }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            negative_hits: c.negative_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            store_reads: c.store_reads.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
        }
    }

    /// Entries currently held for `table` (approximate until [`Self::run_pending_tasks`]).
    pub fn entry_count(&self, table: &str) -> u64 {
        self.tables.get(table).map_or(0, |t| t.rows.entry_count())
    }

    /// Applies pending evictions and expirations now (moka batches them); tests and metrics.
    pub async fn run_pending_tasks(&self) {
        for table in self.tables.values() {
            table.rows.run_pending_tasks().await;
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn cached_rows(
        &self,
        cache: &TableCache,
        table: &str,
        ids: &[&str],
        fields: &[String],
    ) -> Result<Vec<Option<Arc<Row>>>, FetchError> {
        let set = cache.field_set(fields);
        let mut out: Vec<Option<Arc<Row>>> = vec![None; ids.len()];
        // Misses, deduplicated: id → positions in `ids`.
        let mut missing: Vec<(&str, Vec<usize>)> = Vec::new();
        let mut missing_at: HashMap<&str, usize> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            if let Some(&m) = missing_at.get(id) {
                missing[m].1.push(i);
                continue;
            }
            match cache.rows.get(&(set, (*id).to_owned())).await {
                Some(Some(row)) => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    out[i] = Some(row);
                }
                Some(None) => {
                    self.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.counters.misses.fetch_add(1, Ordering::Relaxed);
                    missing_at.insert(id, missing.len());
                    missing.push((id, vec![i]));
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        // One store read for every miss of this call, run by the first initialiser moka invokes
        // (none, if other calls are already loading all of these keys).
        let missing_ids: Vec<&str> = missing.iter().map(|(id, _)| *id).collect();
        let batch: OnceCell<Result<Vec<Option<Arc<Row>>>, FetchError>> = OnceCell::new();
        let read = || async {
            self.counters.store_reads.fetch_add(1, Ordering::Relaxed);
            self.inner.get_rows(table, &missing_ids, fields).await
        };
        let loads = missing.iter().enumerate().map(|(m, (id, _))| {
            let (batch, read) = (&batch, &read);
            let init = async move {
                match batch.get_or_init(read).await {
                    Ok(rows) => Ok(rows[m].clone()),
                    Err(e) => Err(e.clone()),
                }
            };
            cache.rows.entry((set, (*id).to_owned())).or_try_insert_with(init)
        });
        for ((_, positions), loaded) in missing.iter().zip(join_all(loads).await) {
            let entry = loaded.map_err(|e| FetchError::clone(&e))?;
            if !entry.is_fresh() {
                self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            let row = entry.into_value();
            for &i in positions {
                out[i].clone_from(&row);
            }
        }
        Ok(out)
    }
}

impl<S: FeatureStore> FeatureStore for CachedStore<S> {
    fn get_rows<'a>(
        &'a self,
        table: &'a str,
        ids: &'a [&'a str],
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<Row>>>, FetchError>> {
        match self.tables.get(table) {
            Some(cache) => Box::pin(self.cached_rows(cache, table, ids, fields)),
            None => self.inner.get_rows(table, ids, fields),
        }
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        Some(self.stats())
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tables: Vec<&str> = self.tables.keys().map(String::as_str).collect();
        tables.sort_unstable();
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("tables", &tables)
            .field("counters", &self.counters)
            .finish()
    }
}

// === impl TableCache ===

impl TableCache {
    /// The small id of `fields`, assigned on first sight.
    fn field_set(&self, fields: &[String]) -> u32 {
        if let Some(&id) = self.field_sets.read().unwrap_or_else(|e| e.into_inner()).get(fields) {
            return id;
        }
        let mut sets = self.field_sets.write().unwrap_or_else(|e| e.into_inner());
        let next = sets.len() as u32;
        *sets.entry(fields.to_vec()).or_insert(next)
    }
}

// === impl Ttl ===

impl Expiry<Key, Entry> for Ttl {
    fn expire_after_create(&self, _key: &Key, value: &Entry, _created_at: Instant) -> Option<Duration> {
        Some(if value.is_some() { self.row } else { self.missing })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::fetch::Value;

    /// Counts reads; `users` has u0..u99, and a read takes `delay`.
    #[derive(Debug)]
    struct Counting {
        reads: AtomicUsize,
        ids_read: AtomicUsize,
        delay: Duration,
    }

    impl Counting {
        fn new(delay: Duration) -> Self {
            Counting { reads: AtomicUsize::new(0), ids_read: AtomicUsize::new(0), delay }
        }
        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    impl FeatureStore for Counting {
        fn get_rows<'a>(
            &'a self,
            _table: &'a str,
            ids: &'a [&'a str],
            fields: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<Option<Arc<Row>>>, FetchError>> {
            Box::pin(async move {
                self.reads.fetch_add(1, Ordering::SeqCst);
                self.ids_read.fetch_add(ids.len(), Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                Ok(ids
                    .iter()
                    .map(|id| {
                        let n: u32 = id.strip_prefix('u')?.parse().ok()?;
                        (n < 100).then(|| {
                            let row = fields.iter().map(|f| (f.clone(), Value::Str(format!("{f}-{n}")))).collect();
                            Arc::new(row)
                        })
                    })
                    .collect())
            })
        }
    }

    fn config(max_entries: u64, ttl_ms: u64, negative_ttl_ms: u64) -> HashMap<String, TableCacheConfig> {
        [("users".to_owned(), TableCacheConfig { enabled: true, max_entries, ttl_ms, negative_ttl_ms })].into()
    }

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn hits_misses_and_negative_hits_are_counted() {
        let store = CachedStore::new(Counting::new(Duration::ZERO), &config(100, 60_000, 60_000));
        let f = fields(&["age"]);
        let rows = store.get_rows("users", &["u1", "u2", "nope"], &f).await.unwrap();
        assert_eq!(rows[0].as_ref().unwrap()["age"], Value::Str("age-1".into()));
        assert!(rows[2].is_none());
        assert_eq!(store.inner().reads(), 1, "all misses of a call in one read");

        let again = store.get_rows("users", &["u1", "nope", "u3", "u3"], &f).await.unwrap();
        assert_eq!(again[0], rows[0]);
        assert!(again[1].is_none());
        assert_eq!(again[2].as_ref().unwrap()["age"], Value::Str("age-3".into()));
        assert_eq!(again[3], again[2], "duplicate ids are answered alike");
        assert_eq!(store.inner().reads(), 2);
        assert_eq!(store.inner().ids_read.load(Ordering::SeqCst), 4, "only u3 was read again, once");
        let stats = store.stats();
        assert_eq!((stats.hits, stats.negative_hits, stats.misses, stats.store_reads), (1, 1, 4, 2), "{stats:?}");
        assert_eq!(store.cache_stats(), Some(stats), "readable through the trait");

        // Another field set is another entry; an uncached table passes through.
        store.get_rows("users", &["u1"], &fields(&["age", "gender"])).await.unwrap();
        assert_eq!(store.inner().reads(), 3);
        store.get_rows("items", &["u1"], &f).await.unwrap();
        store.get_rows("items", &["u1"], &f).await.unwrap();
        assert_eq!(store.inner().reads(), 5);
    }

    #[tokio::test]
    async fn rows_and_missing_ids_expire_after_their_own_ttl() {
        let store = CachedStore::new(Counting::new(Duration::ZERO), &config(100, 600, 100));
        let f = fields(&["age"]);
        store.get_rows("users", &["u1", "nope"], &f).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        // The negative entry expired, the row did not.
        store.get_rows("users", &["u1", "nope"], &f).await.unwrap();
        assert_eq!(store.inner().reads(), 2);
        assert_eq!(store.inner().ids_read.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_millis(600)).await;
        store.get_rows("users", &["u1"], &f).await.unwrap();
        assert_eq!(store.inner().reads(), 3, "row TTL passed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_on_one_key_cost_one_store_read() {
        let store = Arc::new(CachedStore::new(Counting::new(Duration::from_millis(100)), &config(100, 60_000, 60_000)));
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let f = fields(&["age"]);
                    store.get_rows("users", &["u7"], &f).await.unwrap()
                })
            })
            .collect();
        for call in calls {
            let rows = call.await.unwrap();
            assert_eq!(rows[0].as_ref().unwrap()["age"], Value::Str("age-7".into()));
        }
        assert_eq!(store.inner().reads(), 1);
        let stats = store.stats();
        assert_eq!(stats.store_reads, 1);
        assert_eq!(stats.misses + stats.hits, 16, "{stats:?}");
        assert_eq!(stats.coalesced, stats.misses - 1, "{stats:?}");
    }

    #[tokio::test]
    async fn size_is_bounded_and_evictions_counted() {
        let store = CachedStore::new(Counting::new(Duration::ZERO), &config(10, 60_000, 60_000));
        let f = fields(&["age"]);
        for n in 0..100 {
            let id = format!("u{n}");
            store.get_rows("users", &[id.as_str()], &f).await.unwrap();
        }
        store.run_pending_tasks().await;
        assert!(store.entry_count("users") <= 10, "{}", store.entry_count("users"));
        assert!(store.stats().evictions >= 90 - 10, "{:?}", store.stats());
    }

    #[tokio::test]
    async fn store_errors_are_returned_and_not_cached() {
        #[derive(Debug)]
        struct Down(AtomicUsize);
        impl FeatureStore for Down {
            fn get_rows<'a>(
                &'a self,
                _: &'a str,
                _: &'a [&'a str],
                _: &'a [String],
            ) -> BoxFuture<'a, Result<Vec<Option<Arc<Row>>>, FetchError>> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Err(FetchError::Unavailable("down".into())) })
            }
        }
        let store = CachedStore::new(Down(AtomicUsize::new(0)), &config(10, 60_000, 60_000));
        let f = fields(&["age"]);
        for _ in 0..2 {
            let err = store.get_rows("users", &["u1", "u2"], &f).await.unwrap_err();
            assert!(matches!(err, FetchError::Unavailable(_)), "{err}");
        }
        assert_eq!(store.inner().0.load(Ordering::SeqCst), 2);
    }
}
