#!/usr/bin/env bash
# Before (9c94386, the session's start) and after (the commit named in README.md) alternating, on one machine.
set -euo pipefail
OLD=${OLD:-/tmp/wt-old} NEW=${NEW:-/tmp/wt-new} OUT=${OUT:-results.jsonl}
for wait in 50 100; do
  for tree in "$OLD" "$NEW"; do
    PYTHONPATH="$tree" python "$(dirname "$0")/ab.py" "$tree" "$OUT" "$wait"
  done
done
