//! The crate's request-path error and the ONLY conversion into `tonic::Status`.
//!
//! The match below has no `_` arm: a new variant forces a decision about its status code.

use tonic::{Code, Status};

use crate::assemble::FallbackReason;
use crate::batch::BatchError;
use crate::fetch::FetchError;
use crate::model::RouteError;

/// A request field that is invalid, named and explained (INVALID_ARGUMENT).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct RequestError {
    /// Path of the field, e.g. `candidates[3].features.price`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub problem: String,
}

impl RequestError {
    /// Builds one.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        RequestError { field: field.into(), problem: problem.into() }
    }
}

/// Everything that can fail a Predict or GetFeatures call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something invalid.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// No such scene.
    #[error("scene: unknown scene `{scene}` (served: {served})")]
    UnknownScene {
        /// What the caller asked for.
        scene: String,
        /// What is served.
        served: String,
    },
    /// The store failed as a whole.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A feature the spec marks `required` had to fall back.
    #[error(
        "feature `{feature}` is required by scene `{scene}` but fell back ({reason:?}){}",
        candidates_note(candidates)
    )]
    RequiredFeature {
        /// Scene.
        scene: String,
        /// Feature name.
        feature: String,
        /// Why it fell back.
        reason: FallbackReason,
        /// Candidates affected (empty = all).
        candidates: Vec<u32>,
    },
    /// No model version for the request.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// Inference queue or model failed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The caller's deadline (minus `server.deadline_margin_us`) passed.
    #[error("deadline exceeded {stage} (grpc-timeout {timeout_ms:.1} ms)")]
    DeadlineExceeded {
        /// Where: "on arrival" or "while processing".
        stage: &'static str,
        /// The caller's timeout.
        timeout_ms: f64,
    },
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = match &error {
            Error::Request(_) => Code::InvalidArgument,
            Error::UnknownScene { .. } => Code::NotFound,
            Error::Fetch(FetchError::Unavailable(_)) => Code::Unavailable,
            Error::Fetch(FetchError::UnknownTable(_)) => Code::Internal,
            Error::Batch(BatchError::QueueFull { .. }) => Code::ResourceExhausted,
            Error::Batch(BatchError::Expired) => Code::DeadlineExceeded,
            Error::Batch(BatchError::Closed) => Code::Unavailable,
            Error::Batch(BatchError::Model(_)) => Code::Internal,
            Error::Route(RouteError::NotLoaded { .. }) => Code::NotFound,
            Error::Route(RouteError::NoVersion { .. }) => Code::Unavailable,
            Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Error::RequiredFeature { .. } => Code::FailedPrecondition,
        };
        if code == Code::Internal {
            tracing::error!(error = %error, "request failed");
        }
        Status::new(code, error.to_string())
    }
}

fn candidates_note(candidates: &[u32]) -> String {
    match candidates {
        [] => String::new(),
        [one] => format!(" for candidate {one}"),
        many => format!(" for {} candidates, first {}", many.len(), many[0]),
    }
}
