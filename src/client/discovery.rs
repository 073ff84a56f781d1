//! Where the endpoints come from: a discovery target, and the resolver task that turns it into
//! `tonic::transport::channel::Change`s for the balancer.
//!
//! `etcd://host:port[,host:port]/<service>` reads the keys gRPC-Go's etcd resolver reads (the
//! ones [`crate::registry::etcd`] writes): a prefix Get of `<service>/`, then a Watch from the
//! Get's revision + 1, so no change between the two is missed. A PUT adds (or moves) the key's
//! `Addr`, a DELETE removes the key. When the watch fails, ends or is cancelled (compaction), the
//! task waits (capped exponential backoff), reads the prefix again and applies only the
//! difference, so endpoints that did not change are never dropped. `host:port,host:port` is a
//! fixed list, for tests and for callers without etcd.

use std::collections::BTreeMap;
use std::time::Duration;

#[cfg(feature = "etcd")]
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;
use tonic::transport::channel::Change;

use super::ClientError;
use crate::registry::error_chain;

#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
/// First wait before reading etcd again after a failure.
const BACKOFF_START: Duration = Duration::from_millis(100);
#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
/// Cap of the backoff: a restarted etcd is found again within this.
const BACKOFF_MAX: Duration = Duration::from_secs(3);
/// Connecting to one augur endpoint: a dead one must not hold its balancer slot for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a client finds augur instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Keys `<service>/<host:port>` in etcd, in the gRPC-Go naming format, followed as they change.
    Etcd {
        /// etcd client URLs (`http://host:port`).
        endpoints: Vec<String>,
        /// The service name augur registers under (`registry.services`).
        service: String,
    },
    /// A fixed list of `host:port`.
    Static(Vec<String>),
}

#[cfg_attr(not(feature = "etcd"), allow(dead_code))]
/// The gRPC-Go `naming/endpoints` value; only `Addr` matters for balancing.
#[derive(Debug, Deserialize)]
struct Update {
    #[serde(rename = "Addr")]
    addr: String,
}

/// What the resolver knows: etcd key (or the address itself, static) → `host:port`.
pub(super) type Endpoints = BTreeMap<String, String>;

// === impl Discovery ===

impl std::str::FromStr for Discovery {
    type Err = ClientError;

    fn from_str(target: &str) -> Result<Self, ClientError> {
        let bad = |why: &'static str| ClientError::Target { target: target.to_owned(), why };
        let host_ports = |list: &str| -> Result<Vec<String>, ClientError> {
            let hosts: Vec<String> = list.split(',').map(str::trim).map(str::to_owned).collect();
            let valid = |h: &String| {
                h.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            };
            if hosts.iter().all(valid) { Ok(hosts) } else { Err(bad("every endpoint must be host:port")) }
        };
        match target.strip_prefix("etcd://") {
            Some(rest) => {
                let (hosts, service) =
                    rest.split_once('/').ok_or_else(|| bad("expected etcd://host:port/<service>"))?;
                let service = service.trim_end_matches('/');
                if service.is_empty() {
                    return Err(bad("the service name is empty"));
                }
                if !cfg!(feature = "etcd") {
                    return Err(bad("etcd:// needs the `etcd` feature, which this build of augur lacks"));
                }
                let endpoints = host_ports(hosts)?.into_iter().map(|h| format!("http://{h}")).collect();
                Ok(Discovery::Etcd { endpoints, service: service.to_owned() })
            }
            None if target.contains("://") => Err(bad("the scheme must be etcd:// (or none, for host:port,...)")),
            None => Ok(Discovery::Static(host_ports(target)?)),
        }
    }
}

impl std::fmt::Display for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Discovery::Etcd { endpoints, service } => {
                let hosts: Vec<&str> = endpoints.iter().map(|e| e.trim_start_matches("http://")).collect();
                write!(f, "etcd://{}/{service}", hosts.join(","))
            }
            Discovery::Static(hosts) => f.write_str(&hosts.join(",")),
        }
    }
}

/// The balancer's side of the resolver: every change goes to `changes` (the balance channel) and
/// the whole set to `known` (for callers waiting until an endpoint exists, and for tests).
pub(super) struct Sink {
    pub(super) changes: mpsc::Sender<Change<String, Endpoint>>,
    pub(super) known: watch::Sender<Endpoints>,
}

impl Sink {
    /// Moves the balancer from what it has to `next`, touching only the keys that differ.
    /// `false` when the balancer is gone (the client was dropped).
    async fn apply(&self, next: Endpoints) -> bool {
        let current = self.known.borrow().clone();
        for key in current.keys().filter(|k| !next.contains_key(*k)) {
            if self.changes.send(Change::Remove(key.clone())).await.is_err() {
                return false;
            }
        }
        for (key, addr) in next.iter().filter(|(k, a)| current.get(*k) != Some(a)) {
            if !self.insert(key, addr).await {
                return false;
            }
        }
        self.known.send_replace(next);
        true
    }

    async fn insert(&self, key: &str, addr: &str) -> bool {
        let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
            Ok(endpoint) => endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true),
            Err(e) => {
                tracing::warn!(key, addr, error = %error_chain(&e), "client: skipping an unusable address");
                return true;
            }
        };
        self.changes.send(Change::Insert(key.to_owned(), endpoint)).await.is_ok()
    }

    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    async fn put(&self, key: String, addr: String) -> bool {
        let mut next = self.known.borrow().clone();
        next.insert(key, addr);
        self.apply(next).await
    }

    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    async fn delete(&self, key: &str) -> bool {
        let mut next = self.known.borrow().clone();
        next.remove(key);
        self.apply(next).await
    }
}

/// Runs the resolver until the balancer goes away.
pub(super) async fn run(discovery: Discovery, sink: Sink) {
    match discovery {
        Discovery::Static(hosts) => {
            // Keyed by the address itself; nothing changes afterwards.
            let _ = sink.apply(hosts.iter().map(|h| (h.clone(), h.clone())).collect()).await;
            sink.changes.closed().await;
        }
        #[cfg(not(feature = "etcd"))]
        Discovery::Etcd { .. } => {
            tracing::error!(discovery = %discovery, "client: etcd:// needs the `etcd` feature, which this build lacks");
            sink.changes.closed().await;
        }
        #[cfg(feature = "etcd")]
        Discovery::Etcd { endpoints, service } => {
            let prefix = format!("{service}/");
            let mut backoff = BACKOFF_START;
            loop {
                match follow(&endpoints, &prefix, &sink, &mut backoff).await {
                    Ok(()) => return, // the balancer is gone
                    Err(e) => tracing::warn!(
                        prefix,
                        retry_in_ms = backoff.as_millis() as u64,
                        error = %error_chain(&e),
                        "client: etcd resolver lost the watch"
                    ),
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = sink.changes.closed() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One Get + Watch round; `Ok` only when the balancer is gone.
#[cfg(feature = "etcd")]
async fn follow(
    endpoints: &[String],
    prefix: &str,
    sink: &Sink,
    backoff: &mut Duration,
) -> Result<(), etcd_client::Error> {
    let options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(5));
    let mut client = Client::connect(endpoints, Some(options)).await?;
    let listed = client.get(prefix, Some(GetOptions::new().with_prefix())).await?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let next = listed.kvs().iter().filter_map(|kv| decode(kv.key(), kv.value())).collect();
    if !sink.apply(next).await {
        return Ok(());
    }
    // The watch stream itself is not under the unary timeout: it lives until etcd or we end it.
    let mut stream =
        client.watch(prefix, Some(WatchOptions::new().with_prefix().with_start_revision(revision + 1))).await?;
    *backoff = BACKOFF_START;
    loop {
        let message = tokio::select! {
            message = stream.message() => message?,
            () = sink.changes.closed() => return Ok(()),
        };
        let Some(response) = message else {
            return Err(etcd_client::Error::WatchError("the watch stream ended".into()));
        };
        if response.canceled() {
            let why =
                format!("watch cancelled (compacted at {}): {}", response.compact_revision(), response.cancel_reason());
            return Err(etcd_client::Error::WatchError(why));
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let alive = match event.event_type() {
                EventType::Put => match decode(kv.key(), kv.value()) {
                    Some((key, addr)) => sink.put(key, addr).await,
                    None => true,
                },
                EventType::Delete => sink.delete(&String::from_utf8_lossy(kv.key())).await,
            };
            if !alive {
                return Ok(());
            }
        }
    }
}

/// `(key, Addr)` of one key, or `None` (logged) when the value is not the Go naming JSON.
#[cfg(feature = "etcd")]
fn decode(key: &[u8], value: &[u8]) -> Option<(String, String)> {
    let key = String::from_utf8_lossy(key).into_owned();
    match serde_json::from_slice::<Update>(value) {
        Ok(update) => Some((key, update.addr)),
        Err(e) => {
            tracing::warn!(key, error = %e, "client: ignoring a key that is not a gRPC naming endpoint");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "etcd")]
    #[test]
    fn targets_parse() {
        let etcd: Discovery = "etcd://127.0.0.1:2379,10.0.0.2:2379/augur".parse().unwrap();
        assert_eq!(
            etcd,
            Discovery::Etcd {
                endpoints: vec!["http://127.0.0.1:2379".into(), "http://10.0.0.2:2379".into()],
                service: "augur".into()
            }
        );
        assert_eq!(etcd.to_string(), "etcd://127.0.0.1:2379,10.0.0.2:2379/augur");
        let fixed: Discovery = "127.0.0.1:1,localhost:2".parse().unwrap();
        assert_eq!(fixed, Discovery::Static(vec!["127.0.0.1:1".into(), "localhost:2".into()]));
        for bad in ["etcd://127.0.0.1:2379", "etcd://127.0.0.1:2379/", "dns://x:1", "host", "etcd://h/augur", ""] {
            assert!(bad.parse::<Discovery>().is_err(), "{bad}");
        }
    }

    /// Without the feature an etcd target is refused when parsed, saying why; a static list is not.
    #[cfg(not(feature = "etcd"))]
    #[test]
    fn an_etcd_target_names_the_missing_feature() {
        let error = "etcd://127.0.0.1:2379/augur".parse::<Discovery>().unwrap_err().to_string();
        assert!(error.contains("`etcd` feature"), "{error}");
        assert!("127.0.0.1:1".parse::<Discovery>().is_ok());
    }

    #[cfg(feature = "etcd")]
    #[test]
    fn the_go_naming_value_decodes() {
        let value = br#"{"Op":0,"Addr":"10.0.0.7:50051","Metadata":"{\"zone\":\"a\"}"}"#;
        assert_eq!(
            decode(b"augur/10.0.0.7:50051", value),
            Some(("augur/10.0.0.7:50051".into(), "10.0.0.7:50051".into()))
        );
        assert_eq!(decode(b"augur/x", b"not json"), None);
    }
}
