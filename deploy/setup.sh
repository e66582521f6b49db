#!/usr/bin/env bash
# Installs tether's build and test dependencies from Debian's packages (idempotent, fast when done).
# SPDX-License-Identifier: MIT
#
# Usage: deploy/setup.sh
# Runs apt-get only when a package is missing; as root, or through sudo.
# libwolfssl-dev is only the fallback: the build makes its own static wolfSSL
# with AES-NI from Debian's source package (deploy/build-wolfssl.sh), which
# needs dpkg-dev, autoconf, automake and libtool.
set -euo pipefail

PROG=setup
say() { printf '%s: %s\n' "$PROG" "$*"; }
die() {
    printf '%s: ERROR: %s\n' "$PROG" "$*" >&2
    exit 1
}

# Sanitizer and fuzzer runtimes come per clang version: libclang-rt-14-dev on
# bookworm; elsewhere the one matching the installed or default clang.
clang_rt_pkg() {
    local v=""
    if command -v clang >/dev/null; then
        v=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n1)
    fi
    if [ -z "$v" ]; then
        # shellcheck disable=SC1091
        case "$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")" in
        trixie) v=19 ;;
        *) v=14 ;;
        esac
    fi
    echo "libclang-rt-$v-dev"
}

PACKAGES=(
    build-essential cmake pkg-config
    libuv1-dev libjansson-dev libsqlite3-dev libnghttp2-dev libhttp-parser-dev
    dpkg-dev autoconf automake libtool
    python3 curl nghttp2-client sqlite3 iproute2 ca-certificates openssl
    nftables tinyproxy-bin nginx-light openssh-server openssh-client wrk stunnel4
    clang "$(clang_rt_pkg)"
    testssl.sh
    libwolfssl-dev
    python3-h2 python3-hyperframe python3-hpack python3-websockets python3-wsproto
    python3-grpcio
    # The pg test fixture's server (tests/pg: initdb, pg_ctl, amcheck; run
    # as the postgres user the package creates) and psql; libpq for the
    # hub's PostgreSQL backend (without it the PG tests are not registered).
    postgresql postgresql-client libpq-dev
    # The load balancer in front of several hubs (test_cluster_lb).
    haproxy
    libsystemd-dev
    debhelper lintian help2man
    chromium chromium-driver python3-selenium
    # promtool (check metrics/rules, test rules) comes only with Debian's
    # Prometheus server package; on a systemd machine its service starts
    # too (systemctl disable --now prometheus if it is not wanted).
    prometheus
)

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    die "this script needs a Debian system (dpkg-query and apt-get)"
fi

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    say "all ${#PACKAGES[@]} packages present"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo; as root run: apt-get install ${missing[*]}"
    SUDO=(sudo)
fi
APT_GET=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

say "missing: ${missing[*]}"
say "apt-get update"
"${APT_GET[@]}" update

say "apt-get install ${missing[*]}"
"${APT_GET[@]}" install --no-install-recommends "${missing[@]}"

still=()
for p in "${missing[@]}"; do
    installed "$p" || still+=("$p")
done
[ ${#still[@]} -eq 0 ] || die "still missing after apt-get install: ${still[*]}"
# clang was just installed: make sure its own runtime is there too.
rt=$(clang_rt_pkg)
if ! installed "$rt"; then
    say "apt-get install $rt"
    "${APT_GET[@]}" install --no-install-recommends "$rt"
fi
say "done"
