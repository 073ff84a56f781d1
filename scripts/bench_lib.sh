# shellcheck shell=bash
# Sourced by the benchmark scripts (run from the repository root): the venv with ONNX Runtime,
# the release binary's directory, the benchmark model (generated once, then reused), h2load, and
# helpers reading a process's CPU and memory from /proc, augur's batch sizes from /metrics, and
# when and where a run was measured (scripts/plots.sh draws from what these write).
bash scripts/setup.sh >/dev/null
# Cargo's target directory: builds may share one (CARGO_TARGET_DIR); results stay in this checkout.
# shellcheck disable=SC2034  # read by the scripts that source this file
target_dir=${CARGO_TARGET_DIR:-target}
out=target/bench
mkdir -p "$out"
repo=target/bench-model/bench
if [ ! -f "$repo/1/model.onnx" ]; then
  .venv/bin/python tools/bench_model/make_deepfm.py --out "$repo/1/model.onnx"
fi
# Left over from an interrupted hot-reload step: version 1 alone is served.
rm -rf "$repo/2" "$repo/.staging"
# The scripts' driver shape. h2load: 4 connections x 8 streams = 32 requests in flight, as
# `augur bench --concurrency 32` spreads 32 callers over its 4 connections.
# shellcheck disable=SC2034  # read by the scripts that source this file
h2c=4 h2m=8
# Unmeasured lead-in of every load generator; augur's CPU and /metrics are read from its end.
warmup=2
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# h2load (Debian's nghttp2-client): the load generator that is not augur's own. Benchmark-only,
# so here rather than in setup.sh (CI never runs it).
if ! command -v h2load >/dev/null 2>&1; then
  echo "bench: installing Debian package nghttp2-client (h2load)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null
  fi
fi

clk_tck=$(getconf CLK_TCK)
# utime + stime of process $1 in clock ticks (fields 14 and 15 of /proc/PID/stat; counted from
# after the command name, which may contain spaces).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# A line of /proc/PID/status in KiB: vm_kib PID VmRSS|VmHWM.
vm_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }

# cpu_window NAME PID DELAY CMD...: runs CMD (its stdout passes through) and writes
# $out/cpu_NAME.json with the CPU seconds PID used from DELAY seconds after the start (the load
# generator's unmeasured warm-up) to CMD's end, and the wall seconds between the two readings.
cpu_window() {
  local name=$1 target=$2 delay=$3
  shift 3
  local mark="$out/.cpu_$name.start"
  rm -f "$mark"
  (sleep "$delay"; echo "$(cpu_ticks "$target") $(now)" > "$mark") &
  local reader=$!
  "$@"
  wait "$reader"
  local end_ticks end_time start_ticks start_time
  end_ticks=$(cpu_ticks "$target")
  end_time=$(now)
  read -r start_ticks start_time < "$mark"
  rm -f "$mark"
  python3 - "$out/cpu_$name.json" "$start_ticks" "$end_ticks" "$start_time" "$end_time" "$clk_tck" <<'PY'
import json, sys
path, t0, t1, w0, w1, hz = sys.argv[1:]
cpu = (float(t1) - float(t0)) / float(hz)
wall = float(w1) - float(w0)
json.dump({"cpu_s": cpu, "wall_s": wall, "cores": cpu / wall if wall > 0 else None}, open(path, "w"))
PY
}

# h2load_grpc NAME BODY PATH ADDR SECS WARMUP CLIENTS STREAMS: one closed-loop h2load run of a
# unary gRPC method with a pre-framed body; writes h2load's text to $out/h2load_NAME.txt and its
# numbers to $out/h2load_NAME.json. h2load judges only the HTTP status: check_grpc first.
h2load_grpc() {
  local name=$1 body=$2 path=$3 addr=$4 secs=$5 warmup=$6 clients=$7 streams=$8
  h2load -c "$clients" -m "$streams" -D "$secs" --warm-up-time "$warmup" \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$body" "$addr$path" > "$out/h2load_$name.txt"
  python3 - "$out/h2load_$name.txt" "$out/h2load_$name.json" "$name" "$path" "$clients" "$streams" <<'PY'
import json, re, sys
text, path, name, method, clients, streams = sys.argv[1:]
t = open(text).read()
def grab(pattern, cast=float):
    m = re.search(pattern, t)
    if not m:
        sys.exit(f"h2load output has no match for {pattern!r}:\n{t}")
    return cast(m.group(1))
ms = lambda v, unit: float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
m = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", t)
r = {
    "name": name,
    "method": method,
    "clients": int(clients),
    "streams_per_client": int(streams),
    "seconds": grab(r"finished in ([\d.]+)s"),
    "requests_per_s": grab(r"finished in [\d.]+s, ([\d.]+) req/s"),
    "total": grab(r"requests: (\d+) total", int),
    "succeeded": grab(r"(\d+) succeeded", int),
    "failed": grab(r"(\d+) failed", int),
    "errored": grab(r"(\d+) errored", int),
    "timeout": grab(r"(\d+) timeout", int),
    "status_2xx": grab(r"status codes: (\d+) 2xx", int),
    "latency_ms": {"min": ms(*m.group(1, 2)), "max": ms(*m.group(3, 4)), "mean": ms(*m.group(5, 6))} if m else None,
}
json.dump(r, open(path, "w"))
print(f"h2load {name}: {r['requests_per_s']:.0f} req/s, {r['succeeded']} succeeded, {r['failed']} failed, "
      f"{r['errored']} errored" + (f", mean {r['latency_ms']['mean']:.2f} ms" if m else ""))
PY
}

# check_grpc BODY PATH ADDR: one call with curl over HTTP/2; fails unless grpc-status is 0.
check_grpc() {
  local body=$1 path=$2 addr=$3 headers
  headers=$(curl -sS --http2-prior-knowledge -o /dev/null -D - -H 'content-type: application/grpc' \
    -H 'te: trailers' --data-binary "@$body" "$addr$path")
  local status
  status=$(printf '%s\n' "$headers" | awk -F': ' 'tolower($1) == "grpc-status" {gsub("\r", "", $2); print $2}')
  if [ "$status" != "0" ]; then
    echo "bench: $path answered grpc-status '${status:-none}':" >&2
    printf '%s\n' "$headers" >&2
    return 1
  fi
  echo "checked: $path grpc-status 0"
}

# build_augur: the release binary (cargo builds it if stale) copied to $out/augur, so that with a
# shared CARGO_TARGET_DIR another checkout's build cannot replace it mid-run; sets augur.
build_augur() {
  cargo build --release --locked --bin augur
  mkdir -p "$out"
  cp "$target_dir/release/augur" "$out/augur"
  augur=$out/augur
}

# stop_augur: an EXIT trap for scripts whose one background process is start_augur's.
pid=""
stop_augur() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}

# start_augur BINARY CONFIG [SCENE]: `augur serve` on free ports in the background, returning
# once SCENE (default bench) answers a Predict. Sets pid, addr (Predict), admin_addr (GetStats)
# and metrics_url (the admin HTTP port's /metrics) for the caller.
# shellcheck disable=SC2034
start_augur() {
  local augur=$1 config=$2 scene=${3:-bench} port admin_port http_port
  port=$(free_port)
  admin_port=$(free_port)
  http_port=$(free_port)
  AUGUR__SERVER__LISTEN="127.0.0.1:$port" AUGUR__ADMIN__GRPC_LISTEN="127.0.0.1:$admin_port" \
    AUGUR__ADMIN__LISTEN="127.0.0.1:$http_port" RUST_LOG=warn "$augur" serve --config "$config" &
  pid=$!
  addr="http://127.0.0.1:$port"
  admin_addr="http://127.0.0.1:$admin_port"
  metrics_url="http://127.0.0.1:$http_port/metrics"
  "$augur" predict --addr "$addr" --scene "$scene" --user u1 --items i1 --wait 120 >/dev/null
}

# metrics_window NAME URL DELAY CMD...: runs CMD (its stdout passes through, alone) and writes
# $out/batch_NAME.json with what augur's /metrics at URL counted from DELAY seconds after the
# start to CMD's end, per model: model runs, rows, inference CPU-seconds and the histogram of
# rows per model run (augur_batch_size_rows; powers-of-two buckets, so 100-row chunks and full
# 256-row batches land in different buckets). Composes with cpu_window (either may wrap the other).
metrics_window() {
  local name=$1 url=$2 delay=$3
  shift 3
  local before="$out/.metrics_$name.before" after="$out/.metrics_$name.after"
  rm -f "$before"
  (sleep "$delay"; curl -sSf "$url" > "$before") &
  local reader=$!
  "$@"
  wait "$reader"
  curl -sSf "$url" > "$after"
  python3 - "$before" "$after" "$out/batch_$name.json" <<'PY'
import json, re, sys
before, after, path = sys.argv[1:]
line = re.compile(r'^(augur_batch_size_rows_bucket|augur_batch_runs_total|augur_batch_rows_total|augur_inference_cpu_seconds_total)\{([^}]*)\} (\S+)$')
label = re.compile(r'(\w+)="([^"]*)"')
def read(p):
    """{model: {"buckets": {le: count}, "runs", "rows", "cpu_s"}} summed over versions and scenes."""
    models = {}
    for l in open(p):
        m = line.match(l.strip())
        if not m:
            continue
        name, labels, value = m.group(1), dict(label.findall(m.group(2))), float(m.group(3))
        d = models.setdefault(labels["model"], {"buckets": {}, "runs": 0.0, "rows": 0.0, "cpu_s": 0.0})
        if name == "augur_batch_size_rows_bucket":
            d["buckets"][labels["le"]] = d["buckets"].get(labels["le"], 0.0) + value
        else:
            key = {"augur_batch_runs_total": "runs", "augur_batch_rows_total": "rows"}.get(name, "cpu_s")
            d[key] += value
    return models
b, a = read(before), read(after)
empty = {"buckets": {}, "runs": 0.0, "rows": 0.0, "cpu_s": 0.0}
result = {}
for model, d in a.items():
    o = b.get(model, empty)
    runs = d["runs"] - o["runs"]
    if runs <= 0:
        continue
    # Cumulative buckets ("le" = at most), in order; +Inf last.
    les = sorted(d["buckets"], key=lambda le: float("inf") if le == "+Inf" else float(le))
    result[model] = {
        "runs": runs,
        "rows": d["rows"] - o["rows"],
        "rows_per_run": (d["rows"] - o["rows"]) / runs,
        "inference_cpu_s": d["cpu_s"] - o["cpu_s"],
        "le": les,
        "cumulative_runs": [d["buckets"][le] - o["buckets"].get(le, 0.0) for le in les],
    }
json.dump({"models": result}, open(path, "w"), indent=1)
for model, r in result.items():
    # stderr: CMD's stdout may be a JSON report piped on.
    print(f"batches {model}: {r['runs']:.0f} model runs, {r['rows_per_run']:.1f} rows per run", file=sys.stderr)
PY
  rm -f "$before" "$after"
}

# run_info_start, then run_info FILE COMMAND at the end: writes FILE with when and where the run
# was measured (UTC start and end, the load average at both, CPU model and count, the commit),
# for the plots' titles and the noise note next to them.
run_info_start() {
  run_started=$(date -u +%FT%TZ)
  run_load_start=$(cut -d' ' -f1-3 /proc/loadavg)
}
run_info() {
  python3 - "$1" "$2" "$run_started" "$run_load_start" "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$(git describe --always --dirty 2>/dev/null || echo unknown)" <<'PY'
import json, os, sys
path, command, started, load_start, ended, load_end, commit = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
json.dump({"command": command, "started": started, "ended": ended, "load_average_start": load_start,
           "load_average_end": load_end, "cpu": cpu, "cpus": os.cpu_count(), "commit": commit},
          open(path, "w"), indent=1)
PY
}
