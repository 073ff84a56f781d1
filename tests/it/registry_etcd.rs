//! etcd registration against a real etcd: the key and value gRPC-Go's etcd resolver reads, under
//! a lease; deregistration at shutdown step (1) while the server still answers NOT_SERVING;
//! re-registration by itself after the lease is revoked from outside or etcd is killed and
//! restarted; start-up and config errors that name what is wrong.

use std::time::Duration;

use augur::app::{App, StartError};
use augur::config::Config;
use augur::registry::metrics::{RegistrationLabels, RegistryLabels};
use etcd_client::{Client, GetOptions};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::common;
use crate::common::etcd_server::EtcdServer;
use crate::common::process::AugurProcess;

/// Guards a wait that should end on its own, so a bug fails the test instead of hanging it.
const HANG: Duration = Duration::from_secs(60);

const SERVICE: &str = "augur-test";

fn registry_toml(etcd: &EtcdServer, lease_ttl_s: u64, extra: &str) -> String {
    format!(
        "[registry]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nservices = [\"{SERVICE}\"]\nlease_ttl_s = {lease_ttl_s}\n{extra}",
        etcd.endpoint()
    )
}

/// The key's value and lease, once it exists (and `until` holds for it).
async fn wait_for_key(client: &mut Client, key: &str, until: impl Fn(&str, i64) -> bool) -> (String, i64) {
    tokio::time::timeout(HANG, async {
        loop {
            if let Ok(response) = client.get(key, None).await
                && let Some(kv) = response.kvs().first()
            {
                let value = kv.value_str().unwrap().to_owned();
                if until(&value, kv.lease()) {
                    return (value, kv.lease());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("key {key} never appeared as expected"))
}

async fn wait_for_no_key(client: &mut Client, key: &str) {
    tokio::time::timeout(HANG, async {
        while client.get(key, None).await.map(|r| !r.kvs().is_empty()).unwrap_or(true) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("key {key} never went away"));
}

fn state(server: &common::TestServer) -> i64 {
    server
        .metrics
        .of::<augur::registry::metrics::RegistryMetrics>()
        .state
        .get_or_create(&RegistryLabels { registry: "etcd".into() })
        .get()
}

fn registrations(server: &common::TestServer, outcome: &str) -> u64 {
    let labels = RegistrationLabels { registry: "etcd".into(), outcome: outcome.into() };
    server.metrics.of::<augur::registry::metrics::RegistryMetrics>().registrations.get_or_create(&labels).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_the_go_naming_value_under_a_kept_alive_lease() {
    common::require!(Etcd, Ort);
    let etcd = EtcdServer::start().await;
    let metadata = r#"metadata = '{"version":"1","zone":"a"}'"#;
    let server = common::start(common::demo_config(&registry_toml(&etcd, 3, metadata))).await;
    let mut client = etcd.client().await;
    let key = format!("{SERVICE}/{}", server.addr);

    let (value, lease) = wait_for_key(&mut client, &key, |_, _| true).await;
    let expected = format!(r#"{{"Op":0,"Addr":"{}","Metadata":"{{\"version\":\"1\",\"zone\":\"a\"}}"}}"#, server.addr);
    assert_eq!(value, expected);
    assert_ne!(lease, 0, "the key hangs off a lease");
    // The Go resolver reads by prefix without a trailing slash: exactly this one endpoint.
    let listed = client.get(SERVICE, Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(listed.kvs().len(), 1);

    // Kept alive: after more than a TTL the same lease still holds the key.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, still) = wait_for_key(&mut client, &key, |_, _| true).await;
    assert_eq!(still, lease, "the lease must be kept alive, not replaced");
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() > 0, "lease alive: {ttl:?}");
    assert_eq!(state(&server), 1);
    assert_eq!(registrations(&server, "registered"), 1);
    assert!(server.metrics.render().contains("augur_registration_state{registry=\"etcd\"} 1"));

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deregisters_while_the_server_still_answers_not_serving() {
    common::require!(Etcd, Ort);
    let etcd = EtcdServer::start().await;
    // A long drain delay: the server keeps accepting after step (1), so the key must be gone
    // while health still answers (NOT_SERVING). A TTL far longer than the test: the lease can only
    // end by being revoked, not by expiring.
    let toml = format!("[server]\ndrain_delay_ms = 8000\n{}", registry_toml(&etcd, 300, ""));
    let server = common::start(common::demo_config(&toml)).await;
    let mut client = etcd.client().await;
    let key = format!("{SERVICE}/{}", server.addr);
    let (_, lease) = wait_for_key(&mut client, &key, |_, _| true).await;
    let mut health = HealthClient::new(server.channel().await);

    server.request_shutdown().await;
    wait_for_no_key(&mut client, &key).await;
    let status = health.check(HealthCheckRequest { service: String::new() }).await.expect("still answering");
    assert_eq!(status.into_inner().status(), ServingStatus::NotServing);
    assert_eq!(state(&server), 0);
    // The keys are deleted first, then the lease is revoked.
    tokio::time::timeout(HANG, async {
        while client.lease_time_to_live(lease, None).await.unwrap().ttl() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("lease never revoked");
    assert_eq!(registrations(&server, "lost"), 0, "leaving is not a loss");

    server.join().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_again_after_the_lease_is_revoked_from_outside() {
    common::require!(Etcd, Ort);
    let etcd = EtcdServer::start().await;
    let server = common::start(common::demo_config(&registry_toml(&etcd, 3, ""))).await;
    let mut client = etcd.client().await;
    let key = format!("{SERVICE}/{}", server.addr);
    let (_, lease) = wait_for_key(&mut client, &key, |_, _| true).await;

    client.lease_revoke(lease).await.unwrap();
    let (value, new_lease) = wait_for_key(&mut client, &key, |_, l| l != lease).await;
    assert_eq!(value, format!(r#"{{"Op":0,"Addr":"{}","Metadata":null}}"#, server.addr));
    assert!(client.lease_time_to_live(new_lease, None).await.unwrap().ttl() > 0);
    // The registry counts a registration once its PUT has returned, which can be just after the
    // key became visible to this client.
    common::wait_for("the second registration counted", async || registrations(&server, "registered") >= 2).await;
    assert!(registrations(&server, "lost") >= 1);

    server.stop().await;
    wait_for_no_key(&mut client, &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_again_after_etcd_is_killed_and_restarted() {
    common::require!(Etcd, Ort);
    let mut etcd = EtcdServer::start().await;
    let server = common::start(common::demo_config(&registry_toml(&etcd, 3, ""))).await;
    let mut client = etcd.client().await;
    let key = format!("{SERVICE}/{}", server.addr);
    let (_, lease) = wait_for_key(&mut client, &key, |_, _| true).await;

    etcd.kill();
    // augur notices the broken keepalive (stream error, or no answer within the TTL).
    tokio::time::timeout(HANG, async {
        while registrations(&server, "lost") == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the lost registration was never noticed");
    etcd.spawn().await;

    // Back by itself, under a fresh lease, while augur kept running.
    let mut client = etcd.client().await;
    let (_, new_lease) = wait_for_key(&mut client, &key, |_, l| l != lease).await;
    assert!(client.lease_time_to_live(new_lease, None).await.unwrap().ttl() > 0);
    tokio::time::timeout(HANG, async {
        while state(&server) != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("registration state back to 1");
    let mut predict = server.client().await;
    predict.predict(common::ranking_request("u1", &["i1"])).await.expect("still serving");

    server.stop().await;
    wait_for_no_key(&mut client, &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_at_start_up_is_an_error_naming_the_endpoints() {
    common::require!(Etcd, Ort);
    let port = common::free_ports(1)[0];
    let toml =
        format!("[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:{port}\"]\nconnect_timeout_ms = 500\n");
    let config = common::demo_config(&toml);
    let err = tokio::time::timeout(HANG, App::build(config)).await.expect("bounded").unwrap_err();
    assert!(matches!(err, StartError::Registry(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("http://127.0.0.1:{port}")) && message.contains("500 ms"), "{message}");
}

#[test]
fn config_validation_names_the_key() {
    let etcd = "[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n";
    let prefix = Config::from_toml(&format!("{etcd}services = [\"augur\", \"augur-canary\"]\n")).unwrap_err();
    assert!(prefix.to_string().contains("`registry.services[0]`"), "{prefix}");
    let wildcard = Config::from_toml(&format!("[server]\nlisten = \"0.0.0.0:50051\"\n{etcd}")).unwrap_err();
    assert!(wildcard.to_string().contains("`registry.advertise`"), "{wildcard}");
    let unknown = Config::from_toml(&format!("{etcd}lease_ttl = 3\n")).unwrap_err();
    assert!(unknown.to_string().contains("lease_ttl"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_etcd_dead_is_bounded_and_clean() {
    common::require!(Etcd, Ort);
    let mut etcd = EtcdServer::start().await;
    let toml = registry_toml(&etcd, 3, "deregister_timeout_ms = 500\n");
    let server = common::start(common::demo_config(&toml)).await;
    let mut client = etcd.client().await;
    wait_for_key(&mut client, &format!("{SERVICE}/{}", server.addr), |_, _| true).await;

    etcd.kill();
    // Deregistration fails within its bound (logged); the drain goes on and ends cleanly.
    tokio::time::timeout(HANG, server.stop()).await.expect("shutdown hung on a dead etcd");
}

/// A crashed instance cannot deregister: its key must go with its lease. The real binary is
/// SIGKILLed; the key disappears once the lease TTL runs out (not asserted against the clock:
/// the elapsed time is printed, the hang guard is the bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_the_key_expires_with_its_lease() {
    common::require!(Etcd, Ort);
    let etcd = EtcdServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("augur.toml");
    std::fs::write(&config, registry_toml(&etcd, 2, "")).unwrap();
    // A fixed port: the real binary refuses port 0 with a registry (nothing to advertise).
    let listen = format!("127.0.0.1:{}", common::free_ports(1)[0]);
    let augur = AugurProcess::launch().config(&config).env("AUGUR__SERVER__LISTEN", listen).start().await;
    let mut client = etcd.client().await;
    let key = format!("{SERVICE}/{}", augur.addr);
    let (_, lease) = wait_for_key(&mut client, &key, |_, lease| lease != 0).await;
    augur.kill();
    let started = std::time::Instant::now();
    wait_for_no_key(&mut client, &key).await;
    eprintln!("key gone {:?} after SIGKILL (lease TTL 2 s)", started.elapsed());
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() <= 0, "the lease must have expired with the crashed instance: {}", ttl.ttl());
}
