//! The Prediction service: an adapter that converts, calls [`Predictor`], converts back, and lets
//! `?` map errors to status codes through [`crate::error`].

use std::sync::Arc;

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
}

impl PredictionService {
    /// Wraps a predictor with the request limits.
    pub fn new(predictor: Arc<Predictor>, limits: ServerConfig) -> Self {
        PredictionService {
            predictor,
            limits: Arc::new(limits),
        }
    }
}

#[tonic::async_trait]
impl Prediction for PredictionService {
    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        let deadline = convert::deadline(request.metadata());
        let request =
            convert::predict_request(request.into_inner(), &self.limits).map_err(Error::from)?;
        let prediction = self.predictor.predict(request, deadline).await?;
        Ok(Response::new(convert::predict_response(prediction)))
    }

    async fn get_features(
        &self,
        request: Request<GetFeaturesRequest>,
    ) -> Result<Response<GetFeaturesResponse>, Status> {
        let request =
            convert::features_request(request.into_inner(), &self.limits).map_err(Error::from)?;
        let (spec, assembled) = self.predictor.features(&request).await?;
        Ok(Response::new(convert::features_response(spec, assembled)))
    }
}
