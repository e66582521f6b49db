#!/usr/bin/env python3
# Integration: --log-format json makes every line of the hub's and the site's log one JSON object.
# SPDX-License-Identifier: MIT
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402

SITE = "clinic-a"


def objects(h, proc, what):
    """Every log line after the harness's '# argv' header, parsed."""
    out, bad = [], []
    for line in proc.text().splitlines():
        if not line or line.startswith("# "):
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            bad.append(line)
    h.check(not bad and out, "every line of the %s log is one JSON object" % what,
            bad[:3] or "no lines")
    return out


def main(h):
    hub = h.hub()
    hub.init()
    hub.start(["--log-format", "json"])
    site, svc = h.add_site(hub, SITE, None, ("--log-format", "json"), 20)
    r = hub.proxy(SITE, "web", "/echo?a=b%20c", timeout=10)
    h.check(r.status == 200, "a request through the tunnel", r)

    hub_lines = objects(h, hub.proc, "hub")
    conn = [o for o in hub_lines if o.get("event") == "site_connected"]
    h.check(conn and conn[0].get("site") == SITE and conn[0].get("level") == "info" and
            conn[0].get("ts", "").endswith("Z"),
            "site_connected carries ts, level, event and site as keys", conn[:1])
    started = [o for o in hub_lines if o.get("event") == "hub_started"]
    h.check(started and started[0].get("wolfssl", "").startswith(("source", "system")),
            "a quoted value with spaces (wolfssl) comes back whole", started[:1])
    site_lines = objects(h, site.proc, "site")
    h.check(any(o.get("event") == "connected" for o in site_lines),
            "the site's 'connected' line is an object too", [o.get("event") for o in site_lines])

    r = h.run([h.bin("tether-hub"), "run", "--state", hub.dir, "--log-format", "xml"])
    h.check(r.rc == 2 and "text or json" in r.stderr, "--log-format xml is a usage error", r)


Harness.main("log_format", main)
