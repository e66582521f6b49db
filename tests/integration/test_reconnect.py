#!/usr/bin/env python3
# Integration: hub killed -9 and restarted, site killed and restarted; sessions recorded.
# SPDX-License-Identifier: MIT
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402

SITE = "recon-a"


def main(h):
    hub, site, svc = h.setup(SITE, hub_args=["--ping-interval", "2"],
                             site_args=["--ping-interval", "2"])
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 200, "site serves before the crash", r)
    first_remote = (hub.sites().get(SITE) or {}).get("remote_addr")

    # --- the hub dies hard and comes back on the same port and state -------
    site_mark = site.proc.mark()
    killed = time.monotonic()
    hub.proc.kill9()
    h.check(not hub.proc.alive(), "hub killed with SIGKILL")
    m = site.proc.wait_log(r"\bdisconnected\b.*\breason=\S+", 10, since=site_mark, fatal=False)
    h.check(m, "site logs disconnected reason=... after the hub died")
    m = site.proc.wait_log(r"\breconnect_in ms=\d+", 10, since=site_mark, fatal=False)
    h.check(m, "site logs reconnect_in ms=...")
    delays = [int(x) for x in re.findall(r"\breconnect_in ms=(\d+)",
                                         site.proc.text(site_mark))]
    h.check(all(0 <= d <= 30000 for d in delays), "reconnect delays within the 30 s cap", delays)
    # Leave the hub down for a moment so the site goes through backoff.
    time.sleep(2.0)
    restart = time.monotonic()
    hub.start(["--ping-interval", "2"])
    listening = time.monotonic()
    h.info("hub restarted (%.2fs until it logged listening)" % (listening - restart))
    m = site.proc.wait_log(r"\bconnected hub=", 10, since=site_mark, fatal=False)
    h.check(m, "site logs connected hub=... again")
    online = hub.wait_ready(SITE, max(0.5, 10 - (time.monotonic() - restart)))
    back = time.monotonic() - restart
    h.check(online is not None, "site online again within 10 s of the hub restart",
            "%.1fs" % back)
    h.info("site back %.1fs after restart" % back)
    # No wait longer than the time already offline (docs/protocol.md): quick
    # refusals during a 2 s outage once ran the ceiling up to an 11.5 s wait.
    outage = listening - killed  # the site is refused until the hub listens
    waits = [int(x) for x in re.findall(r"\breconnect_in ms=(\d+)", site.proc.text(site_mark))]
    h.check(waits and max(waits) <= max(500, outage * 1000) + 300,
            "no reconnect wait longer than the outage so far (%.1fs)" % outage, waits)
    h.check(back <= outage + 3, "site back within the outage's length after the restart",
            "back %.1fs, outage %.1fs" % (back, outage))
    r = hub.proxy(SITE, "web", "/echo?after=restart")
    h.check(r.status == 200 and (r.json() or {}).get("query") == "after=restart",
            "proxying works after the hub restart", r)
    h.check(time.monotonic() - restart <= 12, "and all that within ~10 s of the restart",
            "%.1fs" % (time.monotonic() - restart))

    show = hub.site_show(SITE)
    sess = show.get("sessions") if isinstance(show, dict) else None
    ok = h.check(isinstance(sess, list) and len(sess) >= 2, "site show has at least 2 sessions",
                 sess)
    if ok:
        cur, old = sess[0], sess[1]
        h.check(not cur.get("disconnected_at"), "newest session is open", cur)
        h.check(isinstance(old.get("disconnected_at"), int) and old["disconnected_at"] > 0,
                "the session from before the crash is closed", old)
        h.check(isinstance(old.get("reason"), str) and old.get("reason"),
                "the closed session has a reason", old)
        h.check((old.get("connected_at") or 0) <= (cur.get("connected_at") or 0),
                "sessions are newest first", sess[:2])
        if first_remote:
            h.check(old.get("remote_addr") == first_remote, "old session keeps its remote_addr",
                    (old.get("remote_addr"), first_remote))

    # --- the site dies hard; the hub notices; the site comes back ---------
    hub_mark = hub.proc.mark()
    site.proc.kill9()
    m = hub.proc.wait_log(r"\bsite_disconnected\b.*\bsite=%s\b.*\breason=\S+" % SITE, 10,
                          since=hub_mark, fatal=False)
    h.check(m, "hub logs site_disconnected site=%s reason=..." % SITE)
    off = hub.wait_online(SITE, False, 10)
    h.check(off is not None, "site list shows it offline")
    # The hub stores when it last heard the site in wall-clock seconds (it
    # once stored its monotonic clock: an offline site showed 1970).
    ls = (off or {}).get("last_seen")
    h.check(isinstance(ls, int) and abs(ls - time.time()) < 60,
            "an offline site's last_seen is a recent unix time", ls)
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 503, "proxying to the dead site gives 503", r)
    site.start({"web": svc.url}, ["--ping-interval", "2"])
    h.check(hub.wait_ready(SITE, 10) is not None, "restarted site is online again")
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 200, "and serves", r)
    sess = (hub.site_show(SITE) or {}).get("sessions") or []
    h.check(len(sess) >= 3 and not sess[0].get("disconnected_at")
            and sess[1].get("disconnected_at") and sess[1].get("reason"),
            "third session open, second closed with a reason", sess[:3])

    # --- graceful: SIGTERM the hub; it exits and the site reconnects -------
    site_mark = site.proc.mark()
    hub.proc.signal(15)
    t0 = time.monotonic()
    while hub.proc.alive() and time.monotonic() - t0 < 15:
        time.sleep(0.1)
    h.check(not hub.proc.alive(), "hub exits on SIGTERM (drain)", "%.1fs" % (time.monotonic() - t0))
    h.check(hub.proc.returncode() == 0, "hub exit code 0 after SIGTERM", hub.proc.returncode())
    hub.start(["--ping-interval", "2"])
    h.check(site.proc.wait_log(r"\bconnected hub=", 10, since=site_mark, fatal=False),
            "site reconnects after a graceful hub restart")
    h.check(hub.wait_ready(SITE, 10) is not None, "and is online")
    sess = (hub.site_show(SITE) or {}).get("sessions") or []
    h.check(len(sess) >= 4 and sess[1].get("disconnected_at") and sess[1].get("reason"),
            "session closed by the drain has a reason", sess[:2])


if __name__ == "__main__":
    Harness.main("reconnect", main)
