//! `[server]`: the public listener's address, request limits, deadlines, HTTP/2 limits, TLS and
//! token, owned by the module that enforces them.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::validate::{Invalid, bearer_token, in_range, invalid};

/// gRPC listener and request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Candidates per request above which Predict answers INVALID_ARGUMENT: bounds the work one
    /// caller can ask for.
    #[serde(default = "default_max_candidates")]
    pub max_candidates: usize,
    /// Longest string value (ids, string features), in bytes.
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Longest list feature value accepted in a request.
    #[serde(default = "default_max_list_len")]
    pub max_list_len: usize,
    /// Largest gRPC message, in bytes: a larger request is answered RESOURCE_EXHAUSTED from its
    /// length prefix, before its body is read.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Bytes of unary Prediction request bodies being read and decoded at once, all connections
    /// together; a request that would go beyond is answered RESOURCE_EXHAUSTED at once. Decoding
    /// takes at most ~25x a message's bytes (`examples/decode_peak.rs`), so this bounds what
    /// requests hold to ~25x it (400 MiB by default).
    #[serde(default = "default_max_buffered_request_bytes")]
    pub max_buffered_request_bytes: usize,
    /// A unary Prediction request whose body has not fully arrived this long after its headers is
    /// answered DEADLINE_EXCEEDED (or sooner, at its deadline), in ms: a caller that opens a
    /// stream and sends nothing holds no admission slot and no memory for long.
    #[serde(default = "default_request_read_timeout_ms")]
    pub request_read_timeout_ms: u64,
    /// Prediction RPCs handled at once by the whole server; one more is answered
    /// RESOURCE_EXHAUSTED at once (load shedding) instead of queueing. Health checks, reflection
    /// and admin calls are not counted, so probes keep answering under overload.
    #[serde(default = "default_concurrency_limit")]
    pub concurrency_limit: usize,
    /// One connection's share of `concurrency_limit`: a connection holding this many calls gets
    /// another only while at least this many slots stay free for the others, so one client
    /// cannot take every slot. Behind a proxy that funnels every caller into one connection, set
    /// it to `concurrency_limit` (no per-connection rule). A unary call holds its slot until its
    /// response is sent whole, so this also bounds the answers one connection can leave parked
    /// behind a flow-control window it never opens.
    #[serde(default = "default_connection_fair_share")]
    pub connection_fair_share: usize,
    /// grpc.health.v1 Watch streams open at once on the public port; one more is answered
    /// RESOURCE_EXHAUSTED. Each idle stream holds a few KiB until the caller ends it.
    #[serde(default = "default_max_watch_streams")]
    pub max_watch_streams: usize,
    /// augur answers DEADLINE_EXCEEDED this long before the caller's `grpc-timeout` runs out, so
    /// the caller gets augur's status rather than a transport cancellation.
    #[serde(default = "default_deadline_margin_us")]
    pub deadline_margin_us: u64,
    /// Deadline of a call that sends no `grpc-timeout`, in ms: nothing waits forever.
    #[serde(default = "default_default_deadline_ms")]
    pub default_deadline_ms: u64,
    /// Longest deadline honoured, in ms; a longer `grpc-timeout` is clamped to it.
    #[serde(default = "default_max_deadline_ms")]
    pub max_deadline_ms: u64,
    /// Connections open at once on the public port; one more is closed as soon as it is accepted
    /// (and counted), so idle or hostile sockets cannot take every file descriptor.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection must send the HTTP/2 client preface within this, in ms, or it is closed (and
    /// counted): nothing else bounds a client that connects and sends nothing. With `tls` it
    /// bounds the TLS handshake instead (docs/serving.md, "Connections").
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// TCP keepalive: idle time before the first probe, in ms (0 = off), so the kernel drops the
    /// sockets of peers that vanished without a FIN, even before HTTP/2 PINGs start.
    #[serde(default = "default_tcp_keepalive_ms")]
    pub tcp_keepalive_ms: u64,
    /// TCP keepalive: time between unanswered probes, in ms.
    #[serde(default = "default_tcp_keepalive_interval_ms")]
    pub tcp_keepalive_interval_ms: u64,
    /// TCP keepalive: unanswered probes before the kernel drops the connection.
    #[serde(default = "default_tcp_keepalive_retries")]
    pub tcp_keepalive_retries: u32,
    /// HTTP/2 and connection limits, set explicitly (tonic leaves several unlimited).
    #[serde(default)]
    pub http2: Http2Config,
    /// Shutdown: after NOT_SERVING (and deregistration), keep accepting this long so clients and
    /// load balancers move away before the listener closes, in ms.
    #[serde(default)]
    pub drain_delay_ms: u64,
    /// Shutdown: the most the ordered drain may take after the signal, in ms; past it the process
    /// exits and logs what was cut.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    /// TLS on the public port (mTLS with `client_ca_path`); plaintext when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// When set, every call but health checks must carry `authorization: Bearer <token>`.
    #[serde(default)]
    pub auth_token: Option<String>,
}

const fn default_default_deadline_ms() -> u64 {
    2_000
}

const fn default_max_deadline_ms() -> u64 {
    60_000
}

const fn default_grace_ms() -> u64 {
    10_000
}

const fn default_max_connections() -> usize {
    10_000
}

const fn default_handshake_timeout_ms() -> u64 {
    10_000
}

const fn default_tcp_keepalive_ms() -> u64 {
    60_000
}

const fn default_tcp_keepalive_interval_ms() -> u64 {
    10_000
}

const fn default_tcp_keepalive_retries() -> u32 {
    3
}

/// `[server.tls]`: PEM files, read at start-up (a missing or unreadable file fails start-up
/// naming the key). rustls (ring) through tonic; no OpenSSL at run time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate chain (PEM).
    pub cert_path: PathBuf,
    /// Its private key (PEM).
    pub key_path: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    #[serde(default)]
    pub client_ca_path: Option<PathBuf>,
}

/// `[server.http2]`: per-connection limits of the public listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http2Config {
    /// Streams (RPCs) one connection may have open at once; tonic's default is unlimited.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Streams a client may reset before they are accepted (the HTTP/2 rapid-reset attack).
    #[serde(default = "default_max_pending_accept_reset_streams")]
    pub max_pending_accept_reset_streams: usize,
    /// Streams augur may reset on one connection for the client's protocol errors (flow-control
    /// violations, malformed frames) before it sends GOAWAY: the guard against the
    /// "MadeYouReset" class of attack. tonic sets no limit unless asked.
    #[serde(default = "default_max_local_error_reset_streams")]
    pub max_local_error_reset_streams: usize,
    /// Largest request header block, in bytes.
    #[serde(default = "default_max_header_list_size")]
    pub max_header_list_size: u32,
    /// PING an idle connection this often, in ms (0 = never), so dead peers are noticed.
    #[serde(default = "default_keepalive_interval_ms")]
    pub keepalive_interval_ms: u64,
    /// Close a connection whose PING is not answered within this, in ms.
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// Send GOAWAY after a connection lived this long, in ms (0 = never), so long-lived client
    /// connections rebalance over new replicas.
    #[serde(default = "default_max_connection_age_ms")]
    pub max_connection_age_ms: u64,
    /// After the GOAWAY of `max_connection_age_ms`, close the connection this much later, in ms,
    /// whatever is still open on it (0 = never): without it a Watch stream or a stalled
    /// response keeps an aged connection open for good. augur enforces it itself (tonic's own
    /// grace would drop the GOAWAY).
    #[serde(default = "default_max_connection_age_grace_ms")]
    pub max_connection_age_grace_ms: u64,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_concurrent_streams: default_max_concurrent_streams(),
            max_pending_accept_reset_streams: default_max_pending_accept_reset_streams(),
            max_local_error_reset_streams: default_max_local_error_reset_streams(),
            max_header_list_size: default_max_header_list_size(),
            keepalive_interval_ms: default_keepalive_interval_ms(),
            keepalive_timeout_ms: default_keepalive_timeout_ms(),
            max_connection_age_ms: default_max_connection_age_ms(),
            max_connection_age_grace_ms: default_max_connection_age_grace_ms(),
        }
    }
}

const fn default_max_concurrent_streams() -> u32 {
    1024
}

const fn default_max_pending_accept_reset_streams() -> usize {
    20
}

const fn default_max_local_error_reset_streams() -> usize {
    1024
}
const fn default_max_header_list_size() -> u32 {
    16 * 1024
}

const fn default_keepalive_interval_ms() -> u64 {
    30_000
}

const fn default_keepalive_timeout_ms() -> u64 {
    10_000
}

const fn default_max_connection_age_ms() -> u64 {
    30 * 60 * 1000
}

const fn default_max_connection_age_grace_ms() -> u64 {
    60_000
}

const fn default_deadline_margin_us() -> u64 {
    1000
}

const fn default_max_candidates() -> usize {
    4000
}

const fn default_max_string_bytes() -> usize {
    1024
}

const fn default_max_list_len() -> usize {
    256
}

const fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}

const fn default_concurrency_limit() -> usize {
    256
}

const fn default_max_buffered_request_bytes() -> usize {
    16 * 1024 * 1024
}

const fn default_request_read_timeout_ms() -> u64 {
    5_000
}

const fn default_connection_fair_share() -> usize {
    32
}

const fn default_max_watch_streams() -> usize {
    1000
}

impl ServerConfig {
    /// Range checks serde cannot express.
    pub fn validate(&self) -> Result<(), Invalid> {
        let s = self;
        in_range("server.max_candidates", s.max_candidates, 1, 100_000)?;
        in_range("server.max_string_bytes", s.max_string_bytes, 1, 1 << 20)?;
        in_range("server.max_list_len", s.max_list_len, 1, 100_000)?;
        in_range("server.max_message_bytes", s.max_message_bytes, 1024, 1 << 30)?;
        in_range("server.concurrency_limit", s.concurrency_limit, 1, 1 << 20)?;
        in_range("server.connection_fair_share", s.connection_fair_share, 1, 1 << 20)?;
        in_range("server.max_watch_streams", s.max_watch_streams, 1, 1 << 20)?;
        in_range("server.max_buffered_request_bytes", s.max_buffered_request_bytes, s.max_message_bytes, 1 << 32)?;
        in_range("server.request_read_timeout_ms", s.request_read_timeout_ms as usize, 1, 600_000)?;
        in_range("server.deadline_margin_us", s.deadline_margin_us as usize, 0, 60_000_000)?;
        in_range("server.max_deadline_ms", s.max_deadline_ms as usize, 1, 86_400_000)?;
        in_range("server.default_deadline_ms", s.default_deadline_ms as usize, 1, s.max_deadline_ms as usize)?;
        in_range("server.drain_delay_ms", s.drain_delay_ms as usize, 0, 600_000)?;
        in_range("server.grace_ms", s.grace_ms as usize, 1, 3_600_000)?;
        in_range("server.max_connections", s.max_connections, 1, 1 << 20)?;
        in_range("server.handshake_timeout_ms", s.handshake_timeout_ms as usize, 100, 600_000)?;
        in_range("server.tcp_keepalive_ms", s.tcp_keepalive_ms as usize, 0, 86_400_000)?;
        in_range("server.tcp_keepalive_interval_ms", s.tcp_keepalive_interval_ms as usize, 1000, 3_600_000)?;
        in_range("server.tcp_keepalive_retries", s.tcp_keepalive_retries as usize, 1, 100)?;
        bearer_token("server.auth_token", s.auth_token.as_deref())?;
        if let Some(tls) = &s.tls {
            let files = [("cert_path", Some(&tls.cert_path)), ("key_path", Some(&tls.key_path))];
            for (key, path) in files.into_iter().chain([("client_ca_path", tls.client_ca_path.as_ref())]) {
                if let Some(path) = path
                    && !path.is_file()
                {
                    return Err(invalid(
                        &format!("server.tls.{key}"),
                        &format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }
        let h = &s.http2;
        in_range("server.http2.max_concurrent_streams", h.max_concurrent_streams as usize, 1, 1 << 20)?;
        in_range("server.http2.max_pending_accept_reset_streams", h.max_pending_accept_reset_streams, 1, 1 << 20)?;
        in_range("server.http2.max_local_error_reset_streams", h.max_local_error_reset_streams, 1, 1 << 20)?;
        in_range("server.http2.max_header_list_size", h.max_header_list_size as usize, 1024, 1 << 24)?;
        in_range("server.http2.keepalive_interval_ms", h.keepalive_interval_ms as usize, 0, 86_400_000)?;
        in_range("server.http2.keepalive_timeout_ms", h.keepalive_timeout_ms as usize, 1, 86_400_000)?;
        in_range("server.http2.max_connection_age_ms", h.max_connection_age_ms as usize, 0, 30 * 86_400_000)?;
        in_range("server.http2.max_connection_age_grace_ms", h.max_connection_age_grace_ms as usize, 0, 86_400_000)?;
        Ok(())
    }
}
