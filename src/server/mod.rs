//! Step 1 of the path: the gRPC entry. [`run`] serves the Prediction service, grpc.health.v1 and
//! reflection on a listener until the injected `shutdown` future resolves (main passes the
//! signal future, tests a oneshot), then lets in-flight RPCs finish.

pub mod admin;
pub mod convert;
pub mod grpc;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::config::ServerConfig;
use crate::predict::Predictor;
use crate::proto::model_admin_server::ModelAdminServer;
use crate::proto::prediction_server::PredictionServer;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// tonic's transport failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection descriptor set did not decode (a build problem).
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves until `shutdown` resolves; health reports NOT_SERVING from that moment on.
pub async fn run(
    listener: TcpListener,
    predictor: Arc<Predictor>,
    limits: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let max_message = limits.max_message_bytes;
    let concurrency = limits.concurrency_limit;
    let admin = admin::AdminService::new(Arc::clone(&predictor));
    let service = grpc::PredictionService::new(predictor, limits);
    // The whole server ("") and the Prediction service report SERVING only once the scenes are
    // loaded, which is before `run` is called.
    health.set_serving::<PredictionServer<grpc::PredictionService>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "serving");
    let signal = async {
        shutdown.await;
        tracing::info!("shutdown: health NOT_SERVING, draining in-flight requests");
        health.set_not_serving::<PredictionServer<grpc::PredictionService>>().await;
        health.set_service_status("", ServingStatus::NotServing).await;
    };
    Server::builder()
        .concurrency_limit_per_connection(concurrency)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ModelAdminServer::new(admin))
        .add_service(
            PredictionServer::new(service)
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
        )
        // Without TCP_NODELAY, Nagle + delayed ACKs add ~40 ms to small responses.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal)
        .await?;
    tracing::info!("server stopped");
    Ok(())
}
