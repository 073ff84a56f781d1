//! The one tower layer stack in front of every gRPC service, outermost first:
//!
//! 1. [`Trace`] — opens the RPC's server span (child of the caller's `traceparent`) and records
//!    the status on it; outermost, so refusals by every layer below are in the trace and the
//!    span covers the call as the caller sees it. Health checks get none: probes every few
//!    seconds would bury the traces worth reading.
//! 2. [`RequestMetrics`] — counts every RPC by method and status and times it; outside the rest so it
//!    also sees what the inner layers refuse (shed calls, bad deadlines).
//! 3. [`Deadline`] — parses `grpc-timeout` once (strictly: at most 8 digits and a unit, as the
//!    gRPC spec says), clamps it to `server.max_deadline_ms`, gives Prediction calls without one
//!    `server.default_deadline_ms`, hands the result to handlers as a [`CallDeadline`] request
//!    extension and answers DEADLINE_EXCEEDED itself a margin before the caller gives up. Before
//!    admission, so a call that is already late costs no permit. An invalid `grpc-timeout` on a
//!    unary call is answered by [`ReadBody`] once the body is in ([`BadDeadline`]).
//! 4. [`ReadBody`] — a unary Prediction call's body is read whole before anything else is spent
//!    on it: a length prefix over `server.max_message_bytes` is refused from the prefix, the
//!    bytes being read are bounded by `server.max_buffered_request_bytes` for all calls together
//!    (held until the call ends, so the decode's memory is bounded with them), a body that does
//!    not arrive within `server.request_read_timeout_ms` is answered DEADLINE_EXCEEDED, and a
//!    message with more candidates (events) than `server.max_candidates` is refused before prost
//!    allocates them. Before admission, so a caller that opens streams and sends nothing holds
//!    no slot.
//! 5. [`Admission`] — the global concurrency limit with load shedding: a Prediction call beyond
//!    `server.concurrency_limit` is answered RESOURCE_EXHAUSTED at once instead of queueing
//!    (tonic's `concurrency_limit_per_connection` queues, per connection, and counts health
//!    checks), and one connection gets more than `server.connection_fair_share` slots only while
//!    that many stay free for the others. Health, reflection and admin calls pass uncounted, so
//!    probes answer under load; open health Watch streams are capped by
//!    `server.max_watch_streams` (each holds a permit until its body ends).
//!
//!    A unary call keeps its slot (and its connection's share) until its response body is sent
//!    whole or dropped, not only until the handler returns ([`HoldingBody`]): hyper takes one
//!    frame of a response body and then waits for h2 send capacity before it asks for the
//!    next, so a response parked behind a caller's zero flow-control window (the caller never
//!    sends WINDOW_UPDATE) holds one encoded message and a slot, and shows in
//!    `augur_rpc_in_flight`. tonic 0.14 has no send-buffer limit; this is the bound instead.
//!    Parked responses hold at most `server.concurrency_limit` × `server.max_message_bytes` in
//!    all (the encode limit; a Predict answer is a few KiB in practice), and one connection at
//!    most max(`connection_fair_share`, `concurrency_limit` − `connection_fair_share`) of them:
//!    beyond its share a connection only borrows slots while more than a share stay free, so
//!    the other connections always find at least `connection_fair_share` free. The slots come
//!    back when the caller reads, resets the stream or the connection closes (at the latest
//!    `server.http2.max_connection_age_ms` + `max_connection_age_grace_ms`: a client that
//!    answers PINGs passes keepalive).
//! 6. [`BearerAuth`] — optional (`server.auth_token`; `admin.auth_token` on the admin port): every
//!    call but health checks must carry `authorization: Bearer <token>`; innermost, so refused
//!    calls are still counted above.
//!
//! Every refusal is a [`crate::error::Error`] turned into a status by `error.rs`, like any other.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Semaphore;
use tonic::Code;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::layer::util::{Identity, Stack};
use tower::{Layer, Service, ServiceBuilder};
use tracing::Instrument;

use crate::error::{Error, RequestError};
use crate::server::config::ServerConfig;
use crate::server::metrics::{MethodLabels, RefusedLabels, RpcLabels, RpcMetrics};
use crate::telemetry::trace;

/// Path prefix of the public scoring service: the calls the deadline default and the
/// concurrency limit apply to.
const PREDICTION: &str = "/augur.v1.Prediction/";
/// Path prefix of grpc.health.v1: never shed, never asked for a token.
const HEALTH: &str = "/grpc.health.v1.Health/";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The type of [`stack`]'s builder (tower's nesting: the first layer added is the innermost
/// `Stack`'s outer half).
type Stack6 = Stack<
    tower::util::Either<BearerAuthLayer, Identity>,
    Stack<
        AdmissionLayer,
        Stack<ReadBodyLayer, Stack<DeadlineLayer, Stack<RequestMetricsLayer, Stack<TraceLayer, Identity>>>>,
    >,
>;

/// The stack, outermost first (see the module doc for why each layer sits where it does).
/// `auth_token` is the listener's own: `server.auth_token` on the public port,
/// `admin.auth_token` on the admin one.
pub fn stack(config: &ServerConfig, auth_token: Option<&str>, metrics: &RpcMetrics) -> ServiceBuilder<Stack6> {
    ServiceBuilder::new()
        // 1. Trace: the server span around everything below, refusals included.
        .layer(TraceLayer)
        // 2. Metrics: sees every outcome, including refusals by the layers below.
        .layer(RequestMetricsLayer { metrics: metrics.clone() })
        // 3. Deadline: parsed once, clamped, enforced; before admission so late calls cost no permit.
        .layer(DeadlineLayer {
            default: Duration::from_millis(config.default_deadline_ms),
            max: Duration::from_millis(config.max_deadline_ms),
            margin: Duration::from_micros(config.deadline_margin_us),
        })
        // 4. Read body: whole, bounded in size, bytes and time, before a slot is taken.
        .layer(ReadBodyLayer {
            max_message: config.max_message_bytes,
            max_items: config.max_candidates,
            budget: Arc::new(Semaphore::new(config.max_buffered_request_bytes)),
            budget_bytes: config.max_buffered_request_bytes,
            timeout: Duration::from_millis(config.request_read_timeout_ms),
            refused: metrics.refused.clone(),
        })
        // 5. Admission: global limit on Prediction calls with a per-connection share, shedding
        //    the excess at once.
        .layer(AdmissionLayer {
            permits: Arc::new(Semaphore::new(config.concurrency_limit)),
            limit: config.concurrency_limit,
            // A share of everything is no rule at all.
            share: if config.connection_fair_share >= config.concurrency_limit {
                usize::MAX
            } else {
                config.connection_fair_share
            },
            held: Arc::default(),
            shed: metrics.shed.clone(),
            refused: metrics.refused.clone(),
            watches: Arc::new(Semaphore::new(config.max_watch_streams)),
            watch_limit: config.max_watch_streams,
        })
        // 6. Auth: only when a token is configured.
        .option_layer(auth_token.map(|token| BearerAuthLayer { token: Arc::from(token) }))
}

/// A refusal as a gRPC trailers-only response, through the one status mapping.
fn refuse(error: Error) -> Response<Body> {
    tonic::Status::from(error).into_http()
}

// === Trace ===

/// Layer of [`Trace`].
#[derive(Debug, Clone, Copy)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

/// Runs each call (but health checks) in its server span and records the status code from the
/// response headers, like [`RequestMetrics`] (so a stream failing after its headers is OK here).
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.uri().path().starts_with(HEALTH) {
            return Box::pin(self.inner.call(request));
        }
        let span = trace::server_span(request.uri().path(), request.headers());
        // Inner layers may do work in `call` already (the deadline layer refuses there).
        let future = span.in_scope(|| self.inner.call(request));
        let recorded = span.clone();
        Box::pin(
            async move {
                let response = future.await;
                if let Ok(response) = &response {
                    trace::record_status(&recorded, response_code(response.headers()));
                }
                response
            }
            .instrument(span),
        )
    }
}

// === RequestMetrics ===

/// Layer of [`RequestMetrics`].
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    metrics: RpcMetrics,
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner, metrics: self.metrics.clone() }
    }
}

/// Counts RPCs by method and status code (`augur_rpc_requests_total`), times them until the
/// response headers (`augur_rpc_duration_seconds`) and tracks how many are in flight
/// (`augur_rpc_in_flight`: a unary call until its response is sent whole, a stream until its
/// headers). The code
/// is read from the headers (trailers-only responses, i.e. every error); a response with a body
/// counts as OK — a stream that fails half-way is not seen here.
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    metrics: RpcMetrics,
}

struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<S, B> Service<Request<B>> for RequestMetrics<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let metrics = self.metrics.clone();
        metrics.in_flight.inc();
        let in_flight = InFlight(metrics.in_flight.clone());
        let future = self.inner.call(request);
        // A unary call is in flight until its response is sent whole (see [`HoldingBody`]); a
        // long-lived stream only until its headers, or every open Watch would count.
        let stream = is_stream(&path);
        Box::pin(async move {
            let response = future.await;
            let response = match response {
                Ok(response) if !stream => Ok(hold(response, in_flight)),
                other => other,
            };
            if let Ok(response) = &response {
                let code = response_code(response.headers());
                // Unknown methods are named by the caller: keep them out of the label values.
                let method = if code == Code::Unimplemented { "unknown".to_owned() } else { path };
                let duration = metrics.duration.get_or_create(&MethodLabels { method: method.clone() }).clone();
                duration.record(started.elapsed());
                metrics
                    .requests
                    .get_or_create(&RpcLabels { method, code: crate::telemetry::code_name(code).to_owned() })
                    .inc();
            }
            response
        })
    }
}

fn response_code(headers: &HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

// === Deadline ===

/// The deadline of a call, as the [`Deadline`] layer settled it; handlers read it from the
/// request extensions.
#[derive(Debug, Clone, Copy)]
pub struct CallDeadline {
    /// When augur answers DEADLINE_EXCEEDED (the caller's deadline minus the margin).
    pub at: Instant,
    /// The deadline the call was given (clamped `grpc-timeout` or the default), for messages.
    pub timeout: Duration,
}

/// Layer of [`Deadline`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    default: Duration,
    max: Duration,
    margin: Duration,
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Deadline { inner, config: *self }
    }
}

/// Settles and enforces each call's deadline (see the module doc).
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    config: DeadlineLayer,
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let arrived = Instant::now();
        let (timeout, from) = match parse_grpc_timeout(request.headers()) {
            Ok(Some(t)) => (t.min(self.config.max), "grpc-timeout"),
            Ok(None) if request.uri().path().starts_with(PREDICTION) => {
                (self.config.default, "server.default_deadline_ms")
            }
            Ok(None) => return Box::pin(self.inner.call(request)),
            // A unary call is answered once its body is in (see `BadDeadline`).
            Err(e) if UNARY.iter().any(|(path, _)| request.uri().path() == *path) => {
                request.extensions_mut().insert(BadDeadline(e));
                return Box::pin(self.inner.call(request));
            }
            Err(e) => return Box::pin(std::future::ready(Ok(refuse(e.into())))),
        };
        let timeout_ms = timeout.as_secs_f64() * 1e3;
        // `timeout` is at most `max_deadline_ms` (validated ≤ 1 day), so this cannot overflow.
        let at = arrived + timeout.saturating_sub(self.config.margin);
        if at <= Instant::now() {
            let late = Error::DeadlineExceeded { stage: "on arrival", from, timeout_ms };
            return Box::pin(std::future::ready(Ok(refuse(late))));
        }
        request.extensions_mut().insert(CallDeadline { at, timeout });
        let future = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout_at(at.into(), future).await {
                Ok(response) => response,
                Err(_) => Ok(refuse(Error::DeadlineExceeded { stage: "while processing", from, timeout_ms })),
            }
        })
    }
}

/// An invalid `grpc-timeout` on a unary call, for [`ReadBody`] to answer: a response sent while
/// the caller is still sending its body is followed by a stream reset, and clients like curl
/// then lose the status (seen 15 times in 30 with a 1 MB body).
#[derive(Debug, Clone)]
pub struct BadDeadline(RequestError);

/// `grpc-timeout`: `Ok(None)` when absent; an error naming the header for anything the gRPC
/// spec does not allow (more than 8 digits, no unit, an unknown unit, not ASCII digits).
pub fn parse_grpc_timeout(headers: &HeaderMap) -> Result<Option<Duration>, RequestError> {
    let Some(raw) = headers.get("grpc-timeout") else { return Ok(None) };
    let bad = |problem: &str| RequestError::new("grpc-timeout", format!("{raw:?}: {problem}"));
    let raw_str = raw.to_str().map_err(|_| bad("not ASCII"))?;
    if raw_str.len() < 2 {
        return Err(bad("expected 1 to 8 digits and a unit (H, M, S, m, u, n)"));
    }
    let (digits, unit) = raw_str.split_at(raw_str.len() - 1);
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected 1 to 8 digits and a unit (H, M, S, m, u, n)"));
    }
    // At most 99 999 999: every product below fits in a u64.
    let n: u64 = digits.parse().map_err(|_| bad("not a number"))?;
    Ok(Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(bad("unknown unit (H, M, S, m, u, n)")),
    }))
}

// === ReadBody ===

/// The unary Prediction methods whose body [`ReadBody`] reads, with the repeated field of their
/// request that `server.max_candidates` bounds (candidates; events for ReportEvents).
/// Health checks are read the same way (no field counted: 0 is no field number), so body-less
/// Checks do not stay open either.
const UNARY: [(&str, u32); 4] = [
    ("/augur.v1.Prediction/Predict", 5),
    ("/augur.v1.Prediction/GetFeatures", 4),
    ("/augur.v1.Prediction/ReportEvents", 1),
    ("/grpc.health.v1.Health/Check", 0),
];

/// The one long-lived stream of the public port: capped by `server.max_watch_streams`.
const WATCH: &str = "/grpc.health.v1.Health/Watch";

/// Whether `path` is a streaming method: its response lives as long as the caller wants, so
/// neither its admission slot nor the in-flight count follows its body.
fn is_stream(path: &str) -> bool {
    path == WATCH
        || path == "/augur.v1.Prediction/StreamFeatures"
        || path.ends_with(".ServerReflection/ServerReflectionInfo")
}

/// Layer of [`ReadBody`].
#[derive(Debug, Clone)]
pub struct ReadBodyLayer {
    max_message: usize,
    max_items: usize,
    /// One permit per byte being read or decoded.
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    timeout: Duration,
    refused: Family<RefusedLabels, Counter>,
}

impl<S> Layer<S> for ReadBodyLayer {
    type Service = ReadBody<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ReadBody { inner, layer: self.clone() }
    }
}

/// Reads a unary Prediction call's body whole before the call is admitted (see the module doc).
#[derive(Debug, Clone)]
pub struct ReadBody<S> {
    inner: S,
    layer: ReadBodyLayer,
}

impl<S> Service<Request<Body>> for ReadBody<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(&(_, items_field)) = UNARY.iter().find(|(path, _)| request.uri().path() == *path) else {
            return Box::pin(self.inner.call(request));
        };
        // The ready service serves this call; a clone takes its place (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (parts, mut body) = request.into_parts();
            let until = parts
                .extensions
                .get::<CallDeadline>()
                .map(|d| d.at)
                .into_iter()
                .fold(Instant::now() + layer.timeout, Instant::min);
            let bad_deadline = parts.extensions.get::<BadDeadline>().map(|BadDeadline(e)| e.clone());
            let read = match tokio::time::timeout_at(until.into(), layer.read(&mut body, items_field)).await {
                Ok(Ok(read)) => read,
                Ok(Err((reason, error))) => {
                    layer.refused.get_or_create(&RefusedLabels { reason }).inc();
                    return Ok(refuse(error));
                }
                Err(_) => {
                    layer.refused.get_or_create(&RefusedLabels { reason: "read_timeout" }).inc();
                    let timeout_ms = layer.timeout.as_secs_f64() * 1e3;
                    let from = "server.request_read_timeout_ms";
                    return Ok(refuse(Error::DeadlineExceeded {
                        stage: "while reading the request",
                        from,
                        timeout_ms,
                    }));
                }
            };
            if let Some(e) = bad_deadline {
                // Answered now the whole request is in.
                return Ok(refuse(e.into()));
            }
            let (bytes, permit) = read;
            let response = inner.call(Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes)))).await;
            // Held until the call ends: the decoded request lives that long too.
            drop(permit);
            response
        })
    }
}

/// A body being read: its first chunk as it came (a Predict body is usually one DATA frame, so
/// most calls copy nothing), one buffer once a second chunk arrives.
#[derive(Default)]
enum Collected {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Collected {
    /// Adds `data`; `capacity` is the whole body's size when known.
    fn push(&mut self, data: Bytes, capacity: usize) {
        *self = match std::mem::take(self) {
            Collected::Empty => Collected::One(data),
            Collected::One(first) => {
                let mut many = BytesMut::with_capacity(capacity.max(first.len() + data.len()));
                many.extend_from_slice(&first);
                many.extend_from_slice(&data);
                Collected::Many(many)
            }
            Collected::Many(mut many) => {
                many.extend_from_slice(&data);
                Collected::Many(many)
            }
        };
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Collected::Empty => &[],
            Collected::One(b) => b,
            Collected::Many(b) => b,
        }
    }

    fn len(&self) -> usize {
        self.bytes().len()
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Collected::Empty => Bytes::new(),
            Collected::One(b) => b,
            Collected::Many(b) => b.freeze(),
        }
    }
}

/// Why [`ReadBodyLayer::read`] refused: the metric's reason and the caller's status.
type Refusal = (&'static str, Error);

impl ReadBodyLayer {
    /// The whole body, and the budget it holds.
    async fn read(
        &self,
        body: &mut Body,
        items_field: u32,
    ) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), Refusal> {
        use http_body_util::BodyExt as _;
        let mut buf = Collected::default();
        let mut permit = None;
        let mut declared = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ("client_gone", Error::ClientGone(e.message().to_owned())))?;
            let Ok(data) = frame.into_data() else { continue };
            buf.push(data, declared.map_or(0, |n: usize| n + 5));
            if declared.is_none() && buf.len() >= 5 {
                let head = buf.bytes();
                let length = u64::from(u32::from_be_bytes([head[1], head[2], head[3], head[4]]));
                if length > self.max_message as u64 {
                    return Err(("too_large", Error::TooLarge { bytes: length, limit: self.max_message }));
                }
                // Fits in u32: at most max_message, itself bounded by validation.
                let Ok(held) = Arc::clone(&self.budget).try_acquire_many_owned(length.max(1) as u32) else {
                    return Err(("read_budget", Error::ReadBudget { limit: self.budget_bytes }));
                };
                permit = Some(held);
                declared = Some(length as usize);
            }
            if let Some(length) = declared
                && buf.len() > 5 + length
            {
                let problem = "a unary call carries exactly one message; more bytes followed it";
                return Err(("too_large", RequestError::new("request", problem).into()));
            }
        }
        // tonic would answer these INTERNAL ("Missing request message"): they are the caller's.
        let Some(length) = declared else {
            let problem =
                format!("the body ended after {} bytes, before a message (a unary call carries one)", buf.len());
            return Err(("incomplete", RequestError::new("request", problem).into()));
        };
        if buf.len() < 5 + length {
            let problem = format!("the body ended after {} of the {length} bytes its message declared", buf.len() - 5);
            return Err(("incomplete", RequestError::new("request", problem).into()));
        }
        // Uncompressed (flag 0): count the items before prost decodes them. Compressed messages
        // are tonic's to refuse (augur accepts no compression).
        if buf.bytes()[0] == 0 {
            let items = crate::server::wire::count_field(&buf.bytes()[5..], items_field);
            if items > self.max_items {
                let field = if items_field == 1 { "events" } else { "candidates" };
                let problem = format!("{items} {field} exceed the limit of {} (server.max_candidates)", self.max_items);
                return Err(("too_many_items", RequestError::new(field, problem).into()));
            }
        }
        Ok((buf.into_bytes(), permit))
    }
}

// === Admission ===

/// Layer of [`Admission`].
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    share: usize,
    /// Calls each connection holds (by peer address), only while it holds any.
    held: Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, usize>>>,
    shed: Counter,
    refused: Family<RefusedLabels, Counter>,
    /// One permit per open health Watch stream, held by its response body.
    watches: Arc<Semaphore>,
    watch_limit: usize,
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Admission { inner, layer: self.clone() }
    }
}

/// The global concurrency limit with load shedding and a per-connection share, for Prediction
/// calls (see the module doc). A unary call's permit and share are held until its response body
/// is sent whole or dropped ([`HoldingBody`]), a StreamFeatures call's until its headers.
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

/// A connection's hold on one slot: gives it back when the call ends.
struct Held {
    held: Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, usize>>>,
    peer: SocketAddr,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

impl AdmissionLayer {
    /// Takes one of the connection's slots, or says how many it holds when it is over its share
    /// while fewer than a share of the global slots are free.
    fn hold(&self, peer: Option<SocketAddr>) -> Result<Option<Held>, usize> {
        let Some(peer) = peer else { return Ok(None) };
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = held.entry(peer).or_default();
        // Taking one more would leave fewer than a share for the others.
        if *n >= self.share && self.permits.available_permits() <= self.share {
            let over = *n;
            if over == 0 {
                held.remove(&peer);
            }
            return Err(over);
        }
        *n += 1;
        Ok(Some(Held { held: Arc::clone(&self.held), peer }))
    }
}

impl<S, B> Service<Request<B>> for Admission<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.uri().path() == WATCH {
            let Ok(permit) = Arc::clone(&self.layer.watches).try_acquire_owned() else {
                self.layer.refused.get_or_create(&RefusedLabels { reason: "watch_limit" }).inc();
                let limit = self.layer.watch_limit;
                return Box::pin(std::future::ready(Ok(refuse(Error::WatchLimit { limit }))));
            };
            let future = self.inner.call(request);
            // The stream is open as long as its body: the permit goes with the body.
            return Box::pin(async move { Ok(hold(future.await?, permit)) });
        }
        if !request.uri().path().starts_with(PREDICTION) {
            return Box::pin(self.inner.call(request));
        }
        let peer = request.extensions().get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr).or_else(|| {
            request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|tls| tls.get_ref().remote_addr())
        });
        let connection = match self.layer.hold(peer) {
            Ok(connection) => connection,
            Err(held) => {
                self.layer.refused.get_or_create(&RefusedLabels { reason: "connection_share" }).inc();
                let share = self.layer.share;
                return Box::pin(std::future::ready(Ok(refuse(Error::ConnectionShare { held, share }))));
            }
        };
        let Ok(permit) = Arc::clone(&self.layer.permits).try_acquire_owned() else {
            self.layer.shed.inc();
            let limit = self.layer.limit;
            return Box::pin(std::future::ready(Ok(refuse(Error::Overloaded { limit }))));
        };
        let stream = is_stream(request.uri().path());
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A unary call holds its slot until its response is sent whole, so one parked
            // behind the caller's flow-control window still counts (see [`HoldingBody`]). A
            // StreamFeatures call is admitted as it opens, not for its whole life.
            if stream {
                drop((permit, connection));
                return Ok(response);
            }
            Ok(hold(response, (permit, connection)))
        })
    }
}

// === HoldingBody ===

/// A response body that holds `guard` (an admission slot, an in-flight count) until the body
/// has yielded its last frame or is dropped, not only until the handler returned. hyper polls a
/// response body for one frame and then waits, frame in hand, for h2 send capacity before it
/// polls again: a unary response parked behind the caller's zero flow-control window is one
/// encoded message (at most `server.max_message_bytes`, tonic's encode limit) held by a body
/// that has not ended, so it keeps its slot and its share until the caller reads it, resets the
/// stream or the connection closes.
struct HoldingBody<G> {
    inner: Body,
    guard: Option<G>,
}

/// `response` with `guard` held by its body (released at once for a trailers-only response:
/// tonic's `Body::new` drops a body that has already ended).
fn hold<G: Send + Unpin + 'static>(response: Response<Body>, guard: G) -> Response<Body> {
    response.map(|inner| Body::new(HoldingBody { inner, guard: Some(guard) }))
}

impl<G: Unpin> hyper::body::Body for HoldingBody<G> {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        // Nothing more will be sent: give the slot back now rather than when hyper drops us.
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            this.guard = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

// === BearerAuth ===

/// Whether `presented` is `token`, in time that does not depend on where they differ: `==` stops
/// at the first differing byte, which lets a caller who can time the refusals guess the token
/// byte by byte. The length is not secret (it is a config value's length).
fn same_token(presented: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    presented.len() == token.len() && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

/// Layer of [`BearerAuth`].
#[derive(Debug, Clone)]
pub struct BearerAuthLayer {
    token: Arc<str>,
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth { inner, token: Arc::clone(&self.token) }
    }
}

/// Requires `authorization: Bearer <token>` on every call but health checks.
#[derive(Debug, Clone)]
pub struct BearerAuth<S> {
    inner: S,
    token: Arc<str>,
}

impl<S, B> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if request.uri().path().starts_with(HEALTH) || presented.is_some_and(|p| same_token(p, &self.token)) {
            return Box::pin(self.inner.call(request));
        }
        Box::pin(std::future::ready(Ok(refuse(Error::Unauthenticated))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-timeout", value.parse().unwrap());
        h
    }

    /// The deadline layer (1 ms margin) around a Prediction handler that takes `work` on tokio's
    /// clock and reports the deadline it was handed.
    async fn call_taking(work: Duration, grpc_timeout: &str) -> (Response<Body>, Option<CallDeadline>) {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let handler = {
            let seen = Arc::clone(&seen);
            tower::service_fn(move |request: Request<()>| {
                *seen.lock().unwrap() = request.extensions().get::<CallDeadline>().copied();
                async move {
                    tokio::time::sleep(work).await;
                    Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
                }
            })
        };
        let layer = DeadlineLayer {
            default: Duration::from_secs(2),
            max: Duration::from_secs(60),
            margin: Duration::from_millis(1),
        };
        let mut request = Request::new(());
        *request.uri_mut() = "/augur.v1.Prediction/Predict".parse().unwrap();
        request.headers_mut().insert("grpc-timeout", grpc_timeout.parse().unwrap());
        let response = layer.layer(handler).call(request).await.unwrap();
        let seen = *seen.lock().unwrap();
        (response, seen)
    }

    // Paused clock: the handler's work ends when the test's durations say, not when a busy
    // machine gets round to it. The deadline is read from the real clock on arrival, at or after
    // the paused clock's start, so real delays can only move it later: work shorter than the
    // deadline always passes, and work that never ends always expires.
    #[tokio::test(start_paused = true)]
    async fn a_call_still_running_at_its_deadline_is_answered_deadline_exceeded() {
        let (response, seen) = call_taking(Duration::from_secs(3600), "100m").await;
        let status = tonic::Status::from_header_map(response.headers()).expect("a trailers-only status");
        assert_eq!(status.code(), Code::DeadlineExceeded);
        let message = status.message();
        assert!(message.contains("while processing") && message.contains("grpc-timeout"), "{message}");
        assert_eq!(seen.map(|d| d.timeout), Some(Duration::from_millis(100)), "the handler saw the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_done_before_its_deadline_passes_through() {
        // 98 ms of work against 100 ms less the 1 ms margin.
        let (response, seen) = call_taking(Duration::from_millis(98), "100m").await;
        assert_eq!(response_code(response.headers()), Code::Ok);
        assert!(seen.is_some());
    }

    #[tokio::test]
    async fn a_held_slot_is_released_with_the_last_frame_when_dropped_or_at_once_if_trailers_only() {
        use http_body_util::BodyExt as _;
        let permits = Arc::new(Semaphore::new(1));
        let slot = || Arc::clone(&permits).try_acquire_owned().expect("the slot is free");
        let message = || Body::new(http_body_util::Full::new(Bytes::from_static(b"answer")));

        let mut response = hold(Response::new(message()), slot());
        assert_eq!(permits.available_permits(), 0, "held while the body has not been sent");
        let frame = response.body_mut().frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "answer");
        assert_eq!(permits.available_permits(), 1, "released with the last frame");
        drop(response);

        let response = hold(Response::new(message()), slot());
        assert_eq!(permits.available_permits(), 0);
        drop(response);
        assert_eq!(permits.available_permits(), 1, "released when the body is dropped unsent");

        let _refused = hold(refuse(Error::Overloaded { limit: 1 }), slot());
        assert_eq!(permits.available_permits(), 1, "a trailers-only answer holds nothing");
    }

    #[test]
    fn a_token_matches_only_itself_whatever_its_prefix() {
        assert!(same_token("s3cret-token", "s3cret-token"));
        for other in ["", "s", "s3cret-toke", "s3cret-tokeN", "s3cret-token ", "x3cret-token", "s3cret-token2"] {
            assert!(!same_token(other, "s3cret-token"), "{other:?}");
        }
    }

    #[test]
    fn grpc_timeout_parses_every_unit_and_refuses_what_the_spec_does_not_allow() {
        assert_eq!(parse_grpc_timeout(&headers("250m")).unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout(&headers("99999999H")).unwrap(), Some(Duration::from_secs(99_999_999 * 3600)));
        assert_eq!(parse_grpc_timeout(&headers("5n")).unwrap(), Some(Duration::from_nanos(5)));
        assert_eq!(parse_grpc_timeout(&HeaderMap::new()).unwrap(), None);
        for bad in ["9223372036854775807S", "100", "S", "12x", "-1S", "1.5S", "123456789m"] {
            let err = parse_grpc_timeout(&headers(bad)).unwrap_err();
            assert!(err.to_string().starts_with("grpc-timeout:"), "{bad}: {err}");
        }
    }
}
