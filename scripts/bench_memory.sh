#!/usr/bin/env bash
# Measures what BENCHMARKS.md's "Model memory: one copy of the weights" reports:
#   1. resident memory of 1-4 ORT sessions of the 136 MB benchmark model, each with its own
#      weights (--own-weights, the old way) and sharing one copy (the service's way): VmRSS once
#      the sessions are open, and the process's peak (VmHWM) while loading them;
#   2. the server (config/bench.toml: 2 inference threads) before, during and after a hot reload
#      to version 2, once per `model.reload` strategy: the peak during the reload (VmHWM, reset
#      just before it through /proc/<pid>/clear_refs) against steady RSS; with overlap both
#      versions are alive at the peak, with release_first version 1 is freed first (and RSS is
#      sampled right after it was).
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

echo "== 2. server, hot reload of version 2 while version 1 serves, per model.reload strategy"
# overlap: version 2 loads beside version 1 (peak: both); release_first: version 1 is freed
# first (the scene is NOT_SERVING meanwhile), so the peak is one version.
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$repo/2" "$repo/.staging"' EXIT
rss() { awk -v k="$1:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$pid/status"; }
# Out of service (release_first): from "releasing" to version 2 loaded and warm, by the log.
out_of_service() {
  python3 - "$1" <<'PY'
import datetime, sys
t = {}
for line in open(sys.argv[1]):
    key = "start" if "release_first: releasing" in line else "end" if "version loaded" in line and "version=2" in line else None
    if key:
        t[key] = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
print(f"{(t['end'] - t['start']).total_seconds():.1f} s" if len(t) == 2 else "-")
PY
}
printf "%-14s %10s %12s %12s %7s %10s %14s\n" strategy steady_v1 freed_v1 reload_peak peak/st steady_v2 out_of_service
for strategy in overlap release_first; do
  rm -rf "$repo/2" "$repo/.staging"
  port=$(free_port)
  log="$out/memory_server_$strategy.log"
  AUGUR__MODEL__RELOAD=$strategy AUGUR__SERVER__LISTEN="127.0.0.1:$port" AUGUR__ADMIN__GRPC_LISTEN="127.0.0.1:$(free_port)" \
    AUGUR__ADMIN__LISTEN="127.0.0.1:$(free_port)" RUST_LOG=info $augur serve --config config/bench.toml 2>"$log" &
  pid=$!
  $augur predict --addr "http://127.0.0.1:$port" --scene bench --user u1 --items i1 --wait 120 >/dev/null
  sleep 2
  steady1=$(rss VmRSS)
  echo 5 > "/proc/$pid/clear_refs"
  mkdir -p "$repo/.staging" && cp "$model" "$repo/.staging/model.onnx" && mv "$repo/.staging" "$repo/2"
  # Done when version 2 is loaded and version 1 unloaded (in either order); with release_first,
  # RSS is sampled as soon as version 1 is reported freed, before version 2 has grown much.
  freed="-"
  for _ in $(seq 1 1200); do
    if [ "$freed" = "-" ] && grep -q 'freed before the next loads' "$log"; then freed=$(rss VmRSS); fi
    [ "$(grep -c 'version loaded' "$log")" -ge 2 ] && grep -q 'version unloaded' "$log" && break
    sleep 0.05
  done
  grep -q 'version unloaded' "$log" || { echo "$strategy: version 1 was never unloaded" >&2; exit 1; }
  [ "$(grep -c 'version loaded' "$log")" -ge 2 ] || { echo "$strategy: version 2 never loaded" >&2; exit 1; }
  peak=$(rss VmHWM)
  sleep 2
  steady2=$(rss VmRSS)
  answer=$($augur predict --addr "http://127.0.0.1:$port" --scene bench --user u1 --items i1 | head -1)
  case "$answer" in *" v2") ;; *) echo "$strategy: not served by version 2: $answer" >&2; exit 1 ;; esac
  printf "%-14s %10s %12s %12s %7s %10s %14s\n" "$strategy" "$steady1 MiB" "$freed$([ "$freed" = - ] || echo " MiB")" "$peak MiB" \
    "$(python3 -c "print(f'{$peak/$steady1:.2f}x')")" "$steady2 MiB" "$(out_of_service "$log")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
