#!/usr/bin/env python3
# Integration: one limit of 64 labels per site, for POST /v1/sites and for PATCH alike.
# SPDX-License-Identifier: MIT
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402

LIMIT = 64


def labels(n, prefix="k"):
    return {"%s%d" % (prefix, i): "v" for i in range(n)}


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()

    # POST /v1/sites: 64 labels are fine, 65 are refused and nothing is stored.
    r = hub.api("POST", "/v1/sites", {"name": "at-limit", "labels": labels(LIMIT)})
    h.check(r.status == 201, "POST /v1/sites with %d labels -> 201" % LIMIT, r)
    r = hub.api("POST", "/v1/sites", {"name": "over-limit", "labels": labels(LIMIT + 1)})
    h.check(r.status == 400, "POST /v1/sites with %d labels -> 400" % (LIMIT + 1), r)
    h.check((r.json() or {}).get("detail") == "a site has at most %d labels" % LIMIT,
            "the refusal names the limit", r.json())
    r = hub.api("GET", "/v1/sites/over-limit")
    h.check(r.status == 404, "the refused site was not stored", r)

    # PATCH: the merged set is what counts, with the same limit and answer.
    hub.api("POST", "/v1/sites", {"name": "patched", "labels": labels(LIMIT - 1)})
    r = hub.api("PATCH", "/v1/sites/patched", {"labels": {"extra": "v"}})
    h.check(r.status == 200 and len((r.json() or {}).get("labels", {})) == LIMIT,
            "PATCH up to %d labels -> 200" % LIMIT, r)
    r = hub.api("PATCH", "/v1/sites/patched", {"labels": {"one-more": "v"}})
    h.check(r.status == 400, "PATCH to %d labels -> 400" % (LIMIT + 1), r)
    h.check((r.json() or {}).get("detail") == "a site has at most %d labels" % LIMIT,
            "PATCH's refusal is the same as POST's", r.json())
    r = hub.api("PATCH", "/v1/sites/patched", {"labels": {"k0": None, "one-more": "v"}})
    h.check(r.status == 200 and len((r.json() or {}).get("labels", {})) == LIMIT,
            "PATCH removing one and adding one stays at %d -> 200" % LIMIT, r)
    h.check(hub.proc.alive(), "hub still running")


Harness.main("labels_limit", main, progs=("tether-hub", "tetherctl"))
