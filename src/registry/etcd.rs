//! etcd registration in the format gRPC-Go's etcd resolver reads
//! (`go.etcd.io/etcd/client/v3/naming/resolver`, `naming/endpoints`).
//!
//! One key per service name, `<service>/<host:port>`, whose value is exactly
//! `{"Op":0,"Addr":"host:port","Metadata":<null or a JSON string>}` — Metadata must not be an
//! object, which makes grpc-go panic (etcd-io/etcd#19700). Every key hangs off one lease granted
//! with `registry.lease_ttl_s` and kept alive every third of it, so a crashed augur disappears
//! from its callers within the TTL. A TTL of 0 in the keepalive stream, the stream ending or
//! failing, or no answer within a TTL means the lease is (or soon will be) gone: a fresh lease is
//! granted and the keys put again, with capped exponential backoff, without restarting augur.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, PutOptions};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{BoxFuture, Registry, RegistryError, error_chain};
use crate::registry::config::EtcdConfig;
use crate::registry::metrics::{RegistrationLabels, RegistryLabels, RegistryMetrics};
use crate::telemetry::Metrics;

/// First wait before registering again after a loss or a failed attempt.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Cap of the backoff: a restarted etcd is found again within this.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The gRPC-Go `naming/endpoints` update as etcd stores it. Field names and order are the Go
/// struct's; `Op` 0 is `Add`.
#[derive(Debug, Serialize)]
struct Endpoint<'a> {
    #[serde(rename = "Op")]
    op: u8,
    #[serde(rename = "Addr")]
    addr: &'a str,
    /// `null` or a JSON string, never an object (etcd-io/etcd#19700).
    #[serde(rename = "Metadata")]
    metadata: Option<&'a str>,
}

/// The value stored under every key of `advertise`.
pub fn endpoint_value(advertise: &str, metadata: Option<&str>) -> Result<String, RegistryError> {
    serde_json::to_string(&Endpoint { op: 0, addr: advertise, metadata }).map_err(RegistryError::Encode)
}

/// Registers this instance in etcd and keeps it registered.
pub struct EtcdRegistry {
    client: Client,
    config: EtcdConfig,
    /// Serializes register and deregister, so a re-registration racing shutdown cannot put the
    /// keys back after they were deleted.
    state: Mutex<State>,
    metrics: Handles,
}

#[derive(Debug, Default)]
struct State {
    /// The lease the keys were last put under (possibly lost already; revoked when replaced).
    lease: Option<i64>,
    /// The address registered, known from the first `register` call on.
    advertise: Option<String>,
    /// Deregistered: never register again.
    closed: bool,
}

#[derive(Debug)]
struct Handles {
    state: Gauge,
    registered: Counter,
    lost: Counter,
    failed: Counter,
}

// === impl EtcdRegistry ===

impl EtcdRegistry {
    /// Connects and waits up to `connect_timeout_ms` for etcd to answer a status call, so a
    /// wrong or dead endpoint is a start-up error that names it.
    pub async fn connect(config: &EtcdConfig, metrics: &Metrics) -> Result<Self, RegistryError> {
        let wait = Duration::from_millis(config.connect_timeout_ms);
        let unreachable = |source| RegistryError::Unreachable {
            endpoints: config.endpoints.join(","),
            waited_ms: config.connect_timeout_ms,
            source,
        };
        let options = ConnectOptions::new().with_connect_timeout(wait);
        // The channel connects lazily; the status call below is what proves etcd answers.
        let mut client = Client::connect(&config.endpoints, Some(options)).await.map_err(|e| unreachable(Some(e)))?;
        let deadline = Instant::now() + wait;
        let mut last = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, client.status()).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => last = Some(e),
                Err(_) => return Err(unreachable(last)),
            }
            if Instant::now() + BACKOFF_START >= deadline {
                return Err(unreachable(last));
            }
            tokio::time::sleep(BACKOFF_START).await;
        }
        let registration = metrics.of::<RegistryMetrics>();
        let label = |outcome: &str| {
            registration
                .registrations
                .get_or_create(&RegistrationLabels { registry: "etcd".into(), outcome: outcome.into() })
                .clone()
        };
        let handles = Handles {
            state: registration.state.get_or_create(&RegistryLabels { registry: "etcd".into() }).clone(),
            registered: label("registered"),
            lost: label("lost"),
            failed: label("failed"),
        };
        handles.state.set(0);
        Ok(EtcdRegistry { client, config: config.clone(), state: Mutex::new(State::default()), metrics: handles })
    }

    /// The keys of `advertise`, one per service name.
    fn keys<'a>(&'a self, advertise: &'a str) -> impl Iterator<Item = String> + 'a {
        self.config.services.iter().map(move |service| format!("{service}/{advertise}"))
    }

    fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.config.connect_timeout_ms)
    }

    /// Runs one etcd call bounded by `registry.connect_timeout_ms`.
    async fn call<T>(
        &self,
        op: impl Into<String>,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, RegistryError> {
        match tokio::time::timeout(self.call_timeout(), call).await {
            Ok(result) => result.map_err(|source| RegistryError::Etcd { op: op.into(), source }),
            Err(_) => Err(RegistryError::Timeout { op: op.into(), timeout_ms: self.config.connect_timeout_ms }),
        }
    }

    /// Grants a fresh lease and puts every key under it; then revokes the lease it replaces.
    async fn register_locked(&self, state: &mut State) -> Result<(), RegistryError> {
        if state.closed {
            return Err(RegistryError::Closed);
        }
        let Some(advertise) = state.advertise.clone() else { return Ok(()) };
        let mut client = self.client.clone();
        let ttl = self.config.lease_ttl_s as i64;
        let lease = self.call("lease grant", client.lease_grant(ttl, None)).await?.id();
        let old = state.lease.replace(lease);
        let value = endpoint_value(&advertise, self.config.metadata.as_deref())?;
        for key in self.keys(&advertise) {
            let put = client.put(key.clone(), value.clone(), Some(PutOptions::new().with_lease(lease)));
            self.call(format!("put {key}"), put).await?;
        }
        // The keys moved to the new lease; revoking the old one (if etcd still has it) deletes
        // nothing of ours and frees it before its TTL.
        if let Some(old) = old.filter(|&old| old != lease) {
            let _ = self.call("lease revoke", client.lease_revoke(old)).await;
        }
        tracing::info!(advertise = %advertise, lease, ttl_s = ttl, services = ?self.config.services, "registered in etcd");
        Ok(())
    }

    /// One registration attempt, counted.
    async fn register_now(&self) -> Result<(), RegistryError> {
        let mut state = self.state.lock().await;
        if state.advertise.is_none() {
            // `keep_alive` before any `register`: nothing to announce yet.
            return Ok(());
        }
        let result = self.register_locked(&mut state).await;
        match &result {
            Ok(()) => {
                self.metrics.state.set(1);
                self.metrics.registered.inc();
            }
            Err(RegistryError::Closed) => {}
            Err(_) => {
                self.metrics.state.set(0);
                self.metrics.failed.inc();
            }
        }
        result
    }

    /// Keeps `lease` alive until `stop` (`Ok`) or until it is lost (`Err` says how).
    async fn hold(&self, lease: i64, stop: &CancellationToken) -> Result<(), RegistryError> {
        let mut client = self.client.clone();
        let (mut keeper, mut stream) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            r = self.call("lease keepalive", client.lease_keep_alive(lease)) => r?,
        };
        let ttl = Duration::from_secs(self.config.lease_ttl_s);
        let mut tick = tokio::time::interval((ttl / 3).max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answered = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    // A frozen etcd or a silently dead connection: by now the lease has expired.
                    if answered.elapsed() > ttl {
                        return Err(RegistryError::LeaseLost { lease, why: "no keepalive answer within the lease TTL" });
                    }
                    // Bounded and cancellable: a keepalive stream to an etcd that just restarted
                    // can stall the send, and shutdown must not wait on it.
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        r = self.call("lease keepalive", keeper.keep_alive()) => r?,
                    }
                }
                message = stream.message() => match message {
                    Ok(Some(answer)) if answer.ttl() <= 0 => {
                        return Err(RegistryError::LeaseLost { lease, why: "etcd answered TTL 0 (expired or revoked)" });
                    }
                    Ok(Some(_)) => answered = Instant::now(),
                    Ok(None) => return Err(RegistryError::LeaseLost { lease, why: "the keepalive stream ended" }),
                    Err(source) => return Err(RegistryError::Etcd { op: "lease keepalive".into(), source }),
                },
            }
        }
    }

    async fn run(&self, stop: CancellationToken) {
        loop {
            let lease = self.state.lock().await.lease;
            if let Some(lease) = lease {
                match self.hold(lease, &stop).await {
                    Ok(()) => return,
                    Err(e) => {
                        self.metrics.state.set(0);
                        self.metrics.lost.inc();
                        tracing::warn!(error = %error_chain(&e), "etcd registration lost; registering again");
                    }
                }
            }
            let mut backoff = BACKOFF_START;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                let attempt = tokio::select! {
                    () = stop.cancelled() => return,
                    r = self.register_now() => r,
                };
                match attempt {
                    Ok(()) => break,
                    Err(RegistryError::Closed) => return,
                    Err(e) => {
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        tracing::warn!(error = %error_chain(&e), retry_in_ms = backoff.as_millis() as u64, "etcd registration failed");
                    }
                }
            }
        }
    }

    async fn deregister_now(&self) -> Result<(), RegistryError> {
        let mut state = self.state.lock().await;
        state.closed = true;
        let (Some(lease), Some(advertise)) = (state.lease.take(), state.advertise.clone()) else { return Ok(()) };
        self.metrics.state.set(0);
        let mut client = self.client.clone();
        for key in self.keys(&advertise) {
            self.call(format!("delete {key}"), client.delete(key.clone(), None)).await?;
        }
        match self.call("lease revoke", client.lease_revoke(lease)).await {
            // Already expired or revoked: nothing left to free.
            Err(RegistryError::Etcd { source: etcd_client::Error::GRpcStatus(status), .. })
                if status.code() == tonic::Code::NotFound => {}
            other => {
                other?;
            }
        }
        tracing::info!(advertise = %advertise, lease, "deregistered from etcd");
        Ok(())
    }
}

impl std::fmt::Debug for EtcdRegistry {
    // `etcd_client::Client` is not `Debug`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdRegistry").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Registry for EtcdRegistry {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn register<'a>(&'a self, advertise: &'a str) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            self.state.lock().await.advertise = Some(advertise.to_owned());
            self.register_now().await
        })
    }

    fn keep_alive(&self, stop: CancellationToken) -> BoxFuture<'_, ()> {
        Box::pin(self.run(stop))
    }

    fn deregister(&self) -> BoxFuture<'_, Result<(), RegistryError>> {
        Box::pin(async move {
            let timeout_ms = self.config.deregister_timeout_ms;
            match tokio::time::timeout(Duration::from_millis(timeout_ms), self.deregister_now()).await {
                Ok(result) => result,
                Err(_) => Err(RegistryError::Timeout { op: "deregister".into(), timeout_ms }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_the_go_naming_json_with_metadata_null_or_a_string() {
        assert_eq!(
            endpoint_value("10.0.0.7:50051", None).unwrap(),
            r#"{"Op":0,"Addr":"10.0.0.7:50051","Metadata":null}"#
        );
        assert_eq!(
            endpoint_value("h:1", Some(r#"{"zone":"a"}"#)).unwrap(),
            r#"{"Op":0,"Addr":"h:1","Metadata":"{\"zone\":\"a\"}"}"#
        );
    }
}
