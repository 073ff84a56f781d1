#!/usr/bin/env bash
# Renders BENCHMARKS.md's plots (docs/img/bench_*.png) from the JSON the benchmark scripts wrote;
# runs no load itself. The data comes from, each in its own sitting:
#   scripts/bench.sh 10          latency vs throughput, batch sizes   (BENCH_DIR/*.json)
#   scripts/bench_sweep.sh 8     augur vs raw ORT by candidates        (BENCH_DIR/sweep/)
#   scripts/bench_fetch.sh 8     fetch with and without the cache     (BENCH_DIR/fetch/)
#   scripts/bench_split.sh 8 3   flat vs split graph vs raw ORT        (BENCH_DIR/split/)
# A missing file is named with the script that writes it, and nothing is drawn.
# matplotlib, as tools/soak/soak.py: installed into .venv on first use.
# Usage: scripts/plots.sh [BENCH_DIR, default target/bench]
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-target/bench}
if [ ! -x .venv/bin/python ]; then
  echo "plots: no .venv: run scripts/setup.sh first" >&2
  exit 1
fi
if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  echo "plots: installing matplotlib into .venv"
  .venv/bin/pip install -q matplotlib
fi
.venv/bin/python tools/bench_plots/plots.py --bench "$bench" --out docs/img
