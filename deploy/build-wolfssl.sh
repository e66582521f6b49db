#!/usr/bin/env bash
# Builds tether's static wolfSSL (AES-NI, SP P-256) from Debian's newest wolfssl source package into DIR/install.
# SPDX-License-Identifier: MIT
#
# Usage: deploy/build-wolfssl.sh DIR
#
# Result: DIR/install/{lib/libwolfssl.a,include/,VERSION,FLAVOR,STAMP,BUILDINFO}.
#   VERSION  the Debian source version built, e.g. 5.7.2-0.1+deb13u2
#   FLAVOR   "source-aesni" or "source" (CPU without AES-NI, or not x86-64)
#   STAMP    the recipe and the exact configure line of this build
# P-256 uses wolfSSL's single-precision code: --enable-sp --enable-sp-asm on
# x86-64; elsewhere --enable-sp alone (portable C), with a notice.
# Work files: DIR/apt (private apt state: the system's own lists are never
# touched), DIR/src (source package; build tree removed on success),
# DIR/build.log.
#
# Why from source: Debian's binary libwolfssl is built without AES-NI, which
# makes AES-GCM ~30 times slower. Why Debian's source package rather than
# upstream's tarball: it carries Debian's security patches, and it is fetched
# and verified through apt's signed indexes.
#
# Environment:
#   TETHER_WOLFSSL_VERSION  build this Debian version instead of the newest.
#   TETHER_WOLFSSL_NO_AESNI=1  build without AES-NI even if the CPU has it.
#
# Idempotent: exits 0 at once when DIR/install/lib/libwolfssl.a exists and its
# STAMP matches this script's recipe and configure line; a build made with
# other flags is rebuilt (staged, so a failed rebuild leaves the old one in
# place). Delete DIR/install to pick up a newer Debian upload. Several build
# directories may share DIR; a lock on DIR/.lock serialises them.
set -euo pipefail

PROG=build-wolfssl
say() { printf '%s: %s\n' "$PROG" "$*"; }
die() {
    printf '%s: ERROR: %s\n' "$PROG" "$*" >&2
    exit 1
}

if [ $# -ne 1 ] || [ -z "$1" ]; then die "usage: $0 DIR"; fi
mkdir -p "$1" || die "cannot create $1"
DIR=$(cd "$1" && pwd)
INSTALL="$DIR/install"
LOG="$DIR/build.log"

# Bumped whenever the recipe changes in a way the configure line below does
# not show (cmake/wolfssl.cmake reads this line too).
RECIPE=3

# ---------------------------------------------------------------------------
# 0. The configuration, decided before anything is fetched: an existing build
#    made with other flags (an older script, another CPU, other environment
#    variables) is rebuilt, because CI and developers reuse build dirs.
# ---------------------------------------------------------------------------
FLAVOR=source-aesni
ASM_FLAGS=(--enable-aesni --enable-intelasm)
if [ "$(uname -m)" != x86_64 ]; then
    FLAVOR=source
    ASM_FLAGS=()
    AESNI_NOTE="$(uname -m) is not x86-64: building WITHOUT AES-NI (--enable-aesni/--enable-intelasm dropped)"
elif [ "${TETHER_WOLFSSL_NO_AESNI:-0}" = 1 ]; then
    FLAVOR=source
    ASM_FLAGS=()
    AESNI_NOTE="TETHER_WOLFSSL_NO_AESNI=1: building WITHOUT AES-NI"
elif ! grep -qw aes /proc/cpuinfo; then
    FLAVOR=source
    ASM_FLAGS=()
    AESNI_NOTE="this CPU lacks AES-NI: building WITHOUT it (--enable-aesni/--enable-intelasm dropped); TLS will be slow"
fi
# Single-precision (SP) P-256: constant-time code specialised for the curve,
# with x86-64 assembly, about 8-15 times faster for ECDSA sign/verify and ECDH
# than wolfSSL's generic big-integer math, so a TLS 1.3 handshake with
# client certificates costs the hub a fraction of what it did
# (docs/benchmarks.md, "Handshakes"). The assembly checks the CPU's features
# (BMI2, ADX) at run time and has a plain x86-64 path. On other
# architectures the portable C version of the same code is used.
SP_FLAGS=(--enable-sp --enable-sp-asm)
SP_NOTE=""
if [ "$(uname -m)" != x86_64 ]; then
    SP_FLAGS=(--enable-sp)
    SP_NOTE="$(uname -m) is not x86-64: single-precision P-256 in portable C, without --enable-sp-asm (handshakes cost more CPU)"
fi

CONFIG=(--prefix="$INSTALL"
    --enable-static --disable-shared --enable-tls13 --disable-oldtls --enable-alpn --enable-sni
    --enable-ed25519 --enable-curve25519 --enable-ecc --enable-certgen --enable-keygen
    --enable-certext "${ASM_FLAGS[@]}" "${SP_FLAGS[@]}" --enable-aesgcm --enable-sha512
    --disable-examples --disable-crypttests --disable-benchmark --enable-session-ticket --with-pic)
# WOLFSSL_NO_FORCE_ZERO: wolfSSL then calls a ForceZero() of ours (added to
# the archive below) instead of its own volatile 8-byte loop, which zeroes
# every 16 KiB input record before freeing it and cost ~10% of the hub's CPU
# in a bulk transfer (docs/benchmarks.md).
CFL="-O2 -fPIC -DWOLFSSL_ALWAYS_VERIFY_CB -DWOLFSSL_ALT_NAMES -DWOLFSSL_DER_TO_PEM -DWOLFSSL_PUBLIC_MP"
CFL="$CFL -DWOLFSSL_NO_FORCE_ZERO"
# WOLFSSL_GETRANDOM: each TLS connection's RNG is seeded with getrandom(2)
# instead of opening, reading and closing /dev/urandom: three system calls
# fewer per handshake, and no descriptor needed, so a hub at its descriptor
# limit can still seed a site's handshake (Linux 3.17 and later).
if [ "$(uname -s)" = Linux ]; then CFL="$CFL -DWOLFSSL_GETRANDOM"; fi
# What DIR/install/STAMP must say for the build there to be reused: the
# recipe, the Debian version asked for and the exact configure line.
STAMP="recipe=$RECIPE version=${TETHER_WOLFSSL_VERSION:-newest} configure: ${CONFIG[*]} CFLAGS=$CFL"

built_here() {
    [ -f "$INSTALL/lib/libwolfssl.a" ] && [ "$(cat "$INSTALL/STAMP" 2>/dev/null)" = "$STAMP" ]
}
built_here && exit 0
if [ -f "$INSTALL/lib/libwolfssl.a" ]; then
    say "$INSTALL was built with other flags or by an older recipe: rebuilding"
    say "  was: $(cat "$INSTALL/STAMP" 2>/dev/null || echo "recipe $(cat "$INSTALL/RECIPE" 2>/dev/null || echo '?'), no STAMP")"
    say "  now: $STAMP"
fi

command -v flock >/dev/null || die "flock not found (util-linux)"
exec 9>"$DIR/.lock"
if ! flock -n 9; then
    say "another build of $DIR is running; waiting for it"
    flock -w 1800 9 || die "timed out waiting for the lock on $DIR/.lock"
fi
# The build we waited for may have produced it.
built_here && exit 0

missing=()
for tool in apt-get apt-cache dpkg dpkg-source autoreconf automake libtoolize make cc; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (run deploy/setup.sh)"

# ---------------------------------------------------------------------------
# 1. A private deb-src list derived from the machine's apt sources.
# ---------------------------------------------------------------------------

# Prints "URI SUITE" for every Debian entry (deb or deb-src) in one-line
# .list files and deb822 .sources files. Non-Debian repositories are ignored.
list_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '
            { sub(/#.*/, "") }
            $1 == "deb" || $1 == "deb-src" {
                line = $0
                sub(/^[ \t]*deb(-src)?[ \t]+/, "", line)
                if (line ~ /^\[/) sub(/^\[[^]]*\][ \t]*/, "", line)
                n = split(line, w, /[ \t]+/)
                if (n >= 2) print w[1], w[2]
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '
            function flush(   nu, ns, i, j, u, s) {
                if (types ~ /(^|[ \t])deb(-src)?([ \t]|$)/ && tolower(enabled) != "no") {
                    nu = split(uris, u, /[ \t]+/)
                    ns = split(suites, s, /[ \t]+/)
                    for (i = 1; i <= nu; i++)
                        for (j = 1; j <= ns; j++)
                            if (u[i] != "" && s[j] != "") print u[i], s[j]
                }
                types = uris = suites = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { next }
            {
                key = tolower($0); sub(/:.*/, "", key)
                val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = val
            }
            END { flush() }' "$f"
    done
}

# Debian archives: a path component "debian" or "debian-security" (also
# mirrors and snapshot.debian.org/archive/debian/DATE).
is_debian_uri() { [[ "$1" =~ ^https?://[^/]+/(.*/)?debian(-security)?(/|$) ]]; }
is_security() { [[ "$1" == *debian-security* || "$2" == *-security* || "$2" == */updates ]]; }

# Codenames in release order, to find those from trixie on.
CODENAMES=(buster bullseye bookworm trixie forky duke)

resolves() { # URI SUITE: does the suite have a Release file?
    command -v curl >/dev/null || return 1
    curl -fsSL -o /dev/null -m 20 --retry 2 "${1%/}/dists/$2/InRelease" 2>/dev/null ||
        curl -fsSL -o /dev/null -m 20 --retry 2 "${1%/}/dists/$2/Release" 2>/dev/null
}

APTDIR="$DIR/apt"
rm -rf "$APTDIR"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/sources.list.d" \
    "$APTDIR/preferences.d"
: >"$APTDIR/status"

declare -A seen=()
main_uris=()
sec_uris=()
entries=() # "URI SUITE"
while read -r uri suite; do
    is_debian_uri "$uri" || continue
    uri=${uri%/}
    key="$uri $suite"
    [ -z "${seen[$key]:-}" ] || continue
    seen[$key]=1
    entries+=("$key")
    if is_security "$uri" "$suite"; then
        [[ " ${sec_uris[*]} " == *" $uri "* ]] || sec_uris+=("$uri")
    else
        [[ " ${main_uris[*]} " == *" $uri "* ]] || main_uris+=("$uri")
    fi
done < <(list_sources)

if [ ${#main_uris[@]} -eq 0 ]; then
    say "no Debian archive in the machine's apt sources; using http://deb.debian.org/debian"
    main_uris=(http://deb.debian.org/debian)
fi
[ ${#sec_uris[@]} -gt 0 ] || sec_uris=(http://deb.debian.org/debian-security)
# Snapshot mirrors last: frozen at a date, they would hide newer uploads.
by_freshness() {
    local u
    for u in "$@"; do [[ "$u" == *snapshot.debian.org* ]] || echo "$u"; done
    for u in "$@"; do [[ "$u" != *snapshot.debian.org* ]] || echo "$u"; done
}
mapfile -t main_uris < <(by_freshness "${main_uris[@]}")
mapfile -t sec_uris < <(by_freshness "${sec_uris[@]}")

# Add trixie and every newer codename whose suites resolve on these mirrors
# (suites the machine already has are skipped).
trixie_idx=3
added=()
# add_suite SUITE URI...: on the first of these mirrors where it resolves (one
# copy of each index is enough).
add_suite() {
    local suite=$1 uri
    shift
    for uri in "$@"; do
        [ -z "${seen[$uri $suite]:-}" ] || return 0
    done
    for uri in "$@"; do
        if resolves "$uri" "$suite"; then
            seen[$uri $suite]=1
            entries+=("$uri $suite")
            added+=("$suite")
            return 0
        fi
    done
}
for ((i = trixie_idx; i < ${#CODENAMES[@]}; i++)); do
    code=${CODENAMES[$i]}
    add_suite "$code" "${main_uris[@]}"
    add_suite "$code-updates" "${main_uris[@]}"
    add_suite "$code-security" "${sec_uris[@]}"
done
if [ ${#added[@]} -eq 0 ] && ! command -v curl >/dev/null; then
    # Without curl nothing could be probed; trixie is known to exist.
    if [ -z "${seen[${main_uris[0]} trixie]:-}" ]; then
        entries+=("${main_uris[0]} trixie")
        added+=(trixie)
    fi
fi
say "newer suites added: ${added[*]:-none}"

signed=""
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] &&
    signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
for e in "${entries[@]}"; do
    echo "deb-src $signed${e% *} ${e##* } main"
done >"$APTDIR/sources.list"
say "private apt sources ($APTDIR/sources.list):"
sed 's/^/    /' "$APTDIR/sources.list"

APT=(-q
    -o Dir::Etc::SourceList="$APTDIR/sources.list"
    -o Dir::Etc::SourceParts="$APTDIR/sources.list.d"
    -o Dir::Etc::Preferences="$APTDIR/preferences"
    -o Dir::Etc::PreferencesParts="$APTDIR/preferences.d"
    -o Dir::State::Lists="$APTDIR/lists"
    -o Dir::State::status="$APTDIR/status"
    -o Dir::Cache="$APTDIR/cache"
    -o APT::Sandbox::User="$(id -un)"
    -o Acquire::Retries=3)

: >"$LOG"
say "apt-get update (private lists)"
if ! apt-get "${APT[@]}" update >>"$LOG" 2>&1; then
    say "warning: apt-get update reported errors (see $LOG); continuing with what was fetched"
fi

# ---------------------------------------------------------------------------
# 2. Pick and fetch the source.
# ---------------------------------------------------------------------------
versions=$(apt-cache "${APT[@]}" showsrc wolfssl 2>>"$LOG" |
    awk '/^Package: /{p=$2} /^Version: /{if (p == "wolfssl") print $2}' | sort -u)
[ -n "$versions" ] || die "no wolfssl source package in $APTDIR/sources.list (network? see $LOG)"
newest=""
for v in $versions; do
    if [ -z "$newest" ] || dpkg --compare-versions "$v" gt "$newest"; then newest=$v; fi
done
VER=${TETHER_WOLFSSL_VERSION:-$newest}
say "wolfssl source versions available: $(echo "$versions" | tr '\n' ' ')"
grep -qxF "$VER" <<<"$versions" || die "wolfssl $VER is not available"
say "building wolfssl $VER${TETHER_WOLFSSL_VERSION:+ (pinned by TETHER_WOLFSSL_VERSION)}"

SRC="$DIR/src"
rm -rf "$SRC" "$DIR/stage"
mkdir -p "$SRC"
(cd "$SRC" && apt-get "${APT[@]}" source --download-only "wolfssl=$VER") >>"$LOG" 2>&1 ||
    die "apt-get source wolfssl=$VER failed; last lines of $LOG:
$(tail -n 20 "$LOG")"
DSC="$SRC/wolfssl_${VER#*:}.dsc"
[ -f "$DSC" ] || die "expected $DSC after apt-get source"
# dpkg-source applies Debian's patches (3.0 quilt).
dpkg-source -x "$DSC" "$SRC/wolfssl" >>"$LOG" 2>&1 ||
    die "dpkg-source -x failed; last lines of $LOG:
$(tail -n 20 "$LOG")"

# ---------------------------------------------------------------------------
# 3. Configure, build, install.
# ---------------------------------------------------------------------------
[ -z "${AESNI_NOTE:-}" ] || say "WARNING: $AESNI_NOTE"
[ -z "$SP_NOTE" ] || say "NOTICE: $SP_NOTE"

run() { # STEP CMD...: runs in the source tree, output to the log
    local step=$1
    shift
    say "$step"
    if ! (cd "$SRC/wolfssl" && "$@") >>"$LOG" 2>&1; then
        die "$step failed; last lines of $LOG:
$(tail -n 40 "$LOG")"
    fi
}
run "autogen" ./autogen.sh
run "configure" ./configure "${CONFIG[@]}" CFLAGS="$CFL"
run "make -j$(nproc)" make -j"$(nproc)"
# Staged, then moved into place, so a failed install never leaves a partial
# DIR/install that later runs would take as done.
run "make install" make install DESTDIR="$DIR/stage"

STAGED="$DIR/stage$INSTALL"
OPTS="$STAGED/include/wolfssl/options.h"
[ -f "$STAGED/lib/libwolfssl.a" ] || die "make install produced no libwolfssl.a"
# The ForceZero that WOLFSSL_NO_FORCE_ZERO asks for: glibc's explicit_bzero,
# a vectorised memset the compiler may not remove, so the wiping stays.
cat >"$SRC/wolfssl/tether_forcezero.c" <<'EOF'
/* ForceZero for wolfSSL built with WOLFSSL_NO_FORCE_ZERO: explicit_bzero. */
/* SPDX-License-Identifier: MIT */
#include <string.h>
void ForceZero(void *mem, unsigned int len);
void ForceZero(void *mem, unsigned int len)
{
    explicit_bzero(mem, len);
}
EOF
run "ForceZero" sh -c 'cc -O2 -fPIC -Wall -Werror -c tether_forcezero.c -o tether_forcezero.o &&
    ar rs "$1" tether_forcezero.o' sh "$STAGED/lib/libwolfssl.a"
nm "$STAGED/lib/libwolfssl.a" 2>/dev/null | grep -q " T ForceZero$" || die "ForceZero missing from libwolfssl.a"
for def in WOLFSSL_TLS13 HAVE_ALPN HAVE_SNI WOLFSSL_ALWAYS_VERIFY_CB; do
    grep -q "^#define $def\b" "$OPTS" || die "$def missing from the built options.h"
done
if [ "$FLAVOR" = source-aesni ]; then
    grep -q '^#define WOLFSSL_AESNI\b' "$OPTS" || die "WOLFSSL_AESNI missing from the built options.h"
fi
grep -q '^#define WOLFSSL_HAVE_SP_ECC\b' "$OPTS" || die "WOLFSSL_HAVE_SP_ECC missing from the built options.h"
if [ "$(uname -m)" = x86_64 ]; then
    grep -q '^#define WOLFSSL_SP_X86_64_ASM\b' "$OPTS" ||
        die "WOLFSSL_SP_X86_64_ASM missing from the built options.h"
fi

echo "$VER" >"$STAGED/VERSION"
echo "$RECIPE" >"$STAGED/RECIPE"
echo "$FLAVOR" >"$STAGED/FLAVOR"
echo "$STAMP" >"$STAGED/STAMP"
{
    echo "version: $VER"
    echo "flavor: $FLAVOR"
    echo "p256: single-precision (${SP_FLAGS[*]})"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
    echo "configure: ${CONFIG[*]} CFLAGS=\"$CFL\""
    echo "sources:"
    sed 's/^/  /' "$APTDIR/sources.list"
} >"$STAGED/BUILDINFO"

rm -rf "$INSTALL"
mv "$STAGED" "$INSTALL"
# The build tree and apt indexes are ~200 MB; the downloaded source package,
# the private sources.list and the log stay for reference.
rm -rf "$DIR/stage" "$SRC/wolfssl" "$APTDIR/lists" "$APTDIR/cache"
say "done: $INSTALL/lib/libwolfssl.a ($FLAVOR $VER)"
