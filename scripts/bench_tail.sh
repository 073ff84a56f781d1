#!/usr/bin/env bash
# Issue 23 item 3: the open-loop tail at half load, in several windows. One server
# (config/bench.toml, 100 candidates per request): the closed-loop maximum (augur bench c=32),
# then WINDOWS open-loop windows at 50% of it and two at 25%, each with the client's p50/p99/p99.9
# (measured from each request's scheduled send) and the server's own stage p50/p99 for the
# same window (GetStats, reset at the window's start). Writes target/bench/tail/*.json and
# prints one line per window.
#   scripts/bench_tail.sh [SECONDS per window, default 6] [WINDOWS at 50%, default 4]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-6}
windows=${2:-4}
source scripts/bench_lib.sh
build_augur >/dev/null
tail_out=target/bench/tail
rm -rf "$tail_out" && mkdir -p "$tail_out"
trap stop_augur EXIT
trap 'exit 130' INT TERM
run_info_start
start_augur "$augur" config/bench.toml
$augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --concurrency 32 --candidates 100 \
  --duration "$secs" --warmup "$warmup" --json > "$tail_out/closed.json"
max=$(python3 -c "import json; print(json.load(open('$tail_out/closed.json'))['requests_per_s'])")
echo "closed-loop max: $max req/s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
pcts="25"
for _ in $(seq 1 "$windows"); do pcts="$pcts 50"; done
pcts="$pcts 25"
i=0
for pct in $pcts; do
  i=$((i + 1))
  rate=$(python3 -c "print(round($max * $pct / 100, 1))")
  $augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --rate "$rate" --concurrency 64 \
    --candidates 100 --duration "$secs" --warmup "$warmup" --json > "$tail_out/window_${i}_$pct.json"
  python3 - "$tail_out/window_${i}_$pct.json" "$i" "$pct" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_ms"]
stages = " ".join(f"{s['stage']} {s['p50']:.2f}/{s['p99']:.2f}" for s in r.get("server_stages", []))
print(f"window {sys.argv[2]} at {sys.argv[3]:>2}%: {r['requests_per_s']:6.0f} req/s  client p50 {l['p50']:.2f} p99 {l['p99']:.2f} "
      f"p99.9 {l['p999']:.2f} ms  errors {sum(r['errors'].values()) if isinstance(r['errors'], dict) else r['errors']}  server p50/p99 ms: {stages}")
PY
done
run_info "$tail_out/run.json" "scripts/bench_tail.sh $secs $windows"
