#!/usr/bin/env bash
# Measures, in one run, what BENCHMARKS.md reports for the inference engine:
#   1. raw ONNX Runtime items/s on the benchmark model at batch 256 (the ceiling), and its
#      items per CPU-second,
#   2. augur end-to-end items/s with 100-candidate requests (in-memory store), closed loop,
#      driven by `augur bench`,
#   3. the same driven by h2load, a load generator that is not augur's own (the body is the
#      first request `augur bench` sends, written by `augur bench --write-body`),
#   4. small requests on the same server and stack: h2load on grpc.health.v1.Health/Check vs
#      Predict with 1 and with 10 candidates,
#   5. a latency/throughput table at 25/50/75/100% of step 2's maximum (open loop),
#   6. p99 during a hot reload of the 136 MB model vs the same load without one, with augur's
#      resident memory sampled every 50 ms through the reload.
# augur's own CPU (utime + stime from /proc/PID/stat) is read around every measured window, so
# each step also gives items (or requests) per augur CPU-second; raw ORT reports its own.
# Steps 2 and 5 also keep the histogram of rows per model run from augur's /metrics
# (batch_closed.json, batch_open_PCT.json), and run.json says when, where and at what load
# average it ran: scripts/plots.sh draws from these.
# Usage: scripts/bench.sh [seconds per step, default 15]. Writes target/bench/*.json, and the
# summary printed at the end to target/bench/summary.json. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
source scripts/bench_lib.sh
build_augur
# Noise check: the load average before and after (the numbers only mean something on a quiet box).
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
run_info_start

pid=""
bench_pid=""
sampler_pid=""
cleanup() {
  for p in $sampler_pid $bench_pid $pid; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$repo/2" "$repo/.staging"
}
trap cleanup EXIT
# Interrupted: exit, so the EXIT trap stops what was started.
trap 'exit 130' INT TERM

echo "== 1. raw ORT, batch 256, 2 threads x 1 intra-op thread"
$augur bench-ort --model "$repo/1/model.onnx" --batch 256 --threads 2 --intra-op-threads 1 --duration "$secs" --json | tee "$out/raw_ort.json"

# GetStats (the server's own stage latencies in the reports) is on admin_addr, the batch-size
# histograms on metrics_url.
start_augur "$augur" config/bench.toml
rss_ready=$(vm_kib "$pid" VmRSS)

echo "== 2. augur closed loop, 100 candidates/request (augur bench, c=32 on 4 connections)"
cpu_window closed "$pid" "$warmup" metrics_window closed "$metrics_url" "$warmup" \
  $augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --concurrency 32 --candidates 100 \
  --duration "$secs" --warmup "$warmup" --json | tee "$out/closed.json"
max_rps=$(python3 -c "import json; print(json.load(open('$out/closed.json'))['requests_per_s'])")
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
raw = json.load(open(f"{d}/raw_ort.json"))["items_per_s"]
aug = json.load(open(f"{d}/closed.json"))["items_per_s"]
print(f"ratio augur/raw = {aug:.0f}/{raw:.0f} = {aug / raw:.2f}")
PY

# The bodies h2load sends: gRPC-framed requests (0x00, 4-byte big-endian length, message).
for n in 1 10 100; do
  $augur bench --scene bench --candidates "$n" --write-body "$out/predict_$n.bin"
done
printf '\x00\x00\x00\x00\x00' > "$out/health.bin" # an empty HealthCheckRequest: the whole server
predict_path=/augur.v1.Prediction/Predict
health_path=/grpc.health.v1.Health/Check
for body in predict_1 predict_10 predict_100; do check_grpc "$out/$body.bin" "$predict_path" "$addr"; done
check_grpc "$out/health.bin" "$health_path" "$addr"

echo "== 3. h2load closed loop, 100 candidates/request (-c $h2c -m $h2m)"
cpu_window h2load_predict_100 "$pid" "$warmup" \
  h2load_grpc predict_100 "$out/predict_100.bin" "$predict_path" "$addr" "$secs" "$warmup" "$h2c" "$h2m"
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
raw = json.load(open(f"{d}/raw_ort.json"))["items_per_s"]
h2 = json.load(open(f"{d}/h2load_predict_100.json"))["requests_per_s"] * 100
print(f"ratio augur (h2load)/raw = {h2:.0f}/{raw:.0f} = {h2 / raw:.2f}")
PY
# h2load repeats one body, so the same 100 embedding rows stay in the CPU caches; step 2 cycles
# through 512 requests. augur bench repeating that same body separates the two effects.
echo "== 3b. augur bench repeating h2load's body (--distinct 1), c=32 on 4 connections"
cpu_window closed_distinct1 "$pid" "$warmup" \
  $augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --concurrency 32 --candidates 100 \
  --distinct 1 --duration "$secs" --warmup "$warmup" --json | tee "$out/closed_distinct1.json"

echo "== 4. small requests, same server, h2load -c $h2c -m $h2m: Health/Check vs Predict with 1 and 10 candidates"
cpu_window h2load_health "$pid" "$warmup" \
  h2load_grpc health "$out/health.bin" "$health_path" "$addr" "$secs" "$warmup" "$h2c" "$h2m"
for n in 1 10; do
  cpu_window "h2load_predict_$n" "$pid" "$warmup" \
    h2load_grpc "predict_$n" "$out/predict_$n.bin" "$predict_path" "$addr" "$secs" "$warmup" "$h2c" "$h2m"
done

echo "== 5. open loop at 25/50/75/100% of $max_rps req/s"
for pct in 25 50 75 100; do
  rate=$(python3 -c "print(round($max_rps * $pct / 100, 1))")
  cpu_window "open_$pct" "$pid" "$warmup" metrics_window "open_$pct" "$metrics_url" "$warmup" \
    $augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --rate "$rate" --concurrency 64 \
    --candidates 100 --duration "$secs" --warmup "$warmup" --json | tee "$out/open_$pct.json"
done

echo "== 6. p99 at 50% load: steady vs during a hot reload (version 2 copied in at mid-run)"
rate=$(python3 -c "print(round($max_rps * 0.5, 1))")
cpu_window steady "$pid" "$warmup" \
  $augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --rate "$rate" --concurrency 64 \
  --candidates 100 --duration "$secs" --warmup "$warmup" --json > "$out/steady.json"
rss_steady=$(vm_kib "$pid" VmRSS)
hwm_before=$(vm_kib "$pid" VmHWM)
# VmRSS every 50 ms from here until the new version answers; the file holds the peak so far.
(
  peak=0
  while [ -r "/proc/$pid/status" ]; do
    r=$(vm_kib "$pid" VmRSS) || break
    if [ "${r:-0}" -gt "$peak" ]; then peak=$r; echo "$peak" > "$out/.rss_peak"; fi
    sleep 0.05
  done
) &
sampler_pid=$!
$augur bench --addr "$addr" --admin-addr "$admin_addr" --scene bench --rate "$rate" --concurrency 64 \
  --candidates 100 --duration "$secs" --warmup "$warmup" --json > "$out/reload.json" &
bench_pid=$!
sleep "$(python3 -c "print($warmup + $secs / 2)")"
mkdir -p "$repo/.staging" && cp "$repo/1/model.onnx" "$repo/.staging/model.onnx" && mv "$repo/.staging" "$repo/2"
wait "$bench_pid"
bench_pid=""
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
for name in ("steady", "reload"):
    r = json.load(open(f"{d}/{name}.json"))
    l = r["latency_ms"]
    print(f"{name:7s} {r['requests_per_s']:8.0f} req/s  p50 {l['p50']:.2f}  p99 {l['p99']:.2f}  p99.9 {l['p999']:.2f}  max {l['max']:.2f} ms  errors {r['errors']}")
PY
# The reload is over when version 2 answers (normally already during the run).
reloaded=false
for _ in $(seq 1 60); do
  answer=$($augur predict --addr "$addr" --scene bench --user u1 --items i1)
  version=${answer%%$'\n'*}
  if [[ $version == *" v2" ]]; then
    reloaded=true
    break
  fi
  sleep 0.5
done
echo "$version"
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
rss_peak=$(cat "$out/.rss_peak")
hwm_after=$(vm_kib "$pid" VmHWM)
rss_after=$(vm_kib "$pid" VmRSS)
rm -f "$out/.rss_peak"
rm -rf "$repo/2"
python3 - "$out/memory.json" <<PY
import json, sys
json.dump({
    "vm_rss_kib": {"ready": $rss_ready, "steady": $rss_steady, "peak_sampled_during_reload": $rss_peak,
                   "after_reload": $rss_after},
    "vm_hwm_kib": {"before_reload": $hwm_before, "after_reload": $hwm_after},
    "sample_interval_ms": 50,
    "reload_seen": $([ "$reloaded" = true ] && echo True || echo False),
    "model_file_bytes": $(stat -c %s "$repo/1/model.onnx"),
}, open(sys.argv[1], "w"))
PY

echo "== summary ($secs s per step; h2load -c $h2c -m $h2m; load average $load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end)"
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
load = lambda name: json.load(open(f"{d}/{name}.json"))
raw, closed, same, mem = load("raw_ort"), load("closed"), load("closed_distinct1"), load("memory")
h2 = {n: load(f"h2load_{n}") for n in ("predict_100", "predict_10", "predict_1", "health")}
cpu = {n: load(f"cpu_{n}") for n in ("closed", "closed_distinct1", "h2load_predict_100", "h2load_predict_10", "h2load_predict_1", "h2load_health")}
raw_items = raw["items_per_s"]
h2_items = h2["predict_100"]["requests_per_s"] * 100
# Items per augur CPU-second = items/s over the cores augur used in the same window.
per_cpu = lambda items_per_s, c: items_per_s / c["cores"] if c["cores"] else float("nan")
aug_h2_cpu = per_cpu(h2_items, cpu["h2load_predict_100"])
aug_closed_cpu = per_cpu(closed["items_per_s"], cpu["closed"])
aug_same_cpu = per_cpu(same["items_per_s"], cpu["closed_distinct1"])
raw_cpu = raw.get("items_per_cpu_s") or float("nan")
mib = lambda kib: kib / 1024
failed = {n: r["failed"] + r["errored"] + r["timeout"] for n, r in h2.items()}
lines = [
    f"raw ORT: {raw_items:,.0f} items/s, {raw_cpu:,.0f} items per CPU-second ({raw.get('cpu_s') or 0:.1f} CPU-s)",
    f"augur, augur bench c=32: {closed['items_per_s']:,.0f} items/s, ratio to raw {closed['items_per_s'] / raw_items:.2f}; "
    f"augur at {cpu['closed']['cores']:.2f} cores",
    f"augur, h2load -c {h2['predict_100']['clients']} -m {h2['predict_100']['streams_per_client']}: "
    f"{h2['predict_100']['requests_per_s']:,.0f} req/s = {h2_items:,.0f} items/s, ratio to raw {h2_items / raw_items:.2f}; "
    f"augur at {cpu['h2load_predict_100']['cores']:.2f} cores",
    f"items per CPU-second: augur {aug_h2_cpu:,.0f}, raw ORT {raw_cpu:,.0f}, ratio {aug_h2_cpu / raw_cpu:.2f} "
    f"(augur driven by h2load; by augur bench: {aug_closed_cpu:,.0f}, ratio {aug_closed_cpu / raw_cpu:.2f})",
    f"augur bench repeating h2load's one body: {same['items_per_s']:,.0f} items/s, ratio to raw {same['items_per_s'] / raw_items:.2f}, "
    f"{aug_same_cpu:,.0f} items per augur CPU-second (512 distinct: {closed['items_per_s']:,.0f} items/s, {aug_closed_cpu:,.0f})",
    f"small requests (h2load): Health/Check {h2['health']['requests_per_s']:,.0f} req/s, "
    f"Predict 1 candidate {h2['predict_1']['requests_per_s']:,.0f} req/s (ratio {h2['predict_1']['requests_per_s'] / h2['health']['requests_per_s']:.2f}), "
    f"10 candidates {h2['predict_10']['requests_per_s']:,.0f} req/s (ratio {h2['predict_10']['requests_per_s'] / h2['health']['requests_per_s']:.2f})",
    "augur CPU per request: " + ", ".join(
        f"{n} {1e6 * cpu['h2load_' + n]['cores'] / h2[n]['requests_per_s']:.0f} us" for n in ("health", "predict_1", "predict_10", "predict_100")),
    f"RSS steady {mib(mem['vm_rss_kib']['steady']):.0f} MiB, peak during reload {mib(mem['vm_rss_kib']['peak_sampled_during_reload']):.0f} MiB "
    f"(VmHWM {mib(mem['vm_hwm_kib']['after_reload']):.0f} MiB, was {mib(mem['vm_hwm_kib']['before_reload']):.0f}); "
    f"model file {mem['model_file_bytes'] / 2**20:.0f} MiB" + ("" if mem["reload_seen"] else " (version 2 never answered!)"),
    "h2load non-2xx/errored/timeouts: " + (", ".join(f"{n} {v}" for n, v in failed.items() if v) or "none"),
]
print("\n".join(lines))
json.dump({"lines": lines, "raw_ort_items_per_s": raw_items, "augur_bench_items_per_s": closed["items_per_s"],
           "h2load_items_per_s": h2_items, "ratio_h2load_to_raw": h2_items / raw_items,
           "augur_bench_distinct1_items_per_s": same["items_per_s"],
           "items_per_cpu_s": {"augur_h2load": aug_h2_cpu, "augur_bench": aug_closed_cpu,
                               "augur_bench_distinct1": aug_same_cpu, "raw_ort": raw_cpu},
           "small_requests_req_per_s": {n: r["requests_per_s"] for n, r in h2.items()},
           "memory": mem}, open(f"{d}/summary.json", "w"), indent=1)
PY
run_info "$out/run.json" "scripts/bench.sh $secs"
