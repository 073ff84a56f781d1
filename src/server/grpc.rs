//! The Prediction service: an adapter that converts, calls [`Predictor`], converts back, and lets
//! `?` map errors to status codes through [`crate::error`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::config::ServerConfig;
use crate::error::Error;
use crate::predict::Predictor;
use crate::proto::prediction_server::Prediction;
use crate::proto::{GetFeaturesRequest, GetFeaturesResponse, PredictRequest, PredictResponse};

/// gRPC handler for `augur.v1.Prediction`.
#[derive(Debug, Clone)]
pub struct PredictionService {
    predictor: Arc<Predictor>,
    limits: Arc<ServerConfig>,
    margin: Duration,
}

impl PredictionService {
    /// Wraps a predictor with the request limits.
    pub fn new(predictor: Arc<Predictor>, limits: ServerConfig) -> Self {
        let margin = Duration::from_micros(limits.deadline_margin_us);
        PredictionService { predictor, limits: Arc::new(limits), margin }
    }
}

/// Requests of one StreamFeatures call assembled concurrently (responses stay in order).
const STREAM_IN_FLIGHT: usize = 16;

impl PredictionService {
    async fn features(&self, request: GetFeaturesRequest) -> Result<GetFeaturesResponse, Status> {
        let request = convert::features_request(request, &self.limits).map_err(Error::from)?;
        let (spec, assembled) = self.predictor.features(&request).await?;
        Ok(convert::features_response(spec, assembled))
    }
}

#[tonic::async_trait]
impl Prediction for PredictionService {
    type StreamFeaturesStream = ReceiverStream<Result<GetFeaturesResponse, Status>>;

    async fn stream_features(
        &self,
        request: Request<Streaming<GetFeaturesRequest>>,
    ) -> Result<Response<Self::StreamFeaturesStream>, Status> {
        let mut inbound = request.into_inner();
        // Bounded on both sides: at most STREAM_IN_FLIGHT requests are being assembled and at
        // most as many responses wait for a slow reader, so a fast writer cannot grow memory.
        let (pending_tx, mut pending_rx) = mpsc::channel::<JoinHandle<GetFeaturesResponse>>(STREAM_IN_FLIGHT);
        let (out_tx, out_rx) = mpsc::channel(STREAM_IN_FLIGHT);
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                let request = match inbound.message().await {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(error = %status, "feature stream closed by the client");
                        break;
                    }
                };
                let service = service.clone();
                let job = tokio::spawn(async move {
                    service.features(request).await.unwrap_or_else(|status| GetFeaturesResponse {
                        error: format!("{:?}: {}", status.code(), status.message()),
                        ..Default::default()
                    })
                });
                if pending_tx.send(job).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(job) = pending_rx.recv().await {
                let response = job.await.map_err(|e| Status::internal(format!("feature job failed: {e}")));
                if out_tx.send(response).await.is_err() {
                    break; // the client went away
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }

    async fn predict(&self, request: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        let arrived = Instant::now();
        let timeout = convert::timeout(request.metadata());
        let request = convert::predict_request(request.into_inner(), &self.limits).map_err(Error::from)?;
        let Some(timeout) = timeout else {
            let prediction = self.predictor.predict(request, None).await?;
            return Ok(Response::new(convert::predict_response(prediction)));
        };
        // Answer DEADLINE_EXCEEDED ourselves, a margin before tonic's own timer would cancel.
        let timeout_ms = timeout.as_secs_f64() * 1e3;
        let deadline = arrived + timeout.saturating_sub(self.margin);
        if deadline <= Instant::now() {
            return Err(Error::DeadlineExceeded { stage: "on arrival", timeout_ms }.into());
        }
        let work = self.predictor.predict(request, Some(deadline));
        let prediction = tokio::time::timeout_at(deadline.into(), work)
            .await
            .map_err(|_| Error::DeadlineExceeded { stage: "while processing", timeout_ms })??;
        Ok(Response::new(convert::predict_response(prediction)))
    }

    async fn get_features(
        &self,
        request: Request<GetFeaturesRequest>,
    ) -> Result<Response<GetFeaturesResponse>, Status> {
        Ok(Response::new(self.features(request.into_inner()).await?))
    }
}
