#!/usr/bin/env bash
# The Elasticsearch-compatible `_search` beside crossdex's own `/api/v1/search`, for the
# same question, in the same run:
#   benches/es.sh [RECORDS]        (default 100000; 1000000 for the 1M figures)
# A faceted-portal request: a `match` (operator `and`) on one of the engine benchmark's queries, three
# `terms` facets (source, kind, project) and a monthly `date_histogram`; and the same
# search with facets through `/api/v1/search`. Builds a store with the engine benchmark
# (`--keep`), serves it with the release `crossdex serve --no-schedule`, and measures
# with wrk (Debian's `wrk` package) at one connection: p50, p99, requests per second.
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
    | grep -E 'search' || true

port=$((20000 + RANDOM % 20000))
printf 'data_dir = "%s"\n' "$work/data" > "$work/crossdex.toml"
"$bin" --config "$work/crossdex.toml" serve --no-schedule --listen "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
up=
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/api/v1/ready" >/dev/null && { up=1; break; }
    sleep 0.2
done
[ -n "$up" ] || { echo "serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }

# Each request takes the next query of the benchmark's list: as an Elasticsearch body,
# and as crossdex's query string.
python3 - "$work/dump/queries.txt" "$work" <<'PY'
import json, sys, urllib.parse
qs = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
out = sys.argv[2]
def lua(name, items, fmt):
    with open(f"{out}/{name}.lua", "w") as f:
        f.write("local q = {\n")
        for x in items:
            f.write("  %s,\n" % json.dumps(x))
        f.write("}\nlocal i = 0\nrequest = function()\n  i = i % #q + 1\n" + fmt + "\nend\n")
bodies = [json.dumps({
    # `and`: the same question as crossdex's search, where every word must match.
    "query": {"match": {"body": {"query": q, "operator": "and"}}},
    "size": 10,
    # The hit summaries /api/v1/search answers with, as a search-UI library asks for
    # the fields it shows.
    "_source": ["title", "source", "kind", "subject_id"],
    "aggs": {
        "sources": {"terms": {"field": "source"}},
        "kinds": {"terms": {"field": "kind"}},
        "projects": {"terms": {"field": "project"}},
        "months": {"date_histogram": {"field": "created_at", "calendar_interval": "month"}},
    },
}) for q in qs]
lua("es", bodies,
    "  return wrk.format('POST', '/crossdex/_search', {['Content-Type'] = 'application/json'}, q[i])")
lua("api", [urllib.parse.quote(q, safe="") for q in qs],
    "  return wrk.format('GET', '/api/v1/search?limit=10&facets=10&q=' .. q[i])")
PY

for name in api es; do
    case $name in
        api) echo "== /api/v1/search with facets, 1 connection, ${seconds}s" ;;
        es) echo "== /crossdex/_search, match + 3 terms + date_histogram, 1 connection, ${seconds}s" ;;
    esac
    wrk -t 1 -c 1 -d "${seconds}s" --latency -s "$work/$name.lua" "http://127.0.0.1:$port" \
        | grep -E '^\s+(50|99)%|Requests/sec|Non-2xx|Socket errors'
done
