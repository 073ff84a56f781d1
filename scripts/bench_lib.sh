# Sourced by the benchmark scripts (run from the repository root): the venv with ONNX Runtime,
# the release binary's directory, the benchmark model (generated once, then reused), h2load, and
# helpers reading a process's CPU and memory from /proc.
bash scripts/setup.sh >/dev/null
# Cargo's target directory: builds may share one (CARGO_TARGET_DIR); results stay in this checkout.
target_dir=${CARGO_TARGET_DIR:-target}
out=target/bench
mkdir -p "$out"
repo=target/bench-model/bench
if [ ! -f "$repo/1/model.onnx" ]; then
  .venv/bin/python tools/bench_model/make_deepfm.py --out "$repo/1/model.onnx"
fi
# Left over from an interrupted hot-reload step: version 1 alone is served.
rm -rf "$repo/2" "$repo/.staging"
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
