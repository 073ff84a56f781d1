//! The Prediction service: an adapter that converts, calls [`Predictor`], converts back, and lets
//! `?` map errors to status codes through [`crate::error`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

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

#[tonic::async_trait]
impl Prediction for PredictionService {
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
        let request = convert::features_request(request.into_inner(), &self.limits).map_err(Error::from)?;
        let (spec, assembled) = self.predictor.features(&request).await?;
        Ok(Response::new(convert::features_response(spec, assembled)))
    }
}
