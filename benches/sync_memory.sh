#!/usr/bin/env bash
# Peak memory of `crossdex sync --all` against the simulators, at 1x and 10x subjects.
#   benches/sync_memory.sh [SUBJECTS]        (default 1000: runs 1000 and 10000)
#   benches/sync_memory.sh 1000 30000        any further size is run too
#   PROFILE=dev benches/sync_memory.sh       the debug build, when no release build is at hand
#   HEAPTRACK=1 benches/sync_memory.sh       also the peak of live heap, under heaptrack
#
# Each size gets its own simulators (`crossdex sim`, a separate process whose memory
# is not counted) and a fresh data directory. The sync's peak anonymous memory
# (RssAnon: heap, not the index files mapped from disk) is sampled from /proc. A
# second, incremental sync of the same world is measured too. RssAnon includes what the
# allocator keeps after a free; with HEAPTRACK=1 both syncs run again into a fresh
# directory under heaptrack, which reports the peak of memory actually allocated.
# Figures are printed as a table with the 10x/1x ratios; the machine is shared, so
# compare within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-1000}
sizes=("$base" $((base * 10)) "${@:2}")
case "${PROFILE:-bench}" in
dev) cargo build --bin crossdex; bin=target/debug/crossdex ;;
*) cargo build --profile bench --bin crossdex; bin=target/release/crossdex ;;
esac
work=$(mktemp -d)
sim_pid=
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# measure LABEL ARGS...: runs crossdex, prints "seconds max_anon_kib".
# RSS counts the index files tantivy maps into memory, which the kernel drops at will;
# RssAnon, sampled from /proc every 50 ms, is the process's own (heap) memory.
measure() {
    local label=$1
    shift
    local start anon=0 pid
    start=$(date +%s.%N)
    "$bin" "$@" >"$work/$label.out" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        local a
        a=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ -n "$a" ] && [ "$a" -gt "$anon" ] && anon=$a
        sleep 0.05
    done
    wait "$pid" || { cat "$work/$label.out" >&2; exit 1; }
    awk -v s="$start" -v e="$(date +%s.%N)" -v a="$anon" 'BEGIN { printf "%.1fs %d\n", e - s, a }'
}

# heap LABEL ARGS...: the peak live heap of crossdex under heaptrack, in KiB.
heap() {
    local label=$1
    shift
    heaptrack -o "$work/$label" "$bin" "$@" >"$work/$label.out" 2>&1 || { cat "$work/$label.out" >&2; exit 1; }
    heaptrack_print -f "$work/$label.zst" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
        --print-leaks 0 2>/dev/null |
        awk '/^peak heap memory consumption:/ {
            v = $5; u = substr(v, length(v)); n = substr(v, 1, length(v) - 1)
            if (u == "G") n *= 1048576; else if (u == "M") n *= 1024; else if (u == "K") n *= 1; else n /= 1024
            printf "%d\n", n }'
}

declare -A records full_anon full_time incr_anon incr_time full_live incr_live
port=18600
for n in "${sizes[@]}"; do
    dir="$work/$n"
    mkdir -p "$dir"
    "$bin" sim --subjects "$n" --port-base "$port" --write-config "$dir/c.toml" >"$dir/sim.log" 2>&1 &
    sim_pid=$!
    for _ in $(seq 1 600); do
        grep -q "Ctrl-C" "$dir/sim.log" 2>/dev/null && break
        sleep 0.5
    done
    read -r t heap < <(measure "full-$n" -c "$dir/c.toml" --data-dir "$dir/data" sync --all)
    full_time[$n]=$t
    full_anon[$n]=$heap
    read -r t heap < <(measure "incr-$n" -c "$dir/c.toml" --data-dir "$dir/data" sync --all)
    incr_time[$n]=$t
    incr_anon[$n]=$heap
    records[$n]=$("$bin" --data-dir "$dir/data" sql --format csv "SELECT count(*) AS n FROM records" | tail -1)
    if [ -n "${HEAPTRACK:-}" ]; then
        full_live[$n]=$(heap "heap-full-$n" -c "$dir/c.toml" --data-dir "$dir/heap" sync --all)
        incr_live[$n]=$(heap "heap-incr-$n" -c "$dir/c.toml" --data-dir "$dir/heap" sync --all)
    fi
    kill "$sim_pid"
    wait "$sim_pid" 2>/dev/null || true
    sim_pid=
    port=$((port + 10))
done

big=$((base * 10))
printf '\n| subjects | records | full sync | peak RssAnon (full) | incremental sync | peak RssAnon (incremental) |\n'
printf '|---|---|---|---|---|---|\n'
for n in "${sizes[@]}"; do
    printf '| %s | %s | %s | %d MiB | %s | %d MiB |\n' "$n" "${records[$n]}" "${full_time[$n]}" \
        $((full_anon[$n] / 1024)) "${incr_time[$n]}" $((incr_anon[$n] / 1024))
done
awk -v a="${full_anon[$base]}" -v b="${full_anon[$big]}" -v ra="${records[$base]}" -v rb="${records[$big]}" \
    'BEGIN { printf "\n10x subjects: %.1fx records, peak RssAnon of a full sync %.2fx\n", rb / ra, b / a }'
if [ -n "${HEAPTRACK:-}" ]; then
    printf '\n| subjects | live heap peak (full) | live heap peak (incremental) |\n|---|---|---|\n'
    for n in "${sizes[@]}"; do
        printf '| %s | %d MiB | %d MiB |\n' "$n" $((full_live[$n] / 1024)) $((incr_live[$n] / 1024))
    done
fi
