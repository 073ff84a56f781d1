//! Rolling restart under load: two augur instances registered in a real etcd, the discovering
//! client (`augur::client`) driving steady load at both for the whole test, each instance shut
//! down gracefully (deregister → drain delay → stop accepting → in-flight finish) and replaced by
//! a new one on a new port, in turn. Not one request may fail; the old keys go, the new ones
//! come, and the load reaches the new instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use augur::client::PredictionClient;
use etcd_client::{Client, GetOptions};

use crate::common;
use crate::common::TestServer;
use crate::common::etcd_server::EtcdServer;
use crate::common::fake_model::{FakeLoader, fake_config, fake_repository};

/// Guards a wait that should end on its own, so a bug fails the test instead of hanging it.
const HANG: Duration = Duration::from_secs(60);

const SERVICE: &str = "augur-rolling";

/// Concurrent callers, each pacing itself to one request per `PACE`: ~800 requests/s offered.
const CALLERS: usize = 8;
const PACE: Duration = Duration::from_millis(10);

/// One augur instance: its server, its model (to see that it served) and its key.
struct Instance {
    server: TestServer,
    loader: FakeLoader,
    key: String,
    _dir: tempfile::TempDir,
}

/// A fake-model augur on a fresh port, registered in `etcd` under that address.
async fn instance(etcd: &EtcdServer) -> Instance {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap().to_string();
    // A drain delay long enough for the client's watch to see the DELETE before the listener
    // closes; a lease far longer than the test, so keys only go by deregistration.
    let toml = format!(
        "[server]\ndrain_delay_ms = 400\n[registry]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nservices = [\"{SERVICE}\"]\nlease_ttl_s = 60\nadvertise = \"{addr}\"\n",
        etcd.endpoint()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = fake_config(&fake_repository(dir.path()), &toml);
    config.server.listen = addr.parse().unwrap();
    let loader = FakeLoader::default();
    let parts = augur::app::Parts { loader: Some(Arc::new(loader.clone())), ..Default::default() };
    let server = common::start_on(listener, config, parts).await;
    Instance { server, loader, key: format!("{SERVICE}/{addr}"), _dir: dir }
}

impl Instance {
    fn addr(&self) -> String {
        self.server.addr.to_string()
    }

    fn runs(&self) -> usize {
        self.loader.controls.runs.load(Ordering::SeqCst)
    }

    /// Waits (under load) until this instance's model has scored requests the client sent.
    async fn wait_serving(&self) {
        let before = self.runs();
        tokio::time::timeout(HANG, async {
            while self.runs() <= before {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} never got load from the discovering client", self.addr()));
    }

    /// SIGTERM as the test harness sends it, then the end of the ordered shutdown.
    async fn stop(self) -> usize {
        let runs = self.runs();
        self.server.request_shutdown().await;
        tokio::time::timeout(HANG, self.server.join()).await.expect("shutdown hung").expect("clean shutdown");
        runs.max(self.loader.controls.runs.load(Ordering::SeqCst))
    }
}

/// The keys under `<service>/`, read as the Go resolver reads them.
async fn keys(etcd: &mut Client) -> Vec<String> {
    let listed = etcd.get(format!("{SERVICE}/"), Some(GetOptions::new().with_prefix())).await.expect("etcd get");
    let mut keys: Vec<String> = listed.kvs().iter().map(|kv| kv.key_str().unwrap().to_owned()).collect();
    keys.sort();
    keys
}

/// Waits until the client knows exactly `addrs`.
async fn wait_endpoints(client: &PredictionClient, addrs: &[String]) {
    let mut want = addrs.to_vec();
    want.sort();
    tokio::time::timeout(HANG, async {
        while client.endpoints() != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("client endpoints {:?}, expected {want:?}", client.endpoints()));
}

/// Counts of the load.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    first_failures: std::sync::Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_fails_no_request() {
    common::require!(Etcd);
    let etcd = EtcdServer::start().await;
    let mut kv = etcd.client().await;
    let a = instance(&etcd).await;
    let b = instance(&etcd).await;
    let client = PredictionClient::discover(&format!("etcd://127.0.0.1:{}/{SERVICE}", etcd.client_port)).unwrap();
    wait_endpoints(&client, &[a.addr(), b.addr()]).await;

    // Steady load for the whole test.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (client, tally, stop) = (client.clone(), Arc::clone(&tally), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut pace = tokio::time::interval(PACE);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    pace.tick().await;
                    let items = [format!("i{}", (caller * 7 + n) % 50), format!("i{}", n % 13)];
                    let items: Vec<&str> = items.iter().map(String::as_str).collect();
                    let request = common::ranking_request(&format!("u{}", n % 100), &items);
                    let result = tokio::time::timeout(HANG, client.predict(request)).await;
                    match result {
                        Ok(Ok(response)) => {
                            assert_eq!(response.scores.len(), 2);
                            tally.ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Err(e)) => {
                            tally.failed.fetch_add(1, Ordering::SeqCst);
                            let mut first = tally.first_failures.lock().unwrap();
                            if first.len() < 5 {
                                first.push(format!("{e}: {:?}", e.status()));
                            }
                        }
                        Err(_) => panic!("a Predict call hung"),
                    }
                    n += 1;
                }
            })
        })
        .collect();

    a.wait_serving().await;
    b.wait_serving().await;
    let (old_a, old_b) = (a.key.clone(), b.key.clone());

    // Restart A, then B: each old instance leaves, its replacement joins on a new port.
    let served_a = a.stop().await;
    let a2 = instance(&etcd).await;
    wait_endpoints(&client, &[a2.addr(), b.addr()]).await;
    a2.wait_serving().await;
    let served_b = b.stop().await;
    let b2 = instance(&etcd).await;
    wait_endpoints(&client, &[a2.addr(), b2.addr()]).await;
    b2.wait_serving().await;
    // And a little more load with both new instances in place.
    a2.wait_serving().await;
    b2.wait_serving().await;

    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        tokio::time::timeout(HANG, caller).await.expect("caller hung").expect("caller panicked");
    }

    let (ok, failed) = (tally.ok.load(Ordering::SeqCst), tally.failed.load(Ordering::SeqCst));
    assert_eq!(failed, 0, "{failed} failed of {}: {:?}", ok + failed, tally.first_failures.lock().unwrap());
    assert!(ok > 0);
    let mut expected = vec![a2.key.clone(), b2.key.clone()];
    expected.sort();
    let now = keys(&mut kv).await;
    assert_eq!(now, expected, "old keys {old_a} and {old_b} gone, the new ones there");
    // Every instance, old and new, served part of the load.
    let served = [served_a, served_b, a2.runs(), b2.runs()];
    assert!(served.iter().all(|&runs| runs > 0), "model runs per instance: {served:?}");
    eprintln!("rolling restart: {ok} requests, 0 failed; model runs per instance {served:?}");

    a2.stop().await;
    b2.stop().await;
}
