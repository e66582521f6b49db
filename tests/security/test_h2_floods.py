#!/usr/bin/env python3
# Attack suite: HTTP/2 floods against the hub's user side (TLS + ALPN h2), with raw frames.
# SPDX-License-Identifier: MIT
"""HTTP/2 floods on the users' port.

An attacker with a valid user token for site A speaks raw HTTP/2 to the
hub and tries, one class at a time:

  rapid reset     HEADERS then RST_STREAM, 20,000 times (CVE-2023-44487)
  continuation    HEADERS without END_HEADERS, then CONTINUATION frames
                  without end (CVE-2024-27316 / CVE-2024-28182)
  hpack bomb      a 3.5 KB header put in the dynamic table, then header
                  blocks that reference it 16,000 times each (56 MB decoded
                  per block), 100 streams
  settings        one SETTINGS frame with 1,000 entries; then 2,000,000
                  SETTINGS frames from a peer that never reads the ACKs
  ping            2,000,000 PINGs from a peer that never reads the answers
  streams         128 requests held open (max_requests_per_conn) and 128
                  CONNECT streams held open on one connection, then 100
                  more requests, beyond MAX_CONCURRENT_STREAMS (256)

"Held" means, for every class: the hub closes the attacker's connection
(GOAWAY or TCP close), refuses the excess (RST_STREAM), or, for a peer that
never reads, stops reading from it, each within bounded time; its RSS grows by at most RSS_LIMIT_MIB during the
attack; it is alive afterwards and answers /healthz; and meanwhile another
user, with his own token and connections, fetches 256 KiB from site A and
from site B (another site) over HTTP/2 and HTTP/1.1 within
max(10 x baseline, baseline + 5 s), the baseline measured in this run.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2kit as k  # noqa: E402
from h2kit import Bystanders, Fatal, Harness, RssWatch  # noqa: E402
from bytestreams import TcpService, echo  # noqa: E402

A, B = "flood-a", "flood-b"
RSS_LIMIT_MIB = 64
CLOSE_WAIT_S = 15.0


def run_case(h, hub, by, name, attack):
    """Runs attack(state) in a thread while the bystanders fetch; then checks
    the hub's life and RSS. Returns the attack's state dict."""
    st = {"started": threading.Event(), "error": None}

    def body():
        try:
            attack(st)
        except Exception as e:  # reported in the main thread
            st["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            st["started"].set()
            st["done"] = True

    rss0 = hub.proc.rss_kib() or 0
    watch = RssWatch(hub.proc)
    watch.start()
    t0 = time.monotonic()
    th = threading.Thread(target=body, daemon=True)
    th.start()
    st["started"].wait(20)
    by.check(name)
    th.join(60)
    peak = watch.stop()
    h.check(not th.is_alive(), "%s: the attack finished within 60 s" % name)
    h.check(st["error"] is None, "%s: the attack ran as written" % name, st["error"])
    h.check(hub.proc.alive(), "%s: the hub is alive afterwards" % name)
    r = hub.curl("/healthz")
    h.check(r.status == 200, "%s: the hub answers /healthz afterwards" % name, r)
    grow = (peak - rss0) / 1024.0
    h.check(grow <= RSS_LIMIT_MIB, "%s: hub RSS grew %.1f MiB (%d -> peak %d KiB), at most %d"
            % (name, grow, rss0, peak, RSS_LIMIT_MIB))
    h.info("%s: %.1f s, %s" % (name, time.monotonic() - t0, st.get("figures", "")))
    return st


def send_until_closed(c, st, chunk, per, limit):
    """Sends chunk() (per units each) until limit units are out or the peer
    has closed; returns the units sent."""
    sent = 0
    while sent < limit:
        if not c.send(chunk()):
            break
        sent += per
        st["started"].set()
        if c.goaway is not None or c.closed_at is not None:
            break
    return sent


def main(h):
    k.need_libs()
    k.quiet_asan_quarantine(h)
    hub = h.hub()
    hub.init()
    hub.start()
    hold = TcpService(echo)
    site_a, svc_a = h.add_site(hub, A, extra_services={"hold": hold.url})
    site_b, svc_b = h.add_site(hub, B)
    mallory = k.make_token(hub, "mallory", "--role", "user", "--sites", A)
    alice = k.make_token(hub, "alice", "--role", "user", "--sites", "*")
    by = Bystanders(h, hub, alice, (A, B))
    by.baseline()

    def req(path, method="GET"):
        return k.request_headers(hub, "/v1/sites/%s/services/web%s" % (A, path), mallory, method)

    # Sanity: the raw client gets an answer when it behaves.
    c = k.user_h2(hub.port)
    c.start_reader()
    c.send(c.headers(1, req("/bytes/16")))
    ok = c.wait_for(lambda c: any(f[0] == k.DATA and f[1] & k.END_STREAM
                                  for f in c.frames if f[2] == 1), 10)
    h.check(ok, "the raw HTTP/2 client is served when it behaves (GET /bytes/16)")
    c.close()

    # --- rapid reset ---------------------------------------------------------
    def rapid_reset(st):
        c = k.user_h2(hub.port)
        c.keep = False
        c.start_reader()
        hdrs = req("/slow?ms=3000")
        sids = iter(range(1, 1 << 31, 2))
        t0 = time.monotonic()
        sent = send_until_closed(c, st, lambda: b"".join(
            c.headers(sid, hdrs) + k.rst(sid) for sid in (next(sids) for _ in range(100))),
            100, 20000)
        st["closed"] = c.wait_closed(CLOSE_WAIT_S)
        st["sent"] = sent
        st["goaway"] = c.goaway
        st["figures"] = "%d HEADERS+RST pairs sent, GOAWAY %r after %.2f s" % (
            sent, c.goaway and c.goaway[:2], time.monotonic() - t0)
        c.close()

    st = run_case(h, hub, by, "rapid reset", rapid_reset)
    h.check(st.get("closed") and st.get("sent", 0) < 20000,
            "rapid reset: the hub cut the connection before 20,000 resets (GOAWAY/close)",
            st.get("figures"))
    # What the hub started at the site for those streams is cancelled there.
    idle = h.wait_until(lambda: (svc_a.stats() or {}).get("inflight") == 1, 15)  # /stats
    h.check(idle, "rapid reset: nothing the attacker started is still running at site A",
            svc_a.stats())

    # --- CONTINUATION without end --------------------------------------------
    def continuation(st):
        c = k.user_h2(hub.port)
        c.keep = False
        c.start_reader()
        c.send(c.headers(1, req("/bytes/16"), end_headers=False))
        # Never-indexed literals: the filler does not touch the HPACK table.
        pad = c.block([("x-pad", "p" * 15000, True)])
        cont = k.frame(k.CONTINUATION, 0, 1, pad)
        t0 = time.monotonic()
        sent = send_until_closed(c, st, lambda: cont, 1, 10000)
        st["closed"] = c.wait_closed(CLOSE_WAIT_S)
        st["sent"] = sent
        st["figures"] = "%d CONTINUATION frames (%.0f MB) sent, GOAWAY %r after %.2f s" % (
            sent, sent * len(cont) / 1e6, c.goaway and c.goaway[:2], time.monotonic() - t0)
        c.close()

    st = run_case(h, hub, by, "continuation flood", continuation)
    h.check(st.get("closed") and st.get("sent", 0) < 10000,
            "continuation flood: the hub closed the connection before 10,000 frames (150 MB)",
            st.get("figures"))

    # --- HPACK bomb ------------------------------------------------------------
    def hpack_bomb(st):
        c = k.user_h2(hub.port)
        c.start_reader()
        # A 3.5 KB value goes into the (4096-byte) dynamic table with the
        # request's other headers; stream 1 is a normal request carrying it.
        c.send(c.headers(1, req("/bytes/16") + [("x-bomb", "b" * 3500)]))
        entries = list(c.enc.header_table.dynamic_entries)
        idx = next(i for i, e in enumerate(entries) if e[0] == b"x-bomb") + 62
        if idx >= 127:
            raise Fatal("x-bomb not at a one-byte index (%d)" % idx)
        ref = bytes([0x80 | idx]) * 16000
        t0 = time.monotonic()
        n = 100
        for i in range(n):
            sid = 3 + 2 * i
            if not c.send(k.frame(k.HEADERS, k.END_STREAM | k.END_HEADERS, sid,
                                  c.block(req("/bytes/16")) + ref)):
                break
            st["started"].set()
        # A PING after the bombs: its answer says the hub got through them.
        c.send(k.frame(k.PING, 0, 0, b"afterbmb"))
        pong = c.wait_for(lambda c: c.goaway is not None or c.closed_at is not None or any(
            f[0] == k.PING and f[1] & k.ACK and f[3] == b"afterbmb" for f in c.frames), 30)
        # Stream 1 went to site A and back: it may end after the PING answer.
        c.wait_for(lambda c: c.closed_at is not None or any(
            f[0] == k.DATA and f[1] & k.END_STREAM and f[2] == 1 for f in c.frames), 10)
        took = time.monotonic() - t0
        first_ok = any(f[0] == k.DATA and f[1] & k.END_STREAM for f in c.find(k.DATA, 1))
        refused = {f[2] for f in c.find(k.RST_STREAM)}
        served = {f[2] for f in c.find(k.HEADERS) if f[2] >= 3}
        st.update(pong=bool(pong), first_ok=first_ok, refused=refused, served=served,
                  goaway=c.goaway, n=n)
        st["figures"] = ("%d bombs (%.1f GB decoded if expanded): %d reset, %d answered, "
                         "GOAWAY %r, done in %.2f s" % (
                             n, n * 16000 * 3538 / 1e9, len(refused), len(served),
                             c.goaway and c.goaway[:2], took))
        c.close()

    st = run_case(h, hub, by, "hpack bomb", hpack_bomb)
    h.check(st.get("first_ok"), "hpack bomb: the request carrying the 3.5 KB header was served")
    h.check(st.get("pong"), "hpack bomb: the hub got through the bombs (PING answered or "
            "connection closed) within 30 s", st.get("figures"))
    h.check(not st.get("served") and (
        st.get("goaway") is not None or len(st.get("refused", ())) >= st.get("n", 1)),
        "hpack bomb: no bombed stream became a request; each was reset or the connection "
        "closed", st.get("figures"))

    # --- SETTINGS --------------------------------------------------------------
    def settings_big(st):
        c = k.user_h2(hub.port)
        c.start_reader()
        c.send(k.settings([(k.SETTINGS_INITIAL_WINDOW_SIZE, 65535)] * 1000))
        st["started"].set()
        st["closed"] = c.wait_closed(CLOSE_WAIT_S)
        st["figures"] = "GOAWAY %r" % (c.goaway and c.goaway[:2],)
        st["goaway"] = c.goaway
        c.close()

    st = run_case(h, hub, by, "settings 1000 entries", settings_big)
    h.check(st.get("closed"), "settings: a SETTINGS frame with 1,000 entries closes the "
            "connection", st.get("figures"))

    def nonreading_flood(make, label, ftype):
        """2,000,000 frames (18 MB) that each ask for an answer, none of the
        answers read: more than the kernel's buffers and the hub's output
        limit hold, so the hub must cut the peer (GOAWAY, close) or stop
        reading from it (its sends stall for 5 s); either bounds it."""
        def attack(st):
            c = k.user_h2(hub.port)
            c.SEND_STALL_S = 5.0
            chunk = b"".join(make(i) for i in range(10000))
            t0 = time.monotonic()
            sent = send_until_closed(c, st, lambda: chunk, 10000, 2000000)
            # Now read what is left: GOAWAY or EOF tells the flood was cut.
            c.keep = False
            c.start_reader()
            c.wait_for(lambda c: c.goaway is not None or c.close_how is not None, CLOSE_WAIT_S)
            how = ("goaway" if c.goaway is not None else c.close_how or (
                "hub stopped reading" if c.send_error == "TimeoutError" else "open"))
            answers = c.counts.get(ftype, 0)
            # (sent counts whole chunks; the one cut short counts too)
            st.update(held=how != "open" and answers < sent + 10000, sent=sent)
            st["figures"] = "%d %s frames sent unread, %d answers read, ended by: %s, %.2f s" % (
                sent, label, answers, how, time.monotonic() - t0)
            c.close()
        return attack

    st = run_case(h, hub, by, "settings flood",
                  nonreading_flood(lambda i: k.settings(), "SETTINGS", k.SETTINGS))
    h.check(st.get("held"),
            "settings flood: the hub cut or stopped a peer that sends SETTINGS and never reads "
            "the ACKs", st.get("figures"))

    st = run_case(h, hub, by, "ping flood",
                  nonreading_flood(lambda i: k.frame(k.PING, 0, 0, b"%08d" % i), "PING", k.PING))
    h.check(st.get("held"),
            "ping flood: the hub cut or stopped a peer that sends PINGs and never reads the "
            "answers", st.get("figures"))

    # --- too many streams ------------------------------------------------------
    def streams(st):
        c = k.user_h2(hub.port)
        c.start_reader()
        hdrs = req("/hang")
        # 128 requests that the service holds open (max_requests_per_conn).
        c.send(*[c.headers(1 + 2 * i, hdrs) for i in range(128)])
        st["started"].set()
        # One token may have a quarter of site A's 256 request slots open
        # (the rest of its requests wait in the hub): 64 reach the service.
        full = h.wait_until(lambda: ((svc_a.stats() or {}).get("inflight") or 0) >= 64, 20)
        st["full"] = (svc_a.stats() or {}).get("inflight")
        # 128 CONNECT streams (long-lived, a pool of their own) fill the
        # connection's MAX_CONCURRENT_STREAMS (256).
        conn_hdrs = [(":method", "CONNECT"), (":protocol", "connect-tcp"), (":scheme", "https"),
                     (":authority", hub.addr), (":path", "/v1/sites/%s/services/hold" % A),
                     ("authorization", "Bearer " + mallory)]
        tunnels = [1 + 2 * i for i in range(128, 256)]
        c.send(*[c.headers(sid, conn_hdrs, end_stream=False) for sid in tunnels])
        opened = h.wait_until(lambda: len({f[2] for f in c.find(k.HEADERS)
                                           if f[2] in tunnels}) >= len(tunnels), 20)
        st["tunnels"] = len({f[2] for f in c.find(k.HEADERS) if f[2] in tunnels})
        # 100 more, beyond MAX_CONCURRENT_STREAMS.
        extra = [1 + 2 * i for i in range(256, 356)]
        c.send(*[c.headers(sid, hdrs) for sid in extra])
        c.wait_for(lambda c: c.goaway is not None or c.closed_at is not None or len(
            {f[2] for f in c.frames if f[0] == k.RST_STREAM and f[2] in extra}) >= len(extra),
            15)
        refused = {f[2] for f in c.find(k.RST_STREAM) if f[2] in extra}
        answered = {f[2] for f in c.find(k.HEADERS) if f[2] in extra}
        time.sleep(1.0)  # what was admitted would reach the service by now
        s = svc_a.stats() or {}
        st.update(refused=refused, answered=answered, goaway=c.goaway, inflight=s.get("inflight"),
                  full_ok=bool(full) and bool(opened))
        st["figures"] = ("128 requests held open (site A inflight %s), %d CONNECTs open, 100 "
                         "more: %d refused, %d answered, GOAWAY %r, site A inflight then %s" % (
                             st.get("full"), st["tunnels"], len(refused), len(answered),
                             c.goaway and c.goaway[:2], s.get("inflight")))
        c.close()

    st = run_case(h, hub, by, "too many streams", streams)
    h.check(st.get("full_ok"), "too many streams: 128 requests held open (the token's share of "
            "64 at site A, the rest waiting in the hub) and 128 CONNECTs open",
            st.get("figures"))
    h.check(not st.get("answered") and (
        st.get("goaway") is not None or len(st.get("refused", ())) == 100),
        "too many streams: the 100 streams beyond 256 are refused (or the connection closed)",
        st.get("figures"))
    # /stats itself is one request in flight.
    h.check((st.get("inflight") or 0) <= 128 + 1,
            "too many streams: none of the 100 reached site A", st.get("figures"))
    idle = h.wait_until(lambda: (svc_a.stats() or {}).get("inflight") == 1, 15)
    h.check(idle, "too many streams: the attacker's requests end at site A once he leaves",
            svc_a.stats())

    h.check(hub.proc.alive() and site_a.proc.alive() and site_b.proc.alive(),
            "hub and both sites alive at the end")


Harness.main("test_h2_floods", main)
