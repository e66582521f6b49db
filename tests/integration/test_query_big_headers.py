#!/usr/bin/env python3
# Integration: a query whose headers nghttp2 cannot send (over the 64 KiB header block limit) is refused at once and stays queued, and the hub keeps running.
# SPDX-License-Identifier: MIT
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from queryhelp import add_site, by_site, get_query, submit_ok  # noqa: E402


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    add_site(h, hub, "clinic-a")

    # 64 headers of 2,000 bytes each: each within the API's limits, together
    # about 128 KiB, twice what the tunnel's HTTP/2 session sends in one
    # header block. nghttp2 refuses the stream while the hub opens it, inside
    # tunnel_stream_open (the hub's query code used to free the send there
    # and then use it). Refused means nothing left the hub: the result is
    # put back in the queue before the POST is answered.
    headers = {"x-big-%02d" % i: chr(ord("a") + i % 26) * 2000 for i in range(64)}
    j = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts", "path": "/count",
                        "headers": headers})
    q = get_query(hub, j["id"])
    ra = by_site(q).get("clinic-a", {})
    h.check(ra.get("status") == "queued" and q["counts"]["sent"] == 0,
            "the refused result is queued again, not left as sent",
            (ra.get("status"), q["counts"]))
    h.check(hub.proc.alive(), "the hub is still running")

    # The engine is sound afterwards: a normal query to the same site is done.
    j = submit_ok(hub, {"sites": ["clinic-a"], "service": "counts", "path": "/count"})
    q = get_query(hub, j["id"], wait=20)
    h.check(by_site(q).get("clinic-a", {}).get("status") == "done",
            "a normal query afterwards is done", q)


Harness.main("test_query_big_headers", main)
