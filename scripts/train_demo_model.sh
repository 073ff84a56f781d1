#!/usr/bin/env bash
# Reproduces the committed demo model models/ranking/1/model.onnx from scratch:
# synthetic catalogue + impressions (seed 42) → scripts/train_scene.sh (export with the serving
# code, time-ordered 90/10 split, numpy DeepFM seed 7) → ONNX.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build -q
target/debug/augur demo-data --out demo --seed 42
bash scripts/train_scene.sh ranking demo/impressions.csv models/ranking target/demo-train
