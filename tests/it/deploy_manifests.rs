//! The Kubernetes manifests agree with augur: the ConfigMap's `augur.toml` is a valid config (with
//! the advertise address the Deployment injects), the probes point at the ports it listens on, and
//! the pod's termination grace covers the ordered drain (drain delay + grace), so the kubelet never
//! SIGKILLs a draining replica. Schema validation is `kubernetes-validate` in scripts/test.sh.
//! Likewise for docker-compose.yml (parsed by `docker-compose config` in scripts/test.sh): its
//! augur config validates, what it mounts exists, and Prometheus and Grafana point at augur.

use augur::config::Config;
use serde_yaml_ng::Value;

use crate::common;

fn manifest(name: &str) -> Value {
    yaml(&format!("deploy/k8s/{name}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(common::root().join(path)).unwrap()).unwrap()
}

#[test]
fn the_configmap_config_is_valid_and_the_pod_outlives_the_drain() {
    let configmap = manifest("configmap.yaml");
    let toml = configmap["data"]["augur.toml"].as_str().expect("data.augur.toml");
    // The Deployment sets AUGUR__REGISTRY__ADVERTISE from the pod IP; without it validation must
    // refuse the wildcard listen address, with it the config is complete.
    let err = Config::from_toml(toml).unwrap_err().to_string();
    assert!(err.contains("registry.advertise"), "{err}");
    let config = Config::from_toml(&toml.replace("[registry]\n", "[registry]\nadvertise = \"10.0.0.7:50051\"\n"))
        .expect("the ConfigMap's augur.toml must validate");

    let deployment = manifest("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env: Vec<&str> = container["env"].as_sequence().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(env.contains(&"AUGUR__REGISTRY__ADVERTISE"), "{env:?}");
    let grace_s = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain_ms = config.server.drain_delay_ms + config.server.grace_ms;
    assert!(grace_s * 1000 > drain_ms, "terminationGracePeriodSeconds {grace_s} s ≤ drain {drain_ms} ms");

    let grpc_port = u64::from(config.server.listen.port());
    assert_eq!(container["readinessProbe"]["grpc"]["port"].as_u64(), Some(grpc_port));
    assert_eq!(container["startupProbe"]["grpc"]["port"].as_u64(), Some(grpc_port));
    let ports = container["ports"].as_sequence().unwrap();
    let port = |name: &str| ports.iter().find(|p| p["name"] == name).and_then(|p| p["containerPort"].as_u64());
    assert_eq!(port("grpc"), Some(grpc_port));
    assert_eq!(port("admin-http"), Some(u64::from(config.admin.listen.port())));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
}

#[test]
fn the_compose_config_is_valid_and_prometheus_and_grafana_reach_augur() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let toml = std::fs::read_to_string(common::root().join("deploy/compose/augur.toml")).unwrap();
    let config = Config::from_toml(&toml).expect("deploy/compose/augur.toml must validate");
    assert!(config.admin.listen.ip().is_unspecified(), "Prometheus scrapes from another container");

    for (name, service) in services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            assert!(common::root().join(host).exists(), "{name:?} mounts {host}, which is not in the repo");
        }
    }
    let augur = &compose["services"]["augur"];
    let published: Vec<&str> = augur["ports"].as_sequence().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    for port in [config.server.listen.port(), config.admin.listen.port()] {
        assert!(published.iter().any(|p| p.ends_with(&format!(":{port}"))), "{port} not published: {published:?}");
    }

    let prometheus = yaml("deploy/compose/prometheus.yml");
    let targets = &prometheus["scrape_configs"][0]["static_configs"][0]["targets"];
    assert_eq!(targets[0].as_str(), Some(format!("augur:{}", config.admin.listen.port()).as_str()));
    let datasource = yaml("deploy/compose/grafana/provisioning/datasources/prometheus.yml");
    let uid = datasource["datasources"][0]["uid"].as_str().unwrap();
    let dashboard = std::fs::read_to_string(common::root().join("deploy/grafana/augur.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"].as_str(), Some(uid), "{}", panel["title"]);
    }
}

/// The memory alert fires before the kubelet's OOM kill: at 70–90% of the container's limit
/// (it was set at 3 GiB while the limit is 2 GiB, so it could never fire).
#[test]
fn the_memory_alert_fires_below_the_containers_memory_limit() {
    let deployment = manifest("deployment.yaml");
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_sequence().unwrap();
    let augur = containers.iter().find(|c| c["name"].as_str() == Some("augur")).expect("the augur container");
    let limit = augur["resources"]["limits"]["memory"].as_str().expect("a memory limit");
    let gib = |s: &str| -> f64 {
        match s.strip_suffix("Gi") {
            Some(n) => n.parse::<f64>().unwrap(),
            None => s.strip_suffix("Mi").expect("Gi or Mi").parse::<f64>().unwrap() / 1024.0,
        }
    };
    let alerts = yaml("deploy/prometheus/alerts.yml");
    let rule = alerts["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .find(|r| r["alert"].as_str() == Some("AugurMemoryHigh"))
        .expect("AugurMemoryHigh");
    let expr = rule["expr"].as_str().unwrap();
    let threshold = expr.split('>').nth(1).expect("a > threshold").trim();
    // `X * 1024 * 1024 * 1024` bytes.
    let factors: Vec<f64> = threshold.split('*').map(|f| f.trim().parse::<f64>().unwrap()).collect();
    let bytes: f64 = factors.iter().product();
    let share = bytes / (gib(limit) * 1024.0 * 1024.0 * 1024.0);
    assert!((0.7..=0.9).contains(&share), "AugurMemoryHigh at {share:.2} of the {limit} limit: {expr}");
}
