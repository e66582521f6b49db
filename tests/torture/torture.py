#!/usr/bin/env python3
# Allocation-failure torture driver: runs one torture-built unit test once per failed allocation N and reports crashes, leaks and hangs.
# SPDX-License-Identifier: MIT
"""Usage: torture.py [--budget K] [--time-budget S] [--jobs J] [--src DIR] [--only N,...] TEST_EXE

A first run counts the allocations the test makes (TETHER_ALLOC_COUNT_FILE);
then TEST_EXE runs again with TETHER_FAIL_ALLOC=N, which makes the Nth
allocation of tether's code (and of jansson) return NULL. Every N from 1 to
the count is tried when the count is at most K (--budget, 0 = no limit);
above it, K values spread evenly over the whole range, always including the
first 50. With --time-budget S (seconds, 0 = none) the runs stop once S
seconds have passed, in the same spread order, so the values tried are
spread over the range however far they got: CTest's torture runs stay
short, tests/torture/run-all tries every N.

A failed CHECK of the unit test is expected (an operation was refused) and is
not a finding. A finding is: a signal (crash), a sanitizer report (ASan,
LeakSanitizer, UBSan), or no exit within the time limit (a hang). Findings
are grouped by the first stack frame in tether's own sources (common/, hub/,
site/, ctl/), else in the unit test, and printed with one example N.

A failed CHECK ends the unit test at once in this build (testutil.h), so a
test never goes on with a handle it did not get. What it still held is then
reported by LeakSanitizer as leaked when the compiler kept no pointer to it,
so a leak counts as tether's only when it was allocated under the same call
from the test as the allocation that failed (alloc.c prints that stack):
tether's failure path lost it. Other leaks, and reports whose first in-tree
frame is in tests/unit/, are test-side: listed, failing the run only with
--strict.

Exit status: 0 no (tether-side) finding, 1 findings, 77 the count run failed
to produce a count (not a torture build).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

FRAME_RE = re.compile(r"^\s*#\d+ 0x[0-9a-f]+ in (\S+) (\S+?):(\d+)", re.M)
SAN_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:")
TEST_TIMEOUT = 120.0


def spread_order(total):
    """Every N from 1 to total: the first 50 in order, then the rest so that
    any prefix is spread evenly over the range (coarse strides first)."""
    first = list(range(1, min(50, total) + 1))
    rest = list(range(len(first) + 1, total + 1))
    out, seen = [], set()
    step = 1
    while step * 2 <= len(rest):
        step *= 2
    while step >= 1:
        for i in range(0, len(rest), step):
            if i not in seen:
                seen.add(i)
                out.append(rest[i])
        step //= 2
    return first + out


def choose(total, budget, only):
    """The N values to try: --only's list, else spread_order cut to budget."""
    if only:
        return [int(x) for x in only.split(",") if x]
    ns = spread_order(total)
    return ns[:budget] if budget > 0 else ns


def env_for(extra):
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    # Symbolised frames are what findings are grouped by.
    if "symbolize=0" in env["ASAN_OPTIONS"]:
        env["ASAN_OPTIONS"] = env["ASAN_OPTIONS"].replace("symbolize=0", "symbolize=1")
    env.update(extra)
    return env


def run_once(exe, extra, cwd):
    t0 = time.monotonic()
    try:
        p = subprocess.run([exe], env=env_for(extra), cwd=cwd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=TEST_TIMEOUT)
        out = p.stdout.decode(errors="replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        rc = None
    return rc, out, time.monotonic() - t0


def where(out, src):
    """(side, 'func file:line') of the first in-tree frame of the report."""
    for func, path, line in FRAME_RE.findall(out):
        rel = os.path.relpath(path, src) if os.path.isabs(path) else path
        if rel.startswith(("common/", "hub/", "site/", "ctl/")):
            return "tether", "%s %s:%s" % (func, rel, line)
        if rel.startswith("tests/unit/"):
            return "test", "%s %s:%s" % (func, rel, line)
    return "tether", "(no in-tree frame)"


def test_site(frames, src):
    """The first frame in tests/unit/ of a list of (func, path, line)."""
    for func, path, line in frames:
        rel = os.path.relpath(path, src) if os.path.isabs(path) else path
        if rel.startswith("tests/unit/"):
            return "%s:%s" % (rel, line)
    return None


def classify(rc, out, src):
    """None, or (side, kind, where)."""
    m = SAN_RE.search(out)
    if m and m.group(1) == "LeakSanitizer":
        fm = re.search(r"torture: allocation \d+ fails here:\n(.*?)torture: end", out, re.S)
        failed_at = test_site(FRAME_RE.findall(fm.group(1)), src) if fm else None
        side, loc = "test", None
        for block in re.findall(r"Direct leak of .*?(?:\n\s*\n|\Z)", out[m.start():], re.S):
            frames = FRAME_RE.findall(block)
            b_side, b_loc = where(block, src)
            if failed_at is None or test_site(frames, src) == failed_at:
                if b_side == "tether":
                    return "tether", "LeakSanitizer", b_loc
            if loc is None:
                loc = b_loc
        return side, "LeakSanitizer", loc or "(no in-tree frame)"
    if m:
        kind = m.group(1) or "UBSan"
        side, loc = where(out[m.start():], src)
        return side, kind, loc
    if rc is None:
        return "tether", "hang", "(timeout %.0f s)" % TEST_TIMEOUT
    if rc < 0:
        side, loc = where(out, src)
        return side, "signal %d" % -rc, loc
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=400)
    ap.add_argument("--time-budget", type=float, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--src", default=os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")))
    ap.add_argument("--only", default="", help="comma-separated N values to run")
    ap.add_argument("--strict", action="store_true", help="test-side findings fail too")
    ap.add_argument("--verbose", action="store_true", help="print each finding's output")
    ap.add_argument("exe")
    a = ap.parse_args()
    a.exe = os.path.abspath(a.exe)
    a.src = os.path.abspath(a.src)
    name = os.path.basename(a.exe)

    with tempfile.TemporaryDirectory(prefix="tether-torture-") as tmp:
        count_file = os.path.join(tmp, "count")
        rc, out, secs = run_once(a.exe, {"TETHER_ALLOC_COUNT_FILE": count_file}, tmp)
        try:
            with open(count_file) as f:
                total = int(f.read().strip())
        except (OSError, ValueError):
            print("%s: the counting run wrote no count (rc=%s): not a torture build?\n%s" % (
                name, rc, out[-2000:]))
            return 77
        if rc != 0:
            print("%s: the counting run itself fails (rc=%s); torture continues\n%s" % (
                name, rc, out[-2000:]))
        ns = choose(total, a.budget, a.only)
        print("%s: %d allocations in one run (%.2f s); trying %d of them%s with %d job(s)" % (
            name, total, secs, len(ns), " (at most %.0f s)" % a.time_budget
            if a.time_budget > 0 and not a.only else "", a.jobs), flush=True)

        def one(n):
            d = os.path.join(tmp, "n%d" % n)
            os.mkdir(d)
            rc_n, out_n, _ = run_once(a.exe, {"TETHER_FAIL_ALLOC": str(n)}, d)
            return n, classify(rc_n, out_n, a.src), out_n

        groups = {}
        t0 = time.monotonic()
        tried = 0
        jobs = max(1, a.jobs)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for i in range(0, len(ns), jobs):
                if a.time_budget > 0 and not a.only and time.monotonic() - t0 > a.time_budget:
                    break
                for n, found, out_n in pool.map(one, ns[i:i + jobs]):
                    tried += 1
                    if found is None:
                        continue
                    g = groups.setdefault(found, [])
                    g.append(n)
                    if len(g) == 1 and a.verbose:
                        print("----- %s at N=%d -----\n%s" % (found, n, out_n[-6000:]),
                              flush=True)

    bad = 0
    for (side, kind, loc), n_list in sorted(groups.items(), key=lambda kv: kv[1][0]):
        fails = side == "tether" or a.strict
        bad += fails
        print("  %s %-14s %-60s N=%s%s (%d N)" % ("FINDING" if fails else "test-side", kind, loc,
                                                 n_list[0], "..." if len(n_list) > 1 else "",
                                                 len(n_list)))
    print("%s: %d allocations, %d tried in %.0f s, %d finding(s) in tether code, %d test-side" % (
        name, total, tried, time.monotonic() - t0, bad,
        sum(1 for k in groups if k[0] == "test")), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
