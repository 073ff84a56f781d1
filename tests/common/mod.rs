//! Test harness: start augur in-process on 127.0.0.1:0 and talk to it over real gRPC.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use augur::config::Config;
use augur::proto::prediction_client::PredictionClient;
use augur::proto::{Candidate, FeatureValue, PredictRequest, feature_value::Kind};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running server; `stop` shuts it down gracefully and re-raises its errors and panics.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), augur::server::ServeError>>,
}

impl TestServer {
    pub async fn client(&self) -> PredictionClient<Channel> {
        PredictionClient::connect(format!("http://{}", self.addr)).await.expect("connect")
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.expect("connect")
    }

    pub async fn stop(mut self) {
        let _ = self.shutdown.take().expect("stopped once").send(());
        self.handle.await.expect("server task panicked").expect("server failed");
    }
}

/// Repository root (tests run with it as the working directory, but be explicit).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The embedded defaults (demo catalogue, bundled model) on a free port, plus `extra` TOML.
pub fn demo_config(extra: &str) -> Config {
    let mut config = Config::from_toml(extra).expect("test config");
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config
}

pub async fn start(config: Config) -> TestServer {
    let predictor = augur::app::build(&config).await.expect("build app");
    serve(predictor, config.server).await
}

pub fn int(i: i64) -> FeatureValue {
    FeatureValue { kind: Some(Kind::IntValue(i)) }
}

pub fn string(s: &str) -> FeatureValue {
    FeatureValue { kind: Some(Kind::StringValue(s.to_owned())) }
}

/// A ranking request for `user` and `items` with a typical context.
pub fn ranking_request(user: &str, items: &[&str]) -> PredictRequest {
    PredictRequest {
        request_id: String::new(),
        scene: "ranking".into(),
        user_id: user.into(),
        context: [("hour".to_string(), int(20)), ("device".to_string(), string("ios"))].into(),
        candidates: items.iter().map(|i| Candidate { item_id: (*i).into(), features: Default::default() }).collect(),
        model_version: String::new(),
    }
}

/// The Python interpreter of the project venv (`scripts/setup.sh`).
pub fn venv_python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run scripts/setup.sh", python.display());
    python
}
pub mod redis_server;

/// Serves an already-built predictor (tests that inject their own store).
pub async fn start_predictor(predictor: std::sync::Arc<augur::predict::Predictor>) -> TestServer {
    serve(predictor, demo_config("").server).await
}

async fn serve(
    predictor: std::sync::Arc<augur::predict::Predictor>,
    limits: augur::config::ServerConfig,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind(limits.listen).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(augur::server::run(listener, predictor, limits, async {
        let _ = rx.await;
    }));
    TestServer { addr, shutdown: Some(tx), handle }
}

/// The GetFeatures request for exactly what a Predict request would score.
pub fn features_request(request: &PredictRequest) -> augur::proto::GetFeaturesRequest {
    augur::proto::GetFeaturesRequest {
        scene: request.scene.clone(),
        user_id: request.user_id.clone(),
        context: request.context.clone(),
        candidates: request.candidates.clone(),
    }
}

/// Scores GetFeatures' tensors with a plain ORT session: the reference Predict must equal.
pub fn direct_ort(
    session: &mut ort::session::Session,
    features: &augur::proto::GetFeaturesResponse,
    output: &str,
) -> Vec<f32> {
    use ort::session::SessionInputValue;
    use ort::value::TensorRef;
    let inputs: Vec<(&str, SessionInputValue<'_>)> = features
        .inputs
        .iter()
        .map(|t| {
            let shape = [t.shape[0] as usize, t.shape[1] as usize];
            let value: SessionInputValue<'_> = if t.float_values.is_empty() && !t.int64_values.is_empty() {
                TensorRef::from_array_view((shape, t.int64_values.as_slice())).unwrap().into()
            } else {
                TensorRef::from_array_view((shape, t.float_values.as_slice())).unwrap().into()
            };
            (t.name.as_str(), value)
        })
        .collect();
    let outputs = session.run(inputs).unwrap();
    outputs[output].try_extract_tensor::<f32>().unwrap().1.to_vec()
}

/// An ORT session on a repository model file, through augur's runtime discovery.
pub fn ort_session(model: &Path) -> ort::session::Session {
    let env = augur::model::runtime::environment(None).expect("ort runtime");
    ort::session::Session::builder(env).unwrap().commit_from_file(model).unwrap()
}
