#!/usr/bin/env python3
# Attack/ops: connection churn must not make the hub call malloc_trim every second; a real fall in connections still gives memory back.
# SPDX-License-Identifier: MIT
"""malloc_trim stops the hub's loop while it walks the heap, so it must not
run on every tick of a busy hub. The hub runs with a tiny LD_PRELOAD shim
(trimcount.c, built here) that counts its malloc_trim calls. Held means:
- steady churn (thousands of connections opened and closed, about as many
  open at any time) causes no trim;
- 300 connections closing at once cause one trim (logged as heap_trimmed
  with the time it took), and another 300 closing right after cause none
  within the 10 s that follow the first."""
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Harness, Proc  # noqa: E402
import idleconn as ic  # noqa: E402

AFTER = 100  # trim_after_closes


def trims(path):
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except OSError:
        return 0


def burst(port, net, n):
    """n silent TCP connections from 50 addresses each; returns them."""
    out = []
    for i in range(n):
        s = socket.socket()
        s.bind(("127.0.%d.%d" % (net, 1 + i % 50), 0))
        s.connect(("127.0.0.1", port))
        out.append(s)
    return out


def main(h):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        h.info("no C compiler for the shim: skipped")
        sys.exit(77)
    shim = os.path.join(h.tmp, "trimcount.so")
    subprocess.run([cc, "-shared", "-fPIC", "-o", shim, os.path.join(HERE, "trimcount.c"), "-ldl"],
                   check=True)
    count = os.path.join(h.tmp, "trims")
    ic.raise_nofile()
    hub = h.hub()
    hub.init()
    with open(os.path.join(hub.dir, "hub.conf"), "a") as f:
        f.write("trim_after_closes = %d\nmax_pending_handshakes_per_ip = 1000\n" % AFTER)
    env = dict(h.env)
    env["LD_PRELOAD"] = shim
    env["TRIMCOUNT_FILE"] = count
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
    hub.proc = Proc(h, hub.name, [h.bin("tether-hub"), "run", "--state", hub.dir, "--listen",
                                  hub.addr], env=env, daemon=True)
    hub.proc.wait_log(r"\bhub_started\b", 15)
    port = hub.port

    # Steady churn: 20 open at a time, the oldest closed for each new one.
    time.sleep(1.5)
    base = trims(count)
    # Until enough connections went by, however long a loaded machine takes
    # (about 5 s on a quiet one).
    held, n, t0 = [], 0, time.monotonic()
    while n <= 12 * AFTER and time.monotonic() - t0 < 120.0:
        s = socket.socket()
        s.bind(("127.0.13.%d" % (1 + n % 50), 0))
        s.connect(("127.0.0.1", port))
        held.append(s)
        n += 1
        if len(held) > 20:
            held.pop(0).close()
        time.sleep(0.003)  # a few hundred a second: a busy hub, not a flood
    for s in held:
        s.close()
    time.sleep(1.5)
    churn = trims(count) - base
    h.check(n > 10 * AFTER and churn == 0,
            "steady churn of %d connections (20 open at a time) made %d malloc_trim calls"
            % (n, churn))

    # A real fall: 300 connections close at once.
    mark = hub.proc.mark()
    conns = burst(port, 14, 300)
    time.sleep(1.5)
    for s in conns:
        s.close()
    m = hub.proc.wait_log(r"\bheap_trimmed\b.*\bms=([0-9.]+)", 15, since=mark, fatal=False)
    h.check(m is not None and trims(count) == base + churn + 1,
            "300 connections closing at once give memory back: one trim (%s ms)"
            % (m.group(1) if m else "-"))
    first = time.monotonic()
    conns = burst(port, 15, 300)
    time.sleep(1.0)
    for s in conns:
        s.close()
    while time.monotonic() - first < 6.0:
        time.sleep(0.2)
    h.check(trims(count) == base + churn + 1,
            "... and 300 more closing right after cause no second trim within 10 s (%d trims)"
            % (trims(count) - base - churn))


if __name__ == "__main__":
    Harness.main("heap_trim", main)
