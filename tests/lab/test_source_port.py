#!/usr/bin/env python3
# Lab: --source-port N through a router that allows only that source port; TIME_WAIT reuse; a taken port is an error.
# SPDX-License-Identifier: MIT
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import HUB_IP, SITE_IPS, LabHarness  # noqa: E402

SITE = "lab-sport"
SPORT = 40123


def main(h):
    lab = h.lab()
    hub = h.hub()
    hub.init()
    hub.start(["--ping-interval", "2"])
    svc = h.service("site1", "svc-sport", SITE)
    site = h.site("site1", SITE, hub)
    site.enroll(hub.site_add(SITE))
    # The network team allows site1 out to the hub from one source port only.
    lab.netteam("ip saddr %s ip daddr %s tcp sport != %d counter drop" % (SITE_IPS["site1"],
                                                                          HUB_IP, SPORT))
    h.check(lab.tcp_connect("site1", HUB_IP, 6443, timeout=1.5) == "timeout",
            "from any other source port, the hub is unreachable")

    args = ["--ping-interval", "2", "--source-port", str(SPORT), "--connect-timeout", "2"]
    site.start({"web": svc.url}, args)
    s = hub.wait_ready(SITE, 10)
    h.check(s and s.get("remote_addr") == "%s:%d" % (SITE_IPS["site1"], SPORT),
            "the site dials from source port %d" % SPORT, s and s.get("remote_addr"))
    h.check(hub.proxy(SITE, "web", "/healthz").status == 200, "and serves")

    # --- reconnect inside the process (the hub restarts) -----------------
    mark = site.proc.mark()
    hub.proc.signal(signal.SIGKILL)
    hub.proc.p.wait(10)
    hub.start(["--ping-interval", "2"])
    m = site.proc.wait_log(r"\bconnected hub=", 15, since=mark, fatal=False)
    s = hub.wait_ready(SITE, 10)
    h.check(m and s and s.get("remote_addr") == "%s:%d" % (SITE_IPS["site1"], SPORT),
            "after the hub restarts, the site reconnects from the same port",
            s and s.get("remote_addr"))

    # --- a restart while the old socket sits in TIME_WAIT -----------------
    # The side that closes first keeps TIME_WAIT. SIGKILL makes the site's
    # kernel send the first FIN (a clean stop races with the hub's own
    # close after GOAWAY); an unlucky RST instead of FIN is retried.
    tw = []
    for attempt in range(3):
        site.proc.kill9()
        tw = h.wait_until(lambda: lab.sockets("site1", "state time-wait sport = :%d" % SPORT),
                          3.0)
        if tw:
            break
        site.start({"web": svc.url}, args, timeout=15)
    h.check(len(tw) >= 1, "the old connection from port %d is in TIME_WAIT" % SPORT, tw)
    t0 = time.monotonic()
    site.start({"web": svc.url}, args, timeout=15)
    took = time.monotonic() - t0
    h.check(took < 3.0, "a new site process connects from the same port at once, TIME_WAIT or "
            "not (SO_REUSEADDR) (%.2f s)" % took)
    s = hub.wait_ready(SITE, 10)
    h.check(s and s.get("remote_addr") == "%s:%d" % (SITE_IPS["site1"], SPORT),
            "... from port %d" % SPORT, s and s.get("remote_addr"))
    h.check(re.search(r"\bconnect_failed\b", site.proc.text()) is None,
            "... with no failed attempt first", site.proc.text()[-400:])
    site.proc.stop(timeout=10)

    # --- another process holds the port -----------------------------------
    # (SO_REUSEADDR only so that it may bind over our own TIME_WAIT leftover.)
    holder = h.spawn("holder", [sys.executable, "-c",
                                "import socket,time; s=socket.socket(); "
                                "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                                "s.bind(('0.0.0.0', %d)); s.listen(1); "
                                "print('holding', flush=True); time.sleep(300)" % SPORT],
                     role="site1")
    holder.wait_log(r"^holding$", 10)
    hmark = hub.proc.mark()
    site.start({"web": svc.url}, args, wait=False, daemon=False)
    deadline = time.monotonic() + 10
    while site.proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    h.check(not site.proc.alive(), "with the port taken, the site exits")
    h.check(site.proc.returncode() not in (0, None), "... with a failure status",
            site.proc.returncode())
    text = site.proc.text()
    m = re.search(r"tether-site: (cannot use source port .*)", text)
    h.check(m is not None, "... and a one-line error", text[-600:])
    line = m.group(1) if m else ""
    h.check(str(SPORT) in line, "the error names the port", line)
    h.check("pid %d (python3" % holder.pid in line,
            "the error names what holds it (pid %d, python3)" % holder.pid, line)
    h.check(re.search(r"\bsite_connected\b", hub.proc.text(hmark)) is None,
            "and the site never connected from another port")
    h.info("error: %s" % line)
    h.check(re.search(r"Sanitizer|runtime error:", text) is None,
            "and it exits without a sanitizer report")
    holder.stop()


LabHarness.main("lab_source_port", main)
