#!/usr/bin/env bash
# augur against raw ONNX Runtime by candidates per request (issue 23 item 5, the plots): for each
# count N, raw ORT on the benchmark model at batch N (2 threads x 1 intra-op: what scoring each
# request on its own would reach) and augur serving config/bench.toml driven by h2load (-c 4
# -m 8) with an N-candidate request, its CPU from /proc/PID/stat and its rows per model run from
# /metrics over the measured window; raw ORT at batch 256, the ceiling bench.sh measures, once
# at the start. Writes target/bench/sweep/{raw_N,h2load_N,cpu_N,batch_N}.json, sweep.json (one row
# per N) and run.json; scripts/plots.sh draws sweep.json.
#
#   scripts/bench_sweep.sh [SECONDS per run, default 8] ["CANDIDATE COUNTS", default "1 10 50 100 200"]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
counts=${2:-1 10 50 100 200}
source scripts/bench_lib.sh
out=target/bench/sweep
build_augur
trap stop_augur EXIT
trap 'exit 130' INT TERM

run_info_start
echo "== raw ORT, batch 256 (the ceiling), 2 threads x 1 intra-op thread"
$augur bench-ort --model "$repo/1/model.onnx" --batch 256 --threads 2 --intra-op-threads 1 --duration "$secs" \
  --json | tee "$out/raw_ceiling.json"
start_augur "$augur" config/bench.toml
predict_path=/augur.v1.Prediction/Predict
for n in $counts; do
  echo "== $n candidates: raw ORT at batch $n, then augur (h2load -c $h2c -m $h2m)"
  $augur bench-ort --model "$repo/1/model.onnx" --batch "$n" --threads 2 --intra-op-threads 1 --duration "$secs" \
    --json | tee "$out/raw_$n.json"
  $augur bench --scene bench --candidates "$n" --write-body "$out/predict_$n.bin"
  check_grpc "$out/predict_$n.bin" "$predict_path" "$addr"
  cpu_window "$n" "$pid" "$warmup" metrics_window "$n" "$metrics_url" "$warmup" \
    h2load_grpc "$n" "$out/predict_$n.bin" "$predict_path" "$addr" "$secs" "$warmup" "$h2c" "$h2m"
done
python3 - "$out" "$counts" <<'PY'
import json, sys
d, counts = sys.argv[1], [int(n) for n in sys.argv[2].split()]
load = lambda name: json.load(open(f"{d}/{name}.json"))
ceiling = load("raw_ceiling")
rows = []
for n in counts:
    raw, h2, cpu, batch = load(f"raw_{n}"), load(f"h2load_{n}"), load(f"cpu_{n}"), load(f"batch_{n}")
    items = h2["requests_per_s"] * n
    bench = batch["models"].get("bench", {})
    rows.append({
        "candidates": n,
        "augur_requests_per_s": h2["requests_per_s"],
        "augur_items_per_s": items,
        "augur_cores": cpu["cores"],
        "augur_items_per_cpu_s": items / cpu["cores"] if cpu["cores"] else None,
        "augur_rows_per_model_run": bench.get("rows_per_run"),
        "augur_failed": h2["failed"] + h2["errored"] + h2["timeout"],
        "raw_items_per_s": raw["items_per_s"],
        "raw_items_per_cpu_s": raw["items_per_cpu_s"],
    })
    r = rows[-1]
    print(f"{n:4d} candidates: augur {r['augur_items_per_s']:10,.0f} items/s on {r['augur_cores']:.2f} cores "
          f"({r['augur_items_per_cpu_s']:,.0f} per CPU-s, {r['augur_rows_per_model_run'] or 0:.0f} rows per run) | "
          f"raw ORT batch {n}: {r['raw_items_per_s']:10,.0f} items/s ({r['raw_items_per_cpu_s']:,.0f} per CPU-s)")
print(f"raw ORT batch 256: {ceiling['items_per_s']:,.0f} items/s ({ceiling['items_per_cpu_s']:,.0f} per CPU-s)")
json.dump({"driver": "h2load", "raw_batch_256": {"items_per_s": ceiling["items_per_s"],
           "items_per_cpu_s": ceiling["items_per_cpu_s"]}, "rows": rows}, open(f"{d}/sweep.json", "w"), indent=1)
PY
run_info "$out/run.json" "scripts/bench_sweep.sh $secs \"$counts\""
