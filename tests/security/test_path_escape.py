#!/usr/bin/env python3
# Attack suite: dot segments, percent-encoded dots and encoded slashes cannot leave a service's base path (issue 11 item 4).
# SPDX-License-Identifier: MIT
"""The site offers pref=http://127.0.0.1:PORT/base. Held means, over
HTTP/1.1 and HTTP/2 and for federated queries:
- every path that would climb above the service's root ("..", "%2e%2e",
  "%2e.", ".%2e", "..%2f", "..;/") is refused by the hub with 400
  {"error": "bad_request"} and the service receives nothing;
- encoded slashes and backslashes (%2F, %5C) are refused with 400 (docs/api.md);
- paths that stay inside ("./", "//", "a/../b") reach the service normalised,
  as exactly the expected request-target under /base/;
- no request-target the service ever sees holds "..", "%2e" or "%2f";
- another user is served by the attacked site and another site is served.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Harness  # noqa: E402
import rawsvc  # noqa: E402

SITE = "path-a"

REFUSED = [
    "/../secret",
    "/..",
    "/a/../../secret",
    "/%2e%2e/secret",
    "/%2E%2E/secret",
    "/%2e./secret",
    "/.%2e/secret",
    "/..%2fsecret",
    "/..%2Fsecret",
    "/./../secret",
    "//../secret",
    "/..;/secret",
    "/a%2Fb",
    "/a%2fb",
    "/a%5Cb",
    "/a%00b",
]

KEPT = [
    ("/./secret", "/base/secret"),
    ("//secret", "/base/secret"),
    ("/a//b", "/base/a/b"),
    ("/a/b/../c", "/base/a/c"),
    ("/a/%2e%2e/c", "/base/c"),
    ("/a/./", "/base/a/"),
    ("/a/..", "/base/"),
    ("/q?x=../../etc&y=%2e%2e%2f", "/base/q?x=../../etc&y=%2e%2e%2f"),
    ("/a%20b", "/base/a%20b"),
]


def main(h):
    pref = rawsvc.RawService()
    hub, site, bob = rawsvc.stage(h, SITE, {"pref": pref.url + "/base", "web": pref.url})

    for proto in ("1.1", "2"):
        for p in REFUSED:
            tag = "HTTP/%s %s" % (proto, p)
            m = pref.mark()
            r = hub.proxy(SITE, "pref", p, http=proto, extra=("--path-as-is",))
            j = r.json() or {}
            h.check(r.status == 400 and j.get("error") == "bad_request" and j.get("detail"),
                    "%s: refused with 400 bad_request" % tag, (r, r.body[:200] if r.body else ""))
            h.check(not pref.records(m), "%s: the service received nothing" % tag,
                    pref.records(m))
        for p, want in KEPT:
            tag = "HTTP/%s %s" % (proto, p)
            m = pref.mark()
            r = hub.proxy(SITE, "pref", p, http=proto, extra=("--path-as-is",))
            got = pref.records(m)
            h.check(r.status == 200 and len(got) == 1 and got[0].ok and got[0].target == want,
                    "%s: the service saw exactly %s" % (tag, want),
                    (r, [g.target for g in got]))

    # A federated query's path obeys the same rule.
    r = hub.api("POST", "/v1/queries", {"service": "pref", "sites": [SITE], "path": "/ok"})
    h.check(r.status == 201, "control: a query with path /ok is accepted", r)
    h.check(h.wait_until(lambda: [g for g in pref.records() if g.target == "/base/ok"], 10),
            "control: the query reached the service as /base/ok")
    for p in ("/../secret", "/%2e%2e/secret", "/..%2fsecret"):
        m = pref.mark()
        r = hub.api("POST", "/v1/queries", {"service": "pref", "sites": [SITE], "path": p})
        j = r.json() or {}
        h.check(r.status == 400 and j.get("error") == "bad_request"
                and "path" in j.get("detail", ""),
                "query path %s refused with 400" % p, r)
        h.check(not pref.records(m), "query path %s: the service received nothing" % p)

    bad = [g.target for g in pref.records()
           if g.target is None or ".." in g.target.split("?")[0]
           or "%2e" in g.target.split("?")[0].lower()
           or "%2f" in g.target.split("?")[0].lower()
           or not g.target.startswith("/")]
    h.check(not bad, "no request-target the service saw holds '..', %2e or %2f", bad)
    rawsvc.others_served(h, hub, bob, SITE, "web", "after the path attacks")
    h.check(hub.proc.alive() and site.proc.alive(), "hub and site still running")


if __name__ == "__main__":
    Harness.main("security_path_escape", main)
