#!/usr/bin/env python3
# Lab: the hub listens on 6443 and 443; a site whose network blocks 6443 connects through 443 by itself.
# SPDX-License-Identifier: MIT
import base64
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import HUB_IP, HUB_NAME, SITE_IPS, LabHarness, read_conf  # noqa: E402

CONNECT_TIMEOUT = 2


def token_body(tok):
    """The JSON inside an enrollment token ("tether1." + base64url)."""
    b64 = tok.split(".", 1)[1]
    return json.loads(base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)))


def main(h):
    lab = h.lab()
    hub = h.hub(ports=(6443, 443))
    hub.init()
    hub.start(["--ping-interval", "2"])
    eps = ["%s:6443" % HUB_NAME, "%s:443" % HUB_NAME]

    # --- the endpoint list travels in the token and lands in site.conf ----
    tok2 = hub.site_add("ports-b")
    body = token_body(tok2)
    h.check(body.get("hubs") == eps, "the enrollment token carries every public hub endpoint, "
            "in order", body.get("hubs"))
    site2 = h.site("site2", "ports-b", hub)
    site2.enroll(tok2)
    conf = read_conf(site2.conf_path)
    h.check(conf.get("hub") == eps, "tether-site enroll writes them all to site.conf, in order",
            conf.get("hub"))

    # --- the network team blocks 6443 for site2 (silently) ---------------
    lab.netteam("ip saddr %s ip daddr %s tcp dport 6443 counter drop" % (SITE_IPS["site2"],
                                                                         HUB_IP))
    h.check(lab.tcp_connect("site2", HUB_IP, 6443, timeout=1.5) == "timeout",
            "from site2, port 6443 of the hub is blocked (no SYN-ACK)")
    h.check(lab.tcp_connect("site2", HUB_IP, 443, timeout=1.5) == "ok",
            "port 443 is open")
    svc = h.service("site2", "svc-ports", "ports-b")
    t0 = time.monotonic()
    site2.start({"web": svc.url}, ["--ping-interval", "2", "--connect-timeout",
                                   str(CONNECT_TIMEOUT)], timeout=20)
    took = time.monotonic() - t0
    text = site2.proc.text()
    h.check(re.search(r"\bconnect_failed hub=%s:6443 reason=\"no answer within %d ms "
                      r"\(SYN sent, no SYN-ACK" % (re.escape(HUB_NAME), CONNECT_TIMEOUT * 1000),
                      text),
            "the site tried 6443 first and logged why it failed (no SYN-ACK)",
            text[-600:])
    m = re.search(r"\bconnected hub=(\S+)", text)
    h.check(m and m.group(1) == "%s:443" % HUB_NAME, "then connected through 443 by itself",
            m and m.group(0))
    h.check(took < CONNECT_TIMEOUT + 3, "without a long wait (%.1f s; connect timeout %d s)"
            % (took, CONNECT_TIMEOUT))
    h.check(hub.wait_ready("ports-b", 10) is not None, "the hub has the site online")
    r = hub.proxy("ports-b", "web", "/echo?via=443")
    h.check(r.status == 200, "and it serves through the 443 tunnel", r)

    # A site on the other host, not blocked, keeps using the first endpoint.
    site1 = h.site("site1", "ports-a", hub)
    site1.enroll(hub.site_add("ports-a"))
    svc1 = h.service("site1", "svc-ports-a", "ports-a")
    site1.start({"web": svc1.url}, ["--ping-interval", "2"])
    m = re.search(r"\bconnected hub=(\S+)", site1.proc.text())
    h.check(m and m.group(1) == "%s:6443" % HUB_NAME,
            "an unblocked site uses the first endpoint, 6443", m and m.group(0))

    # When 6443 opens and the tunnel drops, the site starts again from the top.
    lab.netteam()
    mark = site2.proc.mark()
    hub.proc.signal(signal.SIGKILL)
    hub.proc.p.wait(10)
    hub.start(["--ping-interval", "2"])
    m = site2.proc.wait_log(r"\bconnected hub=(\S+)", 20, since=mark, fatal=False)
    h.check(m and m.group(1) == "%s:6443" % HUB_NAME,
            "after a reconnect with 6443 open again, the site is back on the first endpoint",
            m and m.group(0))


LabHarness.main("lab_hub_ports", main)
