#!/usr/bin/env python3
# Attack: one token fills a site's pool of long-lived streams (CONNECT), or holds ones it never reads.
# SPDX-License-Identifier: MIT
"""Long-lived streams (WebSocket, CONNECT, gRPC calls) have their own pool
of a site's stream slots, apart from the requests' (docs/protocol.md), at
the hub's default caps.

"Held" means:
  - token A opens its maximum of long-lived streams, 512 CONNECTs on two
    connections (256 each: the users' SETTINGS_MAX_CONCURRENT_STREAMS), all
    answered 200; its next one is 429 too_many_requests whose detail names
    the cap, audited as such, and never reaches the service;
  - meanwhile a victim token's 1 MiB download runs within 5x its baseline
    (+2 s for a noisy machine) and its own CONNECT opens; token A's own
    plain request is served too (requests have their own slots);
  - with max_long_streams_per_site reloaded to 600, token B takes the rest
    of the pool; then the victim's CONNECT is 503 site_busy whose detail
    names the cap, while its download is still served;
  - memory: token C opens 80 CONNECTs to a service that writes without end
    and reads none of it: past max_stalled_streams_per_conn (64) the
    streams that stall are reset, /metrics counts the resets, and the hub's
    RSS grows by less than its documented bound for one connection (160 MiB);
  - the hub and the site keep running and serve everyone afterwards.
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Harness  # noqa: E402
from bytestreams import Client, TcpService, echo, has_asan, need_h2, start_hub_site  # noqa: E402
from h2stall import make_user_token as make_token, settle_rss  # noqa: E402
import h2kit  # noqa: E402

SITE = "clinic-a"
ONE_MIB = 1 << 20
PER_TOKEN, PER_CONN, SITE_CAP = 512, 256, 600


def firehose(c):
    """Writes without end; reads nothing."""
    chunk = b"x" * 65536
    while True:
        c.sendall(chunk)


def body_of(st):
    try:
        return json.loads(bytes(st.data))
    except ValueError:
        return {}


def refused(h, cl, error, status, cap, what):
    """One more CONNECT on cl: refused with status and error, its detail
    naming the long-lived pool and its cap."""
    st = open_many(h, cl, "hold", 1, what)[0]
    body = body_of(st)
    detail = body.get("detail", "")
    h.check(st.status == status and body.get("error") == error and "long-lived" in detail and
            str(cap) in detail, "%s is %d %s naming the cap" % (what, status, error),
            (st.status, bytes(st.data[:300])))


def open_many(h, cl, service, n, what):
    sts = [cl.open(service) for _ in range(n)]
    cl.pump(lambda: all(s.status is not None or s.done for s in sts), 120, what)
    return sts


def main(h):
    need_h2()
    h2kit.quiet_asan_quarantine(h)
    hold = TcpService(echo)
    hose = TcpService(firehose)
    hub, site = start_hub_site(h, SITE, {"hold": hold.url, "hose": hose.url})
    asan = has_asan(hub.proc.pid)
    victim = make_token(hub, "victim")
    a, b, c = (make_token(hub, "attacker-" + n) for n in "abc")

    def get(tok=victim, timeout=30):
        return hub.proxy(SITE, "web", "/bytes/%d" % ONE_MIB, token=tok, timeout=timeout)

    def victim_served(when):
        r = get()
        h.check(r.status == 200 and len(r.body) == ONE_MIB and r.elapsed <= limit,
                "%s, the victim's 1 MiB download runs near baseline (%.3fs, limit %.3fs)"
                % (when, r.elapsed, limit), (r.status, r.elapsed))

    base = None
    for _ in range(3):
        r = get()
        h.check(r.status == 200 and len(r.body) == ONE_MIB, "baseline 1 MiB download", r)
        base = r.elapsed if base is None else min(base, r.elapsed)
    limit = 5 * base + 2.0
    h.info("victim baseline: download %.3fs" % base)

    # Token A: its 512 long-lived streams, 256 on each of two connections.
    conns_a = [Client(hub.port, a), Client(hub.port, a)]
    sts_a = []
    for i, cl in enumerate(conns_a):
        sts_a += open_many(h, cl, "hold", PER_CONN, "token A's CONNECTs (%d)" % i)
    h.check(all(s.status == 200 for s in sts_a),
            "token A holds its %d long-lived streams at once" % PER_TOKEN,
            sorted(set(s.status for s in sts_a)))
    h.wait_until(lambda: hold.open_now() >= PER_TOKEN, 30)
    h.check(hold.open_now() >= PER_TOKEN, "the service holds them all", hold.open_now())

    before = hold.accepted
    cl = Client(hub.port, a)
    refused(h, cl, "too_many_requests", 429, PER_TOKEN, "token A's stream past its cap")
    h.check(hold.accepted == before, "the refused stream never reached the service",
            hold.accepted - before)
    r = hub.proxy(SITE, "web", "/bytes/100", token=a)
    h.check(r.status == 200, "token A's own plain request is still served", r.status)
    cl.close()

    victim_served("while token A holds its maximum")
    vc = Client(hub.port, victim)
    st = open_many(h, vc, "hold", 1, "the victim's CONNECT")[0]
    h.check(st.status == 200, "the victim's own CONNECT opens (the site's pool has room)",
            st.status)
    st.send(b"", end=True)

    # The site's pool: capped at 600 (under the default 768); token B takes
    # what is left of it.
    hub.reload(max_long_streams_per_site=str(SITE_CAP))
    time.sleep(0.2)
    cb = Client(hub.port, b)
    vc.pump(lambda: st.done, 15, "the victim's stream to end")
    sts_b = open_many(h, cb, "hold", SITE_CAP - PER_TOKEN, "token B's CONNECTs")
    h.check(all(s.status == 200 for s in sts_b),
            "token B takes the rest of the site's pool (%d streams)" % (SITE_CAP - PER_TOKEN),
            sorted(set(s.status for s in sts_b)))
    refused(h, vc, "site_busy", 503, SITE_CAP, "with the site's pool full, a CONNECT")
    victim_served("with the site's pool full")
    rows = hub.api("GET", "/v1/audit?limit=1000").json().get("entries", [])
    h.check(any(e.get("action") == "proxy" and e.get("actor") == "attacker-a" and
                e.get("result") == "too_many_requests" for e in rows) and
            any(e.get("action") == "proxy" and e.get("actor") == "victim" and
                e.get("result") == "site_busy" for e in rows),
            "the refused CONNECTs are audited with their error codes",
            [e for e in rows if e.get("result") not in ("forwarded", None)][:4])
    for cl in conns_a + [cb, vc]:
        cl.close()
    h.wait_until(lambda: hold.open_now() == 0, 30)
    h.check(hold.open_now() == 0, "the service's connections close with their users'",
            hold.open_now())

    # Memory: long-lived streams that are never read stall like responses.
    hub.reload(max_long_streams_per_site="768")
    time.sleep(0.2)
    rss0 = settle_rss(hub.proc)
    m0 = hub.proxy_refusals()
    n = 80
    cc = Client(hub.port, c)
    cc.credit = False
    sts_c = [cc.open("hose") for _ in range(n)]
    resets = lambda: sum(1 for s in sts_c if s.reset is not None)  # noqa: E731
    try:
        cc.pump(lambda: resets() >= n - 64, 60, "stalled streams past the cap to be reset")
    except Exception as e:  # the check below says what was seen
        h.info("%s" % e)
    rss = settle_rss(hub.proc)
    m1 = hub.proxy_refusals()
    h.check(resets() >= n - 64 and m1.get("stall_reset", 0) - m0.get("stall_reset", 0) >= n - 64,
            "unread long-lived streams past max_stalled_streams_per_conn (64) are reset "
            "(%d of %d; /metrics stall_reset +%d)" % (
                resets(), n, m1.get("stall_reset", 0) - m0.get("stall_reset", 0)))
    grew = (rss - rss0) / 1024.0
    h.info("hub RSS %.1f MiB -> %.1f MiB with %d unread streams" % (rss0 / 1024.0, rss / 1024.0,
                                                                   n))
    h.check(asan or grew < 160, "the hub's RSS grew by less than 160 MiB (%.1f MiB)" % grew)
    cc.close()

    r = get()
    h.check(r.status == 200 and len(r.body) == ONE_MIB,
            "afterwards the victim is served normally", r.status)
    vc = Client(hub.port, victim)
    st = open_many(h, vc, "hold", 1, "the victim's CONNECT afterwards")[0]
    h.check(st.status == 200, "afterwards the victim's CONNECT opens", st.status)
    vc.close()
    h.check(hub.proc.alive and site.proc.alive, "hub and site still up")


Harness.main("test_long_streams", main)
