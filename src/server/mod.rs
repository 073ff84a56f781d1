//! Step 1 of the path: the gRPC entry. [`serve`] runs the Prediction service, `ModelAdmin`,
//! grpc.health.v1 and reflection behind the one layer stack ([`layers`]) with the HTTP/2 limits
//! set explicitly, until `stop` resolves; then tonic stops accepting and lets the connections
//! finish. The ordered drain around it (health, drain delay, bounds) is [`crate::app`]'s job.

pub mod admin;
pub mod convert;
pub mod grpc;
pub mod layers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::config::ServerConfig;
use crate::predict::Predictor;
use crate::proto::model_admin_server::ModelAdminServer;
use crate::proto::prediction_server::PredictionServer;
use crate::telemetry::Metrics;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// tonic's transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection descriptor set did not decode (a build problem).
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server task itself failed.
    #[error("grpc server task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The listener's own address could not be read (needed to register it).
    #[error("listener address: {0}")]
    Listener(#[source] std::io::Error),
    /// The drain did not finish within `server.grace_ms` or a second signal cut it.
    #[error("shutdown cut short: {0}")]
    Cut(String),
}

/// What the services share.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The scenes and the store.
    pub predictor: Arc<Predictor>,
    /// The process's metrics (GetStats reads them).
    pub metrics: Metrics,
    /// Cancelled when shutdown starts: long-lived streams end on it.
    pub shutdown: CancellationToken,
}

/// Serves on `listener` until `stop` resolves, then finishes the open connections.
pub async fn serve(
    listener: TcpListener,
    config: &ServerConfig,
    shared: Shared,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    // Reflection advertises both protocol versions: grpcurl, Python's grpcio-reflection and
    // most GUI clients still speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let max_message = config.max_message_bytes;
    let admin = admin::AdminService::new(shared.clone());
    let prediction = grpc::PredictionService::new(shared, config.clone());
    let h2 = &config.http2;
    let ms = Duration::from_millis;
    let mut server = Server::builder()
        .max_concurrent_streams(h2.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(h2.max_pending_accept_reset_streams))
        .http2_max_header_list_size(h2.max_header_list_size)
        .http2_keepalive_interval((h2.keepalive_interval_ms > 0).then(|| ms(h2.keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(ms(h2.keepalive_timeout_ms)));
    if h2.max_connection_age_ms > 0 {
        server = server.max_connection_age(ms(h2.max_connection_age_ms));
    }
    tracing::info!(addr = ?listener.local_addr().ok(), "serving");
    server
        .layer(layers::stack(config, &admin.metrics().rpc))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ModelAdminServer::new(admin))
        .add_service(
            PredictionServer::new(prediction)
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
        )
        // Without TCP_NODELAY, Nagle + delayed ACKs add ~40 ms to small responses.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), stop)
        .await?;
    tracing::info!("server stopped accepting and its connections closed");
    Ok(())
}
