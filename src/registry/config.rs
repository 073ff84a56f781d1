//! `[registry]`: where this instance announces itself (etcd), owned by the module that registers.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::validate::{Invalid, in_range, invalid};

/// `[registry]`: the service registry this instance registers in after it turns SERVING and
/// leaves at shutdown step (1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegistryConfig {
    /// Not registered anywhere (callers find augur by a fixed address or a Kubernetes Service).
    #[default]
    None,
    /// etcd, in the format gRPC-Go's etcd resolver reads (`src/registry/etcd.rs`).
    Etcd(EtcdConfig),
}

/// `registry.kind = "etcd"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Service names: one key `<service>/<advertise>` each. None may be a prefix of another: the
    /// Go resolver watches `<service>` as a prefix without a trailing slash, so `augur` would
    /// also resolve every `augur-canary` instance.
    #[serde(default = "default_registry_services")]
    pub services: Vec<String>,
    /// `host:port` callers reach this instance at; default: the bound address. Required when
    /// listening on 0.0.0.0/[::] or port 0 (pods sit behind NAT; the bound address means
    /// nothing to callers then).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Lease TTL in seconds: a crashed instance disappears from callers within it. Kept alive
    /// every third of it.
    #[serde(default = "default_lease_ttl_s")]
    pub lease_ttl_s: u64,
    /// The endpoint's `Metadata`, stored as a JSON string (version, zone, weight, ...) — a
    /// string because an object makes grpc-go panic (etcd-io/etcd#19700).
    #[serde(default)]
    pub metadata: Option<String>,
    /// Start-up waits this long for etcd to answer before failing, in ms; also bounds each etcd
    /// call of a (re-)registration.
    #[serde(default = "default_registry_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Bound on deregistration at shutdown, in ms: a dead etcd cannot hold up the drain (the
    /// lease then expires within `lease_ttl_s`).
    #[serde(default = "default_deregister_timeout_ms")]
    pub deregister_timeout_ms: u64,
}

fn default_registry_services() -> Vec<String> {
    vec!["augur".to_owned()]
}

const fn default_lease_ttl_s() -> u64 {
    10
}

const fn default_registry_connect_timeout_ms() -> u64 {
    5_000
}

const fn default_deregister_timeout_ms() -> u64 {
    2_000
}

impl EtcdConfig {
    /// Checks the endpoints, service names, advertised address and timeouts.
    pub fn validate(&self, listen: SocketAddr) -> Result<(), Invalid> {
        if self.endpoints.is_empty() {
            return Err(invalid("registry.endpoints", "must list at least one etcd URL"));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if endpoint.parse::<http::Uri>().is_err() || endpoint.is_empty() {
                return Err(invalid(&format!("registry.endpoints[{i}]"), &format!("`{endpoint}` is not a URL")));
            }
        }
        if self.services.is_empty() {
            return Err(invalid("registry.services", "must list at least one service name"));
        }
        for (i, service) in self.services.iter().enumerate() {
            if service.is_empty() {
                return Err(invalid(&format!("registry.services[{i}]"), "must not be empty"));
            }
            if let Some(other) =
                self.services.iter().enumerate().find(|&(j, o)| j != i && o.starts_with(service.as_str()))
            {
                return Err(invalid(
                    &format!("registry.services[{i}]"),
                    &format!(
                        "`{service}` is a prefix of `{}`: the Go resolver watches the name as a prefix, so its \
                         clients would also reach every `{}` instance",
                        other.1, other.1
                    ),
                ));
            }
        }
        match &self.advertise {
            Some(advertise) => {
                let port =
                    advertise.rsplit_once(':').filter(|(host, _)| !host.is_empty()).map(|(_, p)| p.parse::<u16>());
                if !matches!(port, Some(Ok(p)) if p != 0) {
                    return Err(invalid(
                        "registry.advertise",
                        &format!("`{advertise}` must be host:port with a non-zero port"),
                    ));
                }
            }
            None if listen.ip().is_unspecified() || listen.port() == 0 => {
                return Err(invalid(
                    "registry.advertise",
                    &format!(
                        "is required when server.listen (`{listen}`) is a wildcard address or port 0: set the \
                         host:port callers reach this instance at"
                    ),
                ));
            }
            None => {}
        }
        in_range("registry.lease_ttl_s", self.lease_ttl_s as usize, 2, 86_400)?;
        in_range("registry.connect_timeout_ms", self.connect_timeout_ms as usize, 1, 600_000)?;
        in_range("registry.deregister_timeout_ms", self.deregister_timeout_ms as usize, 1, 600_000)?;
        Ok(())
    }
}

impl RegistryConfig {
    /// Checks the registry; `listen` is the public port, advertised when `advertise` is unset.
    pub fn validate(&self, listen: SocketAddr) -> Result<(), Invalid> {
        match self {
            RegistryConfig::Etcd(_) if !cfg!(feature = "etcd") => {
                Err(invalid("registry.kind", "`etcd` needs the `etcd` feature, which this build of augur lacks"))
            }
            RegistryConfig::Etcd(etcd) => etcd.validate(listen),
            RegistryConfig::None => Ok(()),
        }
    }
}
