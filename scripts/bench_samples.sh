#!/usr/bin/env bash
# What sample logging costs, in one run: two augur servers on the benchmark scene (in-memory
# store, 100-candidate requests), one with `samples.rate = 1.0` (every request snapshotted,
# held in the in-memory join store and journaled to disk), one with sample logging off; `augur
# bench` drives them alternately (off, on, off, on) so machine noise hits both. Also prints the
# snapshot bytes per candidate the join store holds.
# Usage: [SAMPLE_RATE=1.0] scripts/bench_samples.sh [seconds per step, default 15]. Writes target/bench/samples_*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
source scripts/bench_lib.sh
cargo build --release --locked --bin augur
augur=$target_dir/release/augur
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start() { # name, extra env...
  local name=$1; shift
  local port admin http
  port=$(free_port); admin=$(free_port); http=$(free_port)
  env AUGUR__SERVER__LISTEN="127.0.0.1:$port" AUGUR__ADMIN__GRPC_LISTEN="127.0.0.1:$admin" \
    AUGUR__ADMIN__LISTEN="127.0.0.1:$http" RUST_LOG=warn "$@" $augur serve --config config/bench.toml &
  pids+=($!)
  eval "${name}_addr=http://127.0.0.1:$port ${name}_admin=http://127.0.0.1:$admin ${name}_http=127.0.0.1:$http"
  $augur predict --addr "http://127.0.0.1:$port" --scene bench --user u1 --items i1 --wait 120 >/dev/null
}

start off
# Nobody reports events here: snapshots wait out a 10 s window (waits below it), then expire; 2 GiB
# of join store holds the window at this rate.
start on AUGUR__SAMPLES__ENABLED=true AUGUR__SAMPLES__RATE="${SAMPLE_RATE:-1.0}" AUGUR__SAMPLES__LOG__DIR="$work/samples" \
  AUGUR__SAMPLES__JOIN__WINDOW_S=10 AUGUR__SAMPLES__JOIN__POSITIVE_WAIT_S__CLICK=5 \
  AUGUR__SAMPLES__JOIN__POSITIVE_WAIT_S__CONVERSION=5 AUGUR__SAMPLES__JOIN__STORE__KIND=memory \
  AUGUR__SAMPLES__JOIN__STORE__MAX_BYTES=2147483648

for round in 1 2; do
  for name in off on; do
    addr_var=${name}_addr; admin_var=${name}_admin
    echo "== round $round: samples $name"
    $augur bench --addr "${!addr_var}" --admin-addr "${!admin_var}" --scene bench --concurrency 32 --candidates 100 \
      --duration "$secs" --json | tee "$out/samples_${name}_$round.json"
  done
done

curl -s "http://$on_http/metrics" > "$out/samples_on_metrics.txt"
python3 - "$out" <<'PY'
import json, re, sys
d = sys.argv[1]
def items(name):
    return [json.load(open(f"{d}/samples_{name}_{r}.json"))["items_per_s"] for r in (1, 2)]
off, on = items("off"), items("on")
print(f"items/s  off {off[0]:.0f} {off[1]:.0f}  on {on[0]:.0f} {on[1]:.0f}  ratio on/off {sum(on) / sum(off):.3f}")
m = open(f"{d}/samples_on_metrics.txt").read()
def val(series):
    hit = re.search(r"^" + re.escape(series) + r" (\S+)$", m, re.M)
    return float(hit.group(1)) if hit else 0.0
pending, held = val("augur_samples_pending"), val("augur_samples_pending_bytes")
dropped = sum(float(x) for x in re.findall(r'^augur_samples_dropped_total\{[^}]*\} (\S+)$', m, re.M))
snaps = val('augur_samples_snapshots_total{scene="bench"}')
if pending:
    print(f"join store: {pending:.0f} predictions, {held / pending:.0f} bytes each = {held / pending / 100:.0f} bytes per candidate")
print(f"snapshots queued {snaps:.0f}, dropped {dropped:.0f}")
PY
