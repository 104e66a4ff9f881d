#!/usr/bin/env bash
# The terminal UI's latency, beside the service's own search in the same run:
#   benches/tui.sh [RECORDS]        (default 100000; 1000000 for the 1M figures)
# Builds a store of RECORDS synthetic records with the engine benchmark, then runs
# benches/tui.rs on it: time to first frame, and keystroke to frame while typing the
# engine benchmark's queries.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-100000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo bench --bench engine --quiet -- --records "$records" --keep "$work/data" --dump "$work/dump" \
    --ingest-only | grep -E 'ingest' || true
cargo bench --bench tui --quiet -- --data "$work/data" --queries "$work/dump/queries.txt"
