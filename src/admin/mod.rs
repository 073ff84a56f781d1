//! The operator's surface, in one place beside the data path: the `ModelAdmin` gRPC service
//! ([`grpc`]: list versions, reload, canary share, stats) on its own listener ([`serve_admin`],
//! `admin.grpc_listen`, loopback by default, with its own optional bearer token), and the admin
//! HTTP port ([`http`]: `/metrics`, `/healthz`, `/readyz`) with the HTML [`status`] page. Both
//! read the same metrics registry and the same model listing, so what an operator sees on the
//! page, in `augur models` and in Prometheus cannot disagree.

pub mod config;
pub mod grpc;
pub mod http;
pub mod status;

use std::future::Future;

use tokio::net::TcpListener;

use crate::proto::model_admin_server::ModelAdminServer;
use crate::server;
use crate::server::config::ServerConfig;

/// The admin service's name (health, reflection).
pub const MODEL_ADMIN: &str = <ModelAdminServer<grpc::AdminService> as tonic::server::NamedService>::NAME;

/// Serves the admin port (`ModelAdmin`, health, reflection) on `listener` until `stop` resolves,
/// then finishes the open connections. The same layer stack as the public port (admission
/// only counts Prediction calls, so it never refuses one here), with `auth_token` as its token.
pub async fn serve_admin(
    listener: TcpListener,
    config: &ServerConfig,
    auth_token: Option<&str>,
    shared: server::ServiceState,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), server::ServeError> {
    let (reflection_v1, reflection_v1alpha) = server::reflection(MODEL_ADMIN)?;
    let admin = grpc::AdminService::new(shared);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "admin gRPC listening: ModelAdmin, health, reflection");
    }
    let incoming =
        server::listener::Incoming::new(listener, config, Default::default(), Default::default()).plaintext();
    server::builder(config)
        .layer(server::layers::stack(config, auth_token, &admin.metrics().of::<server::metrics::RpcMetrics>()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ModelAdminServer::new(admin))
        // The public port's connection limits and accept back-off; its counts are not exported
        // (unregistered handles), the back-off and its log are what matter here.
        .serve_with_incoming_shutdown(incoming, stop)
        .await?;
    tracing::info!("admin gRPC server stopped accepting and its connections closed");
    Ok(())
}
