//! Step 1 of the path: the gRPC entry. [`serve`] runs the public port behind the one layer
//! stack ([`layers`]) with the HTTP/2 limits set explicitly, on the connections [`listener`]
//! accepts (cap, handshake timeout, keepalive, accept back-off), until `stop` resolves; then
//! tonic stops accepting and lets the connections finish. It serves Prediction, grpc.health.v1 and
//! reflection advertising exactly those two (a `ModelAdmin` call there is UNIMPLEMENTED). The
//! admin port reuses [`builder`], [`reflection`] and the stack from [`crate::admin`].
//!
//! The ordered drain around them (health, drain delay, bounds) is [`crate::app`]'s job.

pub mod config;
pub mod convert;
pub mod grpc;
pub mod layers;
pub mod listener;
pub mod metrics;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::predict::Predictor;
use crate::proto::prediction_server::PredictionServer;
use crate::server::config::ServerConfig;
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
    /// A `server.tls` file could not be read.
    #[error("server.tls: {path}: {source}")]
    TlsFile {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The drain did not finish within `server.grace_ms` or a second signal cut it.
    #[error("shutdown cut short: {0}")]
    Cut(String),
}

/// What the services share.
#[derive(Debug, Clone)]
pub struct ServiceState {
    /// The scenes and the store.
    pub predictor: Arc<Predictor>,
    /// The process's metrics (GetStats reads them).
    pub metrics: Metrics,
    /// Cancelled when shutdown starts: long-lived streams end on it.
    pub shutdown: CancellationToken,
}

/// The public service's name (health, reflection).
pub const PREDICTION: &str = <PredictionServer<grpc::PredictionService> as tonic::server::NamedService>::NAME;
/// grpc.health.v1's name: advertised by both listeners' reflection.
const HEALTH: &str = "grpc.health.v1.Health";

/// Serves the public port on `listener` until `stop` resolves, then finishes the open connections.
/// `starved` is raised while accepting backs off for want of file descriptors (readiness).
pub async fn serve(
    listener: TcpListener,
    config: &ServerConfig,
    shared: ServiceState,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    starved: listener::Starved,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (reflection_v1, reflection_v1alpha) = reflection(PREDICTION)?;
    let max_message = config.max_message_bytes;
    let rpc = shared.metrics.of::<metrics::RpcMetrics>();
    let accepted = shared.metrics.of::<metrics::ListenerMetrics>();
    let prediction = grpc::PredictionService::new(shared, config.clone());
    let mut server = builder(config);
    if let Some(tls) = &config.tls {
        server = server.tls_config(tls_config(tls)?)?;
    }
    let addr = listener.local_addr().map_err(ServeError::Listener)?;
    tracing::info!(%addr, tls = config.tls.is_some(), max_connections = config.max_connections, "serving");
    let incoming = listener::Incoming::new(listener, config, accepted, starved);
    server
        .layer(layers::stack(config, config.auth_token.as_deref(), &rpc))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            PredictionServer::new(prediction)
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
        )
        .serve_with_incoming_shutdown(incoming, stop)
        .await?;
    tracing::info!("server stopped accepting and its connections closed");
    Ok(())
}

/// The public port's TLS: the identity, and the client CA when clients must authenticate (mTLS).
fn tls_config(tls: &crate::server::config::TlsConfig) -> Result<ServerTlsConfig, ServeError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServeError::TlsFile { path: path.display().to_string(), source })
    };
    let identity = Identity::from_pem(read(&tls.cert_path)?, read(&tls.key_path)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca_path {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// A tonic server with the configured HTTP/2 limits. `max_connection_age_grace_ms` is enforced by
/// [`listener::Conn`], not by tonic: tonic 0.14's `max_connection_age_grace` makes the age timer
/// cut the connection at age + grace *instead of* sending GOAWAY at age.
pub(crate) fn builder(config: &ServerConfig) -> Server {
    let h2 = &config.http2;
    let ms = Duration::from_millis;
    let server = Server::builder()
        .max_concurrent_streams(h2.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(h2.max_pending_accept_reset_streams))
        .http2_max_local_error_reset_streams(Some(h2.max_local_error_reset_streams))
        .http2_max_header_list_size(h2.max_header_list_size)
        .http2_keepalive_interval((h2.keepalive_interval_ms > 0).then(|| ms(h2.keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(ms(h2.keepalive_timeout_ms)));
    if h2.max_connection_age_ms > 0 { server.max_connection_age(ms(h2.max_connection_age_ms)) } else { server }
}

/// Reflection in both protocol versions (grpcurl, Python's grpcio-reflection and most GUI
/// clients still speak only v1alpha), advertising `service`, health and reflection itself: only
/// what the listener serves.
#[allow(clippy::type_complexity)]
pub(crate) fn reflection(
    service: &str,
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServeError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(service)
            .with_service_name(HEALTH)
    };
    let v1 = builder().with_service_name("grpc.reflection.v1.ServerReflection").build_v1()?;
    let v1alpha = builder().with_service_name("grpc.reflection.v1alpha.ServerReflection").build_v1alpha()?;
    Ok((v1, v1alpha))
}
