#!/usr/bin/env python3
# Integration: a federated query to "*" or labels skips the sites that do not offer its service (listed as skipped, not errors; offline ones judged by the services they last announced), while a site named is still an error; tetherctl query --wait exits 0 when every other site answered.
# SPDX-License-Identifier: MIT
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from queryhelp import by_site, get_query, submit_ok, tally  # noqa: E402


def table(stdout):
    """SITE -> [STATUS, ...] from tetherctl query --wait's table."""
    rows = [ln.split() for ln in stdout.splitlines() if ln.strip()]
    return {r[0]: r[1:] for r in rows[1:]} if rows and rows[0][0] == "SITE" else {}


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    svc = {}
    sites = {}
    for name, labels in (("s-counts", ["grp=x"]), ("s-web", ["grp=x"]), ("s-gone", ["grp=x"]),
                         ("s-new", [])):
        svc[name] = h.service("svc-" + name, site_name=name)
        extra = []
        for lab in labels:
            extra += ["--label", lab]
        site = h.site(name, hub)
        site.enroll(hub.site_add(name, *extra))
        sites[name] = site
    sites["s-counts"].start({"counts": svc["s-counts"].url})
    sites["s-web"].start({"web": svc["s-web"].url})
    # s-gone announced only "web", then went away; s-new never connected.
    sites["s-gone"].start({"web": svc["s-gone"].url})
    for name in ("s-counts", "s-web", "s-gone"):
        hub.wait_ready(name, 15)
    sites["s-gone"].proc.stop()
    hub.wait_online("s-gone", online=False)

    # A label selector: every site it picks either answers or is skipped.
    r = hub.ctl("query", "--service", "counts", "--sites", "label=grp=x", "--path",
                "/tally/l1", "--wait")
    t = table(r.stdout)
    h.check(r.rc == 0 and not r.stderr, "label selector: exit 0 and nothing on stderr", r)
    h.check(t.get("s-counts", [""])[0] == "done", "the site with the service answers", t)
    h.check(t.get("s-web", [""])[0] == "skipped" and "does not offer service" in r.stdout,
            "an online site without the service is listed as skipped, saying why", t)
    h.check(t.get("s-gone", [""])[0] == "skipped" and "did not offer service" in r.stdout,
            "an offline site whose last announced services lack it is skipped too", t)
    h.check("l1" not in tally(svc["s-web"])["keys"], "the skipped site's service saw nothing")

    # "*": the site never connected is queued (nothing is known about it).
    j = submit_ok(hub, {"sites": "*", "service": "counts", "path": "/tally/l2"})
    st = {x["site"]: x["status"] for x in j["sites"]}
    h.check(st == {"s-counts": "sent", "s-web": "skipped", "s-gone": "skipped",
                   "s-new": "queued"}, "\"*\": sent, skipped, skipped, queued", j)
    q = get_query(hub, j["id"], wait=5)
    h.check(q["counts"].get("skipped") == 2 and q["counts"].get("error") == 0
            and q["status"] == "running", "counts: 2 skipped, no error; still running", q)
    r = hub.ctl("query", "--service", "counts", "--path", "/tally/l3", "--wait",
                "--timeout", "3")
    h.check(r.rc == 1 and "1 of 2 sites did not answer" in r.stderr and "queued 1" in r.stderr,
            "--sites all --wait: the skipped sites do not count as unanswered", r)

    # Named sites: asked in vain, that is an error.
    j = submit_ok(hub, {"sites": ["s-web"], "service": "counts", "path": "/tally/l4"})
    h.check(j["sites"][0]["status"] == "error"
            and "does not offer" in j["sites"][0].get("detail", ""),
            "a site named that lacks the service is an error, not skipped", j)
    jn = submit_ok(hub, {"sites": ["s-new"], "service": "counts", "path": "/tally/l5"})

    # No site offers it: exit 1, saying so.
    r = hub.ctl("query", "--service", "nosuch", "--sites", "label=grp=x", "--wait")
    h.check(r.rc == 1 and "none of the 3 sites offers service \"nosuch\"" in r.stderr
            and "tetherctl site list" in r.stderr,
            "no site offers the service: exit 1, says so and where to look", r)

    # At delivery: s-new connects with "web" only. The "*" query passes it
    # over; the one that named it fails.
    sites["s-new"].start({"web": svc["s-new"].url})
    hub.wait_ready("s-new", 15)
    star = by_site(get_query(hub, q["id"], wait=10))
    h.check(star["s-new"]["status"] == "skipped",
            "a queued \"*\" result is skipped when its site connects without the service", star)
    named = by_site(get_query(hub, jn["id"], wait=10))
    h.check(named["s-new"]["status"] == "error",
            "a queued result for a site named is an error when it lacks the service", named)
    h.check(get_query(hub, q["id"])["status"] == "complete",
            "the \"*\" query is complete once its last site is skipped")

    # A site that comes back offering the service is no longer skipped.
    sites["s-gone"].start({"counts": svc["s-gone"].url})
    hub.wait_ready("s-gone", 15)
    j = submit_ok(hub, {"sites": {"labels": {"grp": "x"}}, "service": "counts",
                        "path": "/tally/l6"})
    st = {x["site"]: x["status"] for x in j["sites"]}
    h.check(st.get("s-gone") == "sent", "a site that now offers the service is sent it", j)
    # Offline again: judged by what it announced last (now counts): queued.
    sites["s-gone"].proc.stop()
    hub.wait_online("s-gone", online=False)
    j = submit_ok(hub, {"sites": {"labels": {"grp": "x"}}, "service": "counts",
                        "path": "/tally/l7"})
    st = {x["site"]: x["status"] for x in j["sites"]}
    h.check(st.get("s-gone") == "queued",
            "offline, with counts among its last services: queued, not skipped", j)


Harness.main("test_query_skip", main)
