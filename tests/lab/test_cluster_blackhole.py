#!/usr/bin/env python3
# Lab: two hubs on one PostgreSQL; the router blackholes the site's hub (drops, no reset): the site moves to the other hub within its dead-peer time plus backoff, the stale hub is fenced off by the newer session, both hubs serve the site, a query is delivered once, and the site does not flap back.
# SPDX-License-Identifier: MIT
"""Hubs H (hub.lab, 10.77.1.1) and O (hub2.lab, 10.77.1.2) share the hub
namespace and a PostgreSQL server there; the router sits between them and the
site. The site enrolls through H (its token lists H, then O) and connects to
H. The router then drops everything between the site and H, both ways: H stays
up and reachable by users inside the hub namespace, and its peer link to O
never crosses the router.

H pings every 3 s, so on its own it would drop the silent tunnel 6 s after
its last ping was answered; the site (--ping-interval 2, and O pinging every
2 s) drops H 4 s after it last heard it, i.e. 2 s before H would. So H closing
the tunnel with "replaced by a newer session on another hub" soon after O
records the site's new session is the fencing (the ses: note O's session
sends through PostgreSQL), not H's own watch."""
import json
import os
import random
import re
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab import (HUB2_IP, HUB2_NAME, HUB_IP, HUB_NAME, SITE_IPS, LabHarness,  # noqa: E402
                 log_times, query_result)

SITE = "lab-fo"
PING_SITE = 2.0  # the site's --ping-interval and hub O's: the site drops a hub silent for 4 s
PING_H = 3.0  # hub H's: H alone would drop the silent tunnel 6 s after its last answered ping
CONNECT_TIMEOUT = 2
BACKOFF_BASE = 0.5  # site/agent.c: the next endpoint is dialled at once, a full round backs off
SLACK = 1.0  # scheduling on two shared cores (sanitizers too), TLS handshake, log stamps
FENCE_MAX = 1.5  # O's site_connected -> H's cut (H's own watch: 2 s after the site's drop)
STEADY = 5.0  # after the path returns: no flap for longer than two of O's pings


def tally(h, lab, svc, key):
    """Hits the site's service counted for key (asked inside site1, not
    through tether)."""
    r = lab.sh("site1", "curl", "-s", "-m", "5", svc.url + "/tally", check=False)
    try:
        return int((json.loads(r.stdout).get("keys") or {}).get(key, 0))
    except ValueError:
        h.note("GET /tally inside site1: %r" % r)
        return -1


def serves(h, hub, key, what):
    """A request through hub reaches the site's service: 200 and its answer."""
    r = hub.proxy(SITE, "web", "/tally/%s" % key, timeout=15)
    j = r.json() or {}
    h.check(r.status == 200 and j.get("site") == SITE and j.get("key") == key,
            "%s: 200 with the site's answer" % what, r)


def main(h):
    url = h.pg_in_hub()
    lab = h.lab()
    lab.add_hub_ip()
    hh = h.hub("hub-h", ip=HUB_IP, public_name=HUB_NAME)
    ho = h.hub("hub-o", ip=HUB2_IP, public_name=HUB2_NAME)
    hh.init(db=url)
    r = ho.init(db=url)
    h.check("joined: 2 hubs share this registry" in r.stdout and ho.pin != hh.pin,
            "hub O joins hub H's cluster on the PostgreSQL server in the hub namespace", r)
    hh.start(["--ping-interval", "%g" % PING_H])
    ho.start(["--ping-interval", "%g" % PING_SITE])
    h.check(hh.peer_link_up(ho, "out") is not None and ho.peer_link_up(hh, "in") is not None,
            "the hubs link up (inside the hub namespace)")

    svc = h.service("site1", "svc-fo", SITE)
    site = h.site("site1", SITE, hh)
    site.enroll(hh.site_add(SITE))
    site.start({"web": svc.url}, ["--ping-interval", "%g" % PING_SITE, "--connect-timeout",
                                  str(CONNECT_TIMEOUT)])
    m = site.proc.wait_log(r"\bconnected hub=(\S+)", 10)
    h.check(m.group(1) == "%s:6443" % HUB_NAME and hh.wait_ready(SITE, 10) is not None,
            "the site connects to hub H, its token's first endpoint (the holder)", m.group(0))
    serves(h, hh, "before-h", "before: through H, the holder")
    serves(h, ho, "before-o", "before: through O, over the peer link")
    # Idle longer than the site's limit: H's slower pings keep the tunnel up.
    # The blackhole then falls at a random phase of them (the site drops H
    # 1-4 s after it).
    idle = 2 * PING_SITE + 0.5 + random.uniform(0, PING_H)
    time.sleep(idle)
    h.check(hh.proc.find(r"\bsite_disconnected\b") is None and
            site.proc.find(r"\bdisconnected hub=") is None,
            "an idle tunnel stays up %.1f s: H's pings every %g s are within the site's %g s "
            "limit" % (idle, PING_H, 2 * PING_SITE))

    # The blackhole: the router drops the site <-> H both ways; no RST, no ICMP.
    smark, hmark, omark = site.proc.mark(), hh.proc.mark(), ho.proc.mark()
    lab.netteam("ip saddr %s ip daddr %s drop" % (SITE_IPS["site1"], HUB_IP),
                "ip saddr %s ip daddr %s drop" % (HUB_IP, SITE_IPS["site1"]))
    t_bh = time.time()

    # A query accepted by H at once goes down H's stale tunnel: in flight
    # into the blackhole, it may be lost, never delivered twice.
    run = uuid.uuid4().hex[:8]
    k_in = "inflight-" + run
    r = hh.api("POST", "/v1/queries", {"sites": [SITE], "service": "web", "method": "GET",
                                       "path": "/tally/" + k_in, "timeout_s": 20, "ttl_s": 120})
    h.check(r.status == 201, "H accepts a query for the site just after the blackhole", r)
    q_in = (r.json() or {}).get("id")

    m = site.proc.wait_log(r"\bdisconnected hub=%s:6443 reason=\"?hub silent" % re.escape(HUB_NAME),
                           2 * PING_SITE + 5, since=smark, fatal=False)
    t_drop = (log_times(site.proc, r"\bdisconnected hub=", smark) or [None])[0]
    h.check(m is not None and t_drop is not None, "the site notices H's silence itself",
            site.proc.text(smark)[-600:])
    m = site.proc.wait_log(r"\bconnected hub=%s:6443" % re.escape(HUB2_NAME), 15, since=smark,
                           fatal=False)
    h.check(m is not None, "the site connects to hub O", site.proc.text(smark)[-600:])
    h.check(ho.wait_ready(SITE, 10) is not None, "hub O has the site online with its services")
    t_o = (log_times(ho.proc, r"\bsite_connected\b.*\bsite=%s\b" % SITE, omark) or [None])[0]
    m = hh.proc.wait_log(r"\bsite_disconnected\b.*\bsite=%s\b.*reason=(\"[^\"]*\"|\S+)" % SITE,
                         10, since=hmark, fatal=False)
    t_h = (log_times(hh.proc, r"\bsite_disconnected\b", hmark) or [None])[0]
    h.check(m is not None and "replaced by a newer session on another hub" in m.group(1),
            "hub H closes its stale tunnel because of O's newer session (fencing), not by "
            "its own ping watch", m and m.group(0))
    if None not in (t_drop, t_o, t_h):
        drop, fail, fence = t_drop - t_bh, t_o - t_bh, t_h - t_o
        bound_drop = 2 * PING_SITE + SLACK
        bound_fail = 2 * PING_SITE + BACKOFF_BASE + CONNECT_TIMEOUT + SLACK
        h.info("blackhole -> site drops H %.2f s, -> on O %.2f s (site redial %.2f s); "
               "O's session -> H's cut %.2f s (H's own watch: ~%.1f s after the drop)"
               % (drop, fail, t_o - t_drop, fence, 2 * PING_H - 2 * PING_SITE))
        h.check(drop <= bound_drop, "the site drops H within two of its pings (%.2f s after "
                "the blackhole; limit %.1f s)" % (drop, bound_drop))
        h.check(fail <= bound_fail,
                "the site is on O within dead-peer time + backoff + connect timeout (%.2f s; "
                "bound %.1f s = 2 x %g s + %.1f s + %d s + %.1f s)"
                % (fail, bound_fail, PING_SITE, BACKOFF_BASE, CONNECT_TIMEOUT, SLACK))
        h.check(0 <= fence <= FENCE_MAX,
                "H cuts the stale tunnel %.2f s after O's session opens (limit %.1f s; its own "
                "watch would take %.1f s more than the site's)"
                % (fence, FENCE_MAX, 2 * PING_H - 2 * PING_SITE))
    else:
        h.check(False, "log times of the drop, O's connect and H's cut",
                (t_drop, t_o, t_h))

    # The registry: H's session closed, O's the one open.
    rows = h.pg_rows(url, "SELECT h.public, s.disconnected_at IS NULL, COALESCE(s.reason, '') "
                          "FROM sessions s JOIN hubs h ON h.id = s.hub_id ORDER BY s.id")
    h.check(len(rows) == 2 and HUB_NAME in rows[0][0] and rows[0][1] == "f" and
            HUB2_NAME in rows[1][0] and rows[1][1] == "t",
            "the database has H's session closed and O's newer one open", rows)

    # Still dark: H is up for its users and serves the site through O.
    h.check(lab.tcp_connect("site1", HUB_IP, 6443, timeout=1.0) == "timeout",
            "the path from the site to H is still dark")
    serves(h, ho, "outage-o-" + run, "during the blackhole: through O, the new holder")
    serves(h, hh, "outage-h-" + run, "during the blackhole: through H, over the peer link")
    k_q = "query-" + run
    r = hh.api("POST", "/v1/queries", {"sites": [SITE], "service": "web", "method": "GET",
                                       "path": "/tally/" + k_q, "timeout_s": 10, "ttl_s": 120})
    h.check(r.status == 201, "H accepts a federated query during the blackhole", r)
    qid = (r.json() or {}).get("id")
    res = query_result(hh, qid, SITE, wait=15) if qid else None
    h.check(res is not None and res.get("status") == "done" and k_q in (res.get("body") or ""),
            "... O delivers it and H reads the result", res)
    n = tally(h, lab, svc, k_q)
    h.check(n == 1, "... the site's service received it exactly once (%d)" % n)
    res = query_result(hh, q_in, SITE, wait=15) if q_in else None
    n = tally(h, lab, svc, k_in)
    st = (res or {}).get("status")
    h.info("the query in flight at the blackhole: %s (%s), received %d time(s)"
           % (st, (res or {}).get("detail") or "", n))
    h.check(st == "done" and n == 1 or st == "error" and n == 0,
            "the query in flight into the blackhole ends done after one receipt or error after "
            "none: never delivered twice, never done unreceived (%s, %d)" % (st, n), res)

    # The path returns: the site stays where it is.
    smark = site.proc.mark()
    lab.netteam()
    t_back = time.monotonic()
    h.check(lab.tcp_connect("site1", HUB_IP, 6443, timeout=2.0) == "ok",
            "the path from the site to H is back")
    time.sleep(max(0.0, STEADY - (time.monotonic() - t_back)))
    moved = re.findall(r"\b(?:dis)?connected hub=\S+", site.proc.text(smark))
    h.check(not moved, "the site stays on O after the path returns (%.0f s, no reconnect)"
            % STEADY, moved)
    h.check(ho.wait_ready(SITE, 2) is not None and
            hh.proc.find(r"\bsite_connected\b", since=hmark) is None,
            "O still holds the tunnel; H got none")
    serves(h, ho, "after-o-" + run, "after: through O")
    serves(h, hh, "after-h-" + run, "after: through H, over the peer link")


LabHarness.main("lab_cluster_blackhole", main)
