#!/usr/bin/env bash
# The HTTP API under load, beside the in-process figures of the same run:
#   benches/http.sh [RECORDS]        (default 100000; 1000000 for the 1M figures)
# Builds the bench profile, builds a store of RECORDS synthetic records with the engine
# benchmark (which prints the in-process search p50/p99 used as the baseline), serves it
# with `crossdex serve --no-schedule`, then measures with wrk (Debian's `wrk` package):
# top-10 searches over the benchmark's own query list at 1, 8 and 32 connections, and
# `/sql` streaming `SELECT * FROM observations` as Arrow IPC.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-100000}
seconds=${SECONDS_EACH:-10}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --profile bench --bin crossdex --quiet
target=${CARGO_TARGET_DIR:-target}
bin=$target/release/crossdex
[ -x "$bin" ] || bin=$target/bench/crossdex

echo "== in process (the baseline), $records records"
cargo bench --bench engine --quiet -- --records "$records" --keep "$work/data" --dump "$work/dump" \
    | grep -E 'ingest|search|records' || true

port=$((20000 + RANDOM % 20000))
# serve reads a configuration file: one naming the benchmark's store and no source.
printf 'data_dir = "%s"\n' "$work/data" > "$work/crossdex.toml"
"$bin" --config "$work/crossdex.toml" serve --no-schedule --listen "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
up=
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/api/v1/ready" >/dev/null && { up=1; break; }
    sleep 0.2
done
[ -n "$up" ] || { echo "serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }

# Each request takes the next query of the benchmark's list, URL-encoded.
python3 - "$work/dump/queries.txt" "$work/queries.lua" <<'PY'
import sys, urllib.parse
qs = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as f:
    f.write("local q = {\n")
    for x in qs:
        f.write('  "%s",\n' % urllib.parse.quote(x, safe=""))
    f.write("}\nlocal i = 0\nrequest = function()\n  i = i % #q + 1\n"
            "  return wrk.format('GET', '/api/v1/search?limit=10&facets=0&q=' .. q[i])\nend\n")
PY

for c in 1 8 32; do
    echo "== HTTP search, $c connections, ${seconds}s"
    wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "${seconds}s" --latency -s "$work/queries.lua" \
        "http://127.0.0.1:$port" | grep -E '^\s+(50|99)%|Requests/sec|Non-2xx|Socket errors'
done

echo "== HTTP /sql, SELECT * FROM observations as Arrow IPC"
rows=$(curl -s "http://127.0.0.1:$port/api/v1/sql" -H 'Content-Type: text/plain' \
    -d 'SELECT count(*) FROM observations' | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"][0][0])')
start=$(date +%s.%N)
bytes=$(curl -s "http://127.0.0.1:$port/api/v1/sql?max_rows=100000000" -H 'Content-Type: text/plain' \
    -H 'Accept: application/vnd.apache.arrow.stream' -d 'SELECT * FROM observations' -o "$work/obs.arrows" -w '%{size_download}')
end=$(date +%s.%N)
python3 - "$rows" "$bytes" "$start" "$end" <<'PY'
import sys
rows, size, start, end = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = end - start
print(f"  {rows} rows, {size / 2**20:.0f} MiB in {s:.2f} s: {rows / s / 1e6:.2f} M rows/s")
PY
