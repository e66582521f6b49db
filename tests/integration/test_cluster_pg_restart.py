#!/usr/bin/env python3
# Integration: PostgreSQL restarted under load with three hubs: every hub keeps proxying to connected sites, its own and other hubs' over the peer links, writes answer 503, and afterwards writes, cross-hub revocation, queries and enrollment resume without a hub restart.
# SPDX-License-Identifier: MIT
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ProxyLoad  # noqa: E402
from queryhelp import submit, wait_complete  # noqa: E402

# Longer than the 10 s a hub trusts its cached "site S is on hub X" before
# reading the database again (hub/tunnel/peer.c): forwarded requests must
# outlive a cache entry that expires while the database is away.
OUTAGE_S = 11.0
CUT_S = 1.0  # issue 15: a revoke or disable reaches every hub within 1 s


def main(h):
    h.pg_only("several hubs on one PostgreSQL server of the test's own, stopped and started")
    fx, pgdir = h.pg_private()
    a, b, c = h.hub("hub-a"), h.hub("hub-b"), h.hub("hub-c")
    a.init()
    b.init(db=a.db_url)
    c.init(db=a.db_url)
    for hub in (a, b, c):
        hub.start()
    for x, y in ((a, b), (c, b), (b, c)):
        h.check(x.peer_link_up(y, "out") is not None, "%s's peer link to %s is up" % (x.name,
                                                                                    y.name))
    # Each site connects to the hub whose token it enrolled with.
    h.add_site(a, "sa")
    h.add_site(b, "sb")
    h.add_site(c, "sc")

    loads = {name: ProxyLoad(hub, site, pause=0.1) for name, hub, site in (
        ("A to sa (its own hub)", a, "sa"), ("A to sb (on B)", a, "sb"),
        ("C to sb (on B)", c, "sb"), ("B to sc (on C)", b, "sc"))}
    for ld in loads.values():
        ld.start()
    h.check(h.wait_until(lambda: all(len(ld.results) >= 5 for ld in loads.values()), 15),
            "steady load through every hub before the outage",
            {k: len(v.results) for k, v in loads.items()})

    # --- the database goes away ------------------------------------------------
    t_down = time.monotonic()
    fx.down(pgdir)
    h.info("PostgreSQL stopped (%.2f s)" % (time.monotonic() - t_down))
    for hub in (a, b):
        r = hub.api("POST", "/v1/sites", {"name": "during-" + hub.name})
        h.check(r.status == 503 and (r.json() or {}).get("error") == "storage_unavailable",
                "a write through %s while the database is down: 503 storage_unavailable"
                % hub.name, r)
    r = submit(c, {"sites": "*", "service": "web", "path": "/echo?q=down"})
    h.check(r.status == 503 and (r.json() or {}).get("error") == "storage_unavailable",
            "a federated query through hub C while it is down: 503 storage_unavailable", r)
    rest = OUTAGE_S - (time.monotonic() - t_down)
    if rest > 0:
        time.sleep(rest)
    h.check(all(hub.proc.alive() for hub in (a, b, c)), "the three hubs run through the outage")
    h.check(all(hub.proc.find(r"\bpeer_link_down\b") is None for hub in (a, b, c)),
            "no peer link went down with the database")

    # --- it comes back -----------------------------------------------------------
    t_up = time.monotonic()
    fx.up(pgdir)
    h.info("PostgreSQL started again after %.1f s down" % (t_up - t_down))
    for hub in (a, b, c):
        ok = h.wait_until(lambda: hub.api("POST", "/v1/sites", {"name": "after-" + hub.name})
                          .status in (201, 409), 10, interval=0.2)
        h.check(ok, "writes through %s succeed again without a restart" % hub.name)
    h.info("writes on every hub %.1f s after the server's return" % (time.monotonic() - t_up))
    rows = a.sql_rows("SELECT name FROM sites WHERE name LIKE 'during-%' OR name LIKE 'after-%' "
                      "ORDER BY name")
    h.check(rows == [["after-hub-a"], ["after-hub-b"], ["after-hub-c"]],
            "the refused writes left nothing; the later ones are stored", rows)

    # The load runs a little longer, then stops: the disable below cuts sb.
    time.sleep(1.0)
    for name, ld in loads.items():
        ld.stop.set()
        ld.join(15)
        during = ld.between(t_down, t_up)
        bad = [x for x in ld.results if not x[2]]
        h.info("load %s: %d requests, %d during the outage" % (name, len(ld.results),
                                                               len(during)))
        h.check(len(during) >= 20 and not bad,
                "load %s: no request failed before, during or after the outage" % name,
                bad[:5])

    # Notifications flow again: a disable through A cuts sb's tunnel on B.
    # The listening connection comes back on its own schedule: allow it a
    # few seconds, then time the cut itself.
    def disable_cut():
        mark = b.proc.mark()
        r = a.api("PATCH", "/v1/sites/sb", {"state": "disabled"})
        t0 = time.monotonic()
        m = b.proc.wait_log(r"\bsite_disconnected\b.*\bsite=sb\b", CUT_S, since=mark,
                            fatal=False)
        took = time.monotonic() - t0
        a.api("PATCH", "/v1/sites/sb", {"state": "active"})
        return r.status == 200 and m is not None, took

    cut, took = False, None
    deadline = time.monotonic() + 10
    while not cut and time.monotonic() < deadline:
        cut, took = disable_cut()
        if not cut:  # the listener was not back yet: sb comes back to B
            b.wait_ready("sb", 30)
    h.check(cut, "a disable through hub A cuts the tunnel on hub B within %.0f s again "
            "(%.2f s)" % (CUT_S, took or -1))
    h.check(h.wait_until(lambda: any(x.sites().get("sb", {}).get("local") for x in (a, b, c)),
                         30, 0.2), "sb, enabled again, is back (on whichever hub it reached)")

    # A query through C reaches the three sites, each once.
    r = submit(c, {"sites": "*", "service": "web", "path": "/echo?q=after"})
    qid = (r.json() or {}).get("id")
    h.check(r.status == 201 and qid, "a federated query through hub C is accepted after", r)
    q = wait_complete(c, qid, 30) if qid else {}
    done = sorted(s["site"] for s in q.get("sites", []) if s.get("status") == "done")
    h.check(q.get("status") == "complete" and done == ["sa", "sb", "sc"],
            "and every site, on whichever hub, answers it", q)

    # A site enrolls through B and is served through A.
    h.add_site(b, "late")
    r = a.proxy("late", "web", "/echo?x=late")
    h.check(r.status == 200, "a site enrolled through hub B after the outage is served through "
            "hub A", r)

    ok, detail = a.db_check()
    h.check(ok, "the registry is sound after the outage", detail)


if __name__ == "__main__":
    Harness.main("test_cluster_pg_restart", main, tools=("curl", "psql"))
