//! gRPC-Go's own etcd resolver (`go.etcd.io/etcd/clientv3/naming/resolver`, Debian's etcd 3.4
//! sources) resolves two augur instances registered in a real etcd and reaches both:
//! `examples/go/resolve_health` is built offline (GOPATH mode, Debian's Go packages, which
//! `scripts/setup.sh` installs) and round-robins health checks over what it resolved.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::etcd_server::EtcdServer;

const SERVICE: &str = "augur-go";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_resolver_reaches_both_registered_instances() {
    let etcd = EtcdServer::start().await;
    // Metadata as a JSON string, the form grpc-go accepts (an object makes it panic).
    let toml = format!(
        "[registry]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nservices = [\"{SERVICE}\"]\nmetadata = '{{\"zone\":\"a\"}}'\n",
        etcd.endpoint()
    );
    let a = common::start(common::demo_config(&toml)).await;
    let b = common::start(common::demo_config(&toml)).await;
    let mut client = etcd.client().await;
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let listed = client.get(SERVICE, Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
            if listed.kvs().len() == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("both instances registered");

    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("resolve_health");
    let endpoint = etcd.endpoint();
    let output = tokio::task::spawn_blocking(move || {
        let build = Command::new("go")
            .args(["build", "-o", binary.to_str().unwrap(), "./examples/go/resolve_health"])
            .current_dir(common::root())
            .env("GO111MODULE", "off")
            .env("GOPATH", "/usr/share/gocode")
            .env("GOPROXY", "off")
            .output()
            .expect("go (scripts/setup.sh installs golang-go, golang-etcd-server-dev, golang-google-grpc-dev)");
        assert!(build.status.success(), "go build failed:\n{}", String::from_utf8_lossy(&build.stderr));
        Command::new(&binary)
            .args(["-etcd", &endpoint, "-service", SERVICE, "-calls", "20"])
            .output()
            .expect("run resolve_health")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "resolve_health failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let mut seen = BTreeSet::new();
    for line in stdout.lines() {
        let (peer, status) = line.split_once(' ').expect("<peer> <status>");
        assert_eq!(status, "SERVING", "{line}");
        seen.insert(peer.to_owned());
    }
    let expected: BTreeSet<String> = [a.addr.to_string(), b.addr.to_string()].into();
    assert_eq!(seen, expected, "round robin over both resolved instances:\n{stdout}");

    a.stop().await;
    b.stop().await;
}
