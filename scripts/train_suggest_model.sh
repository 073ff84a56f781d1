#!/usr/bin/env bash
# Reproduces the committed search_suggest model models/search_suggest/1/model.onnx from scratch:
# suggestion catalogue demo/suggestions.csv + a query log for the users of demo/users.csv (seed 42)
# → `augur features export --scene search_suggest` (the serving code) → tools/train/train.py
# (numpy DeepFM, seed 7) → ONNX. Log-order 90/10 split for validation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build -q
augur=target/debug/augur
work=target/suggest-train
mkdir -p "$work" models/search_suggest/1
$augur suggest-demo-data --out demo --users demo/users.csv --log "$work/impressions.csv" --seed 42
total=$(($(wc -l <"$work/impressions.csv") - 1))
train_rows=$((total * 9 / 10))
head -n $((train_rows + 1)) "$work/impressions.csv" >"$work/train.csv"
{ head -n 1 "$work/impressions.csv"; tail -n +$((train_rows + 2)) "$work/impressions.csv"; } >"$work/valid.csv"
$augur features export --scene search_suggest --impressions "$work/train.csv" --out "$work/train"
$augur features export --scene search_suggest --impressions "$work/valid.csv" --out "$work/valid"
.venv/bin/python tools/train/train.py --train "$work/train" --valid "$work/valid" \
  --out models/search_suggest/1/model.onnx --report models/search_suggest/1/train_report.json \
  --epochs 2 --seed 7
