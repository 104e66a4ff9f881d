#!/usr/bin/env bash
# Peak memory of `crossdex sync --all` against the simulators, at 1x and 10x subjects.
#   benches/sync_memory.sh [SUBJECTS]        (default 1000: runs 1000 and 10000)
#   PROFILE=dev benches/sync_memory.sh       the debug build, when no release build is at hand
#
# Each size gets its own simulators (`crossdex sim`, a separate process whose memory
# is not counted) and a fresh data directory. The sync's peak resident set comes from
# GNU time (`/usr/bin/time -v`, "Maximum resident set size"). A second, incremental
# sync of the same world is measured too. Figures are printed as a table with the
# 10x/1x ratios; the machine is shared, so compare within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-1000}
case "${PROFILE:-bench}" in
dev) cargo build --bin crossdex; bin=target/debug/crossdex ;;
*) cargo build --profile bench --bin crossdex; bin=target/release/crossdex ;;
esac
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 2; }
work=$(mktemp -d)
sim_pid=
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# measure LABEL ARGS...: runs crossdex, prints "seconds max_rss_kib"
measure() {
    local label=$1
    shift
    /usr/bin/time -v -o "$work/$label.time" "$bin" "$@" >"$work/$label.out" 2>&1 || {
        cat "$work/$label.out" >&2
        exit 1
    }
    local rss secs
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/$label.time")
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/$label.time")
    echo "$secs $rss"
}

declare -A records full_rss full_time incr_rss incr_time
port=18600
for n in "$base" $((base * 10)); do
    dir="$work/$n"
    mkdir -p "$dir"
    "$bin" sim --subjects "$n" --port-base "$port" --write-config "$dir/c.toml" >"$dir/sim.log" 2>&1 &
    sim_pid=$!
    for _ in $(seq 1 600); do
        grep -q "Ctrl-C" "$dir/sim.log" 2>/dev/null && break
        sleep 0.5
    done
    read -r t rss < <(measure "full-$n" -c "$dir/c.toml" --data-dir "$dir/data" sync --all)
    full_time[$n]=$t
    full_rss[$n]=$rss
    read -r t rss < <(measure "incr-$n" -c "$dir/c.toml" --data-dir "$dir/data" sync --all)
    incr_time[$n]=$t
    incr_rss[$n]=$rss
    records[$n]=$("$bin" --data-dir "$dir/data" sql --format csv "SELECT count(*) AS n FROM records" | tail -1)
    kill "$sim_pid"
    wait "$sim_pid" 2>/dev/null || true
    sim_pid=
    port=$((port + 10))
done

big=$((base * 10))
printf '\n| subjects | records | full sync | peak RSS (full) | incremental sync | peak RSS (incremental) |\n'
printf '|---|---|---|---|---|---|\n'
for n in "$base" "$big"; do
    printf '| %s | %s | %s | %d MiB | %s | %d MiB |\n' "$n" "${records[$n]}" "${full_time[$n]}" \
        $((full_rss[$n] / 1024)) "${incr_time[$n]}" $((incr_rss[$n] / 1024))
done
awk -v a="${full_rss[$base]}" -v b="${full_rss[$big]}" -v ra="${records[$base]}" -v rb="${records[$big]}" \
    'BEGIN { printf "\n10x subjects: %.1fx records, peak RSS of a full sync %.2fx\n", rb / ra, b / a }'
