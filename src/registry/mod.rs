//! Service registration, beside the request path: after health turns SERVING the app registers
//! its advertised address where clients resolve it, keeps the registration alive (re-registering
//! by itself when it is lost) and deregisters at shutdown step (1), right after NOT_SERVING.
//!
//! [`Registry`] is the seam: etcd ([`etcd`], the gRPC-Go naming format) is the one implementation
//! today; Consul or Nacos plug in behind the same three calls.

pub mod config;
pub mod etcd;
pub mod metrics;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use crate::fetch::BoxFuture;
use crate::registry::config::RegistryConfig;
use crate::telemetry::Metrics;

pub use etcd::EtcdRegistry;

/// Why registering or deregistering failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry did not answer within the start-up wait.
    #[error(
        "registry: etcd at {endpoints} did not answer within {waited_ms} ms (registry.endpoints, registry.connect_timeout_ms)"
    )]
    Unreachable {
        /// The configured endpoints, comma-separated.
        endpoints: String,
        /// How long start-up waited.
        waited_ms: u64,
        /// The last error seen.
        #[source]
        source: Option<etcd_client::Error>,
    },
    /// An etcd call failed.
    #[error("registry: etcd {op} failed")]
    Etcd {
        /// The call: `lease grant`, `put <key>`, `delete <key>`, `lease revoke`, ...
        op: String,
        /// What etcd or the transport said.
        #[source]
        source: etcd_client::Error,
    },
    /// A call did not finish in time (etcd hung or unreachable).
    #[error("registry: etcd {op} timed out after {timeout_ms} ms")]
    Timeout {
        /// The call.
        op: String,
        /// The bound.
        timeout_ms: u64,
    },
    /// The lease is gone or about to go (the keepalive loop registers again).
    #[error("registry: lease {lease:x} lost: {why}")]
    LeaseLost {
        /// The lease id.
        lease: i64,
        /// How it was noticed.
        why: &'static str,
    },
    /// The value could not be encoded (a bug).
    #[error("registry: encoding the endpoint value")]
    Encode(#[source] serde_json::Error),
    /// Deregistration already ran: this instance is leaving and must not register again.
    #[error("registry: already deregistered")]
    Closed,
}

/// A service registry this instance announces itself in.
///
/// Object-safe (boxed futures, as [`crate::fetch::FeatureStore`]) so the app holds an
/// `Arc<dyn Registry>` whatever the kind.
pub trait Registry: std::fmt::Debug + Send + Sync {
    /// The kind, as the `registry` label of the metrics: `etcd`.
    fn kind(&self) -> &'static str;

    /// Registers `advertise` (`host:port`) once under every configured service name.
    fn register<'a>(&'a self, advertise: &'a str) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Keeps the registration alive until `stop` is cancelled; when it is lost (lease expired,
    /// registry restarted, connection broken) registers again with capped exponential backoff.
    /// Also makes the first registration when [`Registry::register`] failed.
    fn keep_alive(&self, stop: CancellationToken) -> BoxFuture<'_, ()>;

    /// Removes the registration, bounded by the configured timeout so a dead registry cannot
    /// hold up shutdown. Afterwards [`Registry::register`] fails with [`RegistryError::Closed`].
    fn deregister(&self) -> BoxFuture<'_, Result<(), RegistryError>>;
}

/// Builds the configured registry; `None` for `kind = "none"`. For etcd this waits up to
/// `registry.connect_timeout_ms` for etcd to answer and fails naming the endpoints otherwise.
pub async fn build(config: &RegistryConfig, metrics: &Metrics) -> Result<Option<Arc<dyn Registry>>, RegistryError> {
    match config {
        RegistryConfig::None => Ok(None),
        RegistryConfig::Etcd(etcd) => Ok(Some(Arc::new(EtcdRegistry::connect(etcd, metrics).await?))),
    }
}

/// `error: cause: cause` for one log field.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
