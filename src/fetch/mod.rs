//! Step 3 of the path: read the feature rows a request needs from the online store.
//!
//! [`FeatureStore`] is the seam: the in-memory store ([`memory`]) is the embedded default; Redis
//! and Redis Cluster ([`redis`]) implement the same trait, optionally behind a local cache
//! ([`cache`]) for hot rows. Rows hold [`Value`]s, the typed value requests also carry. A missing
//! row is not an error (assembly falls back to spec defaults and reports it); an unreachable
//! store is. (Writing tables into Redis is a tool beside the path: [`crate::cli::load`].)

pub mod cache;
pub mod config;
pub mod memory;
pub mod metrics;
pub mod redis;
mod row;
mod value;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use cache::{CacheStats, CachedStore};
pub use memory::{MemoryStore, Upserted};
pub use redis::RedisFeatureStore;

pub use row::Row;
pub use value::Value;

/// A boxed future: the trait is used as `dyn FeatureStore`, one allocation per fetch.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why rows could not be read at all.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// The spec names a table the store does not have.
    #[error("store has no table `{0}`")]
    UnknownTable(String),
    /// The store could not be reached or answered with an error.
    #[error("{store} unavailable: {source}")]
    Unavailable {
        /// Which store (kind and address).
        store: String,
        /// The client's error (shared: a cached miss hands it to every waiter).
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The store did not answer within its own bound (`store.timeout_ms`).
    #[error("{store}: no answer within {after_ms} ms")]
    Timeout {
        /// Which store (kind and address).
        store: String,
        /// The bound.
        after_ms: u64,
    },
}

/// Why a store could not be built at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line could not be parsed.
    #[error("{path}:{line}: {problem}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// A remote store did not answer at start-up.
    #[error("cannot connect to {target}: {message}")]
    Connect {
        /// The configured address(es).
        target: String,
        /// What failed.
        message: String,
    },
}

/// An online feature store: rows by table and id.
pub trait FeatureStore: Send + Sync + Debug {
    /// Rows for `ids` in `table`, aligned with `ids` (`None` = no such row). `fields` lists the
    /// fields the caller will read, so remote stores can fetch only those.
    fn get_rows<'a>(
        &'a self,
        table: &'a str,
        ids: &'a [&'a str],
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<Row>>>, FetchError>>;

    /// The local cache's counters, when this store is (or wraps) a [`CachedStore`]: lets
    /// `GetStats` read them through `Arc<dyn FeatureStore>`.
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }
}
