#!/usr/bin/env python3
# Attack: HTTP/2 users that ask a site for many large responses and never read them.
# SPDX-License-Identifier: MIT
"""Slow-reader attack (issue 11 item 1).

The attacker opens HTTP/2 connections to the hub, asks one site for many
large responses, and stops reading. "Held" means:
  - another user's 1 MiB download from the same site finishes at its usual
    speed (within 5x the same download measured without the attack in this
    run, plus 2 s for a noisy machine);
  - another site is served;
  - past max_stalled_streams_per_conn / max_stalled_streams_per_token the
    hub answers new requests 429 and resets a stream that stalls;
  - the hub and the site keep running.
Phase 1 asks for 127 streams from one connection (a token opens at most
its share of the site's slots, 256 / 4 = 64: the rest wait in the hub) and
64 from a second token's connection: 128 stalled streams, twice the tunnel's
connection window. Phase 2 stalls streams from 8 connections of one token at
once, up to max_stalled_streams_per_token (lowered by a reload below the
share); phase 3 checks the per-connection cap after a reload, phase 4 leaves
80 uploads stuck at a service that never reads them.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Fatal, Harness  # noqa: E402
from h2stall import Stall, Uploader, make_user_token as make_token, settle_rss  # noqa: E402

SITE, OTHER = "slow-victim", "slow-other"
BIG = 256 << 20  # each stalled response: far more than any window
VICTIM = 1 << 20
PER_CONN, PER_TOKEN = 128, 128
SHARE = 256 // 4  # the site's 256 stream slots / 4 (docs/protocol.md)
PHASE1_STREAMS = 127
PHASE2_CONNS, PHASE2_STREAMS = 8, 6
PHASE2_TOKEN_CAP = PHASE2_CONNS * PHASE2_STREAMS  # 48 streams: exactly the token's cap


def victim_get(hub, token, timeout):
    return hub.proxy(SITE, "web", "/bytes/%d" % VICTIM, token=token, timeout=timeout)


def victim_put(hub, token, timeout):
    return hub.proxy(SITE, "web", "/sha256", method="POST", data=b"v" * VICTIM, token=token,
                     timeout=timeout)


def main(h):
    hub = h.hub()
    hub.init()
    hub.set_conf(max_stalled_streams_per_conn=PER_CONN, max_stalled_streams_per_token=PER_TOKEN)
    hub.start()
    # A service that never accepts (its listen queue is full): uploads to it
    # stay queued in the site.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    filler = socket.create_connection(hole.getsockname(), timeout=5)
    for name in (SITE, OTHER):
        svc = h.service("svc-" + name, site_name=name)
        site = h.site(name, hub)
        site.enroll(hub.site_add(name))
        site.start({"web": svc.url, "hole": "http://127.0.0.1:%d" % hole.getsockname()[1]})
        if hub.wait_ready(name, 15) is None:
            raise Fatal("site %s not ready" % name)
    victim = make_token(hub, "victim")
    attackers = [make_token(hub, "attacker-%d" % i) for i in range(3)]
    path = "/v1/sites/%s/services/web/bytes/%d" % (SITE, BIG)

    # Baseline: the victim's download with no attacker, best of three.
    base = None
    for _ in range(3):
        r = victim_get(hub, victim, 30)
        h.check(r.status == 200 and len(r.body) == VICTIM, "baseline 1 MiB download", r)
        base = r.elapsed if base is None else min(base, r.elapsed)
    limit = 5 * base + 2.0
    h.info("victim baseline %.3fs; limit under attack %.3fs" % (base, limit))
    up_base = None
    for _ in range(3):
        r = victim_put(hub, victim, 30)
        h.check(r.status == 200, "baseline 1 MiB upload", r)
        up_base = r.elapsed if up_base is None else min(up_base, r.elapsed)
    up_limit = 5 * up_base + 2.0

    def victim_under_attack(phase):
        r = victim_get(hub, victim, int(limit) + 10)
        h.info("%s: victim's 1 MiB download took %.3fs (baseline %.3fs)" % (phase, r.elapsed, base))
        h.check(r.status == 200 and len(r.body) == VICTIM and r.elapsed <= limit,
                "%s: victim's 1 MiB download finishes in %.2fs <= %.2fs" % (phase, r.elapsed,
                                                                          limit),
                "status=%s bytes=%s" % (r.status, len(r.body or b"")))
        o = hub.proxy(OTHER, "web", "/bytes/%d" % VICTIM, token=victim, timeout=int(limit) + 10)
        h.check(o.status == 200 and len(o.body) == VICTIM, "%s: another site is served" % phase,
                o)

    # Phase 1: 127 streams asked on one connection, of which the token's
    # share stall, and 64 of a second token (128 MiB of stream windows:
    # more than the tunnel's 64 MiB connection window).
    rss0 = hub.proc.rss_kib()
    a = Stall(hub.port, attackers[0], path, PHASE1_STREAMS)
    a2 = Stall(hub.port, attackers[2], path, SHARE)
    ok, other = a.wait_heads(5)
    h.check(ok == SHARE and len(a.status) == SHARE,
            "phase 1: of %d streams of one connection, the token's share (%d) answered 200 and "
            "stalled, the rest wait in the hub" % (PHASE1_STREAMS, SHARE),
            "ok=%d answered=%d" % (ok, len(a.status)))
    ok, other = a2.wait_heads(30)
    h.check(ok == SHARE, "phase 1: a second token's %d streams answered 200 and stalled" % SHARE,
            "ok=%d other=%d" % (ok, other))
    settle_rss(hub.proc)
    rss1 = hub.proc.rss_kib()
    if rss0 is not None and rss1 is not None:
        # Informative: ASan's quarantine makes RSS no proof either way.
        h.info("hub RSS %d KiB before phase 1, %d KiB with %d stalled streams (+%.1f MiB; "
               "bound %d x 1 MiB stream window)" % (rss0, rss1, 2 * SHARE,
                                                    (rss1 - rss0) / 1024.0, 2 * SHARE))
    victim_under_attack("phase 1 (127 streams, 1 connection)")
    a.close()
    a2.close()

    # Phase 2: 8 connections of one token, together at its cap of stalled
    # streams; the token's next request is refused with 429.
    hub.reload(max_stalled_streams_per_token=PHASE2_TOKEN_CAP)
    conns = [Stall(hub.port, attackers[1], path, PHASE2_STREAMS) for _ in range(PHASE2_CONNS)]
    total = sum(c.wait_heads(30)[0] for c in conns)
    h.check(total == PHASE2_TOKEN_CAP, "phase 2: %d streams stalled on %d connections"
            % (PHASE2_TOKEN_CAP, PHASE2_CONNS), total)
    settle_rss(hub.proc)
    extra = Stall(hub.port, attackers[1], path, 1)
    ok, other = extra.wait_heads(15)
    h.check(ok == 0 and extra.status.get(1) == "other",
            "phase 2: the token's request past max_stalled_streams_per_token is refused",
            extra.status)
    r = hub.proxy(SITE, "web", "/healthz", token=attackers[1], timeout=10)
    h.check(r.status == 429 and (r.json() or {}).get("error") == "too_many_requests",
            "phase 2: the refusal is 429 too_many_requests", r)
    victim_under_attack("phase 2 (8 connections)")
    extra.close()
    for c in conns:
        c.close()

    # Phase 3: the per-connection cap, lowered by a reload. Ten requests
    # start at once (none stalled yet); the two that stall past the cap are
    # reset, so the connection never holds more than 8.
    hub.reload(max_stalled_streams_per_conn=8)
    c = Stall(hub.port, attackers[2], path, 10)
    ok, other = c.wait_heads(30)
    n = c.wait_resets(2, 30)
    h.check(ok == 10 and n == 2, "phase 3: of 10 streams of one connection, 2 are reset when "
            "they stall past max_stalled_streams_per_conn = 8",
            "heads=%d resets=%d" % (ok, n))
    c.close()

    # Phase 4, the other direction: 80 uploads to a service that never reads
    # them (5 connections x 16 streams, 1 MiB or more each held in the site),
    # more than the tunnel's 64 MiB connection window. Another user's 1 MiB
    # upload through the same tunnel must still go through.
    ups = [Uploader(hub.port, attackers[0]) for _ in range(5)]
    for u in ups:
        u.push(u.open("/v1/sites/%s/services/hole/upload" % SITE, 16), 4 << 20, 0.5)
    r = victim_put(hub, victim, int(up_limit) + 10)
    h.info("phase 4: victim's 1 MiB upload took %.3fs (baseline %.3fs)" % (r.elapsed, up_base))
    h.check(r.status == 200 and (r.json() or {}).get("bytes") == VICTIM and
            r.elapsed <= up_limit,
            "phase 4 (80 stuck uploads): victim's 1 MiB upload answered in %.2fs <= %.2fs"
            % (r.elapsed, up_limit), r)
    for u in ups:
        u.close()
    filler.close()
    hole.close()

    h.check(hub.proc.alive(), "hub still running")
    r = victim_get(hub, victim, 30)
    h.check(r.status == 200 and len(r.body) == VICTIM, "the site serves normally afterwards", r)


if __name__ == "__main__":
    Harness.main("slow_reader_attack", main)
