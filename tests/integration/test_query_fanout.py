#!/usr/bin/env python3
# Integration: federated query to three real sites, one offline at submit (queued, then done when it starts); tetherctl query; history paging; audit rows.
# SPDX-License-Identifier: MIT
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from queryhelp import (QID_RE, add_site, by_site, get_query, list_all, sql, start_site,  # noqa: E402
                       submit_ok, tally)

COUNTS = {"clinic-a": 1287, "clinic-b": 342, "clinic-c": 77}


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    a, svc_a = add_site(h, hub, "clinic-a")
    b, svc_b = add_site(h, hub, "clinic-b")
    c, svc_c = add_site(h, hub, "clinic-c", start=False)

    # 1. tetherctl: one question to every site, --wait prints the table.
    r = hub.ctl("query", "--service", "counts", "--sites", "all", "--path", "/count", "--wait",
                "--timeout", "2")
    lines = r.stdout.splitlines()
    h.check(lines and re.match(r"^SITE\s+STATUS\s+HTTP\s+LATENCY\s+BODY$", lines[0]),
            "query --wait prints a SITE STATUS HTTP LATENCY BODY table", r)
    rows = {ln.split()[0]: ln for ln in lines[1:] if ln.strip()}
    for name in ("clinic-a", "clinic-b"):
        ln = rows.get(name, "")
        h.check(re.match(r"^%s\s+done\s+200\s+\d+ ms\s+.*\"count\": %d" % (name, COUNTS[name]), ln),
                "table row for %s: done, 200, latency, body start with its count" % name, ln)
    h.check(re.match(r"^clinic-c\s+queued\s+-\s+-", rows.get("clinic-c", "")),
            "table row for the offline clinic-c: queued", rows.get("clinic-c"))
    h.check(r.rc == 1 and "did not answer" in r.stderr and "queued 1" in r.stderr,
            "query --wait exits 1 and says which sites did not answer while one is queued", r)
    m = re.search(r"query (q_[A-Za-z0-9_-]{22})", r.stderr)
    ctl_qid = m.group(1) if m else None
    h.check(ctl_qid is not None, "the summary names the query id", r.stderr)

    # 2. The API: explicit list of names, the offline site is queued.
    t0 = time.monotonic()
    j = submit_ok(hub, {"sites": ["clinic-a", "clinic-b", "clinic-c"], "service": "counts",
                        "method": "POST", "path": "/tally/fan1", "body": "hello",
                        "headers": {"Content-Type": "text/plain"}, "timeout_s": 10})
    qid = j["id"]
    st = {s["site"]: s["status"] for s in j.get("sites", [])}
    h.check(st == {"clinic-a": "sent", "clinic-b": "sent", "clinic-c": "queued"},
            "201 lists the online sites as sent and the offline one as queued", j)
    h.check(j.get("status") == "running", "a query with open results is running", j)

    q = get_query(hub, qid, wait=2, timeout=30)
    took = time.monotonic() - t0
    s = by_site(q)
    h.check(s["clinic-a"]["status"] == "done" and s["clinic-b"]["status"] == "done",
            "the two online sites are done", q)
    h.check(s["clinic-c"]["status"] == "queued" and s["clinic-c"]["http_status"] is None,
            "the offline site stays queued", s.get("clinic-c"))
    h.check(q["status"] == "running" and took >= 1.8,
            "?wait=2 holds the answer while a site is queued, then answers running",
            (q["status"], took))
    ra = s["clinic-a"]
    body = json.loads(ra["body"]) if isinstance(ra.get("body"), str) else {}
    h.check(ra["http_status"] == 200 and body.get("key") == "fan1" and body.get("site") == "clinic-a",
            "clinic-a's result holds its service's HTTP status and body", ra)
    h.check(isinstance(ra["latency_ms"], int) and 0 <= ra["latency_ms"] < 5000,
            "latency_ms is a small integer", ra.get("latency_ms"))
    h.check(isinstance(ra["finished_at"], int) and abs(ra["finished_at"] - time.time()) < 30,
            "finished_at is a recent unix time", ra.get("finished_at"))
    h.check((ra.get("headers") or {}).get("content-type") == "application/json",
            "the site's response headers are stored", ra.get("headers"))
    h.check(q["counts"] == {"queued": 1, "sent": 0, "done": 2, "error": 0, "timeout": 0,
                            "expired": 0, "skipped": 0, "cancelled": 0}, "counts per status",
            q.get("counts"))

    # 3. The offline site starts: its queued results are delivered at once.
    t1 = time.monotonic()
    start_site(hub, c)
    q = get_query(hub, qid, wait=15, timeout=40)
    h.check(q["status"] == "complete" and q.get("completed_at"),
            "the query completes once clinic-c connects", q)
    rc_ = by_site(q)["clinic-c"]
    h.check(rc_["status"] == "done" and rc_["http_status"] == 200
            and json.loads(rc_["body"]).get("site") == "clinic-c",
            "clinic-c's queued result is done with its own answer", rc_)
    h.check(time.monotonic() - t1 < 15, "?wait answered as soon as the query completed")
    hub.proc.wait_log(r"\bquery_delivered\b.*\bsite=clinic-c\b.*\bqueued=2\b", 10)
    h.check(True, "hub logs the delivery of both queued queries to clinic-c")
    q1 = get_query(hub, ctl_qid, wait=10) if ctl_qid else {}
    r1 = by_site(q1).get("clinic-c", {})
    h.check(r1.get("status") == "done" and json.loads(r1.get("body") or "{}").get("count") == 77,
            "the tetherctl query also reached clinic-c when it connected", r1)
    for name, svc in (("clinic-a", svc_a), ("clinic-b", svc_b), ("clinic-c", svc_c)):
        t = tally(svc)
        h.check(t["keys"].get("fan1") == 1 and t["queries"].get(qid) == 1,
                "%s's service saw the query exactly once, with its X-Tether-Query id" % name, t)

    # 4. tetherctl without --wait prints only the id; --json --wait prints the JSON.
    r = hub.ctl("query", "--service", "counts", "--sites", "clinic-a,clinic-b", "--path", "/count")
    h.check(r.rc == 0 and QID_RE.match(r.stdout.strip()), "query without --wait prints only the id",
            r)
    r = hub.ctl("query", "--service", "counts", "--sites", "all", "--path", "/count", "--wait",
                "--json")
    jj = r.json() if r.rc == 0 else {}
    h.check(r.rc == 0 and jj.get("status") == "complete" and len(jj.get("sites", [])) == 3
            and all(x["status"] == "done" for x in jj["sites"]),
            "query --wait --json prints the complete query with three done results", r)
    total = sum(json.loads(x["body"])["count"] for x in jj.get("sites", []))
    h.check(total == sum(COUNTS.values()), "the three counts add up", total)
    r = hub.ctl("query", "--service", "counts", "--sites", "label=nope=x", "--path", "/count")
    h.check(r.rc != 0 and "no site matches" in r.stderr, "a selector matching no site fails "
            "with a clear message", r)

    # 5. History: newest first, paging, one audit row per query.
    allq = list_all(hub)
    h.check(len(allq) == 4, "GET /v1/queries lists the four queries", len(allq))
    h.check(allq[0]["id"] == jj.get("id") and allq[-1]["id"] == ctl_qid,
            "history is newest first", [x["id"] for x in allq])
    h.check(all("sites" not in x and x["n_sites"] in (2, 3) for x in allq),
            "list entries carry counts, not results", allq[0])
    page = hub.curl("/v1/queries?limit=2").json()
    page2 = hub.curl("/v1/queries?limit=2&before=%s" % page["next"]).json()
    h.check([x["id"] for x in page["queries"] + page2["queries"]] == [x["id"] for x in allq],
            "limit/before pages through the same history", (page, page2))
    n_audit = sql(h, hub, "SELECT count(*) FROM audit WHERE action = 'query.submit' "
                          "AND result = 'ok' AND actor = 'admin'")
    h.check(n_audit == "4", "one audit row per submitted query", n_audit)
    det = sql(h, hub, "SELECT detail FROM audit WHERE action = 'query.submit' AND target = '%s'"
              % qid)
    h.check("service=counts" in det and "clinic-c" in det, "the audit detail names the service "
            "and the sites", det)
    ok, detail = hub.db_check()
    h.check(ok, "the registry passes its integrity check", detail)


Harness.main("test_query_fanout", main)
