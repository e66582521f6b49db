#!/usr/bin/env python3
# Integration: federated-query end states other than done: timeout at timeout_s, expired at ttl_s, service not offered, service down, body over the hub.conf limit.
# SPDX-License-Identifier: MIT
import base64
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, closed_port  # noqa: E402
from queryhelp import add_site, by_site, get_query, start_site, submit_ok, tally  # noqa: E402

BODY_MAX = 4096


def main(h):
    # The limit comes from hub.conf; a malformed environment override is
    # ignored with a warning.
    h.env["TETHER_QUERY_BODY_MAX"] = "lots"
    hub = h.hub()
    hub.init()
    with open(os.path.join(hub.dir, "hub.conf"), "a") as f:
        f.write("query_body_max = %d\n" % BODY_MAX)
    hub.start(test_clock=True)
    h.check(hub.proc.wait_log(r"\bconfig_ignored\b.*TETHER_QUERY_BODY_MAX", 5, fatal=False),
            "a malformed TETHER_QUERY_BODY_MAX is reported and ignored")
    a, svc_a = add_site(h, hub, "clinic-a")
    b, svc_b = add_site(h, hub, "clinic-b")
    c, svc_c = add_site(h, hub, "clinic-c", start=False)

    # timeout: clinic-b's service hangs, clinic-a answers at once.
    t0 = time.monotonic()
    j = submit_ok(hub, {"sites": ["clinic-a", "clinic-b"], "service": "counts",
                        "path": "/tally/t1?ms.clinic-b=30000", "timeout_s": 2})
    q = get_query(hub, j["id"], wait=20)
    took = time.monotonic() - t0
    s = by_site(q)
    h.check(s["clinic-a"]["status"] == "done" and s["clinic-a"]["latency_ms"] < 1500,
            "the site that answers is done quickly", s["clinic-a"])
    rb = s["clinic-b"]
    h.check(rb["status"] == "timeout" and "timeout_s (2 s)" in (rb["detail"] or ""),
            "the hanging site's result is timeout", rb)
    h.check(2000 <= (rb["latency_ms"] or 0) <= 3200, "timeout lands at timeout_s (2 s, within "
            "the engine's 0.5 s tick)", rb.get("latency_ms"))
    h.check(q["status"] == "complete" and 1.9 <= took <= 4.5,
            "?wait answers when the timeout completes the query", (q["status"], took))

    # ttl: clinic-c is offline; a 60 s ttl expires when the hub's clock has
    # moved past it (the test clock, no waiting), ttl 0 expires at once.
    j = submit_ok(hub, {"sites": ["clinic-c"], "service": "counts", "path": "/tally/ttl1",
                        "ttl_s": 60})
    h.check(j["sites"][0]["status"] == "queued", "offline site queued", j)
    hub.clock_set(50)
    q = get_query(hub, j["id"], wait=1.2)  # answered still running: the engine ticked twice
    h.check(by_site(q)["clinic-c"]["status"] == "queued",
            "still queued with 10 s of its ttl left", by_site(q)["clinic-c"])
    hub.clock_set(62)
    t0 = time.monotonic()
    q = get_query(hub, j["id"], wait=10)
    took = time.monotonic() - t0
    rc_ = by_site(q)["clinic-c"]
    h.check(rc_["status"] == "expired" and "ttl_s" in (rc_["detail"] or ""),
            "the queued result expires when ttl_s runs out", rc_)
    h.check(took <= 2.5, "expiry comes within about a second of the clock passing ttl_s", took)
    h.check(q["status"] == "complete", "an expired result completes the query", q["status"])
    j0 = submit_ok(hub, {"sites": ["clinic-c", "clinic-a"], "service": "counts", "path": "/count",
                         "ttl_s": 0})
    st = {x["site"]: x["status"] for x in j0["sites"]}
    h.check(st == {"clinic-c": "expired", "clinic-a": "sent"},
            "ttl_s 0: an offline site is expired at once, an online one is sent", j0)
    mark = hub.proc.mark()
    start_site(hub, c)
    h.check(hub.proc.wait_log(r"\bquery_delivered site=clinic-c queued=0 sent=0\b", 10,
                              since=mark, fatal=False),
            "the hub finds nothing to deliver when clinic-c comes online")
    h.check("ttl1" not in tally(svc_c)["keys"], "an expired query is never delivered",
            tally(svc_c))

    # The site does not offer the service.
    j = submit_ok(hub, {"sites": ["clinic-a"], "service": "nosuch", "path": "/count"})
    h.check(j["status"] == "complete" and j["sites"][0]["status"] == "error"
            and "does not offer" in j["sites"][0].get("detail", ""),
            "a service the site does not offer is an error at once", j)

    # The site's service is down: the site's own error.
    d = h.site("clinic-d", hub)
    d.enroll(hub.site_add("clinic-d"))
    d.start({"counts": "http://127.0.0.1:%d" % closed_port()})
    hub.wait_ready("clinic-d", 15)
    j = submit_ok(hub, {"sites": ["clinic-d"], "service": "counts", "path": "/count"})
    rd = by_site(get_query(hub, j["id"], wait=10))["clinic-d"]
    h.check(rd["status"] == "error" and rd["http_status"] == 502
            and (rd["detail"] or "").startswith("site: "),
            "a service that refuses is an error with the site's reason", rd)

    # Bodies: at the limit stored (binary as base64), over it an error.
    j = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts",
                        "path": "/bytes/%d" % BODY_MAX})
    ra = by_site(get_query(hub, j["id"], wait=10))["clinic-a"]
    raw = base64.b64decode(ra.get("body_base64") or "")
    h.check(ra["status"] == "done" and ra["body"] is None and len(raw) == BODY_MAX,
            "a binary body at the limit is stored and returned as body_base64", len(raw))
    j = submit_ok(hub, {"sites": ["clinic-a", "clinic-b"], "service": "counts",
                        "path": "/bytes/%d" % (BODY_MAX + 1)})
    q = get_query(hub, j["id"], wait=10)
    for name, r in by_site(q).items():
        h.check(r["status"] == "error" and r["http_status"] == 200 and r["body"] is None
                and "%d-byte limit" % BODY_MAX in (r["detail"] or ""),
                "%s: a body over the limit is an error naming the limit" % name, r)
    # The tunnel is still fine afterwards.
    j = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts", "path": "/count"})
    ra = by_site(get_query(hub, j["id"], wait=10))["clinic-a"]
    h.check(ra["status"] == "done", "the next query to the same site works", ra)


Harness.main("test_query_timeouts", main)
