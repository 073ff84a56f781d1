#!/usr/bin/env bash
# Measures what BENCHMARKS.md's "Model memory: one copy of the weights" reports:
#   1. resident memory of 1-4 ORT sessions of the 136 MB benchmark model, each with its own
#      weights (--own-weights, the old way) and sharing one copy (the service's way): VmRSS once
#      the sessions are open, and the process's peak (VmHWM) while loading them;
#   2. the server (config/bench.toml: 2 inference threads) before, during and after a hot reload
#      to version 2: peak while both versions are alive (VmHWM, reset just before the reload
#      through /proc/<pid>/clear_refs).
# Usage: scripts/bench_memory.sh [augur binary, default target/release/augur (built here)].
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh
augur=${1:-}
if [ -z "$augur" ]; then
  cargo build --release --locked --bin augur
  augur=target/release/augur
fi
model="$repo/1/model.onnx"
echo "model file: $(( $(stat -c %s "$model") / 1048576 )) MiB"

echo "== 1. sessions: RSS when open / peak while loading (MiB)"
printf "%-9s %-12s %8s %8s\n" sessions weights rss peak
for n in 1 2 3 4; do
  for mode in own shared; do
    flag=""; [ "$mode" = own ] && flag="--own-weights"
    r=$($augur bench-ort --model "$model" --threads "$n" --duration 1 $flag --json 2>/dev/null)
    python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(f\"{$n:<9} {'$mode':<12} {r['rss_open_mib']:8.0f} {r['rss_peak_mib']:8.0f}\")" "$r"
  done
done

echo "== 2. server, hot reload of version 2 while version 1 serves"
port=$(free_port)
AUGUR__SERVER__LISTEN="127.0.0.1:$port" AUGUR__ADMIN__GRPC_LISTEN="127.0.0.1:$(free_port)" \
  AUGUR__ADMIN__LISTEN="127.0.0.1:$(free_port)" RUST_LOG=info $augur serve --config config/bench.toml 2>"$out/memory_server.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$repo/2" "$repo/.staging"' EXIT
$augur predict --addr "http://127.0.0.1:$port" --scene bench --user u1 --items i1 --wait 120 >/dev/null
rss() { awk -v k="$1:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$pid/status"; }
sleep 2
echo "serving version 1:   RSS $(rss VmRSS) MiB (peak since start, loading included: $(rss VmHWM) MiB)"
echo 5 > "/proc/$pid/clear_refs"
mkdir -p "$repo/.staging" && cp "$model" "$repo/.staging/model.onnx" && mv "$repo/.staging" "$repo/2"
for _ in $(seq 1 600); do
  grep -q '"version unloaded"\|version unloaded' "$out/memory_server.log" && break
  sleep 0.1
done
grep -q 'version unloaded' "$out/memory_server.log" || { echo "version 1 was never unloaded" >&2; exit 1; }
echo "during the reload:   peak $(rss VmHWM) MiB (version 1 serving, version 2 loading)"
sleep 2
echo "serving version 2:   RSS $(rss VmRSS) MiB"
$augur predict --addr "http://127.0.0.1:$port" --scene bench --user u1 --items i1 | head -1
