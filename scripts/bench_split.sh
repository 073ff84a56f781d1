#!/usr/bin/env bash
# Flat vs split graph (issue 23 item 1, docs/features.md "Request-level inputs"), in one sitting:
# raw ORT on the flat benchmark model at batch 256 (2 threads x 1 intra-op) against augur serving
# the flat model (scene bench) and its split twin (scene bench_split, same weights) at 100
# candidates per request, driven by h2load. augur's CPU is utime + stime from /proc/PID/stat
# over each measured window (bench_lib.sh cpu_window). Rounds alternate the three, so a noisy
# neighbour hits all of them; compare the ratios within a round. Writes target/bench/split/
# round_N.json and run.json (when, where, load average), which scripts/plots.sh draws.
#
#   scripts/bench_split.sh [SECONDS per run, default 8] [ROUNDS, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}
rounds=${2:-2}
source scripts/bench_lib.sh
split_repo=target/bench-model/bench_split
# Regenerated when the code that writes the split graph changed since (its shape is what is
# measured; the weights never change).
split_model=$split_repo/1/model.onnx
if [ ! -f "$split_model" ] || [ -n "$(find tools/train/split.py tools/train/onnx_graph.py \
    tools/bench_model/make_deepfm.py -newer "$split_model")" ]; then
  .venv/bin/python tools/bench_model/make_deepfm.py --split --out "$split_model"
fi
out=target/bench/split
build_augur >/dev/null
# A longer earlier run's rounds would otherwise be drawn with this one's.
rm -f "$out"/round_*.json
config="$out/bench_split.toml"
cat config/bench.toml > "$config"
printf '\n[[scenes]]\nname = "bench_split"\nspec = "features/bench_split.yaml"\nmodel = "%s"\n' "$split_repo" >> "$config"
trap stop_augur EXIT
trap 'exit 130' INT TERM

run_info_start
start_augur "$augur" "$config" bench_split
predict_path=/augur.v1.Prediction/Predict
for scene in bench bench_split; do
  $augur bench --scene "$scene" --candidates 100 --write-body "$out/predict_$scene.bin"
  check_grpc "$out/predict_$scene.bin" "$predict_path" "$addr"
done

for round in $(seq 1 "$rounds"); do
  echo "== round $round: raw ORT flat, batch 256, 2 x 1 thread"
  $augur bench-ort --model target/bench-model/bench/1/model.onnx --batch 256 --threads 2 --intra-op-threads 1 \
    --duration "$secs" --json > "$out/raw_$round.json"
  for scene in bench bench_split; do
    echo "== round $round: augur $scene, 100 candidates, h2load -c $h2c -m $h2m"
    cpu_window "${scene}_$round" "$pid" "$warmup" \
      h2load_grpc "${scene}_$round" "$out/predict_$scene.bin" "$predict_path" "$addr" "$secs" "$warmup" "$h2c" "$h2m"
  done
  python3 - "$out" "$round" <<'PY'
import json, sys
d, r = sys.argv[1:]
raw = json.load(open(f"{d}/raw_{r}.json"))
row = {"round": int(r), "raw_items_per_s": raw["items_per_s"], "raw_items_per_cpu_s": raw["items_per_cpu_s"]}
for scene in ("bench", "bench_split"):
    h = json.load(open(f"{d}/h2load_{scene}_{r}.json"))
    c = json.load(open(f"{d}/cpu_{scene}_{r}.json"))
    items = h["requests_per_s"] * 100
    row[scene] = {"items_per_s": items, "cores": c["cores"], "items_per_cpu_s": items / c["cores"],
                  "failed": h["failed"] + h["errored"]}
raw_cpu = row["raw_items_per_cpu_s"]
print(f"round {r}: raw flat {row['raw_items_per_s']:.0f} items/s, {raw_cpu:.0f} per CPU-s | "
      + " | ".join(f"{s} {row[s]['items_per_s']:.0f} items/s on {row[s]['cores']:.2f} cores, "
                   f"{row[s]['items_per_cpu_s']:.0f} per CPU-s = {row[s]['items_per_cpu_s'] / raw_cpu:.2f}x raw"
                   for s in ("bench", "bench_split")))
json.dump(row, open(f"{d}/round_{r}.json", "w"))
PY
done
run_info "$out/run.json" "scripts/bench_split.sh $secs $rounds"
