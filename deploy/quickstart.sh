#!/usr/bin/env bash
# tether quickstart: builds, starts a hub, two sites with the sample service, then sends a request and a fan-out question through them.
# SPDX-License-Identifier: MIT
#
# Usage: deploy/quickstart.sh [--keep]
#   --keep   leave the hub and sites running (state in ./quickstart/) until Ctrl-C
# Environment: QUICKSTART_PORT (hub port, default 6443), TETHER_SKIP_SETUP=1
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
PORT=${QUICKSTART_PORT:-6443}
DIR="$ROOT/quickstart"
BIN="$ROOT/build"
pids=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # FILE REGEX SECONDS
    local end=$((SECONDS + $3))
    until grep -qE "$2" "$1" 2>/dev/null; do
        [ $SECONDS -lt $end ] || { echo "quickstart: timed out waiting for '$2' in $1" >&2; tail -5 "$1" >&2; exit 1; }
        sleep 0.1
    done
}

if [ "${TETHER_SKIP_SETUP:-0}" != 1 ]; then
    say "Installing dependencies (deploy/setup.sh)"
    bash deploy/setup.sh
fi
say "Building (wolfSSL from Debian's source package with AES-NI on the first run)"
cmake -S . -B build -DTETHER_WOLFSSL_DIR="$ROOT/build/wolfssl" -DTETHER_TEST_HOOKS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target tether-hub tether-site tetherctl >/dev/null
"$BIN/tether-hub" version

if ss -Htln "sport = :$PORT" | grep -q .; then
    echo "quickstart: port $PORT is taken; set QUICKSTART_PORT to a free port" >&2
    exit 1
fi
rm -rf "$DIR"
mkdir -p "$DIR"

say "1. A hub on 127.0.0.1:$PORT"
"$BIN/tether-hub" init --state "$DIR/hub" --name localhost --public "127.0.0.1:$PORT" >/dev/null
"$BIN/tether-hub" run --state "$DIR/hub" --listen "127.0.0.1:$PORT" 2>"$DIR/hub.log" &
pids+=($!)
wait_for "$DIR/hub.log" "listening" 10
export TETHER_CONFIG="$DIR/hub/ctl.conf"

for site in clinic-a clinic-b; do
    say "2. Site $site: its sample service, enrollment, and the outbound tunnel"
    sport=$(free_port)
    python3 deploy/sample-service.py "$sport" --name "$site" >"$DIR/$site-service.log" 2>&1 &
    pids+=($!)
    wait_for "$DIR/$site-service.log" "listening" 10
    TOKEN=$("$BIN/tetherctl" site add "$site" --label region=demo)
    echo "enrollment token: ${TOKEN:0:40}..."
    echo "$TOKEN" | "$BIN/tether-site" enroll --state "$DIR/$site" -
    "$BIN/tether-site" run --state "$DIR/$site" --service "counts=http://127.0.0.1:$sport" \
        2>"$DIR/$site.log" &
    pids+=($!)
    wait_for "$DIR/$site.log" "connected hub=" 15
done
wait_for "$DIR/hub.log" "site_hello site=clinic-b" 10

say "3. tetherctl site list"
"$BIN/tetherctl" site list

PIN=$(sed -n 's/^hub_pin = //p' "$DIR/hub/ctl.conf")
ADMIN=$(cat "$DIR/hub/admin.token")
say "4. A request through the hub to clinic-a's service (curl pins the hub key)"
echo "curl --pinnedpubkey $PIN https://127.0.0.1:$PORT/v1/sites/clinic-a/services/counts/count"
curl -sSk --pinnedpubkey "$PIN" -H "Authorization: Bearer $ADMIN" \
    "https://127.0.0.1:$PORT/v1/sites/clinic-a/services/counts/count"
echo

say "5. One question to every site: a federated query (POST /v1/queries), answered over each tunnel"
echo "tetherctl query --service counts --path /count --sites all --wait"
"$BIN/tetherctl" query --service counts --path /count --sites all --wait
# The same query through the API: the newest in the history, then its results.
QID=$(curl -sSk --pinnedpubkey "$PIN" -H "Authorization: Bearer $ADMIN" \
    "https://127.0.0.1:$PORT/v1/queries?limit=1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["queries"][0]["id"])')
curl -sSk --pinnedpubkey "$PIN" -H "Authorization: Bearer $ADMIN" \
    "https://127.0.0.1:$PORT/v1/queries/$QID" |
    python3 -c 'import json,sys; q=json.load(sys.stdin); print("query %s is %s; total count across sites: %d" % (q["id"], q["status"], sum(json.loads(s["body"])["count"] for s in q["sites"] if s["status"] == "done")))'

if [ "$KEEP" = 1 ]; then
    say "Running; state in $DIR. Ctrl-C stops everything."
    wait
fi
say "Done. Logs in $DIR/*.log"
