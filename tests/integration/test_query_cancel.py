#!/usr/bin/env python3
# Integration: cancelling a federated query (POST /v1/queries/{id}/cancel, tetherctl query cancel/show/list): queued sites become cancelled and never get it, sent ones finish, waiters and SSE end, who may cancel, 409s, audit.
# SPDX-License-Identifier: MIT
import json
import re
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from queryhelp import Stream, add_site, by_site, get_query, start_site, submit_ok, tally  # noqa: E402,E501


def cancel(hub, qid, token=None):
    return hub.api("POST", "/v1/queries/%s/cancel" % qid, {}, **({"token": token} if token else {}))


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    a, svc_a = add_site(h, hub, "clinic-a")
    # b: enrolled, never connected; c: connected once with "counts", now down.
    b, svc_b = add_site(h, hub, "clinic-b", start=False)
    c, svc_c = add_site(h, hub, "clinic-c")
    c.proc.stop()
    hub.wait_online("clinic-c", online=False)

    # 1. Only offline sites: the cancel completes the query at once, and a
    # waiting GET and an events stream end with it.
    j = submit_ok(hub, {"sites": ["clinic-b", "clinic-c"], "service": "counts",
                        "path": "/tally/k1", "timeout_s": 20})
    qid = j["id"]
    st = Stream(h, hub, qid)
    waited = {}

    def wait_get():
        t0 = time.monotonic()
        waited["q"] = get_query(hub, qid, wait=60, timeout=90)
        waited["s"] = time.monotonic() - t0

    th = threading.Thread(target=wait_get, daemon=True)
    th.start()
    time.sleep(0.5)  # both are waiting
    t0 = time.monotonic()
    r = hub.ctl("query", "cancel", qid)
    h.check(r.rc == 0 and ("query %s cancelled: 2 site(s) will not get it" % qid) in r.stdout,
            "tetherctl query cancel: exit 0, says how many sites will not get it", r)
    th.join(15)
    h.check("q" in waited and waited["q"]["status"] == "cancelled",
            "a GET ?wait= waiting on the query is answered by the cancel, status cancelled",
            waited.get("q"))
    h.check(waited.get("s", 99) < 10, "... at once, not at its 60 s wait", waited.get("s"))
    rc = st.wait(15)
    h.check(rc == 0 and time.monotonic() - t0 < 10,
            "the events stream of the query ends after the cancel", (rc, st.lines[-5:]))
    evs = st.events()
    res = [json.loads(e[3]) for e in evs if e[1] == "result"]
    h.check(sorted(x["site"] for x in res) == ["clinic-b", "clinic-c"]
            and all(x["status"] == "cancelled" for x in res),
            "one result event per site, each cancelled", res)
    done = [json.loads(e[3]) for e in evs if e[1] == "done"]
    h.check(len(done) == 1 and done[0].get("status") == "cancelled"
            and done[0].get("counts", {}).get("cancelled") == 2,
            "the done event says cancelled, with the counts", done)
    m = re.search(r'^tether_query_results_total\{state="cancelled"\} (\d+)$',
                  hub.curl("/metrics").body.decode(errors="replace"), re.M)
    h.check(m is not None and int(m.group(1)) == 2,
            "/metrics counts the 2 cancelled results", m and m.group(0))
    q = get_query(hub, qid)
    rb = by_site(q)["clinic-b"]
    h.check(rb["status"] == "cancelled" and "cancelled by admin" in (rb["detail"] or "")
            and rb["http_status"] is None and rb["sent_at"] is None,
            "a cancelled result says who cancelled it and was never sent", rb)
    h.check(isinstance(q.get("cancelled_at"), int) and abs(q["cancelled_at"] - time.time()) < 60
            and q.get("completed_at") == q.get("cancelled_at"),
            "the query has cancelled_at, and completed with the cancel", q)

    # The sites come back: nothing is delivered to them.
    mark = hub.proc.mark()
    start_site(hub, b)
    start_site(hub, c)
    h.check(hub.proc.wait_log(r"\bquery_delivered site=clinic-b queued=0 sent=0\b", 10,
                              since=mark, fatal=False) and
            hub.proc.wait_log(r"\bquery_delivered site=clinic-c queued=0 sent=0\b", 10,
                              since=mark, fatal=False),
            "the hub finds nothing to deliver to the cancelled sites when they connect")
    h.check("k1" not in tally(svc_b)["keys"] and "k1" not in tally(svc_c)["keys"],
            "a cancelled site's service never sees the query",
            (tally(svc_b), tally(svc_c)))

    # 2. A query complete already: 409, exit 5, saying so.
    r = hub.ctl("query", "cancel", qid)
    h.check(r.rc == 5 and "was already cancelled" in r.stderr and "(HTTP 409)" in r.stderr,
            "cancelling a cancelled query again: exit 5, 'already cancelled'", r)
    j2 = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts", "path": "/tally/k2"})
    get_query(hub, j2["id"], wait=10)
    r = cancel(hub, j2["id"])
    h.check(r.status == 409 and r.json().get("error") == "conflict"
            and "already complete" in r.json().get("detail", ""),
            "cancelling a complete query: 409 conflict, 'already complete'", r)

    # 3. Sent and queued together: the sent site finishes, the queued one is
    # cancelled; the query is 'running' until the sent one lands.
    b.proc.stop()
    hub.wait_online("clinic-b", online=False)
    j3 = submit_ok(hub, {"sites": "*", "service": "counts",
                         "path": "/tally/k3?ms.clinic-a=2500", "timeout_s": 20})
    st3 = {x["site"]: x["status"] for x in j3["sites"]}
    h.check(st3 == {"clinic-a": "sent", "clinic-b": "queued", "clinic-c": "sent"},
            "set-up: a and c sent, b queued", j3)
    h.check(get_query(hub, j3["id"]).get("target") == "*", "the query shows its target \"*\"")
    time.sleep(0.5)  # c has answered; a holds its answer 2.5 s
    r = hub.ctl("--json", "query", "cancel", j3["id"])
    q = r.json() if r.rc == 0 else {}
    h.check(r.rc == 0 and q.get("status") == "running" and q.get("counts", {}).get("cancelled") == 1
            and by_site(q).get("clinic-b", {}).get("status") == "cancelled"
            and by_site(q).get("clinic-a", {}).get("status") == "sent",
            "cancel --json: the query as it now is: b cancelled, a still sent, running", r)
    r = hub.ctl("query", "cancel", j3["id"])
    h.check(r.rc == 5 and "already cancelled" in r.stderr and "may still answer" in r.stderr,
            "a second cancel while a site answers: exit 5, says it may still answer", r)
    q = get_query(hub, j3["id"], wait=15)
    h.check(q["status"] == "cancelled" and by_site(q)["clinic-a"]["status"] == "done",
            "the sent site's answer lands; then the query is cancelled (complete)", q)
    h.check(tally(svc_a)["keys"].get("k3") == 1, "the sent site got the query once",
            tally(svc_a))
    start_site(hub, b)
    time.sleep(1)
    h.check("k3" not in tally(svc_b)["keys"], "the cancelled site never gets it", tally(svc_b))

    # 4. Everything still open is sent: nothing can be called back (409).
    j4 = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts",
                         "path": "/tally/k4?ms.clinic-a=3000", "timeout_s": 20})
    r = cancel(hub, j4["id"])
    h.check(r.status == 409 and "cannot be called back" in r.json().get("detail", ""),
            "cancelling a query whose sites all have it: 409, it cannot be called back", r)
    h.check(get_query(hub, j4["id"], wait=15)["status"] == "complete",
            "... and it completes normally (not cancelled)")

    # 5. Who may cancel: the submitter's token or an admin; another user gets
    # 404 (it cannot even see the query). Unknown ids: 404 / exit 3.
    a.proc.stop()
    hub.wait_online("clinic-a", online=False)
    alice = hub.token_create("alice", "--role", "user", "--sites", "*")
    bob = hub.token_create("bob", "--role", "user", "--sites", "*")
    ja = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts", "path": "/tally/k5"},
                   token=alice)
    r = cancel(hub, ja["id"], token=bob)
    h.check(r.status == 404 and r.json().get("error") == "not_found",
            "another user's token may not cancel (404, as if unknown)", r)
    r = hub.ctl("query", "cancel", ja["id"], token=bob)
    h.check(r.rc == 3 and "tetherctl query list" in r.stderr,
            "tetherctl: exit 3 and a pointer to query list", r)
    r = cancel(hub, ja["id"], token=alice)
    h.check(r.status == 200 and r.json().get("status") == "cancelled",
            "the submitter's own token cancels it", r)
    jb = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts", "path": "/tally/k6"},
                   token=alice)
    r = cancel(hub, jb["id"])
    h.check(r.status == 200 and by_site(r.json())["clinic-a"]["status"] == "cancelled"
            and "cancelled by admin" in by_site(r.json())["clinic-a"]["detail"],
            "an admin cancels a user's query", r)
    r = hub.ctl("query", "cancel", "q_AAAAAAAAAAAAAAAAAAAAAA")
    h.check(r.rc == 3, "an unknown query id: exit 3", r)
    r = hub.ctl("query", "cancel", "nonsense")
    h.check(r.rc == 2 and "invalid query id" in r.stderr, "a malformed id: exit 2", r)
    r = hub.api("POST", "/v1/queries/%s/cancel" % jb["id"], {"force": True})
    h.check(r.status == 400, "a body with unknown fields is refused (400)", r)

    # 6. list and show.
    r = hub.ctl("query", "list")
    lines = r.stdout.splitlines()
    row = [ln for ln in lines if ln.startswith(qid)]
    h.check(r.rc == 0 and lines and lines[0].split()[:3] == ["ID", "CREATED", "USER"]
            and row and " cancelled " in row[0] and "cancelled 2" in row[0],
            "query list: a table, the cancelled query with its status and counts", r)
    lst = hub.ctl_json("query", "list", "--limit", "2")
    h.check(len(lst.get("queries", [])) == 2 and lst.get("next"),
            "query list --limit 2 --json: two queries and a next id", lst)
    r = hub.ctl("query", "list", "--before", lst["next"], "--limit", "500")
    h.check(r.rc == 0 and jb["id"] not in r.stdout and qid in r.stdout,
            "query list --before ID pages on", r)
    r = hub.ctl("query", "list", token=alice)
    h.check(r.rc == 0 and ja["id"] in r.stdout and qid not in r.stdout,
            "a user's query list holds its own queries only", r)
    r = hub.ctl("query", "show", j3["id"])
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.strip()}
    h.check(r.rc == 0 and rows.get("status:") == ["status:", "cancelled"]
            and "cancelled:" in rows and rows.get("clinic-b", [""])[1:2] == ["cancelled"]
            and rows.get("clinic-a", [""])[1:3] == ["done", "200"]
            and rows.get("SITE") == ["SITE", "STATUS", "HTTP", "LATENCY", "BODY"],
            "query show: the fields and each site's result", r)
    r = hub.ctl("query", "show", "q_AAAAAAAAAAAAAAAAAAAAAA")
    h.check(r.rc == 3 and "no such query" in r.stderr, "query show of an unknown id: exit 3", r)
    # The submit form is unchanged beside them.
    r = hub.ctl("query", "--service", "counts", "--sites", "clinic-b", "--path", "/tally/k7",
                "--wait")
    h.check(r.rc == 0 and "clinic-b" in r.stdout and "done" in r.stdout,
            "query --service ... --wait still submits and waits", r)

    # 7. Audit: one row per cancel, refusals included.
    rows = hub.ctl_json("audit", "--limit", "200").get("entries", [])
    canc = [e for e in rows if e.get("action") == "query.cancel"]
    h.check([e for e in canc if e.get("target") == qid and e.get("result") == "ok"
             and e.get("actor") == "admin" and "cancelled=2" in e.get("detail", "")],
            "the cancel is audited: actor, query id, ok, what it cancelled", canc)
    h.check([e for e in canc if e.get("target") == ja["id"] and e.get("actor") == "bob"
             and e.get("result") == "not_found"], "another user's refused cancel is audited",
            canc)
    h.check([e for e in canc if e.get("target") == j2["id"] and e.get("result") == "conflict"],
            "a 409 is audited as conflict", canc)
    h.check(hub.proc.find(r"\bquery_cancelled id=%s by=admin cancelled=2 sent=0\b" % qid),
            "the hub logs query_cancelled")


Harness.main("test_query_cancel", main)
