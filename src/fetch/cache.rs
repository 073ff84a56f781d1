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
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::OnceCell;

use super::{BoxFuture, FeatureStore, FetchError, Row};
use crate::fetch::config::TableCacheConfig;
use crate::fetch::metrics::{CacheLabels, CacheMetrics, TableLabels};

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

/// One table's counters: handles into the process's metrics registry
/// (`augur_cache_lookups_total{table, result}`, `..._store_reads_total`, `..._evictions_total`).
#[derive(Debug, Clone)]
struct Counters {
    hits: Counter,
    negative_hits: Counter,
    misses: Counter,
    coalesced: Counter,
    store_reads: Counter,
    evictions: Counter,
}

impl Counters {
    fn new(metrics: &CacheMetrics, table: &str) -> Self {
        let lookups = |result: &str| {
            metrics.lookups.get_or_create(&CacheLabels { table: table.to_owned(), result: result.to_owned() }).clone()
        };
        let labels = TableLabels { table: table.to_owned() };
        Counters {
            hits: lookups("hit"),
            negative_hits: lookups("negative_hit"),
            misses: lookups("miss"),
            coalesced: lookups("coalesced"),
            store_reads: metrics.store_reads.get_or_create(&labels).clone(),
            evictions: metrics.evictions.get_or_create(&labels).clone(),
        }
    }
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
    counters: Counters,
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
}

// === impl CachedStore ===

impl<S: FeatureStore> CachedStore<S> {
    /// Wraps `inner`; only the tables in `tables` are cached (entries with `enabled = false` are
    /// skipped).
    pub fn new<'a>(
        inner: S,
        tables: impl IntoIterator<Item = (&'a String, &'a TableCacheConfig)>,
        metrics: &CacheMetrics,
    ) -> Self {
        let tables = tables
            .into_iter()
            .filter(|(_, c)| c.enabled)
            .map(|(name, c)| {
                let counters = Counters::new(metrics, name);
                let evicted = counters.evictions.clone();
                let rows = Cache::builder()
                    .name(name)
                    .max_capacity(c.max_entries)
                    .expire_after(Ttl {
                        row: Duration::from_millis(c.ttl_ms),
                        missing: Duration::from_millis(c.negative_ttl_ms),
                    })
                    .eviction_listener(move |_key, _value, cause| {
                        if cause == RemovalCause::Size {
                            evicted.inc();
                        }
                    })
                    .build();
                let table = TableCache { rows, field_sets: RwLock::default(), counters };
                (name.clone(), table)
            })
            .collect();
        CachedStore { inner, tables }
    }

    /// The counters so far, summed over the cached tables.
    pub fn stats(&self) -> CacheStats {
        self.tables.values().map(|t| &t.counters).fold(CacheStats::default(), |s, c| CacheStats {
            hits: s.hits + c.hits.get(),
            negative_hits: s.negative_hits + c.negative_hits.get(),
            misses: s.misses + c.misses.get(),
            coalesced: s.coalesced + c.coalesced.get(),
            store_reads: s.store_reads + c.store_reads.get(),
            evictions: s.evictions + c.evictions.get(),
        })
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

    /// Drops every cached entry of `id` in `table` (all field sets), so the next read goes to
    /// the store: how a feature stream's update becomes servable ([`crate::feature_stream`]).
    /// A load that read the store before the update landed can still insert the old row after
    /// this call; callers invalidate once more after the store's read timeout to close that gap.
    pub async fn invalidate(&self, table: &str, id: &str) {
        let Some(cache) = self.tables.get(table) else {
            return;
        };
        let sets: Vec<u32> = cache.field_sets.read().unwrap_or_else(|e| e.into_inner()).values().copied().collect();
        for set in sets {
            cache.rows.invalidate(&(set, id.to_owned())).await;
        }
    }

    /// Drops every cached entry (all tables): after missing invalidations (a lost pub/sub
    /// connection), nothing cached before is trusted.
    pub fn invalidate_all(&self) {
        for cache in self.tables.values() {
            cache.rows.invalidate_all();
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
                    cache.counters.hits.inc();
                    out[i] = Some(row);
                }
                Some(None) => {
                    cache.counters.negative_hits.inc();
                }
                None => {
                    cache.counters.misses.inc();
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
            cache.counters.store_reads.inc();
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
                cache.counters.coalesced.inc();
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

impl<S: FeatureStore> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tables: Vec<&str> = self.tables.keys().map(String::as_str).collect();
        tables.sort_unstable();
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("tables", &tables)
            .field("stats", &self.stats())
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::fetch::Value;

    /// Counts reads; `users` has u0..u99. A read waits until `open` is true, so a test can
    /// hold it in flight for as long as it needs, not for a guessed time.
    #[derive(Debug)]
    struct Counting {
        reads: AtomicUsize,
        ids_read: AtomicUsize,
        open: tokio::sync::watch::Receiver<bool>,
    }

    impl Counting {
        /// Reads answer at once.
        fn new() -> Self {
            Self::with_gate(tokio::sync::watch::channel(true).1)
        }
        /// Reads wait until the returned sender sends `true`.
        fn gated() -> (Self, tokio::sync::watch::Sender<bool>) {
            let (open, gate) = tokio::sync::watch::channel(false);
            (Self::with_gate(gate), open)
        }
        fn with_gate(open: tokio::sync::watch::Receiver<bool>) -> Self {
            Counting { reads: AtomicUsize::new(0), ids_read: AtomicUsize::new(0), open }
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
                let _ = self.open.clone().wait_for(|open| *open).await;
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
        let store = CachedStore::new(Counting::new(), &config(100, 60_000, 60_000), &CacheMetrics::default());
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

    // moka expires entries on its own clock (std `Instant`; its mock clock is crate-private), so
    // these two sleep for real. Only lower bounds matter, which load cannot break: the sleep is 3x
    // the short TTL, and the long TTL is a minute, far beyond any stall of a shared machine.
    const SHORT_TTL_MS: u64 = 100;
    const LONG_TTL_MS: u64 = 60_000;
    const PAST_SHORT_TTL: Duration = Duration::from_millis(3 * SHORT_TTL_MS);

    #[tokio::test]
    async fn missing_ids_expire_after_the_negative_ttl_while_rows_stay() {
        let store =
            CachedStore::new(Counting::new(), &config(100, LONG_TTL_MS, SHORT_TTL_MS), &CacheMetrics::default());
        let f = fields(&["age"]);
        store.get_rows("users", &["u1", "nope"], &f).await.unwrap();
        tokio::time::sleep(PAST_SHORT_TTL).await;
        let rows = store.get_rows("users", &["u1", "nope"], &f).await.unwrap();
        assert!(rows[0].is_some() && rows[1].is_none());
        assert_eq!(store.inner().reads(), 2, "the expired negative entry was read again");
        assert_eq!(store.inner().ids_read.load(Ordering::SeqCst), 3, "only `nope`, not the row");
        assert_eq!(store.stats().hits, 1);
    }

    #[tokio::test]
    async fn rows_expire_after_the_row_ttl_while_missing_ids_stay() {
        let store =
            CachedStore::new(Counting::new(), &config(100, SHORT_TTL_MS, LONG_TTL_MS), &CacheMetrics::default());
        let f = fields(&["age"]);
        store.get_rows("users", &["u1", "nope"], &f).await.unwrap();
        tokio::time::sleep(PAST_SHORT_TTL).await;
        let rows = store.get_rows("users", &["u1", "nope"], &f).await.unwrap();
        assert!(rows[0].is_some() && rows[1].is_none());
        assert_eq!(store.inner().reads(), 2, "the expired row was read again");
        assert_eq!(store.inner().ids_read.load(Ordering::SeqCst), 3, "only `u1`, not the missing id");
        assert_eq!(store.stats().negative_hits, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_on_one_key_cost_one_store_read() {
        let (inner, open) = Counting::gated();
        let store = Arc::new(CachedStore::new(inner, &config(100, 60_000, 60_000), &CacheMetrics::default()));
        let calls: Vec<_> = (0..16)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let f = fields(&["age"]);
                    store.get_rows("users", &["u7"], &f).await.unwrap()
                })
            })
            .collect();
        // The one read is held until every call has looked the key up and missed: all 16 are
        // then in flight together, however the threads were scheduled.
        while store.stats().misses < 16 {
            tokio::task::yield_now().await;
        }
        open.send(true).unwrap();
        for call in calls {
            let rows = call.await.unwrap();
            assert_eq!(rows[0].as_ref().unwrap()["age"], Value::Str("age-7".into()));
        }
        assert_eq!(store.inner().reads(), 1);
        let stats = store.stats();
        assert_eq!((stats.misses, stats.hits, stats.coalesced, stats.store_reads), (16, 0, 15, 1), "{stats:?}");
    }

    #[tokio::test]
    async fn size_is_bounded_and_evictions_counted() {
        let store = CachedStore::new(Counting::new(), &config(10, 60_000, 60_000), &CacheMetrics::default());
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
                Box::pin(async { Err(FetchError::Timeout { store: "down".into(), after_ms: 1 }) })
            }
        }
        let store = CachedStore::new(Down(AtomicUsize::new(0)), &config(10, 60_000, 60_000), &CacheMetrics::default());
        let f = fields(&["age"]);
        for _ in 0..2 {
            let err = store.get_rows("users", &["u1", "u2"], &f).await.unwrap_err();
            assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
        }
        assert_eq!(store.inner().0.load(Ordering::SeqCst), 2);
    }
}
