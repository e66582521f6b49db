#!/usr/bin/env python3
# Lab: stateful idle timeouts; keepalives hold the firewall's state, and without them the tunnel breaks.
# SPDX-License-Identifier: MIT
"""The issue's numbers are: conntrack established timeout 30 s, 120 s idle,
with the hub's default ping every 20 s. This test runs them at 1/5 scale:
timeout 6 s, idle 24 s, ping 4 s. Every ratio that matters is kept (the ping
interval is 2/3 of the firewall's timeout, the idle time four timeouts), so
it is the same test, five times faster.

Both cases run at once, side by side: site1 dials hub A (pings every 4 s,
site watch on), site2 dials hub B (pings every 30 min: effectively off; site
watch off with --ping-interval 0). Both sit behind the same kind of stateful
firewall."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import LabHarness  # noqa: E402

CT_TIMEOUT = 6
IDLE = 24
PING = 4
RECONNECT_RE = r"\b(disconnected|connect_failed|reconnect_in)\b"


def main(h):
    lab = h.lab()
    lab.set_conntrack_timeout(CT_TIMEOUT)
    hub_a = h.hub("hub-a", ports=(6443,))
    hub_a.init()
    hub_a.start(["--ping-interval", str(PING)])
    hub_b = h.hub("hub-b", ports=(7443,))
    hub_b.init()
    hub_b.start(["--ping-interval", "1800"])

    svc1 = h.service("site1", "svc-keep", "keep")
    svc2 = h.service("site2", "svc-nokeep", "nokeep")
    keep = h.site("site1", "keep", hub_a)
    keep.enroll(hub_a.site_add("keep"))
    keep.start({"web": svc1.url}, ["--ping-interval", str(PING)])
    nokeep = h.site("site2", "nokeep", hub_b)
    nokeep.enroll(hub_b.site_add("nokeep"))
    nokeep.start({"web": svc2.url}, ["--ping-interval", "0"])
    h.check(hub_a.wait_ready("keep", 10) is not None, "site with keepalives is online")
    h.check(hub_b.wait_ready("nokeep", 10) is not None, "site without keepalives is online")
    for hub, name in ((hub_a, "keep"), (hub_b, "nokeep")):
        r = hub.proxy(name, "web", "/echo?before=idle")
        h.check(r.status == 200, "%s serves before the idle period" % name, r)

    marks = {"keep": keep.proc.mark(), "nokeep": nokeep.proc.mark(),
             "hub-a": hub_a.proc.mark(), "hub-b": hub_b.proc.mark()}
    drops0 = lab.counter("site2", "sitefw", "inbound_dropped")
    h.info("idle for %d s (conntrack established timeout %d s, hub A pings every %d s)"
           % (IDLE, CT_TIMEOUT, PING))
    time.sleep(IDLE)

    # --- with keepalives: at once, on the same tunnel ----------------------
    t = time.monotonic()
    r = hub_a.proxy("keep", "web", "/echo?after=idle", timeout=10)
    took = time.monotonic() - t
    h.check(r.status == 200 and (r.json() or {}).get("query") == "after=idle",
            "with keepalives, a request after %d s idle succeeds" % IDLE, r)
    h.check(took < 2.0, "... at once (%.2f s)" % took)
    m = re.search(RECONNECT_RE, keep.proc.text(marks["keep"]))
    h.check(m is None, "... with no reconnect in the site's log", m and m.group(0))
    h.check(re.search(r"\bsite_(dis)?connected\b", hub_a.proc.text(marks["hub-a"])) is None,
            "... and no new session at the hub")

    # --- without keepalives: the firewall forgot the connection ------------
    r = hub_b.proxy("nokeep", "web", "/echo?after=idle-nokeep", timeout=6)
    h.check(r.status != 200, "without keepalives, the same request fails: the tunnel broke "
            "(status %s)" % r.status, r)
    drops1 = lab.counter("site2", "sitefw", "inbound_dropped")
    h.check(drops1 > drops0, "... because the site's firewall dropped the hub's packets as new "
            "inbound traffic (drop counter %d -> %d)" % (drops0, drops1))
    h.check("after=idle-nokeep" not in svc2.proc.text(),
            "... and the request never reached the site's service")
    h.check(re.search(RECONNECT_RE, nokeep.proc.text(marks["nokeep"])) is None,
            "... while the site, with no watch, never noticed (no reconnect logged)")


LabHarness.main("lab_idle_timeout", main)
