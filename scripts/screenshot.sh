#!/usr/bin/env bash
# Takes docs/status.png, the picture of the admin port's status page in docs/operating.md: starts
# `augur serve` on its embedded defaults, sends a few seconds of traffic (the load generator on
# the ranking scene, one call with an unknown item so a fallback shows, one search suggestion),
# then lets headless Chromium render http://127.0.0.1:9090/. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
cargo build --locked --bin augur
augur=target/debug/augur
RUST_LOG=warn $augur serve &
pid=$!
profile=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$profile"' EXIT
for _ in $(seq 100); do
  curl -fs http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fs http://127.0.0.1:9090/readyz >/dev/null
$augur predict --user u42 --items i0,i1,i17,no-such-item --context hour=20 --context device=ios >/dev/null
$augur predict --scene search_suggest --user u42 --items "brévepa vs gift,revé review set" \
  --context query=brév --context device=ios >/dev/null
$augur bench --duration 5 --warmup 1 --concurrency 8 --candidates 50 >/dev/null
mkdir -p docs
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --screenshot=docs/status.png --window-size=1200,900 http://127.0.0.1:9090/
echo "screenshot: docs/status.png"
