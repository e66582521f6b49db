#!/usr/bin/env bash
# tether's test command: installs dependencies, builds normal, ASan/UBSan and fuzz trees, runs the whole suite.
# SPDX-License-Identifier: MIT
#
# Usage: deploy/test.sh [--quick]
#   --quick   skip the ASan/UBSan build and run
# Environment:
#   TETHER_TEST_JOBS       ctest parallelism (default 2)
#   TETHER_WOLFSSL_PREFIX  use this prebuilt wolfSSL instead of building one
#   TETHER_SKIP_SETUP=1    do not run deploy/setup.sh
#   TETHER_TEST_PG=0       do not register the PostgreSQL variants (below)
#
# Build trees: build/ (RelWithDebInfo), build-asan/ (-DTETHER_SANITIZE=ON,
# which also builds and runs the allocation-failure torture, CTest label
# `torture`, tests/torture/README.md) and build-fuzz/ (clang, -DTETHER_FUZZ=ON:
# the libFuzzer targets only), reused incrementally. All link the one static
# wolfSSL in build/wolfssl,
# built from Debian's source package on the first run (deploy/build-wolfssl.sh).
# The normal tree's suite includes the package test (CTest label `package`,
# tests/package/test_package.sh): it builds the .deb, installs it with
# apt-get on this machine, checks the programs and the systemd units
# (systemd-analyze verify and security) and purges it; never in the ASan tree.
# The integration tests run twice in the normal tree: on SQLite
# (integration/*) and on PostgreSQL (integration-pg/*, CTest label `pg`),
# each hub on a database of its own on one real server that the CTest fixture
# starts (tests/pg/pgfixture.py: initdb and pg_ctl on a loopback port, as the
# postgres user) and stops; the ASan tree runs only a few PG variants
# (TETHER_TEST_PG_ONLY, tests/pg/README.md). On exit this script stops any
# such server still running, so none is left behind.
# Exit status: 0 only when every phase passed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

QUICK=0
for arg in "$@"; do
    case "$arg" in
    --quick) QUICK=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$ROOT/deploy/test.sh" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "test.sh: unknown argument: $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

# The PostgreSQL server of the pg fixture, when a run ends early (a failed
# or interrupted ctest does not reach pg/stop).
stop_pg() {
    local d
    for d in "$ROOT/build" "$ROOT/build-asan"; do
        if [ -d "$d/pgtest" ]; then
            python3 "$ROOT/tests/pg/pgfixture.py" stop "$d" || true
        fi
    done
}
trap stop_pg EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

JOBS=$(nproc 2>/dev/null || echo 2)
TEST_JOBS=${TETHER_TEST_JOBS:-2}
WOLFDIR="$ROOT/build/wolfssl"
START=$(date +%s)
results=()
failed=0

banner() {
    printf '\n========================================================================\n'
    printf '== %s\n' "$*"
    printf '========================================================================\n'
}
record() { # NAME STATUS
    results+=("$(printf '%-28s %s' "$1" "$2")")
    [ "$2" != FAILED ] || failed=1
}

banner "setup: dependencies (deploy/setup.sh)"
if [ "${TETHER_SKIP_SETUP:-0}" = 1 ]; then
    echo "skipped (TETHER_SKIP_SETUP=1)"
elif ! bash deploy/setup.sh; then
    echo "test.sh: deploy/setup.sh failed" >&2
    exit 1
fi

WOLF_ARGS=(-DTETHER_WOLFSSL_DIR="$WOLFDIR")
if [ -n "${TETHER_WOLFSSL_PREFIX:-}" ]; then
    banner "wolfSSL: prebuilt prefix $TETHER_WOLFSSL_PREFIX"
    WOLF_ARGS+=(-DTETHER_WOLFSSL_PREFIX="$TETHER_WOLFSSL_PREFIX")
else
    # Forget a prefix an earlier manual configure may have cached.
    WOLF_ARGS+=(-UTETHER_WOLFSSL_PREFIX)
    banner "wolfSSL: static build from Debian's source package ($WOLFDIR)"
    # Built here rather than inside cmake so its progress is its own phase; a
    # failure is not fatal: cmake then falls back to the system library, loudly.
    if bash deploy/build-wolfssl.sh "$WOLFDIR"; then
        echo "wolfSSL: $(cat "$WOLFDIR/install/FLAVOR" 2>/dev/null) $(cat "$WOLFDIR/install/VERSION")" \
            "in $WOLFDIR/install"
    else
        echo "test.sh: WARNING: wolfSSL source build failed; the build falls back to the system" \
            "libwolfssl (no AES-NI). Log: $WOLFDIR/build.log" >&2
    fi
fi

# suite NAME DIR [CMAKE_ARGS...]: configure, build and test one tree.
suite() {
    local name=$1 dir=$2
    shift 2
    local t0 in_use
    t0=$(date +%s)

    banner "$name: configure ($dir)"
    # A cache made for another checkout path cannot be reused.
    if [ -f "$dir/CMakeCache.txt" ] &&
        ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$ROOT" "$dir/CMakeCache.txt"; then
        echo "stale CMake cache from another source tree: removing it"
        rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
    fi
    if ! cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${WOLF_ARGS[@]}" "$@"; then
        record "$name configure" FAILED
        return
    fi
    in_use=$(sed -n 's/^TETHER_WOLFSSL_IN_USE:INTERNAL=//p' "$dir/CMakeCache.txt")
    echo "wolfSSL in use ($name): ${in_use:-unknown}"
    record "$name configure" ok

    banner "$name: build (-j$JOBS)"
    if ! cmake --build "$dir" -j "$JOBS"; then
        record "$name build" FAILED
        return
    fi
    record "$name build" ok

    banner "$name: test (ctest -j$TEST_JOBS)"
    if (cd "$dir" && ctest --output-on-failure --no-tests=error -j "$TEST_JOBS"); then
        record "$name test" ok
    else
        record "$name test" FAILED
    fi
    echo "$name: $(($(date +%s) - t0)) s"
}

suite normal "$ROOT/build"

if [ "$QUICK" = 1 ]; then
    banner "asan: skipped (--quick)"
    record "asan" "skipped (--quick)"
else
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    suite asan "$ROOT/build-asan" -DTETHER_SANITIZE=ON
fi

# The fuzz phase: libFuzzer targets (clang, ASan/UBSan) over the checked-in
# corpus, a fixed number of mutations each (TETHER_FUZZ_RUNS in CMake). Only
# the fuzz targets and the libraries they need are built.
fuzz_phase() {
    local dir=$ROOT/build-fuzz t0
    t0=$(date +%s)
    banner "fuzz: configure ($dir, clang)"
    if [ -f "$dir/CMakeCache.txt" ] &&
        ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$ROOT" "$dir/CMakeCache.txt"; then
        rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
    fi
    if ! CC=clang cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_FUZZ=ON \
        "${WOLF_ARGS[@]}"; then
        record "fuzz configure" FAILED
        return
    fi
    banner "fuzz: build the fuzz targets (-j$JOBS)"
    if ! cmake --build "$dir" -j "$JOBS" --target fuzzers; then
        record "fuzz build" FAILED
        return
    fi
    banner "fuzz: run (ctest -L fuzz)"
    if (cd "$dir" && ctest -L fuzz --output-on-failure --no-tests=error -j "$TEST_JOBS"); then
        record "fuzz" ok
    else
        record "fuzz" FAILED
    fi
    echo "fuzz: $(($(date +%s) - t0)) s"
}
fuzz_phase

banner "summary ($(($(date +%s) - START)) s)"
printf '%s\n' "${results[@]}"
if [ -f "$ROOT/build/CMakeCache.txt" ]; then
    echo "wolfSSL: $(sed -n 's/^TETHER_WOLFSSL_IN_USE:INTERNAL=//p' "$ROOT/build/CMakeCache.txt")"
fi
if [ "$failed" != 0 ]; then
    echo "RESULT: FAILED"
    exit 1
fi
echo "RESULT: all passed"
