#!/usr/bin/env bash
# One command on a fresh machine: install what the tests need, then run every check CI runs:
# formatting, clippy (warnings are errors), the Python tools' self-tests, the module-cycle check,
# the Kubernetes manifests (kubernetes-validate, offline schemas), the Prometheus alert
# rules and scrape configs (promtool), docker-compose.yml (docker-compose config) and the
# whole cargo test suite (unit, gRPC integration, ORT parity, MovieLens-100K AUC parity, Redis
# and Redis Cluster servers and etcd the tests start themselves, the Go resolver example), the docs
# (every `augur` command and relative link in README.md and docs/: scripts/check_docs.py), the
# Python client's tests (clients/python: a real augur and etcd), then scripts/loop.sh --short,
# the README tour and a 30-second fuzz smoke of every cargo-fuzz target (fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
.venv/bin/python tools/train/metrics.py
.venv/bin/python tools/train/samples.py --self-test
.venv/bin/python tools/train/split.py --self-test
python3 scripts/check_module_cycles.py
# docs/config-reference.md is generated from the config structs: fail if it is stale.
python3 scripts/config_reference.py --check
.venv/bin/kubernetes-validate --strict --quiet deploy/k8s/*.yaml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
promtool check config deploy/prometheus/prometheus.yml
# docker-compose.yml parses and resolves (no Docker engine needed for `config`); the compose
# Prometheus config is checked beside the alert rules it mounts next to it.
docker-compose -f docker-compose.yml config -q
compose_prom=$(mktemp -d)
cp deploy/compose/prometheus.yml deploy/prometheus/alerts.yml "$compose_prom"/
promtool check config "$compose_prom/prometheus.yml"
rm -rf "$compose_prom"
log=$(mktemp)
py_log=$(mktemp)
trap 'rm -f "$log" "$py_log"' EXIT
# AUGUR_IT_EXTERNAL=1: the integration tests that need Redis, etcd, moto, Python, Go or ONNX Runtime
# run too (without it they skip; a plain `cargo test` is the fast tier), and fail if one is missing.
AUGUR_IT_EXTERNAL=1 cargo test --locked 2>&1 | tee "$log"
python3 scripts/check_docs.py target/debug/augur
# The Python client against the augur binary cargo test just built (and an etcd the tests start).
AUGUR_BIN=$PWD/target/debug/augur .venv/bin/python -m pytest -q clients/python/tests 2>&1 | tee "$py_log"
# The hourly loop end to end in its short mode (moto, serve, simulate, join, train, publish, swap).
bash scripts/loop.sh --short
# README.md's five-minute tour, run as written (its sh blocks, on the tour's ports).
bash scripts/check_tour.sh
# Fuzz smoke: every target in fuzz/ for 30 s from its committed corpus; any crash fails (nightly,
# address sanitizer; installs cargo-fuzz once). ~13 min cold (install + sanitizer build), ~4 warm.
bash scripts/fuzz_smoke.sh 30
# The build without the heavy integrations (no librdkafka, object_store, etcd-client or
# OpenTelemetry): it compiles, and its unit tests and fast-tier integration tests pass. Last,
# because it replaces target/debug/augur, which the steps above run; the default build's binary
# is put back after (its artifacts are cached: a relink).
cargo test --locked --no-default-features 2>&1 | tee -a "$log"
cargo build --locked --bin augur
# One closing line for the whole suite (cargo prints one per test binary; pytest one, "N passed, ... in Xs").
awk '/^test result:/ || (FILENAME == py && / in [0-9.]+s/) {
       for (i = 1; i <= NF; i++) { if ($i ~ /^passed[;,]?$/) p += $(i-1); if ($i ~ /^failed[;,]?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' py="$py_log" "$log" "$py_log"
