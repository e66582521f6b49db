#!/usr/bin/env python3
# Integration: API tokens with roles and site scopes, checked on every request; 401 without detail; audit of users' writes; tetherctl exit codes.
# SPDX-License-Identifier: MIT
import http.client
import json
import os
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Fatal, closed_port  # noqa: E402

A, B = "ops-a", "ops-b"
UNAUTH = {"error": "unauthorized", "detail": "missing or invalid bearer token"}


def make_token(h, hub, name, *args):
    r = hub.ctl("token", "create", name, *args)
    tok = r.stdout.strip()
    if r.rc != 0 or not tok.startswith("tth_") or "\n" in tok:
        raise Fatal("token create %s: %r" % (name, r))
    return tok


def site_names(hub, token):
    r = hub.curl("/v1/sites", token=token)
    d = r.json() or {}
    return sorted(s.get("name") for s in d.get("sites", [])), r.status


def audit(hub, limit=200):
    return hub.ctl_json("audit", "--limit", str(limit)).get("entries", [])


def main(h):
    hub, site_a, svc_a = h.setup(A, test_clock=True)
    svc_b = h.service("svc-" + B, site_name=B)
    tok_b = hub.site_add(B, "--label", "env=dev")
    site_b = h.site(B, hub)
    site_b.enroll(tok_b)
    site_b.start({"web": svc_b.url})
    if hub.wait_ready(B, 10) is None:
        raise Fatal("site %s not online" % B)
    r = hub.ctl("site", "label", A, "env=prod", "tier=gold")
    h.check(r.rc == 0 and "env=prod" in r.stdout, "site label sets labels", r)
    labels = hub.site_show(A).get("labels")
    h.check(labels == {"env": "prod", "tier": "gold"}, "labels stored", labels)
    r = hub.ctl("site", "label", A, "tier-")
    h.check(r.rc == 0 and hub.site_show(A).get("labels") == {"env": "prod"},
            "site label KEY- removes a label", r)

    # --- a user token scoped to A by name ---------------------------------
    alice = make_token(h, hub, "alice", "--role", "user", "--sites", A)
    names, st = site_names(hub, alice)
    h.check(st == 200 and names == [A], "GET /v1/sites with a token scoped to A lists only A",
            (st, names))
    r = hub.proxy(A, "web", "/healthz", token=alice)
    h.check(r.status == 200, "scoped token reaches A through the proxy", r)
    r = hub.proxy(B, "web", "/healthz", token=alice)
    h.check(r.status == 403, "scoped token gets 403 proxying to B", r)
    r = hub.proxy(B, "web", "/echo", token=alice, data="x" * 100)
    h.check(r.status == 403, "scoped token gets 403 POSTing to B", r)
    h.check(svc_b.stats() is not None, "service B still up")
    r_b = hub.curl("/v1/sites/%s" % B, token=alice)
    r_none = hub.curl("/v1/sites/ops-nonexistent", token=alice)
    h.check(r_b.status == 403 and r_none.status == 403 and r_b.body == r_none.body,
            "site B and an unknown site answer the same 403 (no hint of what exists)",
            (r_b, r_none))
    r = hub.curl("/v1/sites/%s" % A, token=alice)
    h.check(r.status == 200 and (r.json() or {}).get("name") == A, "scoped token may show A", r)
    r = hub.api("POST", "/v1/sites", {"name": "ops-c"}, token=alice)
    h.check(r.status == 403, "user token may not add sites", r)
    for path in ("/v1/audit", "/v1/tokens", "/v1/enrollments", "/metrics"):
        r = hub.curl(path, token=alice)
        h.check(r.status == 403, "user token gets 403 on %s" % path, r)
    r = hub.api("PATCH", "/v1/sites/%s" % A, {"state": "disabled"}, token=alice)
    h.check(r.status == 403, "user token may not disable even its own site", r)
    h.check((hub.sites().get(A) or {}).get("state") == "active", "A still active")

    # Federated queries (issue 3) follow the same scope when they exist.
    q = {"sites": [B], "service": "web", "method": "GET", "path": "/healthz", "timeout_s": 5}
    r = hub.api("POST", "/v1/queries", q, token=alice)
    if r.status == 404 and (r.json() or {}).get("detail") == "no such endpoint":
        h.info("POST /v1/queries does not exist in this build: query scope not checked")
    else:
        h.check(r.status == 403, "scoped token gets 403 for a query to B", r)
        q["sites"] = [A]
        r = hub.api("POST", "/v1/queries", q, token=alice)
        h.check(r.status in (200, 201), "scoped token may query A", r)

    # A user's writes through the proxy are audited, allowed or not.
    r = hub.proxy(A, "web", "/echo", token=alice, data="hello")
    h.check(r.status == 200, "scoped token POSTs to A", r)
    rows = audit(hub)
    fwd = [e for e in rows if e.get("action") == "proxy" and e.get("actor") == "alice"
           and e.get("target") == A + "/web" and e.get("result") == "forwarded"]
    h.check(len(fwd) == 1 and fwd[0].get("detail", "").startswith("POST /echo"),
            "one audit row for alice's POST to A (forwarded)", fwd)
    den = [e for e in rows if e.get("action") == "proxy" and e.get("actor") == "alice"
           and e.get("target") == B + "/web" and e.get("result") == "forbidden"]
    h.check(len(den) == 1, "one audit row for alice's refused POST to B", den)
    den = [e for e in rows if e.get("action") == "site.add" and e.get("actor") == "alice"]
    h.check(len(den) == 1 and den[0].get("result") == "forbidden" and den[0].get("remote"),
            "refused site add by a user is audited with who, from where and the result", den)
    h.check(not [e for e in rows if e.get("action") == "proxy" and "GET" in e.get("detail", "")],
            "reads through the proxy are not audited")

    # --- a user token scoped by label --------------------------------------
    bob = make_token(h, hub, "bob", "--role", "user", "--sites", "label=env=dev")
    names, st = site_names(hub, bob)
    h.check(names == [B], "label-scoped token (env=dev) lists only B", names)
    h.check(hub.proxy(B, "web", "/healthz", token=bob).status == 200, "bob reaches B")
    h.check(hub.proxy(A, "web", "/healthz", token=bob).status == 403, "bob gets 403 on A")
    r = hub.ctl("site", "label", B, "env=prod")
    h.check(r.rc == 0, "relabel B", r)
    h.check(hub.proxy(B, "web", "/healthz", token=bob).status == 403,
            "after B's label changes, bob's next request to B is refused")
    names, _ = site_names(hub, bob)
    h.check(names == [], "and bob lists no site", names)

    # tetherctl as a user: same scope, exit code 4 for admin commands.
    r = hub.ctl("site", "list", "--json", token=alice)
    h.check(r.rc == 0 and [s["name"] for s in r.json()["sites"]] == [A],
            "tetherctl site list with alice's token shows only A", r)
    r = hub.ctl("token", "list", token=alice)
    h.check(r.rc == 4 and "admin only" in r.stderr, "tetherctl token list as a user: exit 4", r)

    # --- tokens: list without secrets, bad requests ------------------------
    toks = hub.ctl_json("token", "list").get("tokens", [])
    by = {t["name"]: t for t in toks}
    h.check(by.get("alice", {}).get("sites") == [A] and by.get("bob", {}).get("sites") ==
            {"labels": {"env": "dev"}} and by.get("admin", {}).get("sites") == "*",
            "token list shows roles and scopes", toks)
    dump = json.dumps(toks)
    h.check(alice not in dump and "hash" not in dump and "tth_" not in dump,
            "token list shows neither tokens nor hashes")
    r = hub.api("POST", "/v1/tokens", {"name": "nosites", "role": "user"})
    h.check(r.status == 400, "a user token without \"sites\" is refused", r)
    r = hub.api("POST", "/v1/tokens", {"name": "empty", "role": "user",
                                       "sites": {"labels": {}}})
    h.check(r.status == 400, "an empty label selector is refused", r)
    r = hub.ctl("token", "create", "alice", "--role", "user", "--sites", A)
    h.check(r.rc == 5, "a second live token named alice: exit 5 (conflict)", r)

    # --- 401: no detail of what exists --------------------------------------
    carol = make_token(h, hub, "carol", "--role", "user", "--sites", "*")
    r = hub.ctl("token", "revoke", "carol")
    h.check(r.rc == 0, "token revoke", r)
    dave = make_token(h, hub, "dave", "--role", "user", "--sites", "*", "--ttl", "60")
    names, st = site_names(hub, dave)
    h.check(st == 200 and names == [A, B], "a token with --ttl 60 works at first", (st, names))
    hub.clock_set(50)
    names, st = site_names(hub, dave)
    h.check(st == 200 and names == [A, B], "and still works 50 s later", (st, names))
    hub.clock_set(61)  # the ttl has run out by the hub's clock
    bad = {"missing": None, "garbage": "garbage", "unknown": "tth_" + "A" * 43,
           "revoked": carol, "expired": dave}
    paths = ["/v1/sites", "/v1/sites/%s" % A, "/v1/sites/ops-nonexistent",
             "/v1/sites/%s/services/web/healthz" % A, "/v1/tokens", "/v1/audit",
             "/v1/nonexistent"]
    bodies = set()
    all_401 = True
    for what, tok in bad.items():
        for path in paths:
            kw = {"token": tok} if tok else {"token": None}
            r = hub.curl(path, **kw)
            if r.status != 401 or r.json() != UNAUTH:
                all_401 = False
                h.info("%s token on %s: %r" % (what, path, r))
            bodies.add(r.body)
    h.check(all_401 and len(bodies) == 1,
            "missing, garbage, unknown, revoked and expired tokens get the same 401 on every "
            "path", bodies)
    r = hub.curl("/v1/sites", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}, token=None)
    h.check(r.status == 401 and r.json() == UNAUTH, "Basic auth gets the same 401", r)

    # --- checked on every request, not per connection -----------------------
    erin = make_token(h, hub, "erin", "--role", "user", "--sites", A)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", hub.port, context=ctx, timeout=10)
    try:
        hdr = {"Authorization": "Bearer " + erin}
        conn.request("GET", "/v1/sites", headers=hdr)
        r1 = conn.getresponse()
        r1.read()
        sock = conn.sock
        r = hub.ctl("token", "revoke", "erin")
        h.check(r.rc == 0, "revoke erin while her connection is open", r)
        conn.request("GET", "/v1/sites", headers=hdr)
        r2 = conn.getresponse()
        body2 = r2.read()
        h.check(r1.status == 200 and r2.status == 401 and conn.sock is sock,
                "the next request on the same connection is refused after the revoke",
                (r1.status, r2.status, body2))
    finally:
        conn.close()
    rows = audit(hub)
    h.check([e for e in rows if e.get("action") == "token.revoke" and e.get("target") == "erin"
             and e.get("result") == "ok" and e.get("actor") == "admin"],
            "token revoke is audited")
    h.check([e for e in rows if e.get("action") == "token.create" and e.get("target") == "dave"
             and "ttl_s=60" in e.get("detail", "")], "token create is audited with its ttl")
    r = hub.ctl("token", "revoke", "erin")
    h.check(r.rc == 5 and "already revoked" in r.stderr, "revoking twice: exit 5", r)
    r = hub.ctl("token", "revoke", "nobody")
    h.check(r.rc == 3, "revoking an unknown token: exit 3", r)
    r = hub.ctl("token", "revoke", "admin")
    h.check(r.rc == 5 and "last" in r.stderr, "the last admin token cannot be revoked", r)

    # --- exit codes --------------------------------------------------------
    r = hub.ctl("site", "show", "nope")
    h.check(r.rc == 3 and not r.stdout, "site show of an unknown site: exit 3, no stdout", r)
    r = hub.ctl("site", "list", "--bogus")
    h.check(r.rc == 2, "unknown option: exit 2", r)
    r = hub.ctl("site", "list", token="tth_" + "B" * 43)
    h.check(r.rc == 4, "bad token: exit 4", r)
    r = h.run([h.bin("tetherctl"), "--config", hub.ctl_conf, "--hub",
               "https://127.0.0.1:%d" % closed_port(), "site", "list"])
    h.check(r.rc == 6 and r.stderr.strip(), "hub unreachable: exit 6 with a message", r)


Harness.main("test_ops_scope", main)
