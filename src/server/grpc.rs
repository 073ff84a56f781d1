//! The Prediction service: an adapter that converts, calls [`Predictor`], converts back, and lets
//! `?` map errors to status codes through [`crate::error`]. Deadlines were settled by the layer
//! stack ([`super::layers::CallDeadline`]); this file only reads them.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::layers::CallDeadline;
use crate::error::Error;
use crate::predict::Predictor;
use crate::proto::prediction_server::Prediction;
use crate::proto::{
    GetFeaturesRequest, GetFeaturesResponse, PredictRequest, PredictResponse, ReportEventsRequest, ReportEventsResponse,
};
use crate::server::config::ServerConfig;

/// gRPC handler for `augur.v1.Prediction`.
#[derive(Debug, Clone)]
pub struct PredictionService {
    predictor: Arc<Predictor>,
    limits: Arc<ServerConfig>,
    shutdown: CancellationToken,
}

impl PredictionService {
    /// Wraps the shared predictor with the request limits.
    pub fn new(shared: super::ServiceState, limits: ServerConfig) -> Self {
        PredictionService { predictor: shared.predictor, limits: Arc::new(limits), shutdown: shared.shutdown }
    }
}

/// Requests of one StreamFeatures call assembled concurrently (responses stay in order).
const STREAM_IN_FLIGHT: usize = 16;

impl PredictionService {
    async fn features(&self, request: GetFeaturesRequest) -> Result<GetFeaturesResponse, Error> {
        let request = convert::features_request(request, &self.limits)?;
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
        let (pending_tx, mut pending_rx) =
            mpsc::channel::<JoinHandle<Result<GetFeaturesResponse, Error>>>(STREAM_IN_FLIGHT);
        let (out_tx, out_rx) = mpsc::channel(STREAM_IN_FLIGHT);
        let service = self.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                // Shutdown ends the stream: requests already read are still answered, so a
                // backfill job sees a clean end and resumes from its last response.
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = inbound.message() => message,
                };
                let request = match message {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(error = %status, "feature stream closed by the client");
                        break;
                    }
                };
                let service = service.clone();
                let job = tokio::spawn(async move { service.features(request).await });
                if pending_tx.send(job).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(job) = pending_rx.recv().await {
                // A failed request is reported in its response's `error` field, so one bad row
                // does not end a backfill stream; a failed task ends it with a status.
                let response = match job.await {
                    Ok(Ok(response)) => Ok(response),
                    Ok(Err(error)) => {
                        let status = Status::from(error);
                        Ok(GetFeaturesResponse {
                            error: format!("{:?}: {}", status.code(), status.message()),
                            ..Default::default()
                        })
                    }
                    Err(e) => Err(Status::from(Error::Task(e))),
                };
                if out_tx.send(response).await.is_err() {
                    break; // the client went away
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }

    async fn predict(&self, request: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        let deadline = request.extensions().get::<CallDeadline>().map(|d| d.at);
        let mut request = convert::predict_request(request.into_inner(), &self.limits).map_err(Error::from)?;
        if request.request_id.is_empty() {
            request.request_id = uuid::Uuid::new_v4().to_string();
        }
        // Kept for the log lines below: the request moves into the predictor.
        let request_id = request.request_id.clone();
        let candidates = request.candidates.len();
        match self.predictor.predict(request, deadline).await {
            Ok(prediction) => {
                tracing::debug!(
                    request_id,
                    candidates,
                    model = %prediction.model_name,
                    version = %prediction.model_version,
                    fallbacks = prediction.fallbacks.len(),
                    "predict"
                );
                Ok(Response::new(convert::predict_response(prediction)))
            }
            Err(error) => {
                // Server-side failures always carry the request id; a caller's mistakes only at debug.
                match error.code() {
                    tonic::Code::Internal | tonic::Code::Unavailable | tonic::Code::DataLoss => {
                        tracing::warn!(request_id, candidates, %error, "predict failed")
                    }
                    code => tracing::debug!(request_id, candidates, ?code, %error, "predict failed"),
                }
                Err(error.into())
            }
        }
    }

    async fn get_features(
        &self,
        request: Request<GetFeaturesRequest>,
    ) -> Result<Response<GetFeaturesResponse>, Status> {
        Ok(Response::new(self.features(request.into_inner()).await?))
    }

    async fn report_events(
        &self,
        request: Request<ReportEventsRequest>,
    ) -> Result<Response<ReportEventsResponse>, Status> {
        let events = request.into_inner().events;
        // The batch bound: one call cannot hold the join store for longer than a Predict of the
        // largest allowed candidate list would.
        if events.len() > self.limits.max_candidates {
            return Err(Error::from(crate::error::RequestError::new(
                "events",
                format!("{} events, more than server.max_candidates ({})", events.len(), self.limits.max_candidates),
            ))
            .into());
        }
        let results = self.predictor.report_events(events, self.limits.max_string_bytes).await?;
        Ok(Response::new(ReportEventsResponse { results }))
    }
}
