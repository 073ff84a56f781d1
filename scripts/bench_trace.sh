#!/usr/bin/env bash
# The cost of tracing (BENCHMARKS.md "Tracing"): max items/s with OTLP export off vs on, the
# same release binary and config/bench.toml, alternating off/on in one sitting. "On" exports every
# span (sample_ratio 1.0) to examples/otlp_sink.rs, a local receiver that only counts them.
# Closed loop, c=32, 100 candidates/request (items/s) and 1 candidate/request (the per-request
# cost of the spans shows most there).
# With AUGUR_BASE=<augur binary built without tracing>, each round also runs it ("base"), so
# "off" can be compared with no tracing code at all.
# Usage: [AUGUR_BASE=...] scripts/bench_trace.sh [seconds per step, default 10] [rounds, default 2].
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-2}
source scripts/bench_lib.sh
cargo build --release --locked --bin augur --example otlp_sink
augur=$target_dir/release/augur
sink_port=$(free_port)
"$target_dir"/release/examples/otlp_sink "127.0.0.1:$sink_port" > "$out/otlp_sink.log" &
sink_pid=$!
pid=
stop_server() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi
}
trap 'stop_server; kill "$sink_pid" 2>/dev/null || true' EXIT

# run MODE ROUND: one server (base binary, or export off or on), both request sizes against it.
run() {
  local mode=$1 round=$2 port admin_port endpoint=() server=$augur
  port=$(free_port)
  admin_port=$(free_port)
  if [ "$mode" = on ]; then endpoint=(AUGUR__TRACE__OTLP_ENDPOINT="http://127.0.0.1:$sink_port"); fi
  if [ "$mode" = base ]; then server=$AUGUR_BASE; fi
  env "${endpoint[@]}" AUGUR__SERVER__LISTEN="127.0.0.1:$port" AUGUR__ADMIN__GRPC_LISTEN="127.0.0.1:$admin_port" \
    AUGUR__ADMIN__LISTEN="127.0.0.1:$(free_port)" RUST_LOG=warn "$server" serve --config config/bench.toml &
  pid=$!
  local addr="http://127.0.0.1:$port" before sink_cpu_before
  before=$(sink_total)
  sink_cpu_before=$(sink_cpu)
  $augur predict --addr "$addr" --scene bench --user u1 --items i1 --wait 120 >/dev/null
  for candidates in 100 1; do
    # No lead-in (the predict above warmed the server): every request the server's CPU time
    # went to is counted, so CPU per request is exact.
    local cpu_before
    cpu_before=$(cpu_ticks "$pid")
    $augur bench --addr "$addr" --scene bench --concurrency 32 --candidates "$candidates" --duration "$secs" \
      --warmup 0 --json > "$out/trace_${mode}_${candidates}_r${round}.json"
    echo $(( $(cpu_ticks "$pid") - cpu_before )) > "$out/trace_${mode}_${candidates}_r${round}.cpu"
  done
  stop_server
  # Other work on the machine shows here (the server and the generator alone keep it near 2).
  echo "round $round $mode: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  python3 - "$out" "$mode" "$round" <<'PY'
import json, os, sys
d, mode, rnd = sys.argv[1:]
for c in (100, 1):
    r = json.load(open(f"{d}/trace_{mode}_{c}_r{rnd}.json"))
    l = r["latency_ms"]
    cpu_s = int(open(f"{d}/trace_{mode}_{c}_r{rnd}.cpu").read()) / os.sysconf("SC_CLK_TCK")
    print(f"round {rnd} {mode:4s} {c:3d} cand: {r['items_per_s']:9.0f} items/s {r['requests_per_s']:8.0f} req/s"
          f"  p50 {l['p50']:.2f}  p99 {l['p99']:.2f} ms  errors {r['errors']}"
          f"  server CPU {cpu_s * 1e6 / r['requests']:.0f} us/request")
PY
  if [ "$mode" = on ]; then
    # The server flushed its spans at shutdown; the sink prints its total once a second.
    sleep 2
    local after
    after=$(sink_total)
    python3 - "$out" "$round" "$before" "$after" "$(( $(sink_cpu) - sink_cpu_before ))" <<'PY'
import json, os, sys
d, rnd, before, after, ticks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
measured = sum(json.load(open(f"{d}/trace_on_{c}_r{rnd}.json"))["requests"] for c in (100, 1))
# 5 spans per request (server, fetch, assemble, queue, inference); the first predict and calls
# still in flight at the end of a window add a few, so fewer than 5 means spans were dropped.
print(f"  sink received {after - before} spans for {measured} measured requests ({(after - before) / measured:.2f} per request);"
      f" the sink used {ticks / os.sysconf('SC_CLK_TCK'):.1f} s of CPU on the same cores")
PY
  fi
}

# utime + stime of a process, in clock ticks. The sink's is taken from the server's two cores;
# the server's per request is the cost measure least disturbed by other work on the machine.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sink_cpu() { cpu_ticks "$sink_pid"; }
sink_total() { tail -n 1 "$out/otlp_sink.log" | awk '/^spans/ {print $2; exit} {print 0}'; }

for round in $(seq 1 "$rounds"); do
  if [ -n "${AUGUR_BASE:-}" ]; then run base "$round"; fi
  run off "$round"
  run on "$round"
done
