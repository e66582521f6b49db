#!/usr/bin/env python3
# Integration: GET /v1/queries/{id}/events streams one SSE event per site in arrival order then done (live, late and mid-way subscribers, HTTP/1.1 and HTTP/2, client going away).
# SPDX-License-Identifier: MIT
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from queryhelp import Stream, add_site, by_site, get_query, submit_ok  # noqa: E402

SITES = ("clinic-a", "clinic-b", "clinic-c")


def delays(a, b, c):
    return "ms.clinic-a=%d&ms.clinic-b=%d&ms.clinic-c=%d" % (a, b, c)


def check_stream(h, st, qid, order, label):
    evs = st.events()
    results = [e for e in evs if e[1] == "result"]
    done = [e for e in evs if e[1] == "done"]
    sites = [json.loads(e[3])["site"] for e in results]
    h.check(sites == list(order), "%s: one result event per site, in arrival order" % label,
            (sites, order))
    h.check([e[2] for e in results] == [str(i) for i in range(1, len(order) + 1)],
            "%s: event ids are the arrival numbers 1..n" % label, [e[2] for e in results])
    h.check(len(done) == 1 and evs[-1][1] == "done", "%s: exactly one done event, last" % label,
            [e[1] for e in evs])
    if done:
        d = json.loads(done[0][3])
        h.check(d.get("id") == qid and d.get("status") == "complete"
                and d.get("counts", {}).get("done") == len(order),
                "%s: done carries the id, complete and the counts" % label, d)
    return results


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    for name in SITES:
        add_site(h, hub, name)

    # Live subscriber: b answers after 0.2 s, c after 0.9 s, a after 1.6 s.
    j = submit_ok(hub, {"sites": "*", "service": "counts",
                        "path": "/tally/e1?" + delays(1600, 200, 900), "timeout_s": 20})
    st = Stream(h, hub, j["id"])
    rc = st.wait()
    h.check(rc == 0, "the events stream ends by itself after done", rc)
    hd = st.headers()
    h.check(hd.get("content-type", "").startswith("text/event-stream"),
            "content-type is text/event-stream", hd)
    res = check_stream(h, st, j["id"], ("clinic-b", "clinic-c", "clinic-a"), "live")
    if len(res) == 3:
        h.check(res[1][0] - res[0][0] > 0.4 and res[2][0] - res[1][0] > 0.4,
                "events arrive as results land, not all at the end",
                [round(e[0], 2) for e in res])
    q = get_query(hub, j["id"])
    h.check(all(s["status"] == "done" for s in q["sites"]), "all three done", q)
    data = {json.loads(e[3])["site"]: json.loads(e[3]) for e in res}
    h.check(data.get("clinic-a", {}).get("body") == by_site(q)["clinic-a"]["body"],
            "an event holds the same result as GET", data.get("clinic-a"))

    # Late subscriber (query complete): stored results in arrival order, done, end.
    st = Stream(h, hub, j["id"], http2=True)
    h.check(st.wait() == 0, "late subscriber over HTTP/2: the stream ends")
    check_stream(h, st, j["id"], ("clinic-b", "clinic-c", "clinic-a"), "late, HTTP/2")

    # Mid-way subscriber: what landed is replayed first, the rest comes live.
    j = submit_ok(hub, {"sites": "*", "service": "counts",
                        "path": "/tally/e2?" + delays(2500, 0, 1200), "timeout_s": 20})
    h.wait_until(lambda: get_query(hub, j["id"])["counts"]["done"] >= 1, 5, 0.05)
    st = Stream(h, hub, j["id"], http2=True)
    h.check(st.wait() == 0, "mid-way subscriber: the stream ends after done")
    res = check_stream(h, st, j["id"], ("clinic-b", "clinic-c", "clinic-a"), "mid-way")
    if len(res) == 3:
        h.check(res[0][0] < 0.8 and res[2][0] > 0.8,
                "the landed result came at once, the others later",
                [round(e[0], 2) for e in res])

    # Clients that go away: an events stream and a ?wait GET, mid-query.
    j = submit_ok(hub, {"sites": "*", "service": "counts",
                        "path": "/tally/e3?" + delays(3000, 0, 3000), "timeout_s": 20})
    st1 = Stream(h, hub, j["id"])
    st2 = Stream(h, hub, j["id"], http2=True)
    w = subprocess.Popen(["curl", "-q", "-sS", "-k", "--pinnedpubkey", hub.pin, "-H",
                          "Authorization: Bearer %s" % hub.token,
                          "%s/v1/queries/%s?wait=30" % (hub.url, j["id"])],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=h.env)
    h.wait_until(lambda: any(ln.startswith("event: result") for _, ln in st1.lines), 5, 0.05)
    st1.kill()
    st2.kill()
    w.kill()
    w.wait()
    st3 = Stream(h, hub, j["id"])
    h.check(st3.wait() == 0, "a new subscriber still gets the whole stream")
    evs = [e for e in st3.events() if e[1] == "result"]
    sites = [json.loads(e[3])["site"] for e in evs]
    h.check(len(sites) == 3 and sites[0] == "clinic-b" and set(sites) == set(SITES),
            "after others left: one result per site, clinic-b first", sites)
    hc = hub.curl("/healthz", token=None)
    h.check(hc.status == 200, "the hub serves on after clients left mid-stream", hc)
    r = hub.curl("/v1/queries/q_AAAAAAAAAAAAAAAAAAAAAA/events")
    h.check(r.status == 404, "events of an unknown query: 404", r)


Harness.main("test_query_events", main)
