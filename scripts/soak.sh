#!/usr/bin/env bash
# Soak (issue 22, item 7): a release augur on the embedded defaults (demo scenes, in-memory
# feature store) with sample logging on at rate 1.0 and its join store on a Redis this script
# starts, driven for MINUTES by `augur simulate` (Predict + ReportEvents, concurrency 4, nice 10)
# while a new ranking model version is published every few minutes (`augur models publish` into
# the scene's directory; the watcher hot-reloads it) and Redis is killed and restarted once in the
# middle. Every 10 s tools/soak/soak.py samples augur's RSS, open fds and threads (/proc) and the
# window's Predict p50/p99, requests/s and errors (deltas of /metrics). Calls that fail while
# Redis is down are counted, not fatal.
# Writes target/soak/{soak.csv,events.json,summary.json,soak.png} and copies the plot to
# docs/img/soak.png. Exits non-zero if RSS grew more than 50 MiB after warm-up (5 min, or a
# quarter of a shorter run) or if a Predict after the run fails.
# Usage: [AUGUR_BIN=path] scripts/soak.sh [minutes, default 30]. Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
secs=$(python3 -c "print(int(float('$minutes') * 60))")
# Warm-up: 5 minutes, or a quarter of a shorter run; versions: every 4 minutes, or a fifth of a
# shorter run (at least one before and one after the Redis restart).
warmup=$(( secs >= 1200 ? 300 : secs / 4 ))
reload_every=$(( secs >= 1200 ? 240 : secs / 5 ))

# --demo: only what building and running augur needs (the test servers are not used here).
bash scripts/setup.sh --demo >/dev/null
if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  echo "soak: installing matplotlib into .venv (the plot)"
  .venv/bin/pip install -q matplotlib
fi
command -v redis-server >/dev/null || { echo "soak: needs redis-server on PATH" >&2; exit 1; }
target_dir=${CARGO_TARGET_DIR:-target}
# AUGUR_BIN: an already built release binary of this tree (skips the build).
if [ -z "${AUGUR_BIN:-}" ]; then
  cargo build --release --locked --bin augur
  AUGUR_BIN=$target_dir/release/augur
fi
out=target/soak
mkdir -p "$out"
# A copy: with a shared CARGO_TARGET_DIR, another checkout's build may replace the binary mid-run.
cp "$AUGUR_BIN" "$out/augur"
augur=$out/augur
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
pid=""
# shellcheck disable=SC2317  # only the EXIT trap calls it
cleanup() {
  # augur first (it drains into the join store), then Redis.
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -f "$work/redis.pid" ]; then
    # Not this shell's child after the restart: wait for it by polling (it writes its log on exit).
    local redis_pid
    redis_pid=$(cat "$work/redis.pid")
    kill "$redis_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  wait 2>/dev/null || true
  rm -rf "$work" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Redis without persistence: a restart loses the join store's pending predictions, as a real
# Redis failover without replication would; the events reported for them are then orphans.
redis_port=$(free_port)
redis_cmd="redis-server --port $redis_port --bind 127.0.0.1 --save '' --appendonly no --logfile $work/redis.log"
bash -c "exec $redis_cmd" >/dev/null &
echo $! > "$work/redis.pid"
# soak.py kills this one and starts its successor (whose pid it writes to redis.pid).
disown
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

# The ranking scene's repository: a copy of models/ranking the soak publishes new versions into.
mkdir -p "$work/models"
cp -r models/ranking "$work/models/ranking"
port=$(free_port); admin=$(free_port); http=$(free_port)
# The embedded defaults plus this file: sample logging on, a short join window (60 s; positives
# wait 20 s) so snapshots go through the whole join in the run, the join store on that Redis.
# A file's [[scenes]] replaces the default list, hence both scenes.
cat > "$work/soak.toml" <<EOF
[log]
level = "warn,ort=warn"

[[scenes]]
name = "ranking"
spec = "features/ranking.yaml"
model = "$work/models/ranking"

[[scenes]]
name = "search_suggest"
spec = "features/search_suggest.yaml"
model = "models/search_suggest"

[samples]
enabled = true
rate = 1.0

[samples.join]
window_s = 60
positive_wait_s = { click = 20, conversion = 20 }
store = { kind = "redis", url = "redis://127.0.0.1:$redis_port" }

[samples.log]
dir = "$work/samples"
EOF
AUGUR__SERVER__LISTEN="127.0.0.1:$port" AUGUR__ADMIN__GRPC_LISTEN="127.0.0.1:$admin" \
  AUGUR__ADMIN__LISTEN="127.0.0.1:$http" $augur serve --config "$work/soak.toml" 2> "$out/augur.log" &
pid=$!
addr="http://127.0.0.1:$port"
$augur predict --addr "$addr" --scene ranking --user u1 --items i1 --wait 120 >/dev/null
echo "soak: augur pid $pid on $addr, Redis on $redis_port, $minutes min (warm-up ${warmup}s, a version every ${reload_every}s)"
echo "soak: started $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"

status=0
.venv/bin/python tools/soak/soak.py --augur "$augur" --pid "$pid" --addr "$addr" \
  --metrics "http://127.0.0.1:$http/metrics" --config "$work/soak.toml" \
  --model-dir "$work/models/ranking" --model-file models/ranking/1/model.onnx \
  --redis-cmd "$redis_cmd" --redis-pid "$(cat "$work/redis.pid")" --redis-pid-file "$work/redis.pid" \
  --minutes "$minutes" --reload-every "$reload_every" --warmup "$warmup" --out "$out" || status=$?
echo "soak: ended $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "soak: augur log lines by level: $(grep -oE ' (ERROR|WARN) ' "$out/augur.log" | sort | uniq -c | tr '\n' ' ')"
mkdir -p docs/img
[ -f "$out/soak.png" ] && cp "$out/soak.png" docs/img/soak.png
exit "$status"
