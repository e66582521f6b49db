#!/bin/sh
# The issue's idle-connection flood at full size: 20,000 TLS connections without a token, hub RSS before/during/after.
# SPDX-License-Identifier: MIT
# Not part of the suite (it takes minutes and most of the machine). Usage:
#   TETHER_BIN=build tests/security/idle_flood_full.sh
# The client side runs in 5 processes (a process may hold 20,000 files here).
set -e
here=$(cd "$(dirname "$0")" && pwd)
export TETHER_SRC="${TETHER_SRC:-$(cd "$here/../.." && pwd)}"
export TETHER_BIN="${TETHER_BIN:-$TETHER_SRC/build}"
exec python3 "$here/test_idle_conns.py" --full
