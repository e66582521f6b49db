#!/usr/bin/env python3
# Integration: hubs of one cluster hold peer links to each other (TLS 1.3, ALPN tether-peer/1, mutual pins from the hubs table, HTTP/2); another cluster's hub and a site key are refused in the handshake; a killed peer is noticed and the link comes back.
# SPDX-License-Identifier: MIT
import os
import re
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, openssl_pin, tls_connect  # noqa: E402

PEER_ALPN = "tether-peer/1"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def peer_handshake(h, hub, key_dir, key_name):
    """Opens tether-peer/1 to hub with the key key_dir/key_name.{crt,key}.
    Returns (alpn, first frame type from the server or the error text)."""
    try:
        s = tls_connect(hub.port, alpn=(PEER_ALPN,), cert=os.path.join(key_dir, key_name + ".crt"),
                        key=os.path.join(key_dir, key_name + ".key"))
    except (OSError, ssl.SSLError) as e:
        return None, "handshake: %s" % e
    try:
        alpn = s.selected_alpn_protocol()
        # The client's preface and an empty SETTINGS; the server's first frame
        # must be its SETTINGS (type 4) if it is HTTP/2 and took the key. In
        # TLS 1.3 a refused client certificate shows here, as an alert.
        s.sendall(H2_PREFACE + struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0))
        s.settimeout(5)
        hdr = b""
        while len(hdr) < 9:
            chunk = s.recv(9 - len(hdr))
            if not chunk:
                return alpn, "closed"
            hdr += chunk
        return alpn, hdr[3]
    except (OSError, ssl.SSLError) as e:
        return alpn, "read: %s" % e
    finally:
        s.close()


def main(h):
    h.pg_only("peer links join the hubs of one PostgreSQL database")
    a, b = h.hub_pair()

    # Each hub dials the other: one link per ordered pair, each side pinned.
    h.check(a.peer_link_up(b, "out") is not None and b.peer_link_up(a, "in") is not None,
            "hub A dials hub B: A logs its link out with B's pin, B the link in with A's")
    h.check(b.peer_link_up(a, "out") is not None and a.peer_link_up(b, "in") is not None,
            "hub B dials hub A: the other ordered pair")
    time.sleep(0.5)
    n_out = len(re.findall(r"\bpeer_link_up\b.*dir=out", a.proc.text()))
    h.check(n_out == 1, "hub A holds one link out to B, not one per tick (%d)" % n_out)
    links = a.peer_links()
    h.check(links == {"out": 1, "in": 1}, "GET /metrics on hub A: tether_peer_links out 1, in 1",
            links)

    # What the link is: TLS 1.3 with tether-peer/1, then HTTP/2. A's own key
    # opens it by hand.
    mark = b.proc.mark()
    alpn, frame = peer_handshake(h, b, a.dir, "hub")
    h.check(alpn == PEER_ALPN and frame == 4,
            "with hub A's key, tether-peer/1 is selected and hub B speaks HTTP/2 (SETTINGS first)",
            (alpn, frame))
    h.check(b.peer_link_up(a, "in", since=mark) is not None,
            "hub B accepted that connection as a link from hub A (its pin)")

    # A hub of another cluster (its own database and key) is refused in the
    # handshake, and so is a site's key.
    x = h.hub("hub-x")
    x.init()
    mark = b.proc.mark()
    alpn, frame = peer_handshake(h, b, x.dir, "hub")
    h.check(frame != 4, "a hub of another cluster gets no HTTP/2 session on hub B", (alpn, frame))
    h.check(b.proc.wait_log(r"\bpeer_refused\b.*pin=%s reason=\"?not a hub of this cluster" %
                            re.escape(x.pin), 5, since=mark, fatal=False) is not None,
            "hub B logs peer_refused for the other cluster's hub key")
    h.check(re.search(r"peer_link_up.*pin=%s" % re.escape(x.pin), b.proc.text()) is None,
            "no link from the other cluster's hub")

    site = h.site("s1", a)
    site.enroll(a.site_add("s1"))
    site_pin = openssl_pin(os.path.join(site.dir, "site.crt"))
    mark = b.proc.mark()
    alpn, frame = peer_handshake(h, b, site.dir, "site")
    h.check(frame != 4, "a site's key on tether-peer/1 gets no HTTP/2 session", (alpn, frame))
    h.check(b.proc.wait_log(r"\bpeer_refused\b.*pin=%s reason=\"?not a hub of this cluster" %
                            re.escape(site_pin or ""), 5, since=mark, fatal=False) is not None,
            "hub B logs peer_refused for the site's key (its pin)")

    # A killed peer is noticed at once (its sockets close), and the link comes
    # back when it restarts.
    mark = a.proc.mark()
    t0 = time.monotonic()
    b.proc.kill9()
    down = a.proc.wait_log(r"\bpeer_link_down\b.*dir=out", 5, since=mark,
                           fatal=False)
    h.info("peer down noticed in %.2f s" % (time.monotonic() - t0))
    h.check(down is not None, "hub A notices that hub B died (peer_link_down)")
    h.check(h.wait_until(lambda: a.peer_links() == {"out": 0, "in": 0}, 2),
            "and counts no link up in /metrics", a.peer_links())
    mark = a.proc.mark()
    b.start()
    t0 = time.monotonic()
    h.check(a.peer_link_up(b, "out", since=mark) is not None,
            "hub B restarted: hub A's link to it comes back")
    h.info("link back %.2f s after the restart" % (time.monotonic() - t0))
    h.check(b.peer_link_up(a, "out") is not None, "and the restarted hub B dials hub A again")


if __name__ == "__main__":
    Harness.main("test_cluster_peer", main, tools=("curl", "openssl"))
