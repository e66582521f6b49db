#!/usr/bin/env bash
# Package test: builds the Debian package from the tree, installs it with apt-get, checks the programs and the systemd units, removes it.
# SPDX-License-Identifier: MIT
#
# Usage: tests/package/test_package.sh SRC_DIR [WOLFSSL_PREFIX]
# Builds in a copy of the tree's files under a temp dir (the .deb lands
# there, never beside the worktree). Needs root (apt-get install) and
# dpkg-buildpackage, lintian, systemd-analyze: exits 77 (skip) without them.
# Asserts: dpkg-buildpackage succeeds; lintian reports no error; after
# `apt-get install ./tether_*.deb`: tether-hub --version runs from /usr/bin,
# the man pages, completion and hub.conf example are in place, the users
# exist, `systemd-analyze verify` on both units prints nothing,
# `systemd-analyze security` rates each "OK" or better; the hub initialised
# and run as tether-hub, a site enrolled as tether-site into
# /var/lib/tether-site/NAME comes online, a second agent there refuses; after
# `apt-get purge`, the programs and units are gone.
set -uo pipefail

SRC=${1:?usage: test_package.sh SRC_DIR [WOLFSSL_PREFIX]}
WOLF=${2:-}
fails=0
check() { # COND-STATUS MESSAGE [DETAIL]
    if [ "$1" = 0 ]; then
        echo "ok   $2"
    else
        echo "FAIL $2${3:+: $3}"
        fails=$((fails + 1))
    fi
}

[ "$(id -u)" = 0 ] || { echo "skip: needs root for apt-get install"; exit 77; }
for t in dpkg-buildpackage dh lintian systemd-analyze apt-get help2man; do
    command -v "$t" >/dev/null || { echo "skip: $t missing (deploy/setup.sh installs it)"; exit 77; }
done
if [ -e /var/lib/tether-hub/hub.db ] ||
    dpkg-query -W -f='${Status}' tether 2>/dev/null | grep -q "ok installed"; then
    echo "FAIL a tether package or hub state is already here; not touching it"
    exit 1
fi

TMP=$(mktemp -d /tmp/tether-pkg-XXXXXX)
trap 'apt-get purge -y -q tether >/dev/null 2>&1; rm -rf "$TMP"' EXIT
mkdir -p "$TMP/src"
# The tree's files as git knows them (tracked and new, not ignored), no build dirs.
(cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
    grep -zv '^build' | xargs -0 cp --parents -t "$TMP/src") || {
    echo "FAIL cannot copy the tree"
    exit 1
}

echo "== dpkg-buildpackage -us -uc -b"
env ${WOLF:+TETHER_WOLFSSL_PREFIX=$WOLF} DEB_BUILD_OPTIONS="parallel=2 nocheck" \
    sh -c 'cd "$1" && dpkg-buildpackage -us -uc -b' sh "$TMP/src" >"$TMP/build.log" 2>&1
rc=$?
check $rc "dpkg-buildpackage -us -uc -b" "$(tail -20 "$TMP/build.log")"
DEB=$(ls "$TMP"/tether_*.deb 2>/dev/null | head -1)
[ -n "$DEB" ] || { echo "FAIL no .deb built"; exit 1; }

echo "== lintian $(basename "$DEB")"
lintian "$DEB" >"$TMP/lintian.txt" 2>&1
cat "$TMP/lintian.txt"
! grep -q '^E:' "$TMP/lintian.txt"
check $? "lintian reports no error"

echo "== apt-get install ./$(basename "$DEB")"
(cd "$TMP" && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$(basename "$DEB")") \
    >"$TMP/install.log" 2>&1
check $? "apt-get install ./$(basename "$DEB")" "$(tail -5 "$TMP/install.log")"
v=$(PATH=/usr/bin:/bin tether-hub --version 2>&1)
[ "$(command -v tether-hub)" = /usr/bin/tether-hub ] && [[ $v == "tether-hub "[0-9]* ]]
check $? "tether-hub --version from /usr/bin: $v"
for p in tether-site tetherctl; do
    /usr/bin/$p --version >/dev/null 2>&1
    check $? "$p --version"
    test -f /usr/share/man/man1/$p.1.gz && test -f /usr/share/bash-completion/completions/$p
    check $? "$p: man page and bash completion installed"
done
zcat /usr/share/man/man1/tether-hub.1.gz | grep -qF -- '[\-\-public HOST:PORT]'
check $? "tether-hub(1) carries the program's --help (init's [--public HOST:PORT])"
c=$(bash -c 'source /usr/share/bash-completion/completions/tetherctl
    COMP_WORDS=(tetherctl site re); COMP_CWORD=2; _tetherctl; echo "${COMPREPLY[*]}"')
[ "$c" = "revoke remove" ]
check $? "bash completion: tetherctl site re<TAB> offers revoke remove" "$c"
test -f /usr/share/doc/tether/examples/hub.conf
check $? "hub.conf example installed"
getent passwd tether-hub >/dev/null && getent passwd tether-site >/dev/null
check $? "system users tether-hub and tether-site exist"
[ "$(stat -c %U /var/lib/tether-site)" = tether-site ]
check $? "/var/lib/tether-site belongs to tether-site (enroll runs as that user)"

UNITS=/lib/systemd/system
cp "$UNITS/tether-site@.service" "$TMP/tether-site@pkgtest.service"
out=$(systemd-analyze verify "$UNITS/tether-hub.service" "$TMP/tether-site@pkgtest.service" 2>&1)
[ $? = 0 ] && [ -z "$out" ]
check $? "systemd-analyze verify: clean" "$out"
for u in "$UNITS/tether-hub.service" "$TMP/tether-site@pkgtest.service"; do
    line=$(systemd-analyze security --offline=true "$u" 2>&1 | grep "Overall exposure level")
    echo "$line"
    # systemd's scale: OK, MEDIUM, EXPOSED, UNSAFE (and SAFE above OK).
    [[ $line =~ ": "[0-9.]+" "(SAFE|OK) ]]
    check $? "systemd-analyze security $(basename "$u"): OK or better" "$line"
done

echo "== the site guide's commands with the units' paths, as the service users"
# No systemd here to start the units: their ExecStart= lines, run as their
# users by hand. The hub on a loopback port; the site enrolls into
# /var/lib/tether-site/NAME as tether-site, exactly as docs/site-guide.md says.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CTL=(/usr/bin/tetherctl --config /var/lib/tether-hub/ctl.conf)
runuser -u tether-hub -- /usr/bin/tether-hub init --state /var/lib/tether-hub --name 127.0.0.1 \
    --public "127.0.0.1:$PORT" >"$TMP/init.log" 2>&1
check $? "tether-hub init as tether-hub in /var/lib/tether-hub" "$(cat "$TMP/init.log")"
runuser -u tether-hub -- /usr/bin/tether-hub run --state /var/lib/tether-hub \
    --listen "127.0.0.1:$PORT" >"$TMP/hub.log" 2>&1 &
HUB=$!
for _ in $(seq 50); do "${CTL[@]}" site list >/dev/null 2>&1 && break; sleep 0.2; done
TOKEN=$("${CTL[@]}" site add pkgtest 2>&1)
runuser -u tether-site -- /usr/bin/tether-site enroll --state /var/lib/tether-site/pkgtest \
    "$TOKEN" >"$TMP/enroll.log" 2>&1
check $? "tether-site enroll as tether-site into /var/lib/tether-site/pkgtest" \
    "$(cat "$TMP/enroll.log")"
[ "$(stat -c %U /var/lib/tether-site/pkgtest/site.key 2>/dev/null)" = tether-site ]
check $? "the site's key belongs to tether-site"
runuser -u tether-site -- /usr/bin/tether-site run --state /var/lib/tether-site/pkgtest \
    --service web=http://127.0.0.1:9 >"$TMP/site.log" 2>&1 &
SITE=$!
online=no
for _ in $(seq 50); do
    online=$("${CTL[@]}" --json site show pkgtest 2>/dev/null |
        python3 -c 'import json,sys; print("yes" if json.load(sys.stdin).get("online") else "no")')
    [ "$online" = yes ] && break
    sleep 0.2
done
[ "$online" = yes ]
check $? "the enrolled site comes online" "$(tail -3 "$TMP/site.log")"
err=$(runuser -u tether-site -- /usr/bin/tether-site run --state /var/lib/tether-site/pkgtest 2>&1)
[[ $err == *"state directory /var/lib/tether-site/pkgtest is in use by process"* ]]
check $? "a second agent on that state refuses" "$err"
kill -TERM "$SITE" "$HUB" 2>/dev/null
wait "$SITE" "$HUB" 2>/dev/null
rm -rf /var/lib/tether-site/pkgtest /var/lib/tether-hub/*

echo "== apt-get purge tether"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q tether >"$TMP/remove.log" 2>&1
check $? "apt-get purge tether" "$(tail -5 "$TMP/remove.log")"
for f in /usr/bin/tether-hub /usr/bin/tether-site /usr/bin/tetherctl "$UNITS/tether-hub.service" \
    "$UNITS/tether-site@.service"; do
    test ! -e "$f"
    check $? "removed: $f"
done

echo "$fails failed"
[ "$fails" = 0 ]
