#!/usr/bin/env python3
# Attack suite: the authorization matrix: every API route class against every role, scope and kind of bad token.
# SPDX-License-Identifier: MIT
"""What "held" means: each (route, token) pair gets exactly the status
docs/api.md and docs/queries.md promise: admin tokens everything; user
tokens ("*", a list with site A, a label selector matching A) read, proxy to
and query only sites in their scope (403 outside it, the same for a site that
does not exist), never manage sites, tokens, enrollments, the audit log or
metrics (403), and see only their own queries (404 for another's); expired,
revoked (user or admin), unknown, altered, malformed, wrong-scheme and
missing tokens get 401 on every route, whether or not what it names exists. A
label scope follows the site's current labels, and a revoked token fails on a
connection it already used. Both sites keep serving users throughout."""
import http.client
import json
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Harness, Fatal  # noqa: E402

A, B = "az-a", "az-b"
ADMINS = ("admin", "admin2")
USERS = ("all", "only-a", "label-a")
BAD = ("expired", "revoked", "revoked-admin", "unknown", "altered", "malformed",
       "wrong-scheme", "empty", "none")


def ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def request(port, method, path, body=None, auth=None, conn=None):
    """One request; a new connection unless conn is given. Returns
    (status, parsed JSON or raw bytes)."""
    c = conn or http.client.HTTPSConnection("127.0.0.1", port, context=ctx(), timeout=20)
    headers = {}
    if auth is not None:
        headers["Authorization"] = auth
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
    finally:
        if conn is None:
            c.close()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, raw


def main(h):
    hub, site_a, svc_a = h.setup(A)
    svc_b = h.service("svc-" + B, site_name=B)
    site_b = h.site(B, hub)
    site_b.enroll(hub.site_add(B, "--label", "env=dev"))
    site_b.start({"web": svc_b.url})
    if hub.wait_ready(B, 10) is None:
        raise Fatal("site %s not online" % B)
    port = hub.port

    def admin(method, path, body=None):
        st, d = request(port, method, path, body, "Bearer " + hub.token)
        if st >= 300:
            raise Fatal("setup %s %s: %s %r" % (method, path, st, d))
        return d

    admin("PATCH", "/v1/sites/" + A, {"labels": {"env": "prod"}})

    def token(name, role, sites=None, ttl=None):
        body = {"name": name, "role": role}
        if sites is not None:
            body["sites"] = sites
        if ttl is not None:
            body["ttl_s"] = ttl
        return admin("POST", "/v1/tokens", body)["token"]

    tok = {"admin": hub.token, "admin2": token("admin2", "admin"),
           "all": token("all", "user", "*"), "only-a": token("only-a", "user", [A]),
           "label-a": token("label-a", "user", {"labels": {"env": "prod"}})}
    expired = token("expired", "user", "*", ttl=1)
    expired_at = time.time() + 1
    revoked = token("revoked", "user", "*")
    revoked_admin = token("revoked-admin", "admin")
    st, _ = request(port, "GET", "/v1/sites", auth="Bearer " + revoked_admin)
    h.check(st == 200, "the admin token to be revoked works before", st)
    admin("DELETE", "/v1/tokens/revoked")
    admin("DELETE", "/v1/tokens/revoked-admin")
    altered = hub.token[:-1] + ("A" if hub.token[-1] != "A" else "B")
    auth = {k: "Bearer " + v for k, v in tok.items()}
    auth.update({"expired": "Bearer " + expired, "revoked": "Bearer " + revoked,
                 "revoked-admin": "Bearer " + revoked_admin,
                 "unknown": "Bearer tth_" + "x" * 43, "altered": "Bearer " + altered,
                 "malformed": "Bearer not a token", "wrong-scheme": "Basic " + hub.token,
                 "empty": "Bearer ", "none": None})

    # Things the admin rows change, one set per admin token.
    pend = {}
    for k in ADMINS:
        admin("POST", "/v1/sites", {"name": "az-gone-" + k})
        admin("POST", "/v1/sites", {"name": "az-victim-" + k})
        admin("POST", "/v1/tokens", {"name": "victim-" + k, "role": "user", "sites": "*"})
        pend[k] = admin("POST", "/v1/sites", {"name": "az-pend-" + k})["enrollment_id"]
    qid = admin("POST", "/v1/queries", {"sites": [A], "service": "web", "path": "/healthz"})["id"]
    while time.time() < expired_at + 1.1:
        time.sleep(0.1)

    def q(sites):
        return {"sites": sites, "service": "web", "path": "/healthz", "timeout_s": 5}

    def everyone(st):
        return {k: st for k in ADMINS + USERS}

    admin_only = {**{k: None for k in ADMINS}, **{k: 403 for k in USERS}}
    in_scope_a = everyone(200)
    only_all = {"admin": 200, "admin2": 200, "all": 200, "only-a": 403, "label-a": 403}
    # (name, method, path, body, {token kind: status}); None = not checked
    # here (the admin rows below fill those in with the real status).
    routes = [
        ("site list", "GET", "/v1/sites", None, everyone(200)),
        ("site show A", "GET", "/v1/sites/" + A, None, in_scope_a),
        ("site show B", "GET", "/v1/sites/" + B, None, only_all),
        ("site show unknown", "GET", "/v1/sites/az-none", None,
         {"admin": 404, "admin2": 404, "all": 404, "only-a": 403, "label-a": 403}),
        ("site add", "POST", "/v1/sites", "ADD", {**admin_only, "admin": 201, "admin2": 201}),
        ("site patch A", "PATCH", "/v1/sites/" + A, {"labels": {"seen": "1"}},
         {**admin_only, "admin": 200, "admin2": 200}),
        ("site revoke", "POST", "/v1/sites/az-victim-{k}/revoke", None,
         {**admin_only, "admin": 200, "admin2": 200}),
        ("site remove", "DELETE", "/v1/sites/az-gone-{k}", None,
         {**admin_only, "admin": 204, "admin2": 204}),
        ("site enroll token", "POST", "/v1/sites/az-pend-{k}/enroll", {},
         {**admin_only, "admin": 201, "admin2": 201}),
        ("token create", "POST", "/v1/tokens", "TOKEN", {**admin_only, "admin": 201, "admin2": 201}),
        ("token list", "GET", "/v1/tokens", None, {**admin_only, "admin": 200, "admin2": 200}),
        ("token revoke", "DELETE", "/v1/tokens/victim-{k}", None,
         {**admin_only, "admin": 200, "admin2": 200}),
        ("enrollment list", "GET", "/v1/enrollments", None,
         {**admin_only, "admin": 200, "admin2": 200}),
        ("enrollment cancel", "DELETE", "/v1/enrollments/{pend}", None,
         {**admin_only, "admin": 200, "admin2": 200}),
        ("audit", "GET", "/v1/audit", None, {**admin_only, "admin": 200, "admin2": 200}),
        ("metrics", "GET", "/metrics", None, {**admin_only, "admin": 200, "admin2": 200}),
        ("proxy GET A", "GET", "/v1/sites/%s/services/web/healthz" % A, None, in_scope_a),
        ("proxy GET B", "GET", "/v1/sites/%s/services/web/healthz" % B, None, only_all),
        ("proxy POST B", "POST", "/v1/sites/%s/services/web/echo" % B, b"x", only_all),
        ("proxy unknown site", "GET", "/v1/sites/az-none/services/web/healthz", None,
         {"admin": 404, "admin2": 404, "all": 404, "only-a": 403, "label-a": 403}),
        ("query A", "POST", "/v1/queries", q([A]), everyone(201)),
        ("query B", "POST", "/v1/queries", q([B]),
         {**only_all, "admin": 201, "admin2": 201, "all": 201}),
        ("query list", "GET", "/v1/queries", None, everyone(200)),
        ("query of another token", "GET", "/v1/queries/" + qid, None,
         {"admin": 200, "admin2": 200, "all": 404, "only-a": 404, "label-a": 404}),
        ("query events of another token", "GET", "/v1/queries/%s/events" % qid, None,
         {"admin": None, "admin2": None, "all": 404, "only-a": 404, "label-a": 404}),
    ]
    wrong = []
    n = 0
    for name, method, path, body, want in routes:
        for k in ADMINS + USERS + BAD:
            exp = want.get(k) if k in want else 401
            if k in BAD:
                exp = 401
            if exp is None:
                continue
            p = path.replace("{k}", k).replace("{pend}", str(pend.get(k, 1)))
            b = body
            if body == "ADD":
                b = {"name": "az-new-" + k}
            elif body == "TOKEN":
                b = {"name": "new-" + k, "role": "user", "sites": "*"}
            st, d = request(port, method, p, b, auth[k])
            n += 1
            if st != exp:
                wrong.append("%s %s as %s: %s (want %s) %r" % (method, p, k, st, exp,
                                                               d if isinstance(d, dict) else ""))
            elif st == 401 and d != {"error": "unauthorized",
                                      "detail": "missing or invalid bearer token"}:
                wrong.append("%s %s as %s: 401 with another body %r" % (method, p, k, d))
    h.info("%d requests" % n)
    h.check(not wrong, "every route x token pair gets the promised status (%d pairs)" % n,
            "\n    " + "\n    ".join(wrong))

    # Lists show only what is in scope.
    for k, want in (("all", [A, B]), ("only-a", [A]), ("label-a", [A])):
        st, d = request(port, "GET", "/v1/sites", auth=auth[k])
        names = sorted(s["name"] for s in d.get("sites", []) if s["name"] in (A, B))
        h.check(st == 200 and names == want, "%s lists exactly %s" % (k, want), names)
        st, d = request(port, "GET", "/v1/queries", auth=auth[k])
        ids = [x.get("id") for x in d.get("queries", [])]
        h.check(st == 200 and qid not in ids, "%s's query list lacks the admin's query" % k)

    # "*" and label selectors are cut to the token's scope.
    for k in ("only-a", "label-a"):
        st, d = request(port, "POST", "/v1/queries", q("*"), auth=auth[k])
        got = sorted(x.get("site") for x in (d.get("sites") or [])) if st == 201 else d
        h.check(st == 201 and got == [A], "%s's query to \"*\" reaches only A" % k, (st, got))
        st, d = request(port, "POST", "/v1/queries", q({"labels": {"env": "dev"}}),
                        auth=auth[k])
        h.check(st == 400, "%s's query to B's labels matches no site (400)" % k, (st, d))

    # A label scope follows the site's labels on the next request.
    admin("PATCH", "/v1/sites/" + A, {"labels": {"env": "dev"}})
    st, _ = request(port, "GET", "/v1/sites/%s/services/web/healthz" % A, auth=auth["label-a"])
    h.check(st == 403, "label-a loses A once A's label changes", st)
    st, _ = request(port, "POST", "/v1/queries", q([A]), auth=auth["label-a"])
    h.check(st == 403, "and may no longer query it", st)
    admin("PATCH", "/v1/sites/" + A, {"labels": {"env": "prod"}})
    st, _ = request(port, "GET", "/v1/sites/%s/services/web/healthz" % A, auth=auth["label-a"])
    h.check(st == 200, "label-a gets A back with the label", st)

    # A revoked token fails on the connection it already used.
    t = token("kept-alive", "admin")
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx(), timeout=20)
    try:
        st1, _ = request(port, "GET", "/v1/tokens", auth="Bearer " + t, conn=c)
        admin("DELETE", "/v1/tokens/kept-alive")
        st2, _ = request(port, "GET", "/v1/tokens", auth="Bearer " + t, conn=c)
    finally:
        c.close()
    h.check(st1 == 200 and st2 == 401, "a revoked admin token gets 401 on its kept-alive "
            "connection", (st1, st2))

    for s in (A, B):
        r = hub.proxy(s, "web", "/healthz")
        h.check(r.status == 200, "site %s still serves users" % s, r)
    h.check(hub.proc.alive(), "hub still running")


Harness.main("authz_matrix", main)
