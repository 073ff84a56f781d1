//! Step 1 of the path, below HTTP/2: accepting connections. [`Incoming`] is the stream of
//! connections tonic serves (TLS, when configured, is wrapped around each [`Conn`] by tonic,
//! after this stream). It adds what tonic's `TcpIncoming` lacks against a client that opens
//! sockets and sends nothing:
//!
//! - a cap on open connections (`server.max_connections`): one more is closed as soon as it is
//!   accepted and counted; [`Conn`] holds the guard that gives its place back when it drops;
//! - a handshake timeout (`server.handshake_timeout_ms`): a connection whose opening has not
//!   arrived in time is closed by its own `poll_read` and counted. The opening is counted in raw
//!   bytes, below TLS: in plaintext the 24-byte HTTP/2 client preface; with TLS the first
//!   complete TLS application-data record from the client, which no client sends before its
//!   handshake is done (TLS 1.3: its encrypted Finished; TLS 1.2: the preface itself). So with
//!   TLS the timeout bounds the TLS handshake, and under TLS 1.3 not the preface after it;
//! - a hard close `server.http2.max_connection_age_grace_ms` after tonic's GOAWAY at
//!   `max_connection_age_ms`, by the same timer (tonic 0.14's own grace replaces the GOAWAY
//!   with the cut, so it is not used);
//! - TCP keepalive (`server.tcp_keepalive_*`) and TCP_NODELAY on each socket, set by tonic's
//!   `TcpIncoming`, which this stream wraps;
//! - accept errors handled as the listener's problem: out of file descriptors or kernel memory
//!   (EMFILE, ENFILE, ENOBUFS, ENOMEM) is logged at most once per 10 s with the count of lines
//!   suppressed, counted by reason, reported as [`Starved`] (readiness) and backed off, 10 ms
//!   doubling to 1 s, instead of retried at once; an error of one connection (ECONNABORTED, ...)
//!   is counted and the next accepted.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::server::config::ServerConfig;
use crate::server::metrics::{ListenerMetrics, ReasonLabels};
use crate::telemetry::LogEvery;

/// The HTTP/2 client preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, in bytes.
const PREFACE_LEN: usize = 24;
/// The TLS record content type of application data.
const TLS_APPLICATION_DATA: u8 = 23;
/// The first back-off after a resource error; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest back-off: a freed descriptor is used within a second.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this for accept errors, and one for connections over the cap.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether accepting backs off for want of file descriptors or kernel memory: set by such an
/// accept error, cleared by the next accept that succeeds or finds no connection waiting.
/// Readiness reads it. Cheap to clone (shared flag).
#[derive(Debug, Clone, Default)]
pub struct Starved(Arc<AtomicBool>);

// === impl Starved ===

impl Starved {
    /// Reads the flag.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, starved: bool) {
        self.0.store(starved, Ordering::Release);
    }
}

/// What each connection is held to.
#[derive(Debug, Clone, Copy)]
struct Limits {
    handshake_timeout: Duration,
    /// From the end of the opening to the hard close: max age + grace (`None`: never).
    lifetime: Option<Duration>,
    tls: bool,
}

/// The connections of one listener, as tonic's `serve_with_incoming*` takes them. Never yields
/// an error: tonic's accept loop retries one at once, which is the spin this stream prevents.
#[derive(Debug)]
pub struct Incoming {
    inner: TcpIncoming,
    limits: Limits,
    max_connections: usize,
    /// Connections open now: the cap is checked against it, each [`Conn`]'s guard decrements it.
    open: Arc<AtomicUsize>,
    metrics: ListenerMetrics,
    starved: Starved,
    /// Armed while `backing_off`.
    backoff: Pin<Box<Sleep>>,
    backing_off: bool,
    /// The next back-off.
    delay: Duration,
    error_log: LogEvery,
    over_cap_log: LogEvery,
}

// === impl Incoming ===

impl Incoming {
    /// Accepts on `listener` with `config`'s limits, recording into `metrics` and `starved`.
    pub fn new(listener: TcpListener, config: &ServerConfig, metrics: ListenerMetrics, starved: Starved) -> Self {
        let ms = Duration::from_millis;
        let mut inner = TcpIncoming::from(listener)
            // Without TCP_NODELAY, Nagle + delayed ACKs add ~40 ms to small responses.
            .with_nodelay(Some(true));
        if config.tcp_keepalive_ms > 0 {
            inner = inner
                .with_keepalive(Some(ms(config.tcp_keepalive_ms)))
                .with_keepalive_interval(Some(ms(config.tcp_keepalive_interval_ms)))
                .with_keepalive_retries(Some(config.tcp_keepalive_retries));
        }
        let h2 = &config.http2;
        let lifetime = (h2.max_connection_age_ms > 0 && h2.max_connection_age_grace_ms > 0)
            .then(|| ms(h2.max_connection_age_ms + h2.max_connection_age_grace_ms));
        Incoming {
            inner,
            limits: Limits { handshake_timeout: ms(config.handshake_timeout_ms), lifetime, tls: config.tls.is_some() },
            max_connections: config.max_connections,
            open: Arc::default(),
            metrics,
            starved,
            backoff: Box::pin(tokio::time::sleep(Duration::ZERO)),
            backing_off: false,
            delay: BACKOFF_MIN,
            error_log: LogEvery::new(LOG_EVERY),
            over_cap_log: LogEvery::new(LOG_EVERY),
        }
    }

    /// For a listener tonic serves without `server.tls` (the admin gRPC port): the opening to
    /// wait for is the HTTP/2 preface, not a TLS handshake.
    pub fn plaintext(mut self) -> Self {
        self.limits.tls = false;
        self
    }

    fn set_starved(&self, starved: bool) {
        self.starved.set(starved);
        self.metrics.starved.set(i64::from(starved));
    }

    /// Counts and logs a failed accept; arms the back-off unless the error was one connection's.
    fn accept_error(&mut self, e: &io::Error) {
        let reason = match e.raw_os_error() {
            Some(libc::EMFILE) => "emfile",
            Some(libc::ENFILE) => "enfile",
            Some(libc::ENOBUFS) => "enobufs",
            Some(libc::ENOMEM) => "enomem",
            Some(libc::EPROTO | libc::EPERM) => "connection",
            _ => match e.kind() {
                io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut => "connection",
                _ => "other",
            },
        };
        self.metrics.accept_errors.get_or_create(&ReasonLabels { reason }).inc();
        if reason == "connection" {
            tracing::debug!(error = %e, "accept: the connection failed before it was accepted");
            return;
        }
        let starved = reason != "other";
        if starved {
            self.set_starved(true);
        }
        if let Some(suppressed) = self.error_log.ready() {
            let (backoff_ms, open) = (self.delay.as_millis() as u64, self.open.load(Ordering::Relaxed));
            if starved {
                tracing::error!(
                    reason,
                    error = %e,
                    open,
                    backoff_ms,
                    suppressed,
                    "listener out of file descriptors or kernel memory: accepting backs off \
                     (raise the open-file limit or lower server.max_connections)"
                );
            } else {
                tracing::warn!(reason, error = %e, open, backoff_ms, suppressed, "accept failed: backing off");
            }
        }
        self.backoff.as_mut().reset(Instant::now() + self.delay);
        self.backing_off = true;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
    }
}

impl Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.backing_off {
                ready!(this.backoff.as_mut().poll(cx));
                this.backing_off = false;
            }
            // The listener registers for readiness and takes from the task's coop budget, so a
            // flood of connections over the cap cannot hold this loop.
            let stream = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => {
                    // Nothing waits in the backlog: whatever was short is not short now.
                    this.set_starved(false);
                    return Poll::Pending;
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => {
                    this.accept_error(&e);
                    continue;
                }
                Poll::Ready(Some(Ok(stream))) => stream,
            };
            this.delay = BACKOFF_MIN;
            this.set_starved(false);
            this.metrics.accepted.inc();
            if this.open.load(Ordering::Acquire) >= this.max_connections {
                this.metrics.closed.get_or_create(&ReasonLabels { reason: "max_connections" }).inc();
                if let Some(suppressed) = this.over_cap_log.ready() {
                    let peer = stream.peer_addr().ok();
                    tracing::warn!(
                        max_connections = this.max_connections,
                        peer = ?peer,
                        suppressed,
                        "connection closed: server.max_connections are open"
                    );
                }
                drop(stream);
                continue;
            }
            let guard = OpenGuard::new(Arc::clone(&this.open), this.metrics.open.clone());
            return Poll::Ready(Some(Ok(Conn::new(stream, this.limits, this.metrics.clone(), guard))));
        }
    }
}

/// One place under `server.max_connections`, given back on drop.
#[derive(Debug)]
struct OpenGuard {
    open: Arc<AtomicUsize>,
    gauge: Gauge,
}

// === impl OpenGuard ===

impl OpenGuard {
    fn new(open: Arc<AtomicUsize>, gauge: Gauge) -> Self {
        open.fetch_add(1, Ordering::AcqRel);
        gauge.inc();
        OpenGuard { open, gauge }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// What the client must send before its connection counts as open (module doc).
#[derive(Debug)]
enum Opening {
    /// Bytes of the HTTP/2 preface still to come.
    Preface(usize),
    /// The TLS record being read: its header bytes so far and, once all 5 are in, the body
    /// bytes still to come.
    Tls { header: [u8; 5], have: usize, left: usize },
}

// === impl Opening ===

impl Opening {
    fn new(tls: bool) -> Self {
        if tls { Opening::Tls { header: [0; 5], have: 0, left: 0 } } else { Opening::Preface(PREFACE_LEN) }
    }

    /// Takes the next raw bytes read; true once the opening is complete.
    fn complete_after(&mut self, mut bytes: &[u8]) -> bool {
        match self {
            Opening::Preface(left) => {
                *left = left.saturating_sub(bytes.len());
                *left == 0
            }
            Opening::Tls { header, have, left } => {
                while let Some((&byte, rest)) = bytes.split_first() {
                    if *have < header.len() {
                        header[*have] = byte;
                        *have += 1;
                        bytes = rest;
                        if *have < header.len() {
                            continue;
                        }
                        *left = usize::from(u16::from_be_bytes([header[3], header[4]]));
                    } else {
                        let n = (*left).min(bytes.len());
                        *left -= n;
                        bytes = &bytes[n..];
                    }
                    if *left == 0 {
                        if header[0] == TLS_APPLICATION_DATA {
                            return true;
                        }
                        *have = 0;
                    }
                }
                false
            }
        }
    }
}

/// An accepted connection: tonic's IO, closed by augur when its opening is late or, after max
/// age, its grace is over. Carries [`TcpConnectInfo`] into every request's extensions.
#[derive(Debug)]
pub struct Conn {
    io: TcpStream,
    /// `Some` until the opening is complete.
    opening: Option<Opening>,
    /// The handshake timeout while `opening`, then max age + grace (`None`: nothing left to time).
    deadline: Option<Pin<Box<Sleep>>>,
    lifetime: Option<Duration>,
    /// Why augur closed it: every later read or write fails.
    closed: Option<&'static str>,
    metrics: ListenerMetrics,
    _open: OpenGuard,
}

// === impl Conn ===

impl Conn {
    fn new(io: TcpStream, limits: Limits, metrics: ListenerMetrics, open: OpenGuard) -> Self {
        Conn {
            io,
            opening: Some(Opening::new(limits.tls)),
            deadline: Some(Box::pin(tokio::time::sleep(limits.handshake_timeout))),
            lifetime: limits.lifetime,
            closed: None,
            metrics,
            _open: open,
        }
    }

    /// The deadline passed: closes the connection (once) and counts why.
    fn expire(&mut self) -> io::Error {
        let reason = match (self.closed, &self.opening) {
            (Some(reason), _) => reason,
            (None, opening) => {
                let reason = if opening.is_some() { "handshake_timeout" } else { "max_connection_age_grace" };
                self.metrics.closed.get_or_create(&ReasonLabels { reason }).inc();
                tracing::debug!(peer = ?self.io.peer_addr().ok(), reason, "connection closed");
                self.closed = Some(reason);
                reason
            }
        };
        io::Error::new(io::ErrorKind::TimedOut, reason)
    }

    fn elapsed(&self) -> bool {
        self.closed.is_some() || self.deadline.as_ref().is_some_and(|d| d.is_elapsed())
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.elapsed() {
            return Poll::Ready(Err(this.expire()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(opening) = &mut this.opening
                    && opening.complete_after(&buf.filled()[before..])
                {
                    this.opening = None;
                    match (this.lifetime, &mut this.deadline) {
                        (Some(lifetime), Some(deadline)) => deadline.as_mut().reset(Instant::now() + lifetime),
                        _ => this.deadline = None,
                    }
                }
                Poll::Ready(Ok(()))
            }
            // Waiting for bytes: the deadline wakes this task if they do not come.
            Poll::Pending => {
                let expired = this.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired { Poll::Ready(Err(this.expire())) } else { Poll::Pending }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.elapsed() {
            return Poll::Ready(Err(self.expire()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.elapsed() {
            return Poll::Ready(Err(self.expire()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_completes_the_plaintext_opening() {
        let mut opening = Opening::new(false);
        assert!(!opening.complete_after(b"PRI * HTTP/2.0\r\n"));
        assert!(!opening.complete_after(b""));
        assert!(opening.complete_after(b"\r\nSM\r\n\r\nmore"));
    }

    #[test]
    fn the_first_application_data_record_completes_the_tls_opening() {
        let record = |kind: u8, body: &[u8]| {
            let mut r = vec![kind, 3, 3];
            r.extend_from_slice(&(body.len() as u16).to_be_bytes());
            r.extend_from_slice(body);
            r
        };
        let mut opening = Opening::new(true);
        // A ClientHello, then a ChangeCipherSpec, a byte at a time: no application data yet.
        let handshake = [record(22, &[1; 300]), record(20, &[1]), record(22, &[])].concat();
        for byte in handshake.chunks(1) {
            assert!(!opening.complete_after(byte));
        }
        let data = record(TLS_APPLICATION_DATA, &[0; 53]);
        assert!(!opening.complete_after(&data[..20]));
        assert!(opening.complete_after(&data[20..]));
        // Many records in one read.
        let mut opening = Opening::new(true);
        assert!(opening.complete_after(&[handshake, data].concat()));
    }
}
