#!/usr/bin/env bash
# Side by side, in one run, on the same data: crossdex's engine and SQLite FTS5.
#   benches/compare.sh [RECORDS]        (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-100000}
dump=$(mktemp -d)
trap 'rm -rf "$dump"' EXIT
cargo bench --bench engine -- --records "$records" --dump "$dump"
python3 benches/sqlite_fts5.py "$dump"
