//! The discovering client's one retry, against a scripted `Prediction` server (the rolling-restart
//! test never sees UNAVAILABLE: augur's drain keeps it away). UNAVAILABLE is retried exactly
//! once; any other status comes back after one call, unchanged.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use augur::client::PredictionClient;
use augur::proto::prediction_server::{Prediction, PredictionServer};
use augur::proto::{GetFeaturesRequest, GetFeaturesResponse, PredictRequest, PredictResponse};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

const HANG: Duration = Duration::from_secs(30);

/// Answers Predict with the next scripted code (`Ok` = a response), counting calls.
#[derive(Default)]
struct Scripted {
    script: Mutex<VecDeque<Code>>,
    calls: AtomicUsize,
}

#[tonic::async_trait]
impl Prediction for Scripted {
    async fn predict(&self, _: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.script.lock().unwrap().pop_front().unwrap_or(Code::Ok) {
            Code::Ok => Ok(Response::new(PredictResponse { scores: vec![0.5], ..Default::default() })),
            code => Err(Status::new(code, "scripted")),
        }
    }

    async fn get_features(&self, _: Request<GetFeaturesRequest>) -> Result<Response<GetFeaturesResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn report_events(
        &self,
        _: Request<augur::proto::ReportEventsRequest>,
    ) -> Result<Response<augur::proto::ReportEventsResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    type StreamFeaturesStream = ReceiverStream<Result<GetFeaturesResponse, Status>>;

    async fn stream_features(
        &self,
        _: Request<tonic::Streaming<GetFeaturesRequest>>,
    ) -> Result<Response<Self::StreamFeaturesStream>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_once_and_nothing_else_is() {
    let scripted = std::sync::Arc::new(Scripted::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PredictionServer::from_arc(std::sync::Arc::clone(&scripted)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let client = PredictionClient::discover(&addr.to_string()).unwrap();
    client.wait_for_endpoints(HANG).await.unwrap();
    let call = |script: &[Code]| {
        *scripted.script.lock().unwrap() = script.iter().copied().collect();
        scripted.calls.store(0, Ordering::SeqCst);
        let client = client.clone();
        async move { tokio::time::timeout(HANG, client.predict(PredictRequest::default())).await.expect("hung") }
    };

    // Draining instance refuses once: the retry answers.
    let response = call(&[Code::Unavailable]).await.expect("retried");
    assert_eq!(response.scores, [0.5]);
    assert_eq!(scripted.calls.load(Ordering::SeqCst), 2);

    // Twice UNAVAILABLE: only one retry, and the status is kept.
    let e = call(&[Code::Unavailable, Code::Unavailable]).await.unwrap_err();
    assert_eq!(e.status().map(Status::code), Some(Code::Unavailable), "{e}");
    assert_eq!(scripted.calls.load(Ordering::SeqCst), 2);

    // Not UNAVAILABLE: no retry.
    for code in [Code::InvalidArgument, Code::ResourceExhausted, Code::DeadlineExceeded, Code::Internal] {
        let e = call(&[code]).await.unwrap_err();
        assert_eq!(e.status().map(Status::code), Some(code), "{e}");
        assert_eq!(scripted.calls.load(Ordering::SeqCst), 1, "{code:?} must not be retried");
    }
    server.abort();
}
