#!/usr/bin/env bash
# The long fuzzing campaign: runs each libFuzzer target for its share of a time budget, then merges
# the new interesting inputs, minimised, into the checked-in corpus tests/fuzz/corpus/<target>/.
# SPDX-License-Identifier: MIT
#
# Usage: tests/fuzz/campaign.sh [options] [TARGET[:WEIGHT] ...]
#   -b DIR      fuzz build dir (configured with CC=clang -DTETHER_FUZZ=ON); default build-fuzz
#   -t SECONDS  total time budget, shared by the targets by weight; default 3600
#   -j JOBS     parallel libFuzzer jobs per target (-jobs/-workers); default 1
#   -o DIR      work dir (new inputs, logs, crash artifacts); default <build>/campaign
#   -n          do not merge into the checked-in corpus
#   TARGETs default to every tests/fuzz/fuzz_*.c; the ones that read bytes
#   before any authentication get weight 3, the others 1.
# Environment: TETHER_SRC  the source tree (default: where this script is).
# Runs under nice -n 10. Prints, and appends to <work>/summary.tsv, one line
# per target: executions, coverage (edges), features, corpus files/bytes
# before and after the merge, and crash artifacts found.
# Exit status: 1 if any target crashed (artifacts in <work>/<target>/), else 0.
set -euo pipefail

# TETHER_SRC: the source tree, when this script runs from a copy (a copy can
# be edited or checked out over while a long campaign runs).
ROOT=${TETHER_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=$ROOT/build-fuzz
BUDGET=3600
JOBS=1
WORK=
MERGE=1
while getopts "b:t:j:o:nh" opt; do
    case $opt in
    b) BUILD=$(cd "$OPTARG" && pwd) ;;
    t) BUDGET=$OPTARG ;;
    j) JOBS=$OPTARG ;;
    o) WORK=$OPTARG ;;
    n) MERGE=0 ;;
    *)
        sed -n '2,/^set -euo/p' "$ROOT/tests/fuzz/campaign.sh" | sed '$d; s/^# \{0,1\}//'
        exit 2
        ;;
    esac
done
shift $((OPTIND - 1))
WORK=${WORK:-$BUILD/campaign}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# Pre-authentication parsers: bytes any client or network path can send.
PREAUTH=" clienthello spki connect_reply h1 h2 hello "
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        targets+=("${n#fuzz_}")
    done
fi
total_w=0
declare -A weight
for t in "${targets[@]}"; do
    name=${t%%:*}
    if [ "$name" != "$t" ]; then
        w=${t#*:}
    elif [[ $PREAUTH == *" $name "* ]]; then
        w=3
    else
        w=1
    fi
    weight[$name]=$w
    total_w=$((total_w + w))
done

corpus_size() { # DIR -> "files bytes"
    local n b
    n=$(find "$1" -type f | wc -l)
    b=$(find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    echo "$n $b"
}

crashed=0
printf '%-14s %12s %8s %8s %16s %16s %s\n' target executions cov ft corpus_before corpus_after \
    crashes
for name in "${!weight[@]}"; do
    bin=$BUILD/fuzz_$name
    corpus=$ROOT/tests/fuzz/corpus/$name
    dict=$ROOT/tests/fuzz/dict/$name.dict
    secs=$((BUDGET * weight[$name] / total_w))
    dir=$WORK/$name
    [ -x "$bin" ] || {
        echo "campaign: $bin missing (cmake --build $BUILD --target fuzzers)" >&2
        exit 2
    }
    mkdir -p "$dir/new" "$dir/logs" "$dir/artifacts" "$corpus"
    before=$(corpus_size "$corpus")
    args=(-max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$dir/artifacts/"
        -max_len=4096 -timeout=10 -rss_limit_mb=3072)
    [ -f "$dict" ] && args+=(-dict="$dict")
    rm -f "$dir"/logs/*
    # New inputs go to new/ first; the checked-in corpus is only read.
    if [ "$JOBS" -gt 1 ]; then
        (cd "$dir/logs" && nice -n 10 "$bin" "${args[@]}" -jobs="$JOBS" -workers="$JOBS" \
            "$dir/new" "$corpus" >/dev/null 2>&1) || true
    else
        nice -n 10 "$bin" "${args[@]}" "$dir/new" "$corpus" >"$dir/logs/fuzz-0.log" 2>&1 || true
    fi
    execs=$(cat "$dir"/logs/fuzz-*.log | sed -n 's/^stat::number_of_executed_units: //p' |
        awk '{s += $1} END {print s + 0}')
    last=$(grep -h -E '^#[0-9]+.*cov: ' "$dir"/logs/fuzz-*.log | tail -1)
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")
    crashes=$(find "$dir/artifacts" -type f | wc -l)
    [ "$crashes" -eq 0 ] || crashed=1
    if [ "$MERGE" = 1 ]; then
        # -merge=1 adds to the first dir only inputs that bring new features,
        # smallest first: the corpus grows by what is needed, no more.
        nice -n 10 "$bin" -merge=1 -max_len=4096 -timeout=10 "$corpus" "$dir/new" \
            >"$dir/logs/merge.log" 2>&1 || true
    fi
    after=$(corpus_size "$corpus")
    line=$(printf '%-14s %12s %8s %8s %16s %16s %s' "$name" "$execs" "${cov:-?}" "${ft:-?}" \
        "${before// //}" "${after// //}" "$crashes")
    echo "$line"
    printf '%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$secs" "$line" >>"$WORK/summary.tsv"
done
exit $crashed
