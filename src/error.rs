//! The crate's request-path error and the ONLY conversion into `tonic::Status`.
//!
//! The match below has no `_` arm: a new variant forces a decision about its status code.

use tonic::{Code, Status};

use crate::assemble::FallbackReason;
use crate::batch::BatchError;
use crate::fetch::FetchError;
use crate::repository::CanaryError;
use crate::repository::routing::RouteError;
use crate::sample_log::join::JoinError;

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

/// Everything that can fail an RPC: Predict, GetFeatures, the admin calls and the layer stack.
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
    #[error("deadline exceeded {stage} ({from} {timeout_ms:.1} ms)")]
    DeadlineExceeded {
        /// Where: "on arrival" or "while processing".
        stage: &'static str,
        /// Where the deadline came from: `grpc-timeout` or `server.default_deadline_ms`.
        from: &'static str,
        /// The deadline the call had (clamped to `server.max_deadline_ms`).
        timeout_ms: f64,
    },
    /// The global concurrency limit is reached; the call was shed, not queued.
    #[error(
        "server is at its limit of {limit} concurrent Prediction calls (server.concurrency_limit); retry with backoff"
    )]
    Overloaded {
        /// The configured limit.
        limit: usize,
    },
    /// A request message over `server.max_message_bytes`, refused from its length prefix before
    /// its body was read.
    #[error("request message of {bytes} bytes exceeds the limit of {limit} (server.max_message_bytes)")]
    TooLarge {
        /// What the length prefix declared.
        bytes: u64,
        /// The configured limit.
        limit: usize,
    },
    /// Request bodies being read and decoded already hold `server.max_buffered_request_bytes`.
    #[error(
        "server is reading its limit of {limit} bytes of requests (server.max_buffered_request_bytes); retry with backoff"
    )]
    ReadBudget {
        /// The configured limit.
        limit: usize,
    },
    /// The caller's connection holds its share of the concurrency limit while few slots are free.
    #[error(
        "this connection holds {held} Prediction calls while fewer than {share} of server.concurrency_limit are free \
         (server.connection_fair_share); spread calls over connections or retry with backoff"
    )]
    ConnectionShare {
        /// Calls the connection holds.
        held: usize,
        /// The configured share.
        share: usize,
    },
    /// `server.max_watch_streams` health Watch streams are open already.
    #[error(
        "server has its limit of {limit} health Watch streams open (server.max_watch_streams); poll Check or retry later"
    )]
    WatchLimit {
        /// The configured limit.
        limit: usize,
    },
    /// The caller reset or broke its stream while sending the request: its fault, not augur's.
    #[error("request body: {0}")]
    ClientGone(String),
    /// ModelAdmin named a repository that is not served.
    #[error("model: no repository named `{model}` (served: {served})")]
    UnknownModel {
        /// What the caller asked for.
        model: String,
        /// What is served.
        served: String,
    },
    /// A run-time canary change was refused.
    #[error(transparent)]
    Canary(#[from] CanaryError),
    /// The listener's token (`server.auth_token`, `admin.auth_token`) is set and the call did not
    /// present it.
    #[error("authorization: expected `Bearer <token>` (server.auth_token, or admin.auth_token on the admin port)")]
    Unauthenticated,
    /// A spawned task of the request failed (panicked or was cancelled).
    #[error("request task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// ReportEvents while sample logging is off.
    #[error("samples: sample logging is off (samples.enabled = false); no events are joined")]
    SamplesOff,
    /// The join store failed: nothing of the call was acknowledged.
    #[error("samples: {0}")]
    Join(#[from] JoinError),
}

impl Error {
    /// The status code the caller gets (one exhaustive match: a new variant forces a decision).
    pub fn code(&self) -> Code {
        match self {
            Error::Request(_) => Code::InvalidArgument,
            Error::UnknownScene { .. } => Code::NotFound,
            Error::Fetch(FetchError::Unavailable { .. } | FetchError::Timeout { .. }) => Code::Unavailable,
            Error::Fetch(FetchError::UnknownTable(_)) => Code::Internal,
            Error::Batch(BatchError::QueueFull { .. }) => Code::ResourceExhausted,
            Error::Batch(BatchError::Expired) => Code::DeadlineExceeded,
            Error::Batch(BatchError::Closed) => Code::Unavailable,
            Error::Batch(BatchError::Model(_) | BatchError::Panicked { .. }) => Code::Internal,
            Error::Route(RouteError::NotLoaded { .. }) => Code::NotFound,
            Error::Route(RouteError::NoVersion { .. } | RouteError::Releasing { .. }) => Code::Unavailable,
            Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Error::RequiredFeature { .. } => Code::FailedPrecondition,
            Error::Overloaded { .. }
            | Error::TooLarge { .. }
            | Error::ReadBudget { .. }
            | Error::ConnectionShare { .. }
            | Error::WatchLimit { .. } => Code::ResourceExhausted,
            Error::ClientGone(_) => Code::Cancelled,
            Error::UnknownModel { .. } => Code::NotFound,
            Error::Canary(CanaryError::Weight { .. } | CanaryError::Action { .. }) => Code::InvalidArgument,
            Error::Canary(CanaryError::NotLoaded { .. }) => Code::FailedPrecondition,
            Error::Canary(CanaryError::NotPresent { .. }) => Code::NotFound,
            Error::Canary(CanaryError::NoPolicy { .. }) => Code::FailedPrecondition,
            Error::Canary(CanaryError::Record { .. }) => Code::Unavailable,
            Error::Unauthenticated => Code::Unauthenticated,
            Error::Task(_) => Code::Internal,
            Error::SamplesOff => Code::FailedPrecondition,
            Error::Join(JoinError::Unavailable(_)) => Code::Unavailable,
            Error::Join(JoinError::Full { .. }) => Code::ResourceExhausted,
            Error::Join(JoinError::Corrupt(_)) => Code::Internal,
            Error::Join(JoinError::Reused { .. }) => Code::AlreadyExists,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let code = error.code();
        if code == Code::Internal {
            // The whole chain: the status message carries only the top line.
            let mut chain = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(e) = source {
                chain.push_str(": ");
                chain.push_str(&e.to_string());
                source = e.source();
            }
            tracing::error!(error = %chain, "request failed");
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
