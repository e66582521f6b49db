#!/usr/bin/env python3
# Integration: the hub writes one access line per proxied request (also for refusals and 502s); access_log = off stops them.
# SPDX-License-Identifier: MIT
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402

SITE = "clinic-a"


def access(hub, mark, path):
    return hub.proc.wait_log(r"\binfo access site=%s service=(\S+) method=(\S+) path=%s "
                             r"status=(\d+) bytes_in=(\d+) bytes_out=(\d+) ms=(\d+) token=(\S+)"
                             % (SITE, re.escape(path)), 10, since=mark, fatal=False)


def main(h):
    hub, site, svc = h.setup(SITE)

    mark = hub.proc.mark()
    r = hub.proxy(SITE, "web", "/sha256?secret=hunter2", method="POST", data=b"x" * 1000)
    h.check(r.status == 200, "a POST through the tunnel", r)
    m = access(hub, mark, "/sha256")
    h.check(m and m.group(1) == "web" and m.group(2) == "POST" and m.group(3) == "200" and
            m.group(4) == "1000" and int(m.group(5)) == len(r.body) and m.group(7) == "admin",
            "one access line: service, method, path, status, bytes each way, token", m and m.group(0))
    h.check("hunter2" not in hub.proc.text(mark), "the query string (a secret) is not logged")

    mark = hub.proc.mark()
    r = hub.proxy(SITE, "web", "/status/502")
    m = access(hub, mark, "/status/502")
    h.check(r.status == 502 and m and m.group(3) == "502", "a 502 from the service is logged",
            m and m.group(0))

    mark = hub.proc.mark()
    r = hub.proxy(SITE, "nope", "/x")
    m = hub.proc.wait_log(r"\binfo access site=%s service=nope method=GET path=/x status=404 "
                          % SITE, 10, since=mark, fatal=False)
    h.check(r.status == 404 and m, "a request refused before the tunnel is logged too",
            m and m.group(0))

    hub.reload(access_log="off")
    mark = hub.proc.mark()
    r = hub.proxy(SITE, "web", "/healthz")
    h.check(r.status == 200, "a request after access_log = off", r)
    h.check(hub.proc.wait_log(r"\baccess site=", 2, since=mark, fatal=False) is None,
            "access_log = off: no access line")


Harness.main("access_log", main)
