#!/usr/bin/env python3
# Integration: queued queries survive kill -9 of the hub and are delivered exactly once; in-flight ones are not resent (hub restart, site drop).
# SPDX-License-Identifier: MIT
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from queryhelp import (add_site, by_site, get_query, sql, start_site, submit_ok, tally,  # noqa: E402
                       wait_complete)

N_QUEUED = 5


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    a, svc_a = add_site(h, hub, "clinic-a")
    b, svc_b = add_site(h, hub, "clinic-b", start=False)
    c, svc_c = add_site(h, hub, "clinic-c", start=False)

    queued = []
    for i in range(N_QUEUED):
        j = submit_ok(hub, {"sites": ["clinic-b", "clinic-c"], "service": "counts",
                            "method": "POST", "path": "/tally/k%d" % i, "body": "x" * i})
        queued.append(j["id"])
        h.check(all(s["status"] == "queued" for s in j["sites"]), "query %d queued for both "
                "offline sites" % i, j)
    # One in flight at clinic-a when the hub dies: its service holds it 30 s.
    jf = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts",
                         "path": "/tally/inflight?ms.clinic-a=30000", "timeout_s": 120})
    got = h.wait_until(lambda: tally(svc_a)["keys"].get("inflight") == 1, 10)
    h.check(got, "clinic-a's service received the in-flight query")

    hub.proc.kill9()
    h.check(not hub.proc.alive(), "hub killed with -9")
    ok, detail = hub.db_check()
    h.check(ok, "the registry the killed hub left passes its integrity check", detail)
    st = sql(h, hub, "SELECT status, count(*) FROM query_results GROUP BY status ORDER BY status")
    h.check(st == "queued|%d\nsent|1" % (2 * N_QUEUED),
            "on disk: every queued result, and the in-flight one as sent", st)

    hub.start()
    hub.proc.wait_log(r"\bquery_recovered\b.*\bin_flight_failed=1\b", 10)
    h.check(True, "the restarted hub fails the one result it had in flight")
    qf = get_query(hub, jf["id"])
    rf = by_site(qf)["clinic-a"]
    h.check(rf["status"] == "error" and "restarted" in (rf["detail"] or "")
            and "not resent" in rf["detail"], "the in-flight result is an error that says the "
            "hub restarted and it was not resent", rf)
    h.check(qf["status"] == "complete", "that query is complete", qf["status"])

    for s in (b, c):
        start_site(hub, s)
    if hub.wait_ready("clinic-a", 20) is None:
        h.check(False, "clinic-a reconnects to the restarted hub")
    for i, qid in enumerate(queued):
        q = wait_complete(hub, qid, 20)
        h.check(q and q["status"] == "complete" and all(
            s["status"] == "done" and s["http_status"] == 200 for s in q["sites"]),
            "queued query %d delivered to both sites after the restart" % i, q)
    # The hub's one delivery decision per site: every queued result, once.
    for name in ("clinic-b", "clinic-c"):
        h.check(hub.proc.wait_log(r"\bquery_delivered site=%s queued=%d sent=%d\b"
                                  % (name, N_QUEUED, N_QUEUED), 10, fatal=False),
                "the restarted hub sent %s its %d queued results in one go" % (name, N_QUEUED))
    for name, svc in (("clinic-b", svc_b), ("clinic-c", svc_c)):
        t = tally(svc)
        h.check(all(t["keys"].get("k%d" % i) == 1 for i in range(N_QUEUED))
                and all(t["queries"].get(qid) == 1 for qid in queued),
                "%s received every queued query exactly once" % name, t)
    h.check(tally(svc_a)["keys"].get("inflight") == 1,
            "the in-flight query was not sent again to clinic-a", tally(svc_a))

    # Restart again, by force and gracefully: nothing is delivered twice.
    hub.proc.kill9()
    hub.start()
    for name in ("clinic-a", "clinic-b", "clinic-c"):
        h.check(hub.proc.wait_log(r"\bquery_delivered site=%s queued=0 sent=0\b" % name, 20,
                                  fatal=False),
                "after the second restart the hub finds nothing to deliver to %s" % name)
    for name, svc in (("clinic-b", svc_b), ("clinic-c", svc_c)):
        t = tally(svc)
        h.check(all(v == 1 for v in t["keys"].values()) and len(t["keys"]) == N_QUEUED,
                "%s: no delivery repeated after a second kill -9 and restart" % name, t)

    # A site that drops mid-query: error, never resent when it comes back.
    j = submit_ok(hub, {"sites": ["clinic-b"], "service": "counts",
                        "path": "/tally/drop?ms.clinic-b=30000", "timeout_s": 60})
    h.check(h.wait_until(lambda: tally(svc_b)["keys"].get("drop") == 1, 10),
            "clinic-b's service received the query")
    b.proc.kill9()
    q = get_query(hub, j["id"], wait=15)
    rb = by_site(q)["clinic-b"]
    h.check(rb["status"] == "error" and "disconnected" in (rb["detail"] or "")
            and "not resent" in rb["detail"],
            "a site dropping mid-query gives error 'site disconnected ... not resent'", rb)
    mark = hub.proc.mark()
    start_site(hub, b)
    h.check(hub.proc.wait_log(r"\bquery_delivered site=clinic-b queued=0 sent=0\b", 10,
                              since=mark, fatal=False),
            "the hub finds nothing to deliver when clinic-b comes back")
    h.check(tally(svc_b)["keys"].get("drop") == 1, "the dropped query is not resent when the "
            "site comes back", tally(svc_b))

    st = sql(h, hub, "SELECT count(*) FROM query_results WHERE status IN ('queued', 'sent')")
    h.check(st == "0", "no result is left open", st)

    # SIGTERM with a query in flight and clients waiting on it: the drain
    # grace runs out, the hub exits cleanly and the result says why.
    hub.proc.stop()
    hub.start(["--drain-grace", "1"], env={"TETHER_LOG": "debug"})  # debug: query_waiting
    for name in ("clinic-a", "clinic-b", "clinic-c"):
        hub.wait_ready(name, 20)
    j = submit_ok(hub, {"sites": ["clinic-c"], "service": "counts",
                        "path": "/tally/term?ms.clinic-c=30000", "timeout_s": 60})
    h.check(h.wait_until(lambda: tally(svc_c)["keys"].get("term") == 1, 10),
            "clinic-c's service received the query")
    waiters = [subprocess.Popen(["curl", "-q", "-sS", "-N", "-k", "--pinnedpubkey", hub.pin, "-H",
                                 "Authorization: Bearer %s" % hub.token, "--http2" if i else
                                 "--http1.1", "%s/v1/queries/%s%s" % (
                                     hub.url, j["id"], "/events" if i else "?wait=60")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=h.env)
               for i in (0, 1)]
    for kind in ("wait", "events"):
        h.check(hub.proc.wait_log(r"\bquery_waiting id=%s kind=%s\b" % (j["id"], kind), 10,
                                  fatal=False), "a client waits on the query (%s)" % kind)
    rc = hub.proc.stop(timeout=15)
    h.check(rc == 0, "SIGTERM with a query in flight and waiters: the hub exits 0", rc)
    for w in waiters:
        try:
            w.wait(10)
        except subprocess.TimeoutExpired:
            w.kill()
            w.wait()
    hub.start()
    q = get_query(hub, j["id"])
    rc_ = by_site(q)["clinic-c"]
    h.check(rc_["status"] == "error" and "shut down" in (rc_["detail"] or ""),
            "the result in flight at shutdown is an error saying the hub shut down", rc_)
    ok, detail = hub.db_check()
    h.check(ok, "the registry passes its integrity check at the end", detail)


Harness.main("test_query_durable", main)
