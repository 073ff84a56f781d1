//! The public port's connections (`src/server/listener.rs`): sockets that never open HTTP/2 are
//! closed after `server.handshake_timeout_ms` (also under TLS), connections beyond
//! `server.max_connections` are closed at once, an aged connection is cut
//! `max_connection_age_grace_ms` after its GOAWAY, and out of file descriptors the real binary
//! backs off instead of spinning, says so once, and serves again when descriptors come back.

use std::time::Duration;

use augur::server::metrics::{ListenerMetrics, ReasonLabels};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::common;
use crate::common::fake_model::{FakeLoader, start_fake};
use crate::common::process::{AugurProcess, Event, field};

/// Far longer than any limit a test sets: only a connection that stays open runs into it.
const PATIENCE: Duration = Duration::from_secs(30);

/// Reads (and discards what the server sends, its SETTINGS) until the server closes `stream`:
/// `true` on EOF or a reset, `false` if it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

fn closed(metrics: &augur::telemetry::Metrics, reason: &'static str) -> u64 {
    metrics.of::<ListenerMetrics>().closed.get_or_create(&ReasonLabels { reason }).get()
}

fn open(metrics: &augur::telemetry::Metrics) -> i64 {
    metrics.of::<ListenerMetrics>().open.get()
}

async fn health_check(channel: Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_send_the_preface_are_closed_after_the_handshake_timeout() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "[server]\nhandshake_timeout_ms = 300\n").await;
    let mut client = server.client().await;
    let request = common::ranking_request("u1", &["i1", "i2"]);
    client.predict(request.clone()).await.unwrap();

    // Silent sockets, and sockets that trickle the first bytes of the preface and stop.
    let mut idle = Vec::new();
    for i in 0..6 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        if i % 2 == 1 {
            stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        }
        idle.push(stream);
    }
    for (i, stream) in idle.iter_mut().enumerate() {
        assert!(closed_within(stream, PATIENCE).await, "idle connection {i} still open after {PATIENCE:?}");
    }
    assert_eq!(closed(&server.metrics, "handshake_timeout"), 6);

    // The client that sent its preface was not timed out, though it idled past the timeout too.
    tokio::time::sleep(Duration::from_millis(600)).await;
    client.predict(request).await.expect("Predict on the connection opened before");
    health_check(server.channel().await).await.expect("health on a new connection");
    assert_eq!(closed(&server.metrics, "handshake_timeout"), 6, "only the idle sockets were closed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_stalls_is_closed_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    common::certs::make_certs(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let toml = format!(
        "[server]\nhandshake_timeout_ms = 300\n[server.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        path("server.pem"),
        path("server.key")
    );
    let loader = FakeLoader::default();
    let (_repo, server) = start_fake(&loader, &toml).await;

    // A ClientHello record header announcing 300 bytes, then 10 of them, then nothing: tonic
    // waits for the rest of the TLS handshake forever unless the listener's timer ends it.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&[22, 3, 1, 1, 44, 1, 0, 1, 40, 3, 3, 0, 0, 0, 0]).await.unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut stalled, PATIENCE).await, "a stalled TLS handshake is still open");
    assert!(closed_within(&mut silent, PATIENCE).await, "a silent TLS connection is still open");
    assert_eq!(closed(&server.metrics, "handshake_timeout"), 2);

    // A real TLS client completes its handshake within the timeout and is served.
    let ca = Certificate::from_pem(std::fs::read(dir.path().join("ca.pem")).unwrap());
    let channel = Channel::from_shared(format!("https://localhost:{}", server.addr.port()))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost"))
        .unwrap()
        .connect()
        .await
        .expect("TLS connect");
    let mut client = augur::proto::prediction_client::PredictionClient::new(channel);
    client.predict(common::ranking_request("u1", &["i1"])).await.expect("Predict over TLS");
    tokio::time::sleep(Duration::from_millis(600)).await;
    client.predict(common::ranking_request("u1", &["i1"])).await.expect("the TLS client outlives the timeout");
    assert_eq!(closed(&server.metrics, "handshake_timeout"), 2);
    // The admin gRPC port stays plaintext: a connection that opened with the bare preface (and
    // an empty SETTINGS frame) is not mistaken for a stalled TLS handshake.
    let mut admin = TcpStream::connect(server.admin_addr).await.unwrap();
    admin.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
    assert!(!closed_within(&mut admin, Duration::from_secs(1)).await, "the admin connection was closed");
    drop(admin);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_are_closed_at_once_and_counted() {
    let loader = FakeLoader::default();
    let (_dir, server) = start_fake(&loader, "[server]\nmax_connections = 3\nhandshake_timeout_ms = 60000\n").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    common::wait_for("3 open connections", async || open(&server.metrics) == 3).await;

    // The fourth is closed as soon as it is accepted (long before the 60 s handshake timeout).
    let mut fourth = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut fourth, PATIENCE).await, "the connection over the cap is still open");
    assert_eq!(closed(&server.metrics, "max_connections"), 1);
    assert_eq!(open(&server.metrics), 3);
    let text = server.metrics.render();
    assert!(text.contains("augur_server_connections_closed_total{reason=\"max_connections\"} 1"), "{text}");

    // When the held ones go, their places come back.
    drop(held);
    common::wait_for("the held connections to close", async || open(&server.metrics) == 0).await;
    let mut client = server.client().await;
    client.predict(common::ranking_request("u1", &["i1"])).await.expect("Predict after the cap freed up");
    assert_eq!(open(&server.metrics), 1);
    assert_eq!(closed(&server.metrics, "max_connections"), 1);
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aged_connection_is_closed_after_the_grace_even_with_a_stream_open() {
    let loader = FakeLoader::default();
    let extra = "[server.http2]\nmax_connection_age_ms = 300\nmax_connection_age_grace_ms = 300\n";
    let (_dir, server) = start_fake(&loader, extra).await;
    // A health Watch never ends on its own: after the GOAWAY it would hold the connection forever.
    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert!(watch.message().await.unwrap().is_some(), "the first status");
    let ended = tokio::time::timeout(PATIENCE, async { while let Ok(Some(_)) = watch.message().await {} }).await;
    assert!(ended.is_ok(), "the Watch stream outlived max_connection_age + grace");
    assert_eq!(closed(&server.metrics, "max_connection_age_grace"), 1);
    server.stop().await;
}

/// CPU time (user + system) of `pid` so far, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After "pid (comm) ", utime and stime are the 12th and 13th fields.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_listener_backs_off_logs_once_and_recovers() {
    common::require!(Ort);
    // systemd's LimitNOFILE=soft:hard, small: augur itself holds ~25 descriptors.
    let mut augur =
        AugurProcess::launch().open_files(64, 128).env("AUGUR__SERVER__HANDSHAKE_TIMEOUT_MS", "60000").start().await;
    let limit = |key| field(&augur.log, "open-file limit (RLIMIT_NOFILE)", key);
    assert_eq!(
        (limit("soft_before"), limit("soft"), limit("hard")),
        (Some("64".into()), Some("128".into()), Some("128".into()))
    );

    // More idle connections than augur has descriptors: the rest wait in the listen backlog and
    // every accept fails with EMFILE. Once the backlog is full too, connects stall: enough.
    let mut idle = Vec::new();
    while idle.len() < 200 {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(augur.addr)).await {
            Ok(Ok(stream)) => idle.push(stream),
            _ => break,
        }
    }
    assert!(idle.len() > 128, "only {} connections before the backlog filled", idle.len());
    let starved = "listener out of file descriptors or kernel memory: accepting backs off \
                   (raise the open-file limit or lower server.max_connections)";
    let logged = |augur: &mut AugurProcess| {
        augur.read_log().iter().filter(|l| Event::parse(l).is_some_and(|e| e.message() == Some(starved))).count()
    };
    common::wait_for("the EMFILE log line", async || logged(&mut augur) > 0).await;
    // Let the back-off grow (10 ms doubling to 1 s), then measure: tonic's own loop spun a whole
    // core here. A ratio of CPU time to wall time, with a wide margin: under half a core.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // SAFETY: sysconf reads a constant.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    let (before, start) = (cpu_ticks(augur.pid()), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (used, wall) = (cpu_ticks(augur.pid()) - before, start.elapsed());
    let share = used as f64 / hz as f64 / wall.as_secs_f64();
    assert!(share < 0.5, "augur used {:.0}% of a core while out of file descriptors", share * 100.0);
    assert_eq!(logged(&mut augur), 1, "one line per 10 s, not one per failed accept");

    // The descriptors come back: health answers on a new connection, readiness returns, and the
    // failures were counted as the listener's.
    drop(idle);
    let addr = augur.addr;
    common::wait_for("health on a new connection", async || {
        let connect = Channel::from_shared(format!("http://{addr}")).unwrap().connect_timeout(Duration::from_secs(2));
        match tokio::time::timeout(Duration::from_secs(5), connect.connect()).await {
            Ok(Ok(channel)) => health_check(channel).await.is_ok(),
            _ => false,
        }
    })
    .await;
    let admin = augur.admin.unwrap();
    common::wait_for("/readyz", async || common::http::get(admin, "/readyz").await.0 == 200).await;
    let text = augur.metrics().await;
    let emfile = text
        .lines()
        .find_map(|l| l.strip_prefix("augur_server_accept_errors_total{reason=\"emfile\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(emfile.is_some_and(|n| n >= 1.0), "no EMFILE counted:\n{text}");
    assert!(text.contains("augur_server_accept_starved 0"), "{text}");
    augur.kill();
}
