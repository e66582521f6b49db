#!/usr/bin/env python3
# Integration: one process per state directory: a second hub or agent on a state in use refuses to start, naming the holder's PID; a stale lock file does not block.
# SPDX-License-Identifier: MIT
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, free_port  # noqa: E402

SITE = "lock-a"


def lock_pid(d):
    with open(os.path.join(d, "lock")) as f:
        return int(f.read().strip())


def main(h):
    hub, site, svc = h.setup(SITE)
    h.check(lock_pid(hub.dir) == hub.proc.p.pid, "the hub's lock file holds its PID")
    h.check(lock_pid(site.dir) == site.proc.p.pid, "the agent's lock file holds its PID")

    # A second hub on the same state (another port): refused, state untouched.
    before = {f: os.stat(os.path.join(hub.dir, f)).st_mtime_ns for f in os.listdir(hub.dir)}
    hub_mark = hub.proc.mark()
    r = h.run([h.bin("tether-hub"), "run", "--state", hub.dir, "--listen",
               "127.0.0.1:%d" % free_port()],
              timeout=20)
    want = "tether-hub: state directory %s is in use by process %d" % (hub.dir, hub.proc.p.pid)
    h.check(r.rc != 0 and want in r.stderr, "a second hub refuses, naming the holder's PID", r)
    after = {f: os.stat(os.path.join(hub.dir, f)).st_mtime_ns for f in os.listdir(hub.dir)}
    h.check(before == after, "nothing in the hub's state was touched", (before, after))
    h.check((hub.db_path is None or os.path.exists(hub.db_path)) and hub.proc.alive(),
            "the first hub runs on")
    # init --force would delete the running hub's registry: refused.
    r = h.run([h.bin("tether-hub"), "init", "--state", hub.dir, "--name", "127.0.0.1",
               "--force"], timeout=30)
    h.check(r.rc != 0 and ("in use by process %d" % hub.proc.p.pid) in r.stderr,
            "init --force on the running hub's state refuses", r)
    after = {f: os.stat(os.path.join(hub.dir, f)).st_mtime_ns for f in os.listdir(hub.dir)}
    h.check(before == after, "init --force touched nothing", (before, after))

    # A second agent on the same state: refused; the first keeps its tunnel
    # (no replace loop).
    r = h.run([h.bin("tether-site"), "run", "--state", site.dir, "--service",
               "web=" + svc.url], timeout=20)
    want = "tether-site: state directory %s is in use by process %d" % (site.dir,
                                                                         site.proc.p.pid)
    h.check(r.rc != 0 and want in r.stderr, "a second agent refuses, naming the holder's PID", r)
    time.sleep(1.0)
    h.check(not hub.proc.find(r"replaced by a newer connection", since=hub_mark),
            "the hub saw no replacement of the site's tunnel")
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 200, "the first agent's tunnel still serves", r)
    sessions = hub.site_show(SITE)["sessions"]
    h.check(len(sessions) == 1, "one session only: the first agent never reconnected", sessions)

    # Stale lock files (a dead process's PID, no flock held) do not block.
    site.proc.stop()
    hub.proc.stop()
    for d in (hub.dir, site.dir):
        with open(os.path.join(d, "lock"), "w") as f:
            f.write("999999\n")
    hub.start()
    h.check(lock_pid(hub.dir) == hub.proc.p.pid, "a hub starts over a stale lock file")
    site.start({"web": svc.url})
    h.check(lock_pid(site.dir) == site.proc.p.pid, "an agent starts over a stale lock file")
    # A hub killed outright leaves its lock file; the kernel dropped the lock.
    hub.proc.kill9()
    hub.start()
    h.check(hub.proc.alive(), "a hub starts after the previous one was killed (SIGKILL)")


Harness.main("state_lock", main)
