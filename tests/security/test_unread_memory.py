#!/usr/bin/env python3
# Attack: users that ask for many responses small enough to end at the site, and never read them.
# SPDX-License-Identifier: MIT
"""Unread complete responses (issue 11 item 1, review of the first fix).

A 1 MiB response fits the tunnel's stream window: the site sends all of it
and its stream ends, but the bytes stay in the hub until the user reads
them. "Held" means:
  - HTTP/2: one token, 3 connections that grant no window at all
    (SETTINGS_INITIAL_WINDOW_SIZE = 0), 128 GETs of 1 MiB each, sent 16 a
    second: the hub's RSS grows by at most the per-token bound written in
    docs/protocol.md (128 stalled x 1 MiB + 128 others x 512 KiB = 192 MiB),
    and the streams past the caps are refused (429) or reset;
  - HTTP/1.1: 150 pipelined 1 MiB GETs on one connection that reads
    nothing: a few go to the site, not all of them (the hub parses the
    next request only once the output went below its high-water mark);
  - afterwards another user is served and the hub runs.
Under ASan the allocator's quarantine makes RSS meaningless: the RSS checks
are informative there, the refusals are still checked.
"""
import os
import re
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import Fatal, Harness  # noqa: E402
from h2stall import Stall, make_user_token, settle_rss  # noqa: E402
from idleconn import has_asan  # noqa: E402

SITE = "unread"
ONE_MIB = 1 << 20
CONNS, STREAMS, BATCH = 3, 128, 16
TOKEN_BOUND_MIB = 128 * 1 + 128 * 0.5  # docs/protocol.md, "Flow control"
SLACK_MIB = 32  # allocator and TLS buffers


def h1_small_window(port):
    """HTTP/1.1 over TLS with a small receive buffer: what the hub holds for
    the client stays in the hub, not in the kernel's socket buffers."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", port))
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def metric(hub, name):
    r = hub.curl("/metrics")
    m = re.search(r"^%s (\d+)$" % re.escape(name), r.body.decode(), re.M)
    if r.status != 200 or m is None:
        raise Fatal("/metrics has no %s: %r" % (name, r))
    return int(m.group(1))


def main(h):
    hub, site, svc = h.setup(site_name=SITE)
    asan = has_asan(hub.proc.pid)
    tok = make_user_token(hub, "reader")
    for _ in range(2):  # warm up: TLS, tunnel buffers, allocator arenas
        r = hub.proxy(SITE, "web", "/bytes/%d" % ONE_MIB, token=tok, timeout=30)
        h.check(r.status == 200 and len(r.body) == ONE_MIB, "warm-up download", r)
    rss0 = settle_rss(hub.proc, 10.0, 512)

    # HTTP/1.1: 150 pipelined 1 MiB GETs, nothing read.
    path = "/v1/sites/%s/services/web/bytes/%d" % (SITE, ONE_MIB)
    before = metric(hub, "tether_proxy_requests_total")
    s = h1_small_window(hub.port)
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n"
           % (path, tok)).encode()
    s.sendall(req * 150)
    time.sleep(3.0)
    rss3 = settle_rss(hub.proc, 10.0, 512)
    held1 = (rss3 - rss0) / 1024.0
    went = metric(hub, "tether_proxy_requests_total") - before
    h.info("HTTP/1.1: 150 pipelined unread 1 MiB responses: %d went to the site; hub RSS %d -> "
           "%d KiB (+%.1f MiB)" % (went, rss0, rss3, held1))
    # The responses fill the kernel's socket buffers, then the connection's
    # output (1 MiB high-water mark); no further request is parsed while
    # nothing is read. (On loopback the kernel takes ~3 MiB, so the code
    # before the fix stopped at 5 too: this is a sanity check.)
    h.check(1 <= went <= 8 and (asan or held1 <= 8),
            "HTTP/1.1: no further pipelined request while the output stays full (%d of 150 "
            "went to the site, +%.1f MiB)" % (went, held1))
    s.close()
    time.sleep(1.0)
    rss0 = settle_rss(hub.proc, 10.0, 512)

    # HTTP/2: 3 connections x 128 unread 1 MiB responses, 16 requests a second.
    conns = [Stall(hub.port, tok, path, 0, init_window=0) for _ in range(CONNS)]
    for _ in range(STREAMS // BATCH):
        t_end = time.monotonic() + 1.0
        for c in conns:
            c.more(BATCH)
        while time.monotonic() < t_end:
            for c in conns:
                c.poll(0.05)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(len(c.status) for c in conns) < CONNS * STREAMS:
        for c in conns:
            c.poll(0.1)
    rss1 = settle_rss(hub.proc, 10.0, 512)
    # Refused (429: "other") or reset after their head, past the caps.
    refused = sum(1 for c in conns for sid in c.sids
                  if c.status.get(sid) in ("other", "reset") or sid in c.resets)
    ok = sum(1 for c in conns for sid in c.sids
             if c.status.get(sid) == "200" and sid not in c.resets)
    silent = CONNS * STREAMS - sum(len(c.status) for c in conns)
    held = (rss1 - rss0) / 1024.0
    bound = TOKEN_BOUND_MIB + SLACK_MIB
    h.info("HTTP/2: %d answered 200, %d refused or reset, %d unanswered; hub RSS %d -> %d KiB (+%.1f MiB; "
           "bound %.0f MiB + %d slack)%s" % (ok, refused, silent, rss0, rss1, held, TOKEN_BOUND_MIB,
                                            SLACK_MIB, " [ASan: informative]" if asan else ""))
    h.check(refused >= CONNS * STREAMS - 256,
            "HTTP/2: past the token's caps the hub refuses (429) or resets unread responses",
            "200=%d refused/reset=%d" % (ok, refused))
    if not asan:
        h.check(held <= bound, "HTTP/2: hub RSS grew %.1f MiB <= %.0f MiB (the per-token bound)"
                % (held, bound))
    r = hub.proxy(SITE, "web", "/bytes/%d" % ONE_MIB, token=hub.token, timeout=30)
    h.check(r.status == 200 and len(r.body) == ONE_MIB, "another user is served meanwhile", r)
    for c in conns:
        c.close()

    h.check(hub.proc.alive(), "hub still running")
    r = hub.proxy(SITE, "web", "/bytes/%d" % ONE_MIB, token=tok, timeout=30)
    h.check(r.status == 200 and len(r.body) == ONE_MIB, "the token is served again afterwards", r)


if __name__ == "__main__":
    Harness.main("unread_memory", main)
