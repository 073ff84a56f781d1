//! The local feature cache's metrics: `augur_cache_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::telemetry::ModuleMetrics;

/// `{table, result}` of a cache lookup.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// Store table.
    pub table: String,
    /// `hit`, `negative_hit`, `miss` or `coalesced`.
    pub result: String,
}

/// `{table}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// Store table.
    pub table: String,
}

/// Local feature-cache metrics.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    /// `augur_cache_lookups_total{table, result}`.
    pub lookups: Family<CacheLabels, Counter>,
    /// `augur_cache_store_reads_total{table}`: reads sent to the wrapped store.
    pub store_reads: Family<TableLabels, Counter>,
    /// `augur_cache_evictions_total{table}`: entries dropped to stay within `max_entries`.
    pub evictions: Family<TableLabels, Counter>,
}

impl ModuleMetrics for CacheMetrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("cache");
        r.register("lookups", "Local feature cache lookups by result", self.lookups.clone());
        r.register("store_reads", "Reads the local cache sent to the store", self.store_reads.clone());
        r.register("evictions", "Cache entries evicted by the size bound", self.evictions.clone());
    }
}
