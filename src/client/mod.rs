//! The caller's side of `augur.v1.Prediction`: a client that finds augur instances through
//! [`Discovery`] (etcd, as gRPC-Go callers do, or a fixed list), balances across them and retries
//! an idempotent call once when an instance is going away.
//!
//! Balancing is tonic's `Channel::balance_channel`: tower's power-of-two-choices over the
//! endpoints that are ready, fed tonic's `Change::Insert`/`Change::Remove` (its own
//! type, not tower's) by the resolver task. It is
//! the balancer tonic 0.14 ships and tests (reconnecting endpoints, a buffer in front), where
//! wiring `tower::balance::p2c` by hand would need our own connector and load measure for the
//! same result. It cannot be told "not that endpoint", so the retry after UNAVAILABLE simply goes
//! through p2c again; an endpoint whose connection failed has left the ready set by then, and a
//! draining one has been removed from etcd (its `drain_delay` exists for that).

pub mod discovery;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::proto::prediction_client::PredictionClient as Stub;
use crate::proto::{GetFeaturesRequest, GetFeaturesResponse, PredictRequest, PredictResponse};
pub use discovery::Discovery;

/// Capacity of the resolver → balancer change queue (one etcd watch message at a time).
const CHANGES: usize = 64;

/// Why the client could not be built or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The discovery target does not parse.
    #[error("client: bad discovery target `{target}`: {why}")]
    Target {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No endpoint was known within the wait (nothing registered, or etcd unreachable).
    #[error("client: no augur endpoint found at {discovery} within {waited_ms} ms")]
    NoEndpoints {
        /// The target, for the message.
        discovery: String,
        /// How long the caller waited.
        waited_ms: u64,
    },
    /// The call failed (after the one retry, for UNAVAILABLE).
    #[error("client: {method} failed")]
    Call {
        /// `Predict` or `GetFeatures`.
        method: &'static str,
        /// The final status.
        #[source]
        status: tonic::Status,
    },
}

impl ClientError {
    /// The call's final status, if this is a call error.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            ClientError::Call { status, .. } => Some(status),
            ClientError::Target { .. } | ClientError::NoEndpoints { .. } => None,
        }
    }
}

/// A balanced, discovering `Prediction` client. Cheap to clone: clones share the balancer and the
/// resolver, which stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct PredictionClient {
    channel: Channel,
    stub: Stub<Channel>,
    known: watch::Receiver<discovery::Endpoints>,
    discovery: std::sync::Arc<Resolver>,
}

/// Owns the resolver task: aborted with the last client.
#[derive(Debug)]
struct Resolver {
    discovery: Discovery,
    task: JoinHandle<()>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === impl PredictionClient ===

impl PredictionClient {
    /// Starts resolving `discovery` (on the current tokio runtime) and returns at once; calls made
    /// before an endpoint is known wait for one (bound them with a deadline, or call
    /// [`Self::wait_for_endpoints`] first).
    pub fn new(discovery: Discovery) -> Self {
        let (channel, changes) = Channel::balance_channel::<String>(CHANGES);
        let (known_tx, known) = watch::channel(discovery::Endpoints::new());
        let sink = discovery::Sink { changes, known: known_tx };
        let task = tokio::spawn(discovery::run(discovery.clone(), sink));
        PredictionClient {
            stub: Stub::new(channel.clone()),
            channel,
            known,
            discovery: std::sync::Arc::new(Resolver { discovery, task }),
        }
    }

    /// Parses `target` (see [`Discovery`]) and starts resolving it.
    pub fn discover(target: &str) -> Result<Self, ClientError> {
        Ok(Self::new(target.parse()?))
    }

    /// The balanced channel, for other services on the same instances (the load generator).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The `host:port`s currently known, sorted.
    pub fn endpoints(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self.known.borrow().values().cloned().collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Waits until at least one endpoint is known, at most `wait`.
    pub async fn wait_for_endpoints(&self, wait: Duration) -> Result<(), ClientError> {
        let mut known = self.known.clone();
        match tokio::time::timeout(wait, known.wait_for(|e| !e.is_empty())).await {
            Ok(Ok(_)) => Ok(()),
            // Timed out, or the resolver is gone (it only ends with the client).
            Ok(Err(_)) | Err(_) => Err(ClientError::NoEndpoints {
                discovery: self.discovery.discovery.to_string(),
                waited_ms: wait.as_millis() as u64,
            }),
        }
    }

    /// `Predict`, retried once on UNAVAILABLE (Predict has no side effects).
    pub async fn predict(&self, request: PredictRequest) -> Result<PredictResponse, ClientError> {
        self.idempotent("Predict", request, |mut stub, r| async move { stub.predict(r).await }).await
    }

    /// `GetFeatures`, retried once on UNAVAILABLE.
    pub async fn get_features(&self, request: GetFeaturesRequest) -> Result<GetFeaturesResponse, ClientError> {
        self.idempotent("GetFeatures", request, |mut stub, r| async move { stub.get_features(r).await }).await
    }

    /// One call, and a second one when the first ended UNAVAILABLE: the instance refused it
    /// while draining, or its connection went away under it.
    async fn idempotent<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        request: Req,
        call: F,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(Stub<Channel>, Req) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let status = match call(self.stub.clone(), request.clone()).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if status.code() == tonic::Code::Unavailable => status,
            Err(status) => return Err(ClientError::Call { method, status }),
        };
        tracing::debug!(method, status = %status.message(), "client: UNAVAILABLE, retrying once");
        call(self.stub.clone(), request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| ClientError::Call { method, status })
    }
}
