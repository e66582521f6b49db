#!/usr/bin/env python3
# Attack suite: the site routes only on what the hub sets, even if a request names its service twice or climbs out of the base path.
# SPDX-License-Identifier: MIT
"""Defence in depth behind issue 11 items 3 and 4. The hub drops a user's
tether-* headers, but the site must not rely on that alone: a hub that let
one through would add a second tether-service. Here a stand-in hub (this
test, holding the real hub's key, so the site's pin check passes) speaks
HTTP/2 to a real tether-site and sends what a careless hub could.

Held means:
- a request with two tether-service headers, or whose tether-service and
  :authority disagree, is refused (400) and reaches no service;
- an empty tether-service with the path /.tether/hello gets no hello (only a
  request that names no service at all, as the hub's own hello does, gets it);
- a path that climbs out of the base ("/../", "%2e%2e") is refused (400) by
  the site itself; one that stays inside reaches the service normalised;
- an ordinary request is served, by the service its headers name.
"""
import os
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Fatal, Harness  # noqa: E402
import rawsvc  # noqa: E402
from h2raw import PREFACE, frame, hpack_block, take_frame  # noqa: E402

SITE = "route-a"
# First byte of a response header block when nghttp2 sends :status from the
# HPACK static table (RFC 7541 appendix A).
STATUS_BYTE = {0x88: 200, 0x89: 204, 0x8c: 400, 0x8d: 404, 0x8e: 500}


class StandIn:
    """Accepts the site's tunnel on the hub's port with the hub's key and
    plays the HTTP/2 client."""

    def __init__(self, h, hub):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(os.path.join(hub.dir, "hub.crt"),
                                 os.path.join(hub.dir, "hub.key"))
        self.ctx.set_alpn_protocols(["tether/1"])
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", hub.port))
        self.ls.listen(4)
        self.s = None
        self.buf = b""
        self.next_sid = 1

    def accept(self, timeout=15):
        self.ls.settimeout(timeout)
        raw, _ = self.ls.accept()
        raw.settimeout(timeout)
        self.s = self.ctx.wrap_socket(raw, server_side=True)
        if self.s.selected_alpn_protocol() != "tether/1":
            raise Fatal("the site did not ask for ALPN tether/1")
        self.s.sendall(PREFACE + frame(4, 0, 0))

    def _frames(self, deadline):
        while time.monotonic() < deadline:
            while True:
                f, self.buf = take_frame(self.buf)
                if f is None:
                    break
                ftype, flags, sid, payload = f
                if ftype == 4 and not flags & 1:
                    self.s.sendall(frame(4, 1, 0))  # SETTINGS ACK
                elif ftype == 6 and not flags & 1:
                    self.s.sendall(frame(6, 1, 0, payload))  # PING ACK
                yield ftype, flags, sid, payload
            self.s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return
            if not d:
                return
            self.buf += d

    def request(self, headers, timeout=10):
        """Sends one body-less request; returns its status (from the first
        header byte), "reset", or None when nothing came back."""
        sid = self.next_sid
        self.next_sid += 2
        self.s.sendall(frame(1, 0x5, sid, hpack_block(headers)))
        for ftype, flags, fsid, payload in self._frames(time.monotonic() + timeout):
            if fsid != sid:
                continue
            if ftype == 3:
                return "reset"
            if ftype == 1:
                # PADDED (0x8) adds a length byte in front, PRIORITY (0x20) five.
                block = payload[(1 if flags & 0x8 else 0) + (5 if flags & 0x20 else 0):]
                return STATUS_BYTE.get(block[0], "other:%#x" % block[0])
        return None


def req(path, service=None, authority=None, extra=()):
    hd = [(":method", "GET"), (":scheme", "http"), (":path", path)]
    if authority is not None:
        hd.insert(2, (":authority", authority))
    if service is not None:
        hd.append(("tether-service", service))
    return hd + list(extra)


def main(h):
    web, pref = rawsvc.RawService(), rawsvc.RawService()
    hub = h.hub()
    hub.init()
    hub.start()
    site = h.site(SITE, hub)
    site.enroll(hub.site_add(SITE))
    hub.proc.stop()
    standin = StandIn(h, hub)
    site.start({"web": web.url + "/base", "pref": pref.url}, wait=False)
    standin.accept()

    cases = [
        ("control: the hub's hello (no service named)", req("/.tether/hello", None, "site"),
         200, None),
        ("control: an ordinary request to web", req("/ok", "web", "web"), 200, "/base/ok"),
        ("two tether-service headers (web, pref)",
         req("/x", "web", "web", [("tether-service", "pref")]), 400, ""),
        ("two tether-service headers (pref, web)",
         req("/x", "pref", "web", [("tether-service", "web")]), 400, ""),
        ("tether-service pref, :authority web", req("/x", "pref", "web"), 400, ""),
        ("empty tether-service with /.tether/hello", req("/.tether/hello", "", "web"), 400, ""),
        ("empty tether-service and :authority with /.tether/hello",
         req("/.tether/hello", "", ""), (404, "reset"), ""),  # nghttp2 resets an empty :authority
        ("path /../secret", req("/../secret", "web", "web"), 400, ""),
        ("path /%2e%2e/secret", req("/%2e%2e/secret", "web", "web"), 400, ""),
        ("path /..%2fsecret", req("/..%2fsecret", "web", "web"), 400, ""),
        ("path /./a//b/../c stays inside", req("/./a//b/../c", "web", "web"), 200, "/base/a/c"),
    ]
    for what, headers, want, target in cases:
        mw, mp = web.mark(), pref.mark()
        st = standin.request(headers)
        time.sleep(0.1)
        got = [g.target for g in web.records(mw) + pref.records(mp)]
        ok = st in want if isinstance(want, tuple) else st == want
        h.check(ok, "%s: the site answers %s" % (what, want), st)
        if target is not None:
            h.check(got == ([target] if target else []),
                    "%s: %s" % (what, ("the service saw exactly " + target) if target
                                else "no service received anything"), got)
    h.check(not pref.records(), "pref never received anything", pref.records())
    h.check(site.proc.alive(), "the site still runs")
    standin.s.close()
    standin.ls.close()


if __name__ == "__main__":
    Harness.main("security_site_routing", main)
