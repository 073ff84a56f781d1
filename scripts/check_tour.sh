#!/usr/bin/env bash
# Runs README.md's five-minute tour exactly as written, so the front door cannot go stale: the
# tour's `sh` blocks are taken from the README (not copied here) and run in order in one shell,
# against target/debug/augur on the tour's own ports. Between blocks it waits for what the prose
# promises ("a few seconds later the joined samples are in the sample log", "a moment later the
# running augur has ... swapped it in") and fails if that does not happen. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/debug/augur ] || cargo build --locked --bin augur
work=$(mktemp -d)
blocks=$(python3 - "$work" <<'PY'
import re, sys
text = open("README.md").read()
tour = text.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```sh\n(.*?)```", tour, re.S)
assert len(blocks) == 4, f"the tour has {len(blocks)} sh blocks; this check knows 4"
for i, block in enumerate(blocks):
    open(f"{sys.argv[1]}/block{i}.sh", "w").write(block)
print(len(blocks))
PY
)
echo "tour: $blocks blocks from README.md"
rm -rf /tmp/augur-tour
# Whatever happens, the tour's server does not outlive the check.
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # what, seconds, command...
  local what=$1 secs=$2 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "tour: $what did not happen within ${secs}s" >&2; exit 1; fi
    sleep 0.5
  done
}

# shellcheck disable=SC1091
source "$work/block0.sh"
# shellcheck disable=SC1091
source "$work/block1.sh" | tee "$work/predict.txt"
grep -q "no-such-item" "$work/predict.txt" || { echo "tour: predict did not answer for no-such-item" >&2; exit 1; }
has_sample() { [ -n "$(augur samples dump --log /tmp/augur-tour/samples --limit 1)" ]; }
wait_for "a joined sample in the log" 60 has_sample
# shellcheck disable=SC1091
source "$work/block2.sh" | tee "$work/dump.txt"
grep -q '"labels"' "$work/dump.txt" || { echo "tour: the dumped sample carries no labels" >&2; exit 1; }
# The last block up to `kill %1`; then the prose's "a moment later": version 2 answers; then
# `kill %1`, and the drain must end the server cleanly.
grep -v '^kill ' "$work/block3.sh" >"$work/block3a.sh"
grep '^kill ' "$work/block3.sh" >"$work/block3b.sh"
# shellcheck disable=SC1091
source "$work/block3a.sh"
serves_v2() { augur predict --user u42 --items i0 | grep -q ' v2$'; }
wait_for "version 2 serving" 60 serves_v2
server=$(jobs -p | head -n1)
# shellcheck disable=SC1091
source "$work/block3b.sh"
status=0
wait "$server" || status=$?
[ "$status" -eq 0 ] || { echo "tour: augur serve exited $status after kill %1" >&2; exit 1; }
echo "tour: ok (README.md's five-minute tour ran as written)"
