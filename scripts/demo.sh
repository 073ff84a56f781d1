#!/usr/bin/env bash
# One command on a fresh machine: install what augur needs, build it, run it on its embedded
# defaults (in-memory store with the demo catalogue, the bundled demo model) and show a real
# prediction over gRPC. `scripts/demo.sh --serve` keeps the server running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --demo
cargo build --locked --bin augur
port=${AUGUR_DEMO_PORT:-50051}
export AUGUR__SERVER__LISTEN="127.0.0.1:$port"
target/debug/augur serve &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
echo "== augur predict: user u42, 8 candidates, evening on iOS"
target/debug/augur predict --addr "http://127.0.0.1:$port" --wait 60 --user u42 \
  --items i0,i1,i2,i3,i17,i256,i1024,no-such-item --context hour=20 --context device=ios
echo "== augur predict: search suggestions while user u42 types \"brév\""
target/debug/augur predict --addr "http://127.0.0.1:$port" --scene search_suggest --user u42 \
  --items "brévepa vs gift,revé review set,stigive white,zetugun repair travel" --context query=brév --context device=ios
if [ "${1:-}" = "--serve" ]; then
  echo "== serving on 127.0.0.1:$port (Ctrl-C to stop)"
  wait "$pid"
fi
