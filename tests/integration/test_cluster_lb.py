#!/usr/bin/env python3
# Integration: HAProxy in TCP mode in front of three hubs on one PostgreSQL is the one address 20 sites and their users know: the tunnels spread over the hubs, ALPN passes through, a federated query through the balancer reaches every site, and kill -9 of the hub holding the most sites brings them back on the others with no query lost or delivered twice.
# SPDX-License-Identifier: MIT
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Proc, edit_conf, free_port  # noqa: E402
from queryhelp import add_site, by_site, get_query, tally  # noqa: E402

N_SITES = 20
BACK_S = 30.0  # issue 15: the dead hub's sites are back on other hubs within 30 s

HAPROXY_CFG = """global
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 90s
    timeout server 90s
    retries 2
    option redispatch
frontend tether
    bind 127.0.0.1:%(lb)d
    default_backend hubs
backend hubs
    balance leastconn
    default-server check inter 500ms fall 2 rise 2 on-marked-down shutdown-sessions
%(servers)s
"""


def via_lb(h, hubs, lb_addr, method, path, body=None):
    """An API call to the balancer's address: it reaches whichever hub
    HAProxy picks, so any hub's key is accepted (curl takes a ;-list)."""
    return h.curl("https://%s%s" % (lb_addr, path), method=method,
                  data=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"} if body is not None else None,
                  token=hubs[0].token, pin=";".join(hub.pin for hub in hubs))


def holders(hubs):
    """{hub name: [sites it holds]} from each hub's own view."""
    out = {}
    for hub in hubs:
        out[hub.name] = sorted(n for n, s in hub.sites().items() if s.get("local"))
    return out


def main(h):
    h.pg_only("several hubs share one PostgreSQL database")
    lb_port = free_port()
    lb_addr = "127.0.0.1:%d" % lb_port
    a = h.hub("hub-a")
    # The balancer first: what sites are told to dial.
    a.init(public=[lb_addr, a.addr])
    hubs = [a]
    for name in ("hub-b", "hub-c"):
        hub = h.hub(name)
        hub.init(db=a.db_url, public=[lb_addr, hub.addr])
        hubs.append(hub)
    for hub in hubs:
        hub.start()
    cfg = os.path.join(h.path(), "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(HAPROXY_CFG % {"lb": lb_port, "servers": "\n".join(
            "    server %s %s" % (hub.name, hub.addr) for hub in hubs)})
    haproxy = Proc(h, "haproxy", ["haproxy", "-db", "-f", cfg], daemon=True)
    h.check(h.wait_until(lambda: via_lb(h, hubs, lb_addr, "GET", "/v1/sites").status == 200,
                         10, 0.1),
            "HAProxy passes a hub's API through (TLS end to end)")

    # 20 sites that know only the balancer's address.
    sites = {}
    for i in range(N_SITES):
        name = "s%02d" % i
        site, svc = add_site(h, a, name, start=False)
        edit_conf(site.conf_path, "hub", lb_addr)
        site.start({"counts": svc.url})
        sites[name] = (site, svc)
    h.check(h.wait_until(lambda: sum(len(v) for v in holders(hubs).values()) == N_SITES, 30,
                         0.2),
            "all %d sites are connected through the balancer" % N_SITES, holders(hubs))
    held = holders(hubs)
    h.info("tunnels per hub: %s" % {k: len(v) for k, v in held.items()})
    h.check(all(len(v) >= 3 for v in held.values()),
            "the tunnels spread over the three hubs (leastconn)", held)
    h.check(all(s.proc.find(r"\bconnected hub=%s\b" % lb_addr) for s, _ in sites.values()),
            "every site dialled the balancer's address only (ALPN tether/1 through TCP mode)")

    # The hubs' peer links dial each hub at an address of its own, never the
    # balancer they share (it would hand the dial to any of them).
    h.check(h.wait_until(lambda: all(hub.peer_links().get("out") == 2 for hub in hubs), 10, 0.2),
            "each hub holds a peer link to each other hub", [hub.peer_links() for hub in hubs])
    h.check(not any(hub.proc.find(r"\bpeer_link_failed\b.*\b%s\b" % re.escape(lb_addr))
                    for hub in hubs),
            "no hub dialled the balancer's address for a peer link")

    # A query through the balancer reaches every site, whichever hub took it.
    r = via_lb(h, hubs, lb_addr, "POST", "/v1/queries",
               {"sites": "*", "service": "counts", "path": "/tally/first", "timeout_s": 20})
    h.check(r.status == 201, "POST /v1/queries through the balancer", r)
    q = get_query(a, r.json()["id"], wait=30, timeout=60)
    h.check(q.get("status") == "complete" and len(by_site(q)) == N_SITES and
            all(x.get("status") == "done" for x in by_site(q).values()),
            "a query through the balancer reaches all %d sites on three hubs" % N_SITES, q)

    # Queries keep coming through the balancer while the busiest hub dies.
    qids, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            rr = via_lb(h, hubs, lb_addr, "POST", "/v1/queries",
                        {"sites": "*", "service": "counts", "path": "/tally/load", "ttl_s": 60})
            if rr.status == 201:
                qids.append(rr.json()["id"])
            time.sleep(0.1)

    th = threading.Thread(target=load, daemon=True)
    th.start()
    time.sleep(0.5)
    victim = max(hubs, key=lambda hub: len(held[hub.name]))
    moved = held[victim.name]
    others = [hub for hub in hubs if hub is not victim]
    t0 = time.monotonic()
    victim.proc.kill9()

    def back():
        now = holders(others)
        return all(any(n in v for v in now.values()) for n in moved)

    ok = h.wait_until(back, BACK_S + 10, 0.1)
    took = time.monotonic() - t0
    h.info("kill -9 of %s holding %d sites: all back on the other hubs in %.2f s"
           % (victim.name, len(moved), took))
    h.check(ok and took <= BACK_S, "kill -9 of the hub holding %d sites: all of them are back "
            "on the other two within %.0f s (%.2f s)" % (len(moved), BACK_S, took))
    time.sleep(1.0)
    stop.set()
    th.join(10)

    # No query lost, none delivered twice: every result of every query made
    # during the kill ends (done, or error for a request the dead hub had in
    # flight), and no site's service counted a query more than once.
    finals, open_left, errors = 0, 0, 0
    for qid in qids:
        qq = get_query(others[0], qid, wait=30, timeout=60)
        for x in by_site(qq).values():
            if x.get("status") in ("queued", "sent"):
                open_left += 1
            else:
                finals += 1
                errors += x.get("status") != "done"
    counts = {n: tally(svc)["queries"] for n, (_, svc) in sites.items()}
    twice = [(n, qid) for n in counts for qid in qids if counts[n].get(qid, 0) > 1]
    missing = [(n, qid) for n in counts for qid in qids
               if counts[n].get(qid, 0) == 0 and
               by_site(get_query(others[0], qid)).get(n, {}).get("status") == "done"]
    h.info("queries during the kill: %d, results final %d (error %d), open %d, "
           "delivered twice %d" % (len(qids), finals, errors, open_left, len(twice)))
    h.check(len(qids) >= 5 and open_left == 0 and finals == len(qids) * N_SITES,
            "every result of the %d queries made during the kill is final" % len(qids))
    h.check(not twice and not missing,
            "no site got a query twice, and every 'done' was received", (twice, missing))
    haproxy.stop()


if __name__ == "__main__":
    Harness.main("test_cluster_lb", main, tools=("curl", "haproxy"))
