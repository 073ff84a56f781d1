//! Step 3 against Redis: one hash per entity, all rows of a call read in one round trip.
//!
//! # Layout
//!
//! Each row is a hash at a key built from `store.key_template` (default
//! `"{namespace}:{table}:{id}"`, e.g. `augur:items:i42`); its fields are the feature field names
//! and its values text, exactly as the CSV cells of the in-memory store: lists joined by `|`,
//! floats written by Rust's shortest round-trip formatting (`format!("{}", f64)`, what
//! [`load`](crate::cli::load) writes for JSONL numbers), so `"0.1"` parses back to the very same `f64`
//! and a model sees identical inputs whichever store served them. Values are handed to assembly as
//! [`Value::Str`]; assembly parses them into the declared type and reports a `ParseError` fallback
//! when it cannot, so a bad value in Redis is never an error here (bytes that are not UTF-8 are
//! converted lossily and end up in that fallback too).
//!
//! A call reads exactly the requested fields with one `HMGET` per key. A key whose fields are all
//! nil (the usual case: no such key) is a missing row (`None`), which assembly reports as
//! `MissingRow`. A key holding another type (`WRONGTYPE`) is logged and treated as missing too.
//!
//! # Configuration
//!
//! ```toml
//! [store]
//! kind = "redis"
//! urls = ["redis://127.0.0.1:6379"]   # cluster: any seed nodes, and `cluster = true`
//! namespace = "augur"                 # default
//! key_template = "{namespace}:{table}:{id}"   # default
//! timeout_ms = 50                     # default: bound on one read
//!
//! [store.cache.tables.items]          # optional local cache, per table (see `cache`)
//! max_entries = 100000
//! ttl_ms = 30000
//! negative_ttl_ms = 5000
//! ```
//!
//! Rows get there with `augur features load --config FILE --table items --file items.csv`.
//!
//! # Single node
//!
//! `store.connections` (default 1) [`ConnectionManager`]s, each one multiplexed connection
//! shared by every request and re-established in the background with exponential backoff (capped
//! at one second) when it drops; successive reads take them in turn. One connection's replies are
//! parsed by one task; a host where that task becomes the limit (a flat item rate whatever the
//! concurrency while Redis has CPU to spare) can spread it with more connections. On 2 cores 1
//! and 2 measured the same, so the default stays 1. All `HMGET`s of a call go out as one pipeline
//! on one connection: one write, one round trip, whatever the candidate count. Rows are positional
//! ([`Row::positional`]): the field names of a read are shared by all its rows, and values move
//! out of the reply without a copy.
//!
//! # Redis Cluster
//!
//! A [`ClusterConnection`](redis::cluster_async::ClusterConnection) (one multiplexed connection per
//! node, slot map refreshed on `MOVED`). Keys of different ids hash to different slots, so one
//! call's rows live on every master: that spread is the point of a cluster, and why the default
//! template has no hash tag. (A template like `"{{{table}}}:{id}"` — a hash tag on the table —
//! would pin a whole table to one slot and so to one node: a hot spot that defeats the cluster.
//! A hash tag around the id alone, `"{namespace}:{table}:{{{id}}}"`, is harmless but useless: the
//! slot already depends on the id only.) `{{` and `}}` in a template are literal braces.
//!
//! redis-rs 1.x does **not** split a pipeline across nodes in cluster mode: the async cluster
//! connection routes a whole pipeline by its first keyed command and fails it client-side with
//! `CrossSlot` ("Received crossed slots in pipeline") when commands hash to different slots
//! (`route_for_pipeline` in redis-rs; `tests/it/redis_cluster.rs` pins this behaviour). So in
//! cluster mode a call sends one `HMGET` per key, all at once: redis-rs routes each by its slot,
//! follows `MOVED`/`ASK`, and each node's multiplexed connection coalesces the commands queued for
//! it into shared socket writes — per node, that is a pipeline in all but name, and the call still
//! costs one round trip (the slowest node's).
//!
//! # Failures
//!
//! Connection errors and timeouts are [`FetchError::Unavailable`]. Every call is bounded by
//! `store.timeout_ms` (a `tokio::time::timeout` around the whole read, and the same value as the
//! connection's response timeout), so a hung or restarting Redis costs a request at most that long.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, RedisError, RedisResult};

use super::{BoxFuture, FeatureStore, FetchError, Row, StoreOpenError, Value};
use crate::fetch::config::{KeyTemplate, RedisConfig};

/// Longest pause between reconnection attempts: once Redis is back, reads recover within it.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Reads feature rows from Redis or Redis Cluster. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct RedisFeatureStore {
    conn: Connection,
    keys: Arc<KeyTemplate>,
    /// Bound on one `get_rows` call.
    timeout: Duration,
    /// The configured URLs, for messages.
    target: Arc<str>,
    /// Rate limit of the unreadable-row warning (a schema change can make every row unreadable).
    unreadable_warn: Arc<crate::telemetry::LogEvery>,
}

/// The two connection kinds; both multiplexed and `Clone`.
#[derive(Clone)]
enum Connection {
    /// `store.connections` managers, taken in turn (`next`) by successive reads.
    Node {
        managers: Arc<[ConnectionManager]>,
        next: Arc<AtomicUsize>,
    },
    Cluster(ClusterConnection),
}

// === impl RedisFeatureStore ===

impl RedisFeatureStore {
    /// Connects (one PING's worth of proof that Redis answers); fails start-up naming the URL.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreOpenError> {
        // Shown in logs and errors: never with a password.
        let target: Arc<str> =
            config.urls.iter().map(|u| crate::validate::redact_url(u)).collect::<Vec<_>>().join(",").into();
        let connect_error =
            |e: RedisError| StoreOpenError::Connect { target: target.to_string(), message: e.to_string() };
        let keys = config.key_template.with_namespace(&config.namespace);
        let timeout = Duration::from_millis(config.timeout_ms);
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        // `rediss://` with a private CA: trust exactly that CA (PEM read once, at start-up).
        let certs = match &config.tls_ca_path {
            Some(path) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| StoreOpenError::Connect {
                    target: target.to_string(),
                    message: format!("store.tls_ca_path {}: {e}", path.display()),
                })?),
            }),
            None => None,
        };
        let conn = if config.cluster {
            let mut builder = ClusterClientBuilder::new(config.urls.iter().map(String::as_str))
                .connection_timeout(connect_timeout)
                .response_timeout(timeout)
                .retries(2);
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            let client = builder.build().map_err(connect_error)?;
            Connection::Cluster(client.get_async_connection().await.map_err(connect_error)?)
        } else {
            let url = config.urls.first().map_or("", String::as_str);
            let client = match certs {
                Some(certs) => redis::Client::build_with_tls(url, certs),
                None => redis::Client::open(url),
            }
            .map_err(connect_error)?;
            let manager = ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(connect_timeout))
                .set_max_delay(MAX_RECONNECT_DELAY);
            let mut managers = Vec::with_capacity(config.connections);
            for _ in 0..config.connections {
                managers.push(
                    ConnectionManager::new_with_config(client.clone(), manager.clone()).await.map_err(connect_error)?,
                );
            }
            Connection::Node { managers: managers.into(), next: Arc::new(AtomicUsize::new(0)) }
        };
        let unreadable_warn = Arc::new(crate::telemetry::LogEvery::new(Duration::from_secs(1)));
        let store = RedisFeatureStore { conn, keys: Arc::new(keys), timeout, target, unreadable_warn };
        let mut ping = redis::cmd("PING");
        ping.arg("augur");
        store
            .run(vec![ping], timeout.max(connect_timeout))
            .await
            .map_err(|e| StoreOpenError::Connect { target: store.target.to_string(), message: e.to_string() })?;
        tracing::info!(target_urls = %store.target, cluster = config.cluster, "connected to redis");
        Ok(store)
    }

    /// The key of `id` in `table` under the configured template.
    pub fn key(&self, table: &str, id: &str) -> String {
        self.keys.key(table, id)
    }

    /// The key template in use.
    pub fn key_template(&self) -> &KeyTemplate {
        &self.keys
    }

    /// What this store connects to (the configured URLs, comma-separated).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs independent commands in one round trip (a pipeline on one node; all in flight at once
    /// on a cluster) within `timeout`. Per command: its reply, or the server's error for that
    /// command alone (`WRONGTYPE`, ...). `Err` only when the store as a whole failed.
    pub async fn run(&self, cmds: Vec<Cmd>, timeout: Duration) -> Result<Vec<RedisResult<redis::Value>>, FetchError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let work = async {
            match &self.conn {
                Connection::Node { managers, next } => {
                    let mut manager = managers[next.fetch_add(1, Ordering::Relaxed) % managers.len()].clone();
                    let mut pipe = redis::Pipeline::with_capacity(cmds.len());
                    for cmd in cmds {
                        pipe.add_command(cmd);
                    }
                    pipe.ignore_errors();
                    pipe.query_async::<Vec<RedisResult<redis::Value>>>(&mut manager).await
                }
                Connection::Cluster(cluster) => {
                    let replies = join_all(cmds.iter().map(|cmd| {
                        let mut cluster = cluster.clone();
                        async move { cmd.query_async::<redis::Value>(&mut cluster).await }
                    }))
                    .await;
                    // A connection-level failure fails the call, as it does on one node.
                    if let Some(e) = replies.iter().filter_map(|r| r.as_ref().err()).find(|e| !is_command_error(e)) {
                        return Err(e.clone());
                    }
                    Ok(replies)
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(replies)) => Ok(replies),
            Ok(Err(e)) => Err(FetchError::Unavailable { store: format!("redis {}", self.target), source: Arc::new(e) }),
            Err(_) => Err(FetchError::Timeout {
                store: format!("redis {}", self.target),
                after_ms: timeout.as_millis() as u64,
            }),
        }
    }
}

/// An error about one command (bad type, bad argument), as opposed to the connection or cluster.
fn is_command_error(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_)) && !e.is_cluster_error()
}

/// One `HMGET` reply → a positional row over `fields` (shared by every row of the read), or
/// `None` when every field is nil. Bulk strings become `Value::Str` without a copy when they are
/// UTF-8. Public (hidden) for the fuzz target `fuzz/fuzz_targets/redis_row.rs` only.
#[doc(hidden)]
pub fn row_from_reply(fields: &Arc<[String]>, reply: redis::Value) -> Option<Arc<Row>> {
    let redis::Value::Array(values) = reply else {
        return None;
    };
    let mut present = false;
    let mut values: Vec<Option<Value>> = values
        .into_iter()
        .take(fields.len())
        .map(|value| {
            let text = match value {
                redis::Value::BulkString(bytes) => {
                    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
                }
                redis::Value::SimpleString(s) => s,
                redis::Value::Int(i) => i.to_string(),
                redis::Value::Double(x) => format!("{x}"),
                _ => return None,
            };
            present = true;
            Some(Value::Str(text))
        })
        .collect();
    values.resize(fields.len(), None);
    present.then(|| Arc::new(Row::positional(Arc::clone(fields), values)))
}

impl FeatureStore for RedisFeatureStore {
    fn get_rows<'a>(
        &'a self,
        table: &'a str,
        ids: &'a [&'a str],
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<Row>>>, FetchError>> {
        Box::pin(async move {
            if fields.is_empty() {
                // HMGET needs a field; a caller that reads nothing needs no round trip.
                return Ok(vec![None; ids.len()]);
            }
            let cmds = ids
                .iter()
                .map(|id| {
                    let mut cmd = redis::cmd("HMGET");
                    cmd.arg(self.keys.key(table, id)).arg(fields);
                    cmd
                })
                .collect();
            let replies = self.run(cmds, self.timeout).await?;
            let names: Arc<[String]> = fields.into();
            // One line per request at most, and one per second at most across requests.
            let mut unreadable: Option<(usize, &str, RedisError)> = None;
            let rows = replies
                .into_iter()
                .zip(ids)
                .map(|(reply, id)| match reply {
                    Ok(reply) => row_from_reply(&names, reply),
                    Err(e) => {
                        match &mut unreadable {
                            Some((n, _, _)) => *n += 1,
                            None => unreadable = Some((1, id, e)),
                        }
                        None
                    }
                })
                .collect();
            if let Some((rows, first_id, error)) = unreadable
                && let Some(suppressed) = self.unreadable_warn.ready()
            {
                tracing::warn!(table, rows, first_id, %error, suppressed, "unreadable rows served as missing");
            }
            Ok(rows)
        })
    }
}

impl fmt::Debug for RedisFeatureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFeatureStore")
            .field("target", &self.target)
            .field("cluster", &matches!(self.conn, Connection::Cluster(_)))
            .field(
                "connections",
                &match &self.conn {
                    Connection::Node { managers, .. } => managers.len(),
                    Connection::Cluster(_) => 1,
                },
            )
            .field("keys", &self.keys)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_nil_reply_is_a_missing_row_and_present_fields_are_text() {
        use redis::Value as V;
        let fields: Arc<[String]> = vec!["a".to_owned(), "b".to_owned()].into();
        assert!(row_from_reply(&fields, V::Array(vec![V::Nil, V::Nil])).is_none());
        let row = row_from_reply(&fields, V::Array(vec![V::Nil, V::BulkString(vec![b'0', b'.', b'1', 0xff])])).unwrap();
        assert!(!row.contains_key("a"));
        assert_eq!(row["b"], Value::Str("0.1\u{fffd}".into()));
    }
}
