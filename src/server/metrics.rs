//! The public port's metrics, recorded by the layer stack ([`super::layers`]): `augur_rpc_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::{LatencyHistogram, ModuleMetrics};

/// `{method, code}` of one RPC.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `/package.Service/Method`.
    pub method: String,
    /// gRPC status code name (`OK`, `RESOURCE_EXHAUSTED`, ...).
    pub code: String,
}

/// `{method}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `/package.Service/Method`.
    pub method: String,
}

/// `{reason}` a request was refused before its handler ran.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `too_large`, `read_budget`, `read_timeout`, `client_gone`, `incomplete`,
    /// `too_many_items`, `connection_share`.
    pub reason: &'static str,
}

/// RPC-level metrics, recorded by the layer stack.
#[derive(Debug, Clone, Default)]
pub struct RpcMetrics {
    /// `augur_rpc_requests_total{method, code}`.
    pub requests: Family<RpcLabels, Counter>,
    /// `augur_rpc_duration_seconds{method}`: until the response headers (the whole call for
    /// unary RPCs).
    pub duration: Family<MethodLabels, LatencyHistogram>,
    /// `augur_rpc_in_flight`: RPCs being handled now.
    pub in_flight: Gauge,
    /// `augur_rpc_shed_total`: Prediction calls refused by the global concurrency limit.
    pub shed: Counter,
    /// `augur_rpc_refused_total{reason}`: Prediction calls refused while their body was read or
    /// at admission for another bound than the global limit.
    pub refused: Family<RefusedLabels, Counter>,
}

impl ModuleMetrics for RpcMetrics {
    fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("rpc");
        r.register("requests", "RPCs handled, by method and status code", self.requests.clone());
        r.register("duration_seconds", "RPC latency until response headers", self.duration.clone());
        r.register("in_flight", "RPCs being handled now", self.in_flight.clone());
        r.register("shed", "Prediction calls refused by the global concurrency limit", self.shed.clone());
        r.register(
            "refused",
            "Prediction calls refused by a request bound before their handler ran, by reason",
            self.refused.clone(),
        );
    }
}
