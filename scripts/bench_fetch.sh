#!/usr/bin/env bash
# Fetch stage against a real Redis, with Zipf item popularity (demo catalogue), without and with
# the local item cache, and the same scene from the in-memory store for reference; next to
# redis-benchmark's HMGET rate on the same server as the ceiling. augur's and Redis' CPU come
# from /proc/PID/stat over each measured window. Writes target/bench/fetch/{memory,nocache,cache}.json
# (`augur bench --json`: items/s, latency, the server's stage latencies), cpu_{augur,redis}_*.json,
# redis_benchmark.json and run.json; scripts/plots.sh draws them.
# Usage: scripts/bench_fetch.sh [seconds per run, default 10]. Starts and stops its own Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
source scripts/bench_lib.sh
out=target/bench/fetch
build_augur
work=$(mktemp -d)
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
rpid=$!
pids=("$rpid")
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done

# memory: the embedded defaults' in-memory store with the same demo catalogue.
model="[model]
inference_threads = 2"
echo "$model" >"$work/memory.toml"
base="[store]
kind = \"redis\"
urls = [\"redis://127.0.0.1:$rport\"]
timeout_ms = 50
$model"
echo "$base" >"$work/nocache.toml"
printf '%s\n[store.cache.tables.items]\nenabled = true\nmax_entries = 100000\nttl_ms = 60000\nnegative_ttl_ms = 5000\n' "$base" >"$work/cache.toml"
$augur features load --config "$work/nocache.toml" --table users
$augur features load --config "$work/nocache.toml" --table items

run_info_start
echo "== redis-benchmark ceiling: HMGET of one item row, pipelined 100 deep"
redis-benchmark -p "$rport" -n 500000 -P 100 --csv HMGET augur:items:i1 category brand price tags \
  | tee "$out/redis_benchmark.csv"
python3 - "$out/redis_benchmark.csv" "$out/redis_benchmark.json" <<'PY'
import csv, json, sys
rows = list(csv.reader(open(sys.argv[1])))
json.dump({"command": "HMGET augur:items:i1 category brand price tags", "pipeline": 100,
           "requests_per_s": float(rows[-1][1])}, open(sys.argv[2], "w"))
PY

for variant in memory nocache cache; do
  start_augur "$augur" "$work/$variant.toml" ranking
  pids+=("$pid")
  echo "== augur, $variant, closed loop c=16, 100 candidates/request (Zipf 1.1 over 5000 items)"
  cpu_window "redis_$variant" "$rpid" "$warmup" cpu_window "augur_$variant" "$pid" "$warmup" \
    $augur bench --addr "$addr" --admin-addr "$admin_addr" --scene ranking --concurrency 16 --candidates 100 \
    --duration "$secs" --warmup "$warmup" --json | tee "$out/$variant.json"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
load = lambda name: json.load(open(f"{d}/{name}.json"))
for v in ("memory", "nocache", "cache"):
    r = load(v)
    stages = {s["stage"]: s for s in r["server_stages"]}
    fetch = stages.get("fetch", {"p50": float("nan"), "p99": float("nan")})
    print(f"{v:8s} {r['items_per_s']:10,.0f} items/s, fetch p50 {fetch['p50']:.2f} p99 {fetch['p99']:.2f} ms, "
          f"augur {load('cpu_augur_' + v)['cores']:.2f} cores, Redis {load('cpu_redis_' + v)['cores']:.2f} cores")
PY
run_info "$out/run.json" "scripts/bench_fetch.sh $secs"
