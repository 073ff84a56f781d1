#!/usr/bin/env bash
# Long mode of the sample pipeline's model-based crash test (tests/it/samples_model.rs): many seeds,
# more rounds each. CI runs seeds 1,2,3 with 4 rounds. A failing seed prints its replay command.
#   scripts/samples_model.sh [FIRST_SEED] [SEEDS] [ROUNDS]    (defaults: 100 50 8)
set -euo pipefail
cd "$(dirname "$0")/.."
first=${1:-100}
count=${2:-50}
rounds=${3:-8}
seeds=$(seq -s, "$first" $((first + count - 1)))
# It serves the bundled ONNX models: the external tier (scripts/setup.sh installs ONNX Runtime).
AUGUR_IT_EXTERNAL=1 AUGUR_MODEL_SEEDS=$seeds AUGUR_MODEL_ROUNDS=$rounds \
  cargo test --locked --test it samples_model:: -- --nocapture
