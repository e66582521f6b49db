#!/usr/bin/env python3
# Integration: the hub's own errors (404, 503, 502, 504, 400, 401) and serving on after them.
# SPDX-License-Identifier: MIT
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, closed_port  # noqa: E402

SITE = "err-a"
OFFLINE = "err-offline"


def check_error(h, r, status, code, what):
    j = r.json()
    ok = h.check(r.status == status, "%s -> %d" % (what, status), r)
    if ok:
        h.check(isinstance(j, dict) and j.get("error") == code
                and isinstance(j.get("detail"), str) and j.get("detail"),
                "%s: JSON {\"error\": \"%s\", \"detail\": ...}" % (what, code), r.body)
        ct = r.headers.get("content-type", "")
        h.check(ct.startswith("application/json"), "%s: Content-Type is JSON" % what, ct)
    return ok


def main(h):
    down = closed_port()
    hub, site, svc = h.setup(SITE, site_args=["--upstream-timeout", "2"],
                             extra_services={"down": "http://127.0.0.1:%d" % down})

    # Registered and enrolled, but never running.
    off = h.site(OFFLINE, hub)
    off.enroll(hub.site_add(OFFLINE))

    for proto in ("1.1", "2"):
        t = "HTTP/%s" % proto
        check_error(h, hub.proxy("no-such-site", "web", "/healthz", http=proto), 404,
                    "not_found", "%s unknown site" % t)
        check_error(h, hub.proxy(OFFLINE, "web", "/healthz", http=proto), 503, "site_offline",
                    "%s registered but offline site" % t)
        check_error(h, hub.proxy(SITE, "nosvc", "/healthz", http=proto), 404, "not_found",
                    "%s service not offered" % t)
        check_error(h, hub.proxy(SITE, "down", "/healthz", http=proto), 502, "bad_gateway",
                    "%s local service down" % t)
        t0 = time.monotonic()
        r = hub.proxy(SITE, "web", "/hang", http=proto, timeout=30)
        el = time.monotonic() - t0
        check_error(h, r, 504, "gateway_timeout", "%s service hangs (--upstream-timeout 2)" % t)
        h.check(1.5 <= el <= 10, "%s 504 came after about 2 s" % t, "%.1fs" % el)

        check_error(h, hub.api("POST", "/v1/sites", "{not json", http=proto), 400, "bad_request",
                    "%s POST /v1/sites with bad JSON" % t)
        check_error(h, hub.api("POST", "/v1/sites", {"name": "Bad Name!"}, http=proto), 400,
                    "bad_request", "%s POST /v1/sites with an invalid name" % t)
        check_error(h, hub.api("POST", "/v1/sites", {"name": SITE}, http=proto), 409,
                    "name_taken", "%s POST /v1/sites with a taken name" % t)
        # An over-long query-string value is refused, never cut to a valid
        # one (api.c ignored it, query.c cut it to 63 bytes: 0...01).
        for path in ("/v1/audit?limit=" + "0" * 30 + "5",
                     "/v1/enrollments?site=" + "a" * 80,
                     "/v1/queries?limit=" + "0" * 62 + "10"):
            check_error(h, hub.api("GET", path, http=proto), 400, "bad_request",
                        "%s GET %s... (over-long value)" % (t, path[:24]))
        check_error(h, hub.curl("/v1/sites", token=None, http=proto), 401, "unauthorized",
                    "%s GET /v1/sites without token" % t)
        check_error(h, hub.curl("/v1/sites", token="tth_" + "A" * 43, http=proto), 401,
                    "unauthorized", "%s GET /v1/sites with a wrong token" % t)
        check_error(h, hub.proxy(SITE, "web", "/healthz", token=None, http=proto), 401,
                    "unauthorized", "%s proxy without token" % t)
        r = hub.proxy("no-such-site", "web", "/healthz", token=None, http=proto)
        h.check(r.status == 401, "%s no token: 401 even for an unknown site (no hint of what "
                "exists)" % t, r)

    # A service answering an error is not the hub's error: it passes through.
    r = hub.proxy(SITE, "web", "/status/503")
    h.check(r.status == 503 and (r.json() or {}).get("status") == 503,
            "a service's own 503 passes through unchanged", r)

    # Still serving after all that.
    r = hub.curl("/healthz", token=None)
    h.check(r.status == 200 and r.body.strip() == b"ok", "hub still answers /healthz", r)
    for proto in ("1.1", "2"):
        r = hub.proxy(SITE, "web", "/echo?after=errors", http=proto)
        h.check(r.status == 200 and (r.json() or {}).get("query") == "after=errors",
                "HTTP/%s: proxying to the good site still works" % proto, r)
    s = hub.sites().get(SITE) or {}
    h.check(s.get("online") is True, "the site stayed online", s)
    h.check(sorted(s.get("services") or []) == ["down", "web"], "services lists both", s)
    h.check(hub.proc.alive() and site.proc.alive(), "hub and site still running")
    h.check(not site.proc.find(r"\bdisconnected\b"), "the tunnel never dropped")


if __name__ == "__main__":
    Harness.main("errors", main)
