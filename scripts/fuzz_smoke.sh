#!/usr/bin/env bash
# The fuzz smoke that CI runs (issue 22, item 6): every cargo-fuzz target in fuzz/ for N seconds
# (default 30), from its committed seed corpus (fuzz/corpus/<target>/); a crash, a failed
# assertion, a leak, a timeout or running out of memory fails it. Same build as the long runs in
# fuzz/README.md: nightly toolchain, address sanitizer, debug assertions.
#
#   scripts/fuzz_smoke.sh [seconds]
#
# Installs cargo-fuzz once (`cargo install --locked` into ~/.cargo/bin: a cached CI home keeps it).
# New inputs libFuzzer finds go to a scratch directory: the committed corpus is only read.
# A crashing input is kept in fuzz/artifacts/<target>/ (git-ignored); the failing target's output
# names it and the command that reproduces it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-30}
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz smoke: needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz has no --locked: fail here if fuzz/Cargo.lock is not current, as --locked would.
cargo +nightly metadata --locked --format-version 1 >/dev/null
cargo +nightly fuzz build
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  if cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    # libFuzzer's last status line (`#runs cov: ft: corp: exec/s: rss:`) and its run count.
    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz smoke: $target ${seconds}s, ${runs:-?} runs, no crash (${status})"
  else
    tail -n 60 "$log" >&2
    echo "fuzz smoke: $target FAILED (input kept in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
done
