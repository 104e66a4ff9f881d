#!/usr/bin/env bash
# Runs every fuzz target for a short while (SECONDS_EACH, default 20) from its seeds:
# what CI does. Ten minutes each: SECONDS_EACH=600 fuzz/smoke.sh.
set -euo pipefail
cd "$(dirname "$0")"
each=${SECONDS_EACH:-20}
# FUZZ_TARGET_DIR: a build cache kept outside the checkout (CI sets it).
target_dir=()
[ -n "${FUZZ_TARGET_DIR:-}" ] && target_dir=(--target-dir "$FUZZ_TARGET_DIR")
reference=../../shared/reference
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --quiet
fi
cargo +nightly fuzz build --release "${target_dir[@]}"
for target in search sql_guard xnat redcap omero transmart elabftw; do
    seeds=()
    case $target in
        search | sql_guard) seeds=(seeds/$target) ;;
        *) [ -d "$reference/$target" ] && seeds=("$reference/$target") ;;
    esac
    [ "$target" = sql_guard ] && seeds+=(../queries)
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${each}s"
    cargo +nightly fuzz run --release "${target_dir[@]}" "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$each" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 |
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|Done)' || true
    if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
        echo "fuzz: $target found a crash: fuzz/artifacts/$target" >&2
        exit 1
    fi
done
echo "fuzz: every target ran ${each}s without a finding"
