#!/usr/bin/env python3
# Attack: slowloris before and after the TLS handshake; bytes that keep trickling never buy more time.
# SPDX-License-Identifier: MIT
"""Held means:
- before TLS: a connection that sends nothing, or its ClientHello one byte
  every 0.2 s, is closed by handshake_timeout;
- after TLS: a first HTTP/1.1 head or an HTTP/2 HEADERS frame trickled one
  byte every 0.2 s is closed by request_head_timeout (the HTTP/1.1 one with a
  408), counted from the handshake;
- on a keep-alive connection, a second head trickled the same way is closed
  by request_head_timeout counted from its first byte, long before the
  connection's idle_timeout;
- meanwhile a user at another address is served by the site, and so is one
  after the attack.
The clocks compared are the hub's configured deadlines, with slack for a
busy machine; nothing here depends on how fast the machine is."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Harness  # noqa: E402
import idleconn as ic  # noqa: E402

HANDSHAKE_T = 3.0
HEAD_T = 2.0
IDLE_T = 20.0
N_EACH = 20
SLACK = 6.0  # scheduling slack on a busy machine, added to every deadline


def main(h):
    ic.raise_nofile()
    conf = {"handshake_timeout": HANDSHAKE_T, "request_head_timeout": HEAD_T,
            "idle_timeout": IDLE_T, "max_user_conns_per_ip": 100}
    hub = ic.start_hub(h, conf, None)
    h.add_site(hub, "s1")
    port = hub.port
    w = ic.Watcher()

    # A keep-alive user whose second head trickles, from 1 s after its answer.
    ka = ic.KeepAlive.open(port, src="127.0.0.4")
    st, _ = ka.get("/healthz")
    h.check(st == 200, "keep-alive connection answered its first request", st)
    kc = ic.Conn("second-head", ka.sock, "127.0.0.4", time.monotonic() + 1.0)
    kc.payload = ic.TRICKLE_HEAD
    kc.start_at = kc.opened
    ka.sock.setblocking(False)
    w.add(kc)

    hello = ic.client_hello()
    h.check(len(hello) > 100, "a real ClientHello to trickle (%d bytes)" % len(hello))
    for kind in ("raw", "rawtrickle", "trickle", "h2trickle"):
        for _ in range(N_EACH):
            c = ic.open_conn(port, kind, src="127.0.0.2", hello=hello)
            if c is None:
                h.check(False, "%s: the hub accepted the connection" % kind)
                break
            w.add(c)

    st, body = ic.https_get(port, "/v1/sites/s1/services/web/echo?during=1", hub.token,
                            src="127.0.0.3")
    h.check(st == 200, "a user at another address is served during the attack", (st, body[:200]))
    w.run(HANDSHAKE_T + HEAD_T + 2 * SLACK, trickle_every=0.2)
    h.check(not w.open, "every slow connection was closed (%d still open: %s)"
            % (len(w.open), sorted(set(c.kind for c in w.open))))
    w.close_all()

    for kind, limit in (("raw", HANDSHAKE_T), ("rawtrickle", HANDSHAKE_T), ("trickle", HEAD_T),
                        ("h2trickle", HEAD_T), ("second-head", HEAD_T)):
        mine = [c for c in w.done if c.kind == kind]
        if not mine:
            h.check(False, "%s: connections were closed" % kind)
            continue
        ages = sorted(c.closed - c.opened for c in mine)
        sent = min(c.pos for c in mine)
        h.check(ages[0] >= 0.8 * limit and ages[-1] <= limit + SLACK,
                "%s (%d): closed after %.1f..%.1f s, each having sent %d bytes by then, "
                "deadline %.1f s" % (kind, len(mine), ages[0], ages[-1], sent, limit))
    for kind in ("trickle", "second-head"):
        mine = [c for c in w.done if c.kind == kind]
        h.check(mine and all(c.got.startswith(b"HTTP/1.1 408 ") for c in mine),
                "%s: the hub answered 408 Request Timeout" % kind,
                [c.got[:40] for c in mine][:2])

    st, _ = ic.https_get(port, "/v1/sites/s1/services/web/echo?after=1", hub.token,
                         src="127.0.0.2")
    h.check(st == 200, "the attacker's address is served normally afterwards", st)


Harness.main("security_slowloris", main)
