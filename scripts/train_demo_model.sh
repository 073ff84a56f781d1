#!/usr/bin/env bash
# Reproduces the committed demo model models/ranking/1/model.onnx from scratch:
# synthetic catalogue + impressions (seed 42) → `augur features export` (the serving code) →
# tools/train/train.py (numpy DeepFM, seed 7) → ONNX. Time-ordered 90/10 split for validation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build -q
augur=target/debug/augur
work=target/demo-train
mkdir -p "$work" models/ranking/1
$augur demo-data --out demo --seed 42
total=$(($(wc -l <demo/impressions.csv) - 1))
train_rows=$((total * 9 / 10))
head -n $((train_rows + 1)) demo/impressions.csv >"$work/train.csv"
{ head -n 1 demo/impressions.csv; tail -n +$((train_rows + 2)) demo/impressions.csv; } >"$work/valid.csv"
$augur features export --scene ranking --impressions "$work/train.csv" --out "$work/train"
$augur features export --scene ranking --impressions "$work/valid.csv" --out "$work/valid"
.venv/bin/python tools/train/train.py --train "$work/train" --valid "$work/valid" \
  --out models/ranking/1/model.onnx --report models/ranking/1/train_report.json \
  --epochs 2 --seed 7
