#!/usr/bin/env python3
# Attack suite: a user cannot forge the forwarding headers a service sees, nor pass headers named in Connection (issue 11 item 5).
# SPDX-License-Identifier: MIT
"""The hub listens on 127.0.0.1 and [::1]. A user sends forged Forwarded,
X-Forwarded-*, X-Real-IP, True-Client-IP headers, and Connection naming
other headers. Held means, over HTTP/1.1 and HTTP/2, from IPv4 and IPv6:
- the service sees exactly one of each of the hub's forwarding headers:
  X-Forwarded-For the bare client address (no brackets, no port),
  X-Forwarded-Proto https, X-Forwarded-Host the Host the user addressed,
  Forwarded `for=ADDR;proto=https;host="HOST"` with an IPv6 ADDR quoted as
  "[v6]" (RFC 7239);
- none of the user's forged values and no header the user's Connection
  named reaches the service (nor Connection itself);
- another user is served by the attacked site and another site is served.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Harness, free_port  # noqa: E402
import rawsvc  # noqa: E402

SITE = "fwd-a"
FORGED = {
    "Forwarded": "for=6.6.6.6;proto=http;host=evil.example",
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Port": "80",
    "X-Forwarded-Prefix": "/evil",
    "X-Real-IP": "6.6.6.6",
    "True-Client-IP": "6.6.6.6",
    "X-Secret-Hop": "must-not-pass",
    "X-Other-Hop": "must-not-pass",
    "Connection": "X-Secret-Hop, x-other-hop",
    "X-Kept": "kept",
}
HUB_SET = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded")


def main(h):
    web = rawsvc.RawService()
    v6port = free_port()
    hub, site, bob = rawsvc.stage(h, SITE, {"web": web.url},
                                  hub_args=("--listen", "[::1]:%d" % v6port))

    for base, addr, fwd_for, host in (
            (hub.url, "127.0.0.1", "127.0.0.1", "127.0.0.1:%d" % hub.port),
            ("https://[::1]:%d" % v6port, "::1", '"[::1]"', "[::1]:%d" % v6port)):
        for proto in ("1.1", "2"):
            # Connection on HTTP/2 is malformed (RFC 9113 8.2.2): only HTTP/1.1 sends it.
            hdrs = dict(FORGED)
            if proto == "2":
                del hdrs["Connection"]
            tag = "HTTP/%s from %s" % (proto, addr)
            m = web.mark()
            r = h.curl(base + "/v1/sites/%s/services/web/fwd" % SITE, pin=hub.pin,
                       token=hub.token, http=proto, headers=hdrs)
            got = web.records(m)
            if not h.check(r.status == 200 and len(got) == 1 and got[0].ok,
                           "%s: one well-formed request reached the service" % tag, (r, got)):
                continue
            rec = got[0]
            want = {"x-forwarded-for": [addr], "x-forwarded-proto": ["https"],
                    "x-forwarded-host": [host],
                    "forwarded": ['for=%s;proto=https;host="%s"' % (fwd_for, host)]}
            for k in HUB_SET:
                h.check(rec.header(k) == want[k], "%s: %s is %s" % (tag, k, want[k]),
                        rec.header(k))
            for k in ("x-forwarded-port", "x-forwarded-prefix", "x-real-ip", "true-client-ip",
                      "connection"):
                h.check(not rec.header(k), "%s: the user's %s was dropped" % (tag, k),
                        rec.header(k))
            if proto == "1.1":
                h.check(not rec.header("x-secret-hop") and not rec.header("x-other-hop"),
                        "%s: headers named in Connection were dropped" % tag, rec.headers)
            h.check(rec.header("x-kept") == ["kept"], "%s: an ordinary header passes" % tag,
                    rec.header("x-kept"))
            h.check(b"6.6.6.6" not in rec.raw and b"evil" not in rec.raw,
                    "%s: no forged value reached the service" % tag, rec.raw[:600])

    # A Host that is no host[:port] is not repeated to the service.
    m = web.mark()
    r = hub.proxy(SITE, "web", "/fwd", headers={"Host": "a b\"c"})
    got = web.records(m)
    h.check(r.status == 200 and len(got) == 1 and not got[0].header("x-forwarded-host")
            and got[0].header("forwarded") == ["for=127.0.0.1;proto=https"],
            "an invalid Host gives no X-Forwarded-Host and no host= in Forwarded",
            [g.headers for g in got])

    rawsvc.others_served(h, hub, bob, SITE, "web", "after the forged headers")
    h.check(hub.proc.alive() and site.proc.alive(), "hub and site still running")


if __name__ == "__main__":
    Harness.main("security_forwarding_headers", main)
