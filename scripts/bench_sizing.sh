#!/usr/bin/env bash
# Checks docs/sizing.md's arithmetic against one and two augur instances on this machine, in one
# sitting (issue 23 item 6), on config/bench.toml's bench scene (in-memory store, bench model,
# 100 candidates per request, closed loop, 32 callers):
#   1. one instance (2 inference threads): items/s and augur's cores, so items per augur
#      CPU-second; driven by `augur bench --addr` (4 connections, bench.sh's shape) and by
#      `augur bench --discover host:port` (the balancing client step 2 uses, one connection).
#   2. two instances side by side (1 inference thread each, so the machine runs 2 inference
#      threads in both steps and the 2 cores are not oversubscribed by inference alone), driven
#      a) by one `augur bench --discover a,b` (tonic's p2c balancer, as a mesh client spreads
#      load) and b) by two `augur bench --addr` at once, one per instance, 16 callers each.
#      Items/s and cores per instance from each one's /metrics (rows scored) and /proc.
#   3. the page's arithmetic: items/s = cores x items per CPU-second, with the per-CPU figure
#      from step 1 of the same run and with the page's constant; RSS per instance against the
#      page's "model file + ~58 MiB".
# On 2 cores two instances share the same CPUs, so this checks that the per-CPU figure holds
# when the load is split over instances (the CPU arithmetic), not that replicas on separate
# machines add up; and the whole machine is measured too (busy cores from /proc/stat), since the
# load generator and anything else running take from the same 2 cores.
# Usage: scripts/bench_sizing.sh [seconds per step, default 6] [augur binary, default: the
# release build, built here; honours CARGO_TARGET_DIR]. Writes target/bench/sizing/*.json and
# prints the summary and the rows of docs/sizing.md's "Checked against one and two instances".
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-6}
binary=${2:-}
source scripts/bench_lib.sh
out=target/bench/sizing
rm -rf "$out"
mkdir -p "$out"
if [ -n "$binary" ]; then
  # A copy: another build may replace the given file mid-run.
  cp "$binary" "$out/augur"
  augur=$out/augur
else
  build_augur # copies the build to $out/augur
fi
# docs/sizing.md's constants (items per augur CPU-second, bench model, 100 candidates; RSS over
# the model file after load); the page and these change together.
page_items_per_cpu_s=200000
page_overhead_mib=70
callers=32
run_info_start

started=()
cleanup() {
  for p in "${started[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# snapshot FILE PID URL [PID URL...]: the time, the whole machine's busy CPU seconds (every
# process: augur, the load generator, anyone else; /proc/stat), and per instance its CPU seconds
# (/proc/PID/stat) and the rows and model runs its /metrics counted (augur_batch_rows_total,
# augur_batch_runs_total), as FILE.
snapshot() {
  python3 - "$@" <<'PY'
import json, os, sys, time, urllib.request
path, rest = sys.argv[1], sys.argv[2:]
hz = os.sysconf("SC_CLK_TCK")
t = time.time()
v = list(map(int, open("/proc/stat").readline().split()[1:9]))
busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz  # all but idle and iowait
instances = []
for pid, url in zip(rest[::2], rest[1::2]):
    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / hz  # utime + stime
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    total = lambda family: sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(family + "{"))
    instances.append({"cpu_s": cpu, "rows": total("augur_batch_rows_total"), "runs": total("augur_batch_runs_total")})
json.dump({"t": t, "busy_s": busy, "instances": instances}, open(path, "w"))
PY
}

# scored: the rows the instances in $probe have scored so far, summed.
scored() {
  local total=0 n i
  for ((i = 1; i < ${#probe[@]}; i += 2)); do
    n=$(curl -sSf "${probe[i]}" | awk '/^augur_batch_rows_total\{/ {s += $2} END {printf "%d", s}')
    total=$((total + n))
  done
  echo "$total"
}

# window NAME CMD...: runs CMD (a load generator with warm-up $warmup and $secs measured) in
# the background and snapshots the instances in $probe (PID URL ...) over one interval inside
# the generator's measured window: from $warmup after the first rows are scored (a generator
# on a busy machine can take seconds to start) to 1 s before that window ends. One interval
# for every instance and the machine. Writes $out/window_NAME.json.
window() {
  local name=$1
  shift
  local before
  before=$(scored)
  "$@" &
  local cmd=$!
  until [ "$(scored)" -gt "$before" ]; do sleep 0.05; done
  sleep "$warmup"
  snapshot "$out/.window_$name.0" "${probe[@]}"
  sleep "$((secs - 1))"
  snapshot "$out/.window_$name.1" "${probe[@]}"
  wait "$cmd"
  python3 - "$out/.window_$name.0" "$out/.window_$name.1" "$out/window_$name.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
wall = b["t"] - a["t"]
instances = []
for i, j in zip(a["instances"], b["instances"]):
    rows, runs, cpu = j["rows"] - i["rows"], j["runs"] - i["runs"], j["cpu_s"] - i["cpu_s"]
    instances.append({"items_per_s": rows / wall, "cores": cpu / wall, "items_per_cpu_s": rows / cpu if cpu else None,
                      "rows_per_run": rows / runs if runs else None})
json.dump({"wall_s": wall, "busy_cores": (b["busy_s"] - a["busy_s"]) / wall, "instances": instances},
          open(sys.argv[3], "w"), indent=1)
PY
  rm -f "$out/.window_$name.0" "$out/.window_$name.1"
}

# instance NAME [ENV=VALUE...]: start_augur on config/bench.toml with the overrides, and
# remembers its pid, addresses and metrics URL as NAME_pid, NAME_addr, NAME_hostport,
# NAME_admin, NAME_metrics.
instance() {
  local name=$1
  shift
  env_overrides=("$@")
  # start_augur reads the overrides from the environment it passes to `augur serve`.
  for kv in "${env_overrides[@]}"; do export "${kv?}"; done
  start_augur "$augur" config/bench.toml
  for kv in "${env_overrides[@]}"; do unset "${kv%%=*}"; done
  started+=("$pid")
  printf -v "${name}_pid" %s "$pid"
  printf -v "${name}_addr" %s "$addr"
  printf -v "${name}_hostport" %s "${addr#http://}"
  printf -v "${name}_admin" %s "$admin_addr"
  printf -v "${name}_metrics" %s "$metrics_url"
}
stop_instance() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# memory NAME PID: VmRSS and VmHWM of PID now, as $out/memory_NAME.json.
memory() {
  python3 -c "import json,sys; json.dump({'vm_rss_kib': int(sys.argv[2]), 'vm_hwm_kib': int(sys.argv[3])}, open(sys.argv[1], 'w'))" \
    "$out/memory_$1.json" "$(vm_kib "$2" VmRSS)" "$(vm_kib "$2" VmHWM)"
}
bench() {
  $augur bench --scene bench --candidates 100 --duration "$secs" --warmup "$warmup" --json "$@"
}

echo "== 1. one instance (config/bench.toml: 2 inference threads x 1 ORT thread)"
instance one
probe=("$one_pid" "$one_metrics")
echo "-- 1a. augur bench --addr, c=$callers on 4 connections"
window one bench --addr "$one_addr" --admin-addr "$one_admin" --concurrency "$callers" > "$out/one.json"
echo "-- 1b. augur bench --discover $one_hostport (the balancing client, one connection), c=$callers"
window one_discover bench --discover "$one_hostport" --concurrency "$callers" > "$out/one_discover.json"
memory one "$one_pid"
stop_instance "$one_pid"

echo "== 2. two instances (config/bench.toml with model.inference_threads = 1 each)"
instance a AUGUR__MODEL__INFERENCE_THREADS=1
instance b AUGUR__MODEL__INFERENCE_THREADS=1
probe=("$a_pid" "$a_metrics" "$b_pid" "$b_metrics")
echo "-- 2a. one augur bench --discover $a_hostport,$b_hostport, c=$callers"
window two bench --discover "$a_hostport,$b_hostport" --concurrency "$callers" > "$out/two.json"
echo "-- 2b. two augur bench --addr at once, one per instance, c=$((callers / 2)) on 4 connections each"
two_generators() {
  bench --addr "$a_addr" --admin-addr "$a_admin" --concurrency $((callers / 2)) > "$out/two_split_a.json" &
  local ga=$!
  bench --addr "$b_addr" --admin-addr "$b_admin" --concurrency $((callers / 2)) > "$out/two_split_b.json" &
  local gb=$!
  wait "$ga"
  wait "$gb"
}
window two_split two_generators
memory a "$a_pid"
memory b "$b_pid"
stop_instance "$a_pid"
stop_instance "$b_pid"
started=()

run_info "$out/run.json" "scripts/bench_sizing.sh $secs${binary:+ $binary}"
echo "== summary ($secs s per step after ${warmup} s warm-up; load average $run_load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end)"
python3 - "$out" "$page_items_per_cpu_s" "$page_overhead_mib" "$(stat -c %s "$repo/1/model.onnx")" <<'PY'
import json, sys
d, page_k, page_overhead_mib, model_bytes = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
load = lambda name: json.load(open(f"{d}/{name}.json"))
run = load("run")
model_mib = model_bytes / 2**20

def instance(step, window, n):
    """What one instance did in a step's window: scored rows per second and its cores."""
    return dict(load(f"window_{window}")["instances"][n], step=step)

def client(*names):
    """The load generators' view: OK items/s summed, errors, the worst p99."""
    rs = [load(n) for n in names]
    return {"items_per_s": sum(r["items_per_s"] for r in rs), "errors": sum(sum(r["errors"].values()) for r in rs),
            "p99_ms": max(r["latency_ms"]["p99"] for r in rs)}

steps = {
    "one": {"instances": [instance("one", "one", 0)], "client": client("one"), "busy": load("window_one")},
    "one_discover": {"instances": [instance("one_discover", "one_discover", 0)], "client": client("one_discover"),
                     "busy": load("window_one_discover")},
    "two": {"instances": [instance("two", "two", 0), instance("two", "two", 1)], "client": client("two"),
            "busy": load("window_two")},
    "two_split": {"instances": [instance("two_split", "two_split", 0), instance("two_split", "two_split", 1)],
                  "client": client("two_split_a", "two_split_b"), "busy": load("window_two_split")},
}
k_one = steps["one"]["instances"][0]["items_per_cpu_s"]
for s in steps.values():
    # Measured = rows the instances scored over the same window as their CPU, so step 1a's
    # ratio is 1 by construction and the others say how far the per-CPU figure carries.
    s["items_per_s"] = sum(i["items_per_s"] for i in s["instances"])
    s["cores"] = sum(i["cores"] for i in s["instances"])
    # The page's arithmetic: items/s = cores x items per CPU-second.
    s["predicted_from_one"] = s["cores"] * k_one
    s["predicted_from_page"] = s["cores"] * page_k
memory = {n: load(f"memory_{n}") for n in ("one", "a", "b")}
for m in memory.values():
    m["rss_mib"] = m["vm_rss_kib"] / 1024
predicted_rss = model_mib + page_overhead_mib

title = {"one": "one instance, 2 inference threads, `augur bench --addr` (4 connections)",
         "one_discover": "one instance, `augur bench --discover` (1 connection)",
         "two": "two instances, 1 inference thread each, one `augur bench --discover a,b`",
         "two_split": "two instances, two `augur bench --addr` at once (16 callers each)"}
lines = []
for name, s in steps.items():
    per = "; ".join(f"{i['items_per_s']:,.0f} items/s on {i['cores']:.2f} cores" for i in s["instances"])
    lines.append(f"{title[name]}: {s['items_per_s']:,.0f} items/s scored (client saw {s['client']['items_per_s']:,.0f}), augur {s['cores']:.2f} cores"
                 f" ({per}), machine busy {s['busy']['busy_cores']:.2f} of 2 cores; predicted {s['predicted_from_one']:,.0f}"
                 f" from step 1a's {k_one:,.0f} per CPU-s (x{s['items_per_s'] / s['predicted_from_one']:.2f}),"
                 f" {s['predicted_from_page']:,.0f} from the page's {page_k:,.0f} (x{s['items_per_s'] / s['predicted_from_page']:.2f});"
                 f" p99 {s['client']['p99_ms']:.1f} ms, errors {s['client']['errors']}")
lines.append("RSS after load: one instance (2 inference threads) " + f"{memory['one']['rss_mib']:.0f} MiB, two instances "
             f"{memory['a']['rss_mib']:.0f} + {memory['b']['rss_mib']:.0f} MiB (1 thread each); page: model file "
             f"{model_mib:.0f} + {page_overhead_mib:.0f} = {predicted_rss:.0f} MiB per instance")
print("\n".join(lines))

# The rows of docs/sizing.md's table, ready to paste.
def row(name, what):
    s = steps[name]
    own = "(defines it)" if name == "one" else f"{s['predicted_from_one']:,.0f}"
    own_ratio = "1" if name == "one" else f"{s['items_per_s'] / s['predicted_from_one']:.2f}"
    return (f"| {what} | {s['cores']:.2f} | {s['busy']['busy_cores']:.2f} | {own} | "
            f"{s['predicted_from_page']:,.0f} | **{s['items_per_s']:,.0f}** ({s['client']['items_per_s']:,.0f}) | "
            f"{own_ratio} / {s['items_per_s'] / s['predicted_from_page']:.2f} |")
table = [
    f"Run: `{run['command']}`, {run['started']} to {run['ended']}, load average "
    f"{run['load_average_start']} at start and {run['load_average_end']} at the end, {run['cpus']} x {run['cpu']}, commit {run['commit']}.",
    "",
    "| setup (bench scene, 100 candidates, 32 callers in closed loop) | augur cores | machine busy cores | predicted items/s: cores x step 1's per CPU-s | predicted: cores x the page's constant | measured items/s scored (the client's count) | measured / predicted (step 1a / page) |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    row("one", "1 instance, 2 inference threads (`augur bench --addr`)"),
    row("one_discover", "1 instance, through the balancing client (`--discover`)"),
    row("two", "2 instances x 1 inference thread, one balancing client"),
    row("two_split", "2 instances x 1 inference thread, one generator each"),
    "",
    "| per instance in the two-instance steps | items/s | cores | items per CPU-s |",
    "| --- | --- | --- | --- |",
] + [f"| {name}, instance {'ab'[n]} | {i['items_per_s']:,.0f} | {i['cores']:.2f} | {i['items_per_cpu_s']:,.0f} |"
     for name in ("two", "two_split") for n, i in enumerate(steps[name]["instances"])] + [
    "",
    f"| RSS after the load | measured | page: model file + {page_overhead_mib:.0f} MiB |",
    "| --- | --- | --- |",
    f"| 1 instance, 2 inference threads | {memory['one']['rss_mib']:.0f} MiB | {predicted_rss:.0f} MiB |",
    f"| 2 instances, 1 inference thread each | {memory['a']['rss_mib']:.0f} + {memory['b']['rss_mib']:.0f} MiB | "
    f"2 x {predicted_rss:.0f} MiB |",
]
print("\n== rows for docs/sizing.md, \"Checked against one and two instances\"")
print("\n".join(table))
json.dump({"run": run, "page_items_per_cpu_s": page_k, "items_per_cpu_s_one_instance": k_one, "steps": steps,
           "memory": memory, "model_file_mib": model_mib, "predicted_rss_mib": predicted_rss,
           "lines": lines, "table": table}, open(f"{d}/summary.json", "w"), indent=1)
PY
