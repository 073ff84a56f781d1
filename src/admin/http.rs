//! The operator's HTTP port, beside the data path: `/metrics` (Prometheus text of the one
//! [`Metrics`] registry), `/healthz` (the process runs), `/readyz` (the gRPC health is
//! SERVING) and the status page at `/` and `/status` ([`super::status`]). Plain HTTP/1.1 on
//! hyper, which tonic already brings: a handful of fixed routes need no router framework.
//!
//! It lives apart from the gRPC listener so scrapes and probes are never counted, shed, timed out
//! or authenticated like Prediction calls, and it stays up until the gRPC server has drained so
//! the drain itself can be watched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::status::{self, ModelSource};
use crate::server::listener::Starved;
use crate::telemetry::Metrics;

/// Content type of the Prometheus text format ([`Metrics::render_prometheus`]): what a scraper
/// gets unless it asks for OpenMetrics.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Content type of OpenMetrics ([`Metrics::render`]), for a scraper whose `Accept` names it
/// (Prometheus does by default).
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A client that sends no complete request head within this is dropped (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the instance should receive traffic: true from the moment the gRPC health turns
/// SERVING until shutdown step 1 turns it NOT_SERVING, except while the public listener backs off
/// for want of file descriptors ([`Starved`]). Cheap to clone (shared flags).
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    serving: Arc<AtomicBool>,
    listener: Starved,
}

// === impl Readiness ===

impl Readiness {
    /// Sets the serving flag.
    pub fn set(&self, ready: bool) {
        self.serving.store(ready, Ordering::Release);
    }

    /// Serving, and the public listener can accept.
    pub fn get(&self) -> bool {
        self.serving.load(Ordering::Acquire) && !self.listener.get()
    }

    /// The public listener's flag, for [`crate::server::serve`] to raise.
    pub fn listener(&self) -> &Starved {
        &self.listener
    }
}

/// What the handlers read.
#[derive(Debug, Clone)]
struct State {
    metrics: Metrics,
    readiness: Readiness,
    models: Arc<dyn ModelSource>,
    /// When the port opened: the status page's rates are averages since then.
    started: Instant,
}

/// Accepts on `listener` until `stop`, serving each connection on its own task on `tracker`;
/// on `stop` open connections finish their current request and close. `models` feeds the status
/// page.
pub fn spawn(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    models: Arc<dyn ModelSource>,
    tracker: &TaskTracker,
    stop: CancellationToken,
) {
    let state = State { metrics, readiness, models, started: Instant::now() };
    let connections = tracker.clone();
    tracker.spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "admin listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let state = state.clone();
            let stop = stop.clone();
            connections.spawn(serve_connection(stream, peer, state, stop));
        }
    });
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, state: State, stop: CancellationToken) {
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, &request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
    }
}

async fn route(state: &State, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match request.uri().path() {
        "/metrics" => {
            // The body matches its content type: OpenMetrics only for a scraper that asks.
            let openmetrics = request
                .headers()
                .get_all(header::ACCEPT)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")));
            let (body, content_type) = if openmetrics {
                (state.metrics.render(), OPENMETRICS_CONTENT_TYPE)
            } else {
                (state.metrics.render_prometheus(), METRICS_CONTENT_TYPE)
            };
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
            response
        }
        "/" | "/status" => {
            let models = state.models.models().await;
            let page = status::render(&models, &state.metrics, state.started.elapsed());
            let mut response = Response::new(Full::new(Bytes::from(page)));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.readiness.get() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, "not found: try /, /metrics, /healthz or /readyz\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
