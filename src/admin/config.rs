//! `[admin]`: the operator's listeners, owned by the module that serves them.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::validate::{Invalid, bearer_token, invalid};

/// `[admin]`: the operator's ports, apart from the public gRPC one: the HTTP port so probes and
/// scrapes are never counted, shed or authenticated like Prediction calls, and the admin gRPC
/// port so `ModelAdmin` (reload, canary, stats reset) is not reachable by every caller that can
/// reach Prediction.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Off: no admin HTTP port (metrics stay readable through `ModelAdmin.GetStats`). The admin
    /// gRPC listener is always on: it is the only way to reload or set a canary by hand.
    #[serde(default = "default_admin_enabled")]
    pub enabled: bool,
    /// HTTP address to bind; loopback by default because `/metrics` is unauthenticated. Port 0
    /// picks a free port (tests).
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// gRPC address serving `augur.v1.ModelAdmin`, health and reflection; loopback by default
    /// because ModelAdmin changes what is served. Port 0 picks a free port (tests).
    #[serde(default = "default_admin_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// When set, every admin gRPC call but health checks must carry
    /// `authorization: Bearer <token>` (for an admin port opened beyond loopback).
    #[serde(default)]
    pub auth_token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: default_admin_enabled(),
            listen: default_admin_listen(),
            grpc_listen: default_admin_grpc_listen(),
            auth_token: None,
        }
    }
}

const fn default_admin_enabled() -> bool {
    true
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

fn default_admin_grpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 50052))
}

impl AdminConfig {
    /// Checks the section; `server_listen` is the public port, which ModelAdmin must not share.
    pub fn validate(&self, server_listen: SocketAddr) -> Result<(), Invalid> {
        bearer_token("admin.auth_token", self.auth_token.as_deref())?;
        let clash = |other: SocketAddr| {
            self.grpc_listen.port() != 0 && self.grpc_listen.port() == other.port() && {
                let (x, y) = (self.grpc_listen.ip(), other.ip());
                x == y || x.is_unspecified() || y.is_unspecified()
            }
        };
        if clash(server_listen) {
            return Err(invalid(
                "admin.grpc_listen",
                &format!("`{}` is also server.listen: ModelAdmin needs its own port", self.grpc_listen),
            ));
        }
        if self.enabled && clash(self.listen) {
            return Err(invalid("admin.grpc_listen", &format!("`{}` is also admin.listen (HTTP)", self.grpc_listen)));
        }
        Ok(())
    }
}
