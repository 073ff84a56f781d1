//! The public port's metrics: `augur_rpc_*`, recorded by the layer stack ([`super::layers`]), and
//! `augur_server_*`, recorded by the listener ([`super::listener`]).

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
    /// `too_many_items`, `connection_share`, `watch_limit`.
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
    /// `augur_rpc_in_flight`: RPCs being handled now: a unary call until its response is sent
    /// whole (one parked behind the caller's flow-control window counts), a stream (health
    /// Watch, StreamFeatures, reflection) until its response headers.
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

/// `{reason}` of a connection closed by a limit or of an accept error.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `max_connections`, `handshake_timeout`, `max_connection_age_grace`; for accept errors
    /// `emfile`, `enfile`, `enobufs`, `enomem`, `connection` (the peer's, e.g. ECONNABORTED) or
    /// `other`.
    pub reason: &'static str,
}

/// Connection-level metrics of the public port, recorded by the listener.
#[derive(Debug, Clone, Default)]
pub struct ListenerMetrics {
    /// `augur_server_connections_open`: connections accepted and not yet closed.
    pub open: Gauge,
    /// `augur_server_connections_accepted_total`.
    pub accepted: Counter,
    /// `augur_server_connections_closed_total{reason}`: connections augur closed because of a
    /// limit (not the ones that ended normally).
    pub closed: Family<ReasonLabels, Counter>,
    /// `augur_server_accept_errors_total{reason}`.
    pub accept_errors: Family<ReasonLabels, Counter>,
    /// `augur_server_accept_starved`: 1 while accepting backs off for want of file descriptors
    /// or kernel memory (readiness reports not ready meanwhile).
    pub starved: Gauge,
}

/// Every `reason` of `augur_server_connections_closed_total`.
pub const CLOSED_REASONS: [&str; 3] = ["max_connections", "handshake_timeout", "max_connection_age_grace"];

/// Every `reason` of `augur_server_accept_errors_total`.
pub const ACCEPT_ERROR_REASONS: [&str; 6] = ["emfile", "enfile", "enobufs", "enomem", "connection", "other"];

impl ModuleMetrics for ListenerMetrics {
    fn register(&self, r: &mut Registry) {
        // Every series at 0 from the first scrape: a rate() over a series that appears with its
        // first error misses that error, and an alert cannot tell "absent" from "fine".
        for reason in CLOSED_REASONS {
            let _ = self.closed.get_or_create(&ReasonLabels { reason });
        }
        for reason in ACCEPT_ERROR_REASONS {
            let _ = self.accept_errors.get_or_create(&ReasonLabels { reason });
        }
        let r = r.sub_registry_with_prefix("server");
        r.register("connections_open", "Connections open on the public port", self.open.clone());
        r.register("connections_accepted", "Connections accepted on the public port", self.accepted.clone());
        r.register("connections_closed", "Connections augur closed for a limit, by reason", self.closed.clone());
        r.register("accept_errors", "Failed accepts on the public port, by reason", self.accept_errors.clone());
        r.register(
            "accept_starved",
            "1 while accepting backs off for want of file descriptors or kernel memory",
            self.starved.clone(),
        );
    }
}
