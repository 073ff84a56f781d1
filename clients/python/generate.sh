#!/usr/bin/env bash
# Regenerates the gRPC stubs in augur_client/v1/ from proto/augur/v1/*.proto with the pinned
# grpcio-tools (tools/train/requirements.txt, installed into .venv by scripts/setup.sh).
#
#   clients/python/generate.sh [OUT_DIR]     default OUT_DIR: clients/python/augur_client/v1
#
# protoc's Python generator writes `from augur.v1 import ...` for cross-file imports (the proto
# package path); those lines are rewritten to `from augur_client.v1 import ...` so the stubs live
# inside this package instead of claiming a top-level `augur` module. The output is committed;
# clients/python/tests/test_generated.py regenerates into a temp dir and fails on any difference.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/augur_client/v1}
py=${PYTHON:-$root/.venv/bin/python}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Relative proto paths: the descriptors record `augur/v1/x.proto`, never this machine's paths.
# `python -m grpc_tools.protoc` adds grpcio-tools' bundled well-known types (wrappers.proto).
(cd "$root/proto" && "$py" -m grpc_tools.protoc -I . \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" augur/v1/*.proto)

mkdir -p "$out"
rm -f "$out"/*_pb2.py "$out"/*_pb2.pyi "$out"/*_pb2_grpc.py
for f in "$tmp"/augur/v1/*; do
  sed -e 's/^from augur\.v1 import /from augur_client.v1 import /' "$f" >"$out/$(basename "$f")"
done
