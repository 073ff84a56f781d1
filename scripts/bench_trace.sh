#!/usr/bin/env bash
# The cost of tracing (BENCHMARKS.md "Tracing"): max items/s with OTLP export off vs on, the
# same release binary and config/bench.toml, alternating off/on in one sitting. "On" exports every
# span (sample_ratio 1.0) to examples/otlp_sink.rs, a local receiver that only counts them.
# Closed loop, c=32, 100 candidates/request (items/s) and 1 candidate/request (the per-request
# cost of the spans shows most there).
# Usage: scripts/bench_trace.sh [seconds per step, default 10] [rounds, default 2].
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-2}
bash scripts/setup.sh >/dev/null
cargo build --release --locked --bin augur --example otlp_sink
augur=target/release/augur
out=target/bench
mkdir -p "$out"
repo=target/bench-model/bench
if [ ! -f "$repo/1/model.onnx" ]; then
  .venv/bin/python tools/bench_model/make_deepfm.py --out "$repo/1/model.onnx"
fi
rm -rf "$repo/2" "$repo/.staging"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sink_port=$(free_port)
target/release/examples/otlp_sink "127.0.0.1:$sink_port" > "$out/otlp_sink.log" &
sink_pid=$!
pid=
stop_server() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi
}
trap 'stop_server; kill "$sink_pid" 2>/dev/null || true' EXIT

# run MODE ROUND: one server with export off or on, both request sizes against it.
run() {
  local mode=$1 round=$2 port admin_port endpoint=()
  port=$(free_port)
  admin_port=$(free_port)
  if [ "$mode" = on ]; then endpoint=(AUGUR__TRACE__OTLP_ENDPOINT="http://127.0.0.1:$sink_port"); fi
  env "${endpoint[@]}" AUGUR__SERVER__LISTEN="127.0.0.1:$port" AUGUR__ADMIN__GRPC_LISTEN="127.0.0.1:$admin_port" \
    AUGUR__ADMIN__LISTEN="127.0.0.1:$(free_port)" RUST_LOG=warn $augur serve --config config/bench.toml &
  pid=$!
  local addr="http://127.0.0.1:$port"
  $augur predict --addr "$addr" --scene bench --user u1 --items i1 --wait 120 >/dev/null
  for candidates in 100 1; do
    $augur bench --addr "$addr" --scene bench --concurrency 32 --candidates "$candidates" --duration "$secs" --json \
      > "$out/trace_${mode}_${candidates}_r${round}.json"
  done
  stop_server
  python3 - "$out" "$mode" "$round" <<'PY'
import json, sys
d, mode, rnd = sys.argv[1:]
for c in (100, 1):
    r = json.load(open(f"{d}/trace_{mode}_{c}_r{rnd}.json"))
    l = r["latency_ms"]
    print(f"round {rnd} export {mode:3s} {c:3d} cand: {r['items_per_s']:9.0f} items/s {r['requests_per_s']:8.0f} req/s"
          f"  p50 {l['p50']:.2f}  p99 {l['p99']:.2f} ms  errors {r['errors']}")
PY
  if [ "$mode" = on ]; then echo "  sink: $(tail -1 "$out/otlp_sink.log")"; fi
}

for round in $(seq 1 "$rounds"); do
  run off "$round"
  run on "$round"
done
