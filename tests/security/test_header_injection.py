#!/usr/bin/env python3
# Attack suite: a user's Tether-Service / tether-* / x-tether-* headers cannot choose the service or speak for the hub (issue 11 item 3).
# SPDX-License-Identifier: MIT
"""Held means: whatever tether-* or x-tether-* headers a user sends, over
HTTP/1.1 and HTTP/2,
- the request reaches exactly the service its URL names ("web"), never the
  one a header names ("pref"), and never the site's internal hello;
- the service sees none of the user's tether-* headers, and X-Tether-User is
  the token's own name, once;
- a state-changing request's audit row names the URL's service;
- a federated query naming such a header is refused (400);
- another user is served by the attacked site and another site is served.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Harness  # noqa: E402
import rawsvc  # noqa: E402

SITE = "inj-a"


def main(h):
    web, pref = rawsvc.RawService(), rawsvc.RawService()
    hub, site, bob = rawsvc.stage(h, SITE, {"web": web.url, "pref": pref.url})

    r = hub.proxy(SITE, "web", "/baseline")
    base = web.records()
    h.check(r.status == 200 and len(base) == 1 and base[0].ok, "baseline request reaches web", r)
    me = base[0].header("x-tether-user") if base else []

    attacks = [
        ("Tether-Service: pref", {"Tether-Service": "pref"}, ()),
        ("tether-service: pref (lower case)", {"tether-service": "pref"}, ()),
        ("TETHER-SERVICE: web twice, pref", {"TETHER-SERVICE": "pref"},
         ("-H", "Tether-Service: web")),
        ("X-Tether-User spoof and tether-error", {"X-Tether-User": "admin",
                                                 "Tether-Error": "forged",
                                                 "Tether-Anything": "x",
                                                 "X-Tether-Query": "q"}, ()),
    ]
    for proto in ("1.1", "2"):
        for what, hdrs, extra in attacks:
            tag = "HTTP/%s %s" % (proto, what)
            mw, mp = web.mark(), pref.mark()
            r = hub.proxy(SITE, "web", "/who", http=proto, headers=hdrs, extra=extra)
            got_w, got_p = web.records(mw), pref.records(mp)
            h.check(r.status == 200 and len(got_w) == 1 and not got_p,
                    "%s: the request reached web only" % tag,
                    (r, got_w, got_p))
            if got_w:
                rec = got_w[0]
                h.check(rec.ok and rec.target == "/who", "%s: web saw GET /who" % tag, rec)
                leaked = [k for k, _ in rec.headers
                          if k.lower().startswith("tether-")
                          or (k.lower().startswith("x-tether-") and k.lower() != "x-tether-user")]
                h.check(not leaked, "%s: no user tether-* header reached the service" % tag,
                        leaked)
                h.check(rec.header("x-tether-user") == me and me,
                        "%s: X-Tether-User is the token's name, once" % tag,
                        (rec.header("x-tether-user"), me))

        # An empty Tether-Service with the hello's path once returned the
        # site's internal hello: now it is just a path of "web".
        mw = web.mark()
        r = hub.proxy(SITE, "web", "/.tether/hello", http=proto, extra=("-H", "Tether-Service;"))
        got = web.records(mw)
        body = r.body or b""
        h.check(b"agent_version" not in body and r.status == 200 and len(got) == 1
                and got[0].target == "/.tether/hello",
                "HTTP/%s empty Tether-Service + /.tether/hello: web answers, not the hello" % proto,
                (r, body[:200], got))

        # A state-changing request is audited under the URL's service.
        mw, mp = web.mark(), pref.mark()
        r = hub.proxy(SITE, "web", "/change", http=proto, method="POST", data=b"x",
                      headers={"Tether-Service": "pref"})
        h.check(r.status == 200 and len(web.records(mw)) == 1 and not pref.records(mp),
                "HTTP/%s POST with Tether-Service: pref reached web" % proto, r)
    rows = hub.ctl_json("audit", "--limit", "50").get("entries", [])
    proxied = [e for e in rows if e.get("action") == "proxy"]
    h.check(len(proxied) == 2 and all(e.get("target") == SITE + "/web" for e in proxied),
            "audit rows name web, the service that was reached", proxied)
    h.check(not pref.records(), "pref never received anything", pref.records())

    # A federated query may not carry them either (400 at submission).
    r = hub.api("POST", "/v1/queries", {"service": "web", "sites": [SITE], "path": "/q",
                                        "headers": {"X-Fine": "1"}})
    h.check(r.status == 201, "control: a query with an ordinary header is accepted", r)
    for k in ("Tether-Service", "tether-anything", "X-Tether-User", "Forwarded", "X-Real-IP"):
        r = hub.api("POST", "/v1/queries", {"service": "web", "sites": [SITE], "path": "/q",
                                            "headers": {k: "pref"}})
        j = r.json() or {}
        h.check(r.status == 400 and j.get("error") == "bad_request"
                and "set by the hub" in j.get("detail", ""),
                "a query with header %s is refused with 400" % k, r)

    rawsvc.others_served(h, hub, bob, SITE, "web", "after the header attacks")
    h.check(hub.proc.alive() and site.proc.alive(), "hub and site still running")


if __name__ == "__main__":
    Harness.main("security_header_injection", main)
