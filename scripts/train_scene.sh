#!/usr/bin/env bash
# Shared by the train_*_model.sh scripts: impression log → log-order 90/10 split →
# `augur features export` (the serving code) for both parts → tools/train/train.py (numpy DeepFM,
# 2 epochs, seed 7) → <model dir>/1/model.onnx + train_report.json.
# Usage: scripts/train_scene.sh SCENE LOG.csv MODEL_DIR WORK_DIR   (augur already built)
set -euo pipefail
cd "$(dirname "$0")/.."
scene=$1 log=$2 model=$3 work=$4
augur=target/debug/augur
mkdir -p "$work" "$model/1"
total=$(($(wc -l <"$log") - 1))
train_rows=$((total * 9 / 10))
head -n $((train_rows + 1)) "$log" >"$work/train.csv"
{ head -n 1 "$log"; tail -n +$((train_rows + 2)) "$log"; } >"$work/valid.csv"
$augur features export --scene "$scene" --impressions "$work/train.csv" --out "$work/train"
$augur features export --scene "$scene" --impressions "$work/valid.csv" --out "$work/valid"
.venv/bin/python tools/train/train.py --train "$work/train" --valid "$work/valid" \
  --out "$model/1/model.onnx" --report "$model/1/train_report.json" --epochs 2 --seed 7
