//! Service registration's metrics: `augur_registration_state`, `augur_registrations_total`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::ModuleMetrics;

/// `{registry}`: one service registry kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// `etcd`.
    pub registry: String,
}

/// `{registry, outcome}` of a registration attempt or loss.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistrationLabels {
    /// `etcd`.
    pub registry: String,
    /// `registered`, `lost` or `failed`.
    pub outcome: String,
}

/// Service-registry metrics.
#[derive(Debug, Clone, Default)]
pub struct RegistryMetrics {
    /// `augur_registration_state{registry}`: 1 while registered, 0 otherwise.
    pub state: Family<RegistryLabels, Gauge>,
    /// `augur_registrations_total{registry, outcome}`: registrations made, lost and failed.
    pub registrations: Family<RegistrationLabels, Counter>,
}

impl ModuleMetrics for RegistryMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("registration_state", "1 while registered in the service registry", self.state.clone());
        r.register(
            "registrations",
            "Service-registry registrations by outcome (registered, lost, failed)",
            self.registrations.clone(),
        );
    }
}
