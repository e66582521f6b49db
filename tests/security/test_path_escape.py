#!/usr/bin/env python3
# Attack suite: dot segments, percent-encoded dots and encoded slashes cannot leave a service's base path (issue 11 item 4).
# SPDX-License-Identifier: MIT
"""The site offers pref=http://127.0.0.1:PORT/base. Held means, over
HTTP/1.1 and HTTP/2 and for federated queries:
- every path that would climb above the service's root ("..", "%2e%2e",
  "%2e.", ".%2e", "..%2f", "..;/") is refused by the hub with 400
  {"error": "bad_request"} and the service receives nothing;
- encoded slashes and backslashes (%2F, %5C) are refused with 400 (docs/api.md);
- "." or ".." followed by ';' or an encoded ';', '?' or '#', and overlong
  UTF-8 escapes ("%c0%ae") are refused with 400;
- a raw '#' anywhere in the target ("/..#" is ".." to nginx and Node), and
  every other byte RFC 3986 does not allow raw in a path, sent over raw
  sockets (curl strips fragments), is refused with 400 and never reaches
  the service; so is a query path "/..#";
- a query holding '/' ("pref?a=/b") reaches the service with the query intact;
- paths that stay inside ("./", "//", "a/../b") reach the service normalised,
  as exactly the expected request-target under /base/;
- no request-target the service ever sees holds "..", "%2e" or "%2f";
- another user is served by the attacked site and another site is served.
"""
import json
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Harness  # noqa: E402
import idleconn as ic  # noqa: E402
import rawsvc  # noqa: E402
from h2raw import PREFACE, frame, hpack_indexed, hpack_new, split_frames  # noqa: E402

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
    "/..%3b/secret",
    "/..%3Bx/secret",
    "/.%3b/secret",
    "/..%3f",
    "/..%3Fx",
    "/..%23",
    "/.%23/secret",
    "/%c0%ae%c0%ae/secret",
    "/%C0%AE./secret",
    "/%e0%80%ae%e0%80%ae/secret",
    "/..%c0%af..%c0%afsecret",
]

# Sent over raw sockets, byte for byte (curl would strip a fragment or
# encode the bytes): the tail after /services/pref.
RAW_REFUSED = [b"/..#", b"/..#x", b"/..#/x", b"/a/..#/../..", b"/x#/../../secret",
               b"/a?q#/../..", b"/a\x80b", b"/caf\xc3\xa9", b"/a\xffb"] + \
    [b"/a%cb" % c for c in b'"<>[]^`{|}']

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
    ("/a/%252e%252e/b", "/base/a/%252e%252e/b"),  # "%2e" to the service, not "."
    ("/a;x/../b", "/base/b"),
    ("/caf%C3%A9", "/base/caf%C3%A9"),
    ("?a=/b", "/base/?a=/b"),  # a '/' in the query does not end the service's name
    ("?a=/b/../c&d=%2F", "/base/?a=/b/../c&d=%2F"),
    ("/x?a=[1]|{2}", "/base/x?a=[1]|{2}"),
]


def read_all(s):
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (OSError, socket.timeout):
        pass
    return out


def h1_raw(port, token, target):
    """GET target (bytes) over HTTP/1.1; (status, body)."""
    s = ic.CTX_H1.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                              server_hostname="127.0.0.1")
    s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
              token.encode() + b"\r\nConnection: close\r\n\r\n")
    out = read_all(s)
    s.close()
    head, _, body = out.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ")[1]), body
    except (IndexError, ValueError):
        return 0, out


H2_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def h2_raw(port, token, path):
    """GET path (bytes) as an HTTP/2 :path; (status, body). status is -1 if
    the hub reset the stream, 0 if it sent no answer it could read."""
    s = ic.CTX_H2.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                              server_hostname="127.0.0.1")
    block = b"\x82\x87" + hpack_indexed(4, path) + hpack_indexed(1, b"127.0.0.1") + \
        hpack_new("authorization", "Bearer " + token)
    s.sendall(PREFACE + ic.H2_SETTINGS + frame(1, 0x05, 1, block))
    s.settimeout(5)
    buf, status, body = b"", 0, b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
            done = False
            frames, buf = split_frames(buf)
            for ft, fl, sid, pl in frames:
                if sid != 1:
                    continue
                if ft == 1:  # HEADERS: nghttp2 sends a static-table :status indexed
                    while pl and 0x20 <= pl[0] < 0x40:
                        pl = pl[1:]  # dynamic table size update
                    status = H2_STATUS.get(pl[0] & 0x7F, 0) if pl and pl[0] & 0x80 else 0
                elif ft == 0:
                    body += pl
                elif ft == 3:
                    status = -1
                done = done or ft == 3 or (ft in (0, 1) and fl & 1)
            if done:
                break
    except (OSError, socket.timeout):
        pass
    s.close()
    return status, body


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
            r = hub.proxy(SITE, "pref", p, http=proto, extra=("--path-as-is", "-g"))
            got = pref.records(m)
            h.check(r.status == 200 and len(got) == 1 and got[0].ok and got[0].target == want,
                    "%s: the service saw exactly %s" % (tag, want),
                    (r, [g.target for g in got]))

    # Raw '#' and the other bytes RFC 3986 forbids in a path, byte for byte.
    base = ("/v1/sites/%s/services/pref" % SITE).encode()
    for proto, send in (("1.1", h1_raw), ("2", h2_raw)):
        for p in RAW_REFUSED:
            tag = "HTTP/%s raw %r" % (proto, p)
            m = pref.mark()
            st, body = send(hub.port, bob, base + p)
            try:
                j = json.loads(body)
            except ValueError:
                j = {}
            h.check(st == 400 and j.get("error") == "bad_request",
                    "%s: refused with 400 bad_request" % tag, (st, body[:200]))
            h.check(not pref.records(m), "%s: the service received nothing" % tag,
                    [g.target for g in pref.records(m)])
        m = pref.mark()
        st, body = send(hub.port, bob, base + b"/ok?a=/b")
        got = pref.records(m)
        h.check(st == 200 and [g.target for g in got] == ["/base/ok?a=/b"],
                "HTTP/%s raw control: /ok?a=/b reaches the service as /base/ok?a=/b" % proto,
                (st, body[:200], [g.target for g in got]))

    # A federated query's path obeys the same rule.
    r = hub.api("POST", "/v1/queries", {"service": "pref", "sites": [SITE], "path": "/ok"})
    h.check(r.status == 201, "control: a query with path /ok is accepted", r)
    h.check(h.wait_until(lambda: [g for g in pref.records() if g.target == "/base/ok"], 10),
            "control: the query reached the service as /base/ok")
    for p in ("/../secret", "/%2e%2e/secret", "/..%2fsecret", "/..#", "/..#x", "/a/..#/../..",
              "/a?x#/../..", "/..%3b/secret", "/..%23", "/%c0%ae%c0%ae/secret", "/a|b"):
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
           or "#" in g.target
           or not g.target.startswith("/")]
    h.check(not bad, "no request-target the service saw holds '..', %2e or %2f", bad)
    rawsvc.others_served(h, hub, bob, SITE, "web", "after the path attacks")
    h.check(hub.proc.alive() and site.proc.alive(), "hub and site still running")


if __name__ == "__main__":
    Harness.main("security_path_escape", main)
