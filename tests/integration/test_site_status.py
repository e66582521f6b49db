#!/usr/bin/env python3
# Integration: `tether-site status --state DIR` exits 0 only while the tunnel is up, and says why not.
# SPDX-License-Identifier: MIT
import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402

SITE = "clinic-a"


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    site, svc = h.add_site(hub, SITE, None, (), 20)

    def status():
        return h.run([h.bin("tether-site"), "status", "--state", site.dir])

    r = status()
    h.check(r.rc == 0 and re.search(r"^connected hub=127\.0\.0\.1:%d for=\d+s pid=%d"
                                     % (hub.port, site.proc.pid), r.stdout, re.M),
            "with the tunnel up: exit 0, connected, the hub, the time, the agent's pid", r)

    # The hub goes away: the agent backs off and status fails, with the reason.
    hub.proc.kill9()
    site.proc.wait_log(r"\bdisconnected\b", 10)
    r = h.wait_until(lambda: (lambda x: x if x.rc == 1 and "last_error=" in x.stdout else None)(
        status()), 10)
    h.check(r is not None and not r.stdout.startswith("connected"),
            "with the hub gone: exit 1, not connected, the last error named", r)

    # The agent stops: nobody holds the state directory.
    site.proc.signal(signal.SIGTERM)
    h.wait_until(lambda: not site.proc.alive(), 10)
    r = status()
    h.check(r.rc == 1 and "not running" in r.stdout, "with no agent: exit 1, not running", r)
    r = h.run([h.bin("tether-site"), "status"])
    h.check(r.rc == 2 and "--state" in r.stderr, "without --state: a usage error (exit 2)", r)


Harness.main("site_status", main)
