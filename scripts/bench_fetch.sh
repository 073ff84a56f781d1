#!/usr/bin/env bash
# Fetch stage against a real Redis, with Zipf item popularity (demo catalogue), without and with
# the local item cache; next to redis-benchmark's HMGET rate on the same server as the ceiling.
# Usage: scripts/bench_fetch.sh [seconds per run, default 10]. Starts and stops its own Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bash scripts/setup.sh >/dev/null
cargo build --release --locked --bin augur
target_dir=${CARGO_TARGET_DIR:-target}
augur=$target_dir/release/augur
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
rpid=$!
pids=("$rpid")
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done

base="[store]
kind = \"redis\"
urls = [\"redis://127.0.0.1:$rport\"]
timeout_ms = 50
[model]
inference_threads = 2"
echo "$base" >"$work/nocache.toml"
printf '%s\n[store.cache.tables.items]\nenabled = true\nmax_entries = 100000\nttl_ms = 60000\nnegative_ttl_ms = 5000\n' "$base" >"$work/cache.toml"
$augur features load --config "$work/nocache.toml" --table users
$augur features load --config "$work/nocache.toml" --table items

echo "== redis-benchmark ceiling: HMGET of one item row, pipelined 100 deep"
redis-benchmark -p "$rport" -n 500000 -P 100 -q HMGET augur:items:i1 category brand price tags

for variant in nocache cache; do
  port=$(free_port)
  admin_port=$(free_port)
  AUGUR__SERVER__LISTEN="127.0.0.1:$port" AUGUR__ADMIN__GRPC_LISTEN="127.0.0.1:$admin_port" \
    AUGUR__ADMIN__LISTEN="127.0.0.1:$(free_port)" RUST_LOG=warn $augur serve --config "$work/$variant.toml" &
  pid=$!
  pids+=("$pid")
  $augur predict --addr "http://127.0.0.1:$port" --user u1 --items i1 --wait 60 >/dev/null
  echo "== augur on Redis, $variant, closed loop c=16, 100 candidates/request (Zipf 1.1 over 5000 items)"
  $augur bench --addr "http://127.0.0.1:$port" --admin-addr "http://127.0.0.1:$admin_port" --scene ranking --concurrency 16 --candidates 100 --duration "$secs"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
done
