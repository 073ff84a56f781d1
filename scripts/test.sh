#!/usr/bin/env bash
# One command on a fresh machine: install what the tests need, then run every check CI runs:
# formatting, clippy (warnings are errors), the Python tools' self-test, and the whole cargo
# test suite (unit, gRPC integration, ORT parity, MovieLens-100K AUC parity).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
.venv/bin/python tools/train/metrics.py
cargo test --locked
