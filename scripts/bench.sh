#!/usr/bin/env bash
# Measures, in one run, what BENCHMARKS.md reports for the inference engine:
#   1. raw ONNX Runtime items/s on the benchmark model at batch 256 (the ceiling),
#   2. augur end-to-end items/s with 100-candidate requests (in-memory store), closed loop,
#   3. a latency/throughput table at 25/50/75/100% of that maximum (open loop),
#   4. p99 during a hot reload of the 136 MB model vs the same load without one.
# Usage: scripts/bench.sh [seconds per step, default 15]. Writes target/bench/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
source scripts/bench_lib.sh
cargo build --release --locked --bin augur
augur=target/release/augur

echo "== 1. raw ORT, batch 256, 2 threads x 1 intra-op thread"
$augur bench-ort --model "$repo/1/model.onnx" --batch 256 --threads 2 --intra-op-threads 1 --duration "$secs" --json | tee "$out/raw_ort.json"

port=$(free_port)
admin_port=$(free_port)
AUGUR__SERVER__LISTEN="127.0.0.1:$port" AUGUR__ADMIN__GRPC_LISTEN="127.0.0.1:$admin_port" \
  AUGUR__ADMIN__LISTEN="127.0.0.1:$(free_port)" RUST_LOG=warn $augur serve --config config/bench.toml &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
addr="http://127.0.0.1:$port"
# GetStats (the server's own stage latencies in the reports) is on the admin gRPC port.
admin_addr="http://127.0.0.1:$admin_port"
$augur predict --addr "$addr" --scene bench --user u1 --items i1 --wait 120 >/dev/null

echo "== 2. augur closed loop, 100 candidates/request"
$augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --concurrency 32 --candidates 100 --duration "$secs" --json | tee "$out/closed.json"
max_rps=$(python3 -c "import json; print(json.load(open('$out/closed.json'))['requests_per_s'])")
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
raw = json.load(open(f"{d}/raw_ort.json"))["items_per_s"]
aug = json.load(open(f"{d}/closed.json"))["items_per_s"]
print(f"ratio augur/raw = {aug:.0f}/{raw:.0f} = {aug / raw:.2f}")
PY

echo "== 3. open loop at 25/50/75/100% of $max_rps req/s"
for pct in 25 50 75 100; do
  rate=$(python3 -c "print(round($max_rps * $pct / 100, 1))")
  $augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --rate "$rate" --concurrency 64 --candidates 100 --duration "$secs" --json | tee "$out/open_$pct.json"
done

echo "== 4. p99 at 50% load: steady vs during a hot reload (version 2 copied in at mid-run)"
rate=$(python3 -c "print(round($max_rps * 0.5, 1))")
$augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --rate "$rate" --concurrency 64 --candidates 100 --duration "$secs" --json > "$out/steady.json"
$augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --rate "$rate" --concurrency 64 --candidates 100 --duration "$secs" --json > "$out/reload.json" &
bench_pid=$!
sleep "$(python3 -c "print(2 + $secs / 2)")"
mkdir -p "$repo/.staging" && cp "$repo/1/model.onnx" "$repo/.staging/model.onnx" && mv "$repo/.staging" "$repo/2"
wait "$bench_pid"
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
for name in ("steady", "reload"):
    r = json.load(open(f"{d}/{name}.json"))
    l = r["latency_ms"]
    print(f"{name:7s} {r['requests_per_s']:8.0f} req/s  p50 {l['p50']:.2f}  p99 {l['p99']:.2f}  p99.9 {l['p999']:.2f}  max {l['max']:.2f} ms  errors {r['errors']}")
PY
$augur predict --addr "$addr" --scene bench --user u1 --items i1 | head -1
rm -rf "$repo/2"
