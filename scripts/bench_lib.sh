# Sourced by the benchmark scripts (run from the repository root): the venv with ONNX Runtime,
# the release binary, and the benchmark model (generated once, then reused).
bash scripts/setup.sh >/dev/null
out=target/bench
mkdir -p "$out"
repo=target/bench-model/bench
if [ ! -f "$repo/1/model.onnx" ]; then
  .venv/bin/python tools/bench_model/make_deepfm.py --out "$repo/1/model.onnx"
fi
# Left over from an interrupted hot-reload step: version 1 alone is served.
rm -rf "$repo/2" "$repo/.staging"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
