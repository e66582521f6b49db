#!/usr/bin/env python3
# Integration: federated queries across two hubs on one PostgreSQL: any hub accepts a query, the hub holding each site's tunnel delivers it, each site gets it exactly once, ?wait and SSE on either hub see every result, and a hub's death fails its in-flight results without resending them.
# SPDX-License-Identifier: MIT
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, edit_conf  # noqa: E402
from queryhelp import Stream, add_site, by_site, get_query, start_site, submit_ok, tally  # noqa: E402

N_QUERIES = 20


def main(h):
    h.pg_only("several hubs share one PostgreSQL database")
    a = h.hub("hub-a")
    a.init()
    a.start()
    b = h.hub("hub-b")
    b.init(db=a.db_url)
    b.start()

    # Two sites on each hub (site.conf names only its hub first).
    sites = {}
    for name, hub in (("a1", a), ("a2", a), ("b1", b), ("b2", b)):
        site, svc = add_site(h, a, name, start=False)
        edit_conf(site.conf_path, "hub", hub.addr)
        start_site(hub, site)
        sites[name] = (site, svc, hub)
    h.check(a.proc.find(r"\bsite_connected\b.*\bsite=b1\b") is None and
            b.proc.find(r"\bsite_connected\b.*\bsite=a1\b") is None,
            "sites a1, a2 are on hub A and b1, b2 on hub B")

    # Queries to every site through alternating hubs: each hub accepts
    # them, the hub holding a site delivers, and ?wait on the accepting hub
    # sees the results the other hub landed.
    qids = []
    for i in range(N_QUERIES):
        via = a if i % 2 == 0 else b
        j = submit_ok(via, {"sites": "*", "service": "counts", "path": "/tally/k%d" % i,
                            "timeout_s": 20})
        qids.append((j["id"], via))
    done = 0
    for qid, via in qids:
        q = get_query(via, qid, wait=30, timeout=60)
        rs = by_site(q)
        if q.get("status") == "complete" and len(rs) == 4 and \
                all(r.get("status") == "done" for r in rs.values()):
            done += 1
        else:
            h.note("query %s via %s: %r" % (qid, via.name, q))
    h.check(done == N_QUERIES, "%d of %d queries complete with every site done, each read "
            "with ?wait on the hub that accepted it" % (done, N_QUERIES))

    # Exactly once: each site's service counted each query once.
    counts = {name: tally(svc)["queries"] for name, (_, svc, _) in sites.items()}
    once = all(counts[name].get(qid) == 1 for name in sites for qid, _ in qids)
    h.check(once, "each site received each query exactly once (%d sites x %d queries)"
            % (len(sites), N_QUERIES), counts)
    h.check(all(len(c) == N_QUERIES for c in counts.values()),
            "and nothing else", {k: len(v) for k, v in counts.items()})
    h.info("exactly-once: %d receipts, %d expected" %
           (sum(sum(c.values()) for c in counts.values()), len(sites) * N_QUERIES))

    # SSE on hub A for a query accepted by A whose sites on B answer later:
    # every result comes as an event, then the end.
    for name in ("b1", "b2"):
        sites[name][0].proc.stop()
    j = submit_ok(a, {"sites": ["a1", "b1", "b2"], "service": "counts", "path": "/tally/sse",
                      "ttl_s": 60})
    ev = Stream(h, a, j["id"])
    h.check(h.wait_until(lambda: any(e[1] == "result" for e in ev.events()), 10, 0.1),
            "SSE on hub A tells a1's result (delivered by A)")
    for name in ("b1", "b2"):
        site, _, hub = sites[name]
        site.start({"counts": sites[name][1].url})
    rc = ev.wait(40)
    results = [e for e in ev.events() if e[1] == "result"]
    h.check(rc == 0 and len(results) == 3 and any(e[1] == "done" for e in ev.events()),
            "SSE on hub A then tells b1's and b2's results, delivered by hub B when they "
            "came back, and ends", ev.events())
    q = get_query(b, j["id"])
    h.check(q.get("status") == "complete", "hub B sees the query complete", q)
    for name in ("b1", "b2"):
        h.check(b.wait_ready(name, 15) is not None, "%s is back on hub B" % name)

    # Hub B dies with a query in flight to b1 (its service answers after
    # 5 s): b1 and b2 move to hub A, which fails that result (never sent
    # again: at most once) and delivers what is queued for them.
    svc_b1 = sites["b1"][1]
    j = submit_ok(a, {"sites": ["b1"], "service": "counts", "path": "/tally/slow?ms.b1=5000",
                      "timeout_s": 30})
    h.check(h.wait_until(lambda: tally(svc_b1)["keys"].get("slow") == 1, 10, 0.05),
            "b1 received the slow query through hub B")
    b.proc.kill9()
    j2 = submit_ok(a, {"sites": ["b1", "b2"], "service": "counts", "path": "/tally/after",
                       "ttl_s": 60})
    h.check(a.wait_ready("b1", 15) is not None and a.wait_ready("b2", 15) is not None,
            "kill -9 of hub B: b1 and b2 are on hub A")
    q = get_query(a, j["id"], wait=20, timeout=40)
    r = by_site(q).get("b1", {})
    h.check(q.get("status") == "complete" and r.get("status") == "error" and
            "lost the site's tunnel" in (r.get("detail") or ""),
            "the result hub B had in flight ends as error on hub A (not resent)", q)
    q2 = get_query(a, j2["id"], wait=20, timeout=40)
    h.check(q2.get("status") == "complete" and
            all(x.get("status") == "done" for x in by_site(q2).values()),
            "a query made while hub B was dead reached b1 and b2 through hub A", q2)
    h.check(tally(svc_b1)["keys"].get("slow") == 1 and
            tally(svc_b1)["keys"].get("after") == 1 and
            tally(sites["b2"][1])["keys"].get("after") == 1,
            "each reached its site once", (tally(svc_b1), tally(sites["b2"][1])))


if __name__ == "__main__":
    Harness.main("test_cluster_queries", main)
