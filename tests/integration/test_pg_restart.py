#!/usr/bin/env python3
# Integration: the hub's PostgreSQL server goes down and comes back under load: proxying to connected sites never fails, writes answer 503 storage_unavailable, and writes, enrollment and queries resume without a hub restart.
# SPDX-License-Identifier: MIT
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ProxyLoad  # noqa: E402
from queryhelp import submit, wait_complete  # noqa: E402

OUTAGE_S = 3.0


def main(h):
    h.pg_only("it stops and starts a PostgreSQL server of its own")
    # A server of the test's own: it is stopped and started again.
    fx, pgdir = h.pg_private()

    hub, site, svc = h.setup("clinic")
    h.add_site(hub, "lab")
    load = ProxyLoad(hub, "clinic")
    load.start()
    h.check(h.wait_until(lambda: len(load.results) >= 5, 10), "steady load runs before the outage",
            len(load.results))

    # Tokens: one never used, one used and then revoked through this hub, one
    # scoped by a label that the site then loses.
    unused = hub.token_create("unused", "--role", "user", "--sites", "clinic")
    revoked = hub.token_create("gone", "--role", "user", "--sites", "clinic")
    h.add_site(hub, "ward")
    r = hub.ctl("site", "label", "ward", "team=a")
    h.check(r.rc == 0, "site ward gets label team=a", r)
    by_label = hub.token_create("team-a", "--role", "user", "--sites", "label=team=a")
    r = hub.proxy("clinic", "web", "/echo?t=gone", token=revoked)
    h.check(r.status == 200, "a second token is served before the outage", r)
    r = hub.proxy("ward", "web", "/echo?t=label", token=by_label)
    h.check(r.status == 200, "a label-scoped token reaches the labelled site", r)
    r = hub.ctl("token", "revoke", "gone")
    h.check(r.rc == 0, "the second token is revoked", r)
    # Its label goes; the hub forgets the row it had, and nothing reads it
    # again before the outage.
    r = hub.ctl("site", "label", "ward", "team-")
    h.check(r.rc == 0, "site ward loses its label", r)

    # --- the database goes away ------------------------------------------------
    mark = hub.proc.mark()
    t_down = time.monotonic()
    fx.down(pgdir)
    h.info("PostgreSQL stopped (%.2f s)" % (time.monotonic() - t_down))
    r = hub.api("POST", "/v1/sites", {"name": "during"})
    j = r.json() or {}
    h.check(r.status == 503 and j.get("error") == "storage_unavailable" and
            "unreachable" in j.get("detail", ""),
            "a write while the database is down: 503 storage_unavailable, saying it is "
            "unreachable", r)
    r = hub.ctl("site", "add", "during2")
    h.check(r.rc != 0 and "unreachable" in (r.stderr + r.stdout),
            "tetherctl site add while it is down fails with the hub's reason", r)
    r = submit(hub, {"sites": "*", "service": "web", "path": "/echo?q=down"})
    h.check(r.status == 503 and (r.json() or {}).get("error") == "storage_unavailable",
            "a federated query while it is down: 503 storage_unavailable", r)
    r = hub.proxy("lab", "web", "/echo?x=down")
    h.check(r.status == 200, "the other connected site is served while it is down", r)
    r = hub.proxy("clinic", "web", "/echo?t=gone", token=revoked)
    h.check(r.status == 503 and (r.json() or {}).get("error") == "storage_unavailable",
            "a token revoked before the outage is not served from memory during it", r)
    r = hub.proxy("ward", "web", "/echo?t=label", token=by_label)
    h.check(r.status == 503 and (r.json() or {}).get("error") == "storage_unavailable",
            "a site that lost the label a token is scoped by is not served from its old row: 503",
            r)
    r = hub.proxy("clinic", "web", "/echo?t=unused", token=unused)
    h.check(r.status == 503 and (r.json() or {}).get("error") == "storage_unavailable",
            "a token the hub never read gets 503 storage_unavailable, not 401", r)
    rest = OUTAGE_S - (time.monotonic() - t_down)
    if rest > 0:
        time.sleep(rest)
    h.check(hub.proc.alive(), "the hub runs through the outage")
    r = hub.curl("/readyz", token=None)
    h.info("/readyz during the outage: %s %s" % (r.status, (r.body or b"")[:200]))

    # --- it comes back -----------------------------------------------------------
    t_up = time.monotonic()
    fx.up(pgdir)
    h.info("PostgreSQL started again after %.1f s down" % (t_up - t_down))

    def write_ok():
        r = hub.api("POST", "/v1/sites", {"name": "after"})
        return r.status == 201 or r.status == 409

    h.check(h.wait_until(write_ok, 10, interval=0.2),
            "writes succeed again within 10 s of the server's return, without a hub restart")
    h.info("first write accepted %.1f s after the server's return" % (time.monotonic() - t_up))
    rows = hub.sql_rows("SELECT name FROM sites WHERE name IN ('during', 'during2', 'after') "
                        "ORDER BY name")
    h.check(rows == [["after"]], "the refused writes left nothing; the later one is stored", rows)

    # A site enrolls and connects through the same hub process.
    late, _ = h.add_site(hub, "late")
    h.check(hub.sql_rows("SELECT count(*) FROM sessions s JOIN sites t ON t.id = s.site_id "
                         "WHERE t.name = 'late'") == [["1"]],
            "the new site's session is recorded after the outage")
    # A federated query reaches all three sites.
    r = submit(hub, {"sites": "*", "service": "web", "path": "/echo?q=after"})
    qid = (r.json() or {}).get("id")
    h.check(r.status == 201 and qid, "a federated query is accepted after the outage", r)
    q = wait_complete(hub, qid, 20) if qid else {}
    done = sorted(s["site"] for s in q.get("sites", []) if s.get("status") == "done")
    h.check(q.get("status") == "complete" and done == ["clinic", "lab", "late", "ward"],
            "and every site answers it", q)

    time.sleep(0.5)
    load.stop.set()
    load.join(15)
    during = load.between(t_down, time.monotonic())
    bad = [x for x in load.results if not x[2]]
    h.info("steady load: %d requests, %d during and after the outage" % (
        len(load.results), len(during)))
    h.check(len(load.between(t_down, t_up)) >= 10 and not bad,
            "no proxied request failed before, during or after the outage", bad[:5])
    h.check(hub.proc.find(r"\baudit_failed action=site\.add target=during\b.*"
                          r"error=\"the hub's database is unreachable\"", since=mark)
            is not None, "the hub's log says the refused write's audit row could not be written, "
            "and why")
    ok, detail = hub.db_check()
    h.check(ok, "the registry is sound after the outage", detail)


if __name__ == "__main__":
    Harness.main("test_pg_restart", main, tools=("curl", "psql"))
