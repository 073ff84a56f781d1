#!/usr/bin/env bash
# Reproduces the committed search_suggest model models/search_suggest/1/model.onnx from scratch:
# suggestion catalogue demo/suggestions.csv + a query log for the users of demo/users.csv (seed 42)
# → scripts/train_scene.sh (export with the serving code, log-order 90/10 split, numpy DeepFM
# seed 7) → ONNX.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build -q
mkdir -p target/suggest-train
target/debug/augur suggest-demo-data --out demo --users demo/users.csv --log target/suggest-train/impressions.csv --seed 42
bash scripts/train_scene.sh search_suggest target/suggest-train/impressions.csv models/search_suggest target/suggest-train
