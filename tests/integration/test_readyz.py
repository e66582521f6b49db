#!/usr/bin/env python3
# Integration: /readyz says whether the hub takes traffic (200), and answers 503 "draining" while it drains.
# SPDX-License-Identifier: MIT
import http.client
import json
import os
import signal
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402

SITE = "clinic-a"


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, r.read()


def main(h):
    hub, site, svc = h.setup(SITE)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # One keep-alive connection, opened before the drain: a load balancer's
    # health checker keeps its connection; new ones are refused once the
    # hub stops listening.
    conn = http.client.HTTPSConnection("127.0.0.1", hub.port, context=ctx, timeout=10)
    st, body = get(conn, "/readyz")
    doc = json.loads(body or b"{}")
    h.check(st == 200 and doc.get("ready") is True and doc.get("sites_online") == 1,
            "/readyz without a token: 200, ready, one site online", (st, body))

    # A request that holds the drain open while the hub is asked again.
    slow = {}

    def long_request():
        slow["r"] = hub.proxy(SITE, "web", "/slow?ms=3000", timeout=20)

    t = threading.Thread(target=long_request)
    t.start()
    # The service counts it in flight (the answer comes 3 s later).
    h.check(h.wait_until(lambda: (svc.stats() or {}).get("inflight", 0) >= 2, 10),
            "the slow request reached the service")
    mark = hub.proc.mark()
    smark = site.proc.mark()
    hub.proc.signal(signal.SIGTERM)
    hub.proc.wait_log(r"\bdraining\b", 10, since=mark)
    st, body = get(conn, "/readyz")
    doc = json.loads(body or b"{}")
    h.check(st == 503 and doc.get("ready") is False and doc.get("reason") == "draining",
            "while draining /readyz is 503 with reason draining", (st, body))
    t.join(25)
    r = slow.get("r")
    h.check(r is not None and r.status == 200, "the request that was running finishes (200)", r)
    conn.close()
    h.check(hub.proc.wait_log(r"\bhub_stopped\b", 15, since=mark, fatal=False),
            "the hub stops once the drain is over")
    # The GOAWAY asks the site to come back within a window sized by the
    # hub's number of sites (4 ms a site: one site comes back at once), and
    # the site's first wait honours it instead of its own backoff.
    m = site.proc.wait_log(r"\bhub_goaway\b.*reconnect_window_ms=(\d+)", 10, since=smark,
                           fatal=False)
    h.check(m is not None and int(m.group(1)) == 4,
            "the draining hub's GOAWAY asks its one site to come back within 4 ms",
            m and m.group(0))
    m = site.proc.wait_log(r"\breconnect_in ms=(\d+)", 10, since=smark, fatal=False)
    h.check(m is not None and int(m.group(1)) <= 4,
            "the site's first wait is within that window", m and m.group(0))


Harness.main("readyz", main)
