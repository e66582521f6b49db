#!/usr/bin/env python3
# Integration: federated-query input checks (400/404/413, nothing stored) and token scopes (a scoped user token neither targets nor sees other sites' or users' queries).
# SPDX-License-Identifier: MIT
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from queryhelp import add_site, get_query, list_all, sql, submit, submit_ok  # noqa: E402


def stored(h, hub):
    return (sql(h, hub, "SELECT count(*) FROM queries"),
            sql(h, hub, "SELECT count(*) FROM query_results"))


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    add_site(h, hub, "clinic-a", labels=("region=eu",))
    add_site(h, hub, "clinic-b", labels=("region=us",))

    good = {"sites": "*", "service": "counts", "path": "/count"}
    bad = [
        ("malformed JSON", "{\"sites\": \"*\", ", 400, "not a JSON object"),
        ("a JSON array", "[1, 2]", 400, "not a JSON object"),
        ("an empty body", "", 400, "not a JSON object"),
        ("a duplicate key", "{\"sites\": \"*\", \"sites\": \"*\", \"service\": \"counts\"}", 400,
         "not a JSON object"),
        ("no sites", {"service": "counts"}, 400, "\"sites\" is required"),
        ("sites of the wrong type", dict(good, sites=5), 400, "\"sites\" must be"),
        ("an empty site list", dict(good, sites=[]), 400, "no site matches"),
        ("a label selector matching nothing", dict(good, sites={"labels": {"region": "mars"}}),
         400, "no site matches"),
        ("a bad selector object", dict(good, sites={"names": ["a"]}), 400, "{\"labels\""),
        ("a non-string label", dict(good, sites={"labels": {"region": 1}}), 400, "strings"),
        ("a bad site name", dict(good, sites=["Clinic A"]), 400, "site names"),
        ("an unknown site", dict(good, sites=["clinic-a", "nowhere"]), 404, "no such site"),
        ("service of the wrong type", dict(good, service=5), 400, "\"service\""),
        ("a bad method", dict(good, method="get"), 400, "\"method\""),
        ("CONNECT", dict(good, method="CONNECT"), 400, "\"method\""),
        ("a path without /", dict(good, path="count"), 400, "\"path\""),
        ("a path with a space", dict(good, path="/a b"), 400, "\"path\""),
        ("headers of the wrong type", dict(good, headers=["a"]), 400, "\"headers\""),
        ("a header value of the wrong type", dict(good, headers={"x-a": 1}), 400, "string"),
        ("a header with a line break", dict(good, headers={"x-a": "1\r\nx-b: 2"}), 400,
         "line break"),
        ("a reserved header", dict(good, headers={"Host": "x"}), 400, "set by the hub"),
        ("an x-tether header", dict(good, headers={"X-Tether-User": "root"}), 400,
         "set by the hub"),
        ("a bad header name", dict(good, headers={"a b": "1"}), 400, "field name"),
        ("body of the wrong type", dict(good, body=5), 400, "\"body\""),
        ("body and body_base64", dict(good, body="a", body_base64="YQ=="), 400, "not both"),
        ("bad base64", dict(good, body_base64="%%%"), 400, "base64"),
        ("timeout_s as a string", dict(good, timeout_s="10"), 400, "\"timeout_s\" must be"),
        ("timeout_s 0", dict(good, timeout_s=0), 400, "\"timeout_s\" must be"),
        ("ttl_s negative", dict(good, ttl_s=-1), 400, "\"ttl_s\" must be"),
        ("ttl_s as a float", dict(good, ttl_s=1.5), 400, "\"ttl_s\" must be"),
        ("an unknown field", dict(good, sitez="*"), 400, "unknown field \"sitez\""),
    ]
    for label, body, status, needle in bad:
        r = submit(hub, body)
        j = r.json() or {}
        h.check(r.status == status and needle in (j.get("detail") or ""),
                "%s: %d with a clear message" % (label, status), r)
    big = json.dumps(dict(good, body="x" * (2 << 20)))
    r = submit(hub, big)
    h.check(r.status == 413 and "larger than" in (r.json() or {}).get("detail", ""),
            "a 2 MiB query (Content-Length): 413", r)
    r = hub.curl("/v1/queries", method="POST", upload_stdin=big.encode(),
                 headers={"Content-Type": "application/json"})
    h.check(r.status == 413, "a 2 MiB query (chunked, HTTP/1.1): 413", r)
    r = hub.curl("/v1/queries", method="POST", data=big, http="2",
                 headers={"Content-Type": "application/json"})
    h.check(r.status == 413, "a 2 MiB query (HTTP/2): 413", r)
    h.check(stored(h, hub) == ("0", "0"), "no bad input stored a query or a result",
            stored(h, hub))
    h.check(list_all(hub) == [], "GET /v1/queries lists nothing")
    for path, st in (("/v1/queries?limit=0", 400), ("/v1/queries?limit=x", 400),
                     ("/v1/queries?before=q_nope", 400), ("/v1/queries/q_nope", 404),
                     ("/v1/queries/q_AAAAAAAAAAAAAAAAAAAAAA", 404)):
        r = hub.curl(path)
        h.check(r.status == st, "GET %s: %d" % (path, st), r)
    r = hub.curl("/v1/queries", method="DELETE")
    h.check(r.status == 405, "DELETE /v1/queries: 405", r)
    r = hub.curl("/v1/queries", token="tth_wrong")
    h.check(r.status == 401, "a bad token: 401", r)

    # The good query works, and ?wait must be a number.
    j = submit_ok(hub, good)
    r = hub.curl("/v1/queries/%s?wait=soon" % j["id"])
    h.check(r.status == 400 and "wait" in (r.json() or {}).get("detail", ""), "?wait=soon: 400",
            r)

    # A user token scoped to clinic-a.
    r = hub.api("POST", "/v1/tokens", {"name": "alice", "role": "user", "sites": ["clinic-a"]})
    alice = (r.json() or {}).get("token")
    h.check(r.status == 201 and alice, "a user token scoped to clinic-a", r)
    before = stored(h, hub)
    r = submit(hub, dict(good, sites=["clinic-a", "clinic-b"]), token=alice)
    h.check(r.status == 403 and "clinic-b" in (r.json() or {}).get("detail", ""),
            "alice may not target clinic-b: 403 naming it", r)
    r = submit(hub, dict(good, sites={"labels": {"region": "us"}}), token=alice)
    h.check(r.status == 400 and "no site matches" in (r.json() or {}).get("detail", ""),
            "alice's label selector for clinic-b's region matches nothing", r)
    h.check(stored(h, hub) == before, "refused queries stored nothing", stored(h, hub))
    aud = sql(h, hub, "SELECT count(*) FROM audit WHERE action = 'query.submit' "
                      "AND actor = 'alice' AND result = 'forbidden'")
    h.check(aud == "1", "the refusal is in the audit log", aud)
    ja = submit_ok(hub, good, token=alice)
    h.check([s["site"] for s in ja["sites"]] == ["clinic-a"],
            "alice's \"*\" means only clinic-a", ja)
    qa = get_query(hub, ja["id"], wait=10, token=alice)
    h.check(qa["status"] == "complete" and qa["user"] == "alice", "alice reads her own query", qa)
    r = hub.curl("/v1/queries/%s" % j["id"], token=alice)
    h.check(r.status == 404, "alice cannot read the admin's query (404)", r)
    r = hub.curl("/v1/queries/%s/events" % j["id"], token=alice)
    h.check(r.status == 404, "nor its events (404)", r)
    mine = [x["id"] for x in list_all(hub, token=alice)]
    h.check(mine == [ja["id"]], "alice's history holds only her query", mine)
    r = hub.curl("/v1/queries?before=%s" % j["id"], token=alice)
    h.check(r.status == 400, "alice cannot page from the admin's query id", r)
    allq = [x["id"] for x in list_all(hub)]
    h.check(allq == [ja["id"], j["id"]], "the admin sees every query", allq)

    # A label-scoped token.
    r = hub.api("POST", "/v1/tokens", {"name": "bob", "role": "user",
                                        "sites": {"labels": {"region": "us"}}})
    bob = (r.json() or {}).get("token")
    jb = submit_ok(hub, good, token=bob)
    h.check([s["site"] for s in jb["sites"]] == ["clinic-b"],
            "a token scoped to region=us reaches only clinic-b", jb)
    r = submit(hub, dict(good, sites=["clinic-a"]), token=bob)
    h.check(r.status == 403, "bob may not name clinic-a", r)


Harness.main("test_query_input", main)
