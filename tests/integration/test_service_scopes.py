#!/usr/bin/env python3
# Integration: per-service scopes: tokens limited to services, services a site restricts; proxy and queries, checked per request.
# SPDX-License-Identifier: MIT
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402
from queryhelp import by_site, submit, wait_complete  # noqa: E402

A, B = "scope-a", "scope-b"


def detail(r):
    return str((r.json() or {}).get("detail", ""))


def query_site(h, hub, token, sites, service):
    """Submits GET /healthz to service on sites with token; returns
    (status of the POST, {site: result} once complete or None)."""
    body = {"sites": sites, "service": service, "method": "GET", "path": "/healthz",
            "timeout_s": 10}
    r = submit(hub, body, token=token)
    if r.status != 201:
        return r.status, r
    q = wait_complete(hub, r.json()["id"], 30, token=token)
    return r.status, by_site(q or {})


def main(h):
    hub = h.hub()
    hub.init()
    hub.start()
    svc_db = h.service("svc-db", site_name=A)
    # Site A: web open, db restricted. Site B: the same two, nothing restricted.
    site_a, svc_a = h.add_site(hub, A, extra_services={"db": svc_db.url},
                               site_args=("--service-opt", "db:restricted"))
    site_b, svc_b = h.add_site(hub, B, extra_services={"db": svc_db.url})

    show = hub.site_show(A)
    h.check(show.get("restricted") == ["db"] and sorted(show.get("services", [])) == ["db", "web"],
            "site show: A offers web and db, db restricted (from the hello)", show)
    h.check(hub.site_show(B).get("restricted") == [], "site show: B restricts nothing")
    r = hub.ctl("site", "show", A)
    h.check(r.rc == 0 and any(l.split() == ["restricted:", "db"] for l in r.stdout.splitlines()),
            "tetherctl site show prints the restricted services", r)

    # --- tokens with "services" through the API ---------------------------
    bad = [({"name": "x1", "role": "admin", "services": ["web"]}, "admin token"),
           ({"name": "x2", "role": "user", "sites": "*", "services": ["Web"]}, "bad name"),
           ({"name": "x3", "role": "user", "sites": "*", "services": []}, "empty list"),
           ({"name": "x4", "role": "user", "sites": "*", "services": ["web", "web"]}, "twice"),
           ({"name": "x5", "role": "user", "sites": "*", "services": "web"}, "a string")]
    for body, what in bad:
        r = hub.api("POST", "/v1/tokens", body)
        h.check(r.status == 400 and "services" in detail(r),
                "POST /v1/tokens refuses services: %s (400 naming services)" % what, r)
    r = hub.ctl("token", "create", "x6", "--role", "user", "--sites", A, "--services", "web,,db")
    h.check(r.rc != 0 and "--services" in r.stderr, "tetherctl refuses a malformed --services", r)

    web_only = hub.token_create("web-only", "--role", "user", "--sites", "%s,%s" % (A, B),
                          "--services", "web")
    plain = hub.token_create("plain", "--role", "user", "--sites", "%s,%s" % (A, B))
    with_db = hub.token_create("with-db", "--role", "user", "--sites", A, "--services", "web,db")
    toks = {t["name"]: t for t in hub.ctl_json("token", "list").get("tokens", [])}
    h.check(toks.get("web-only", {}).get("services") == ["web"]
            and toks.get("plain", {}).get("services") == "*"
            and toks.get("with-db", {}).get("services") == ["web", "db"],
            "GET /v1/tokens shows each token's services", toks)
    r = hub.ctl("token", "list")
    line = [l for l in r.stdout.splitlines() if l.startswith("with-db ")]
    h.check(r.rc == 0 and "SERVICES" in r.stdout and line and "web,db" in line[0],
            "tetherctl token list has a SERVICES column", r)

    # --- HTTP proxying ----------------------------------------------------
    cases = [(web_only, A, "web", 200), (web_only, A, "db", 403), (web_only, B, "db", 403),
             (web_only, B, "web", 200),
             (plain, A, "web", 200), (plain, A, "db", 403), (plain, B, "db", 200),
             (with_db, A, "db", 200), (with_db, A, "web", 200),
             (hub.token, A, "db", 200)]
    names = {web_only: "web-only", plain: "plain", with_db: "with-db", hub.token: "admin"}
    for tok, site, svc, want in cases:
        r = hub.proxy(site, svc, "/healthz", token=tok)
        h.check(r.status == want, "%s -> %s/%s: %d" % (names[tok], site, svc, want), r)
    r = hub.proxy(A, "db", "/healthz", token=web_only)
    h.check(r.status == 403 and "not in its \"services\"" in detail(r),
            "the 403 for a service outside the token's list says so", r)
    r = hub.proxy(A, "db", "/healthz", token=plain)
    h.check(r.status == 403 and "restricted" in detail(r) and A in detail(r),
            "the 403 for a restricted service says it is restricted on that site", r)
    r = hub.proxy(A, "db", "/echo", token=plain, data="x")
    h.check(r.status == 403, "a POST to a restricted service is refused too", r)
    rows = hub.ctl_json("audit", "--limit", "200").get("entries", [])
    den = [e for e in rows if e.get("action") == "proxy" and e.get("target") == A + "/db"
           and e.get("result") == "forbidden"]
    h.check({e.get("actor") for e in den} >= {"web-only", "plain"},
            "service refusals are audited (reads included), with the token's name", den)

    # --- the same keep-alive connection: checked per request ----------------
    conn = hub.keepalive()
    try:
        hdr = {"Authorization": "Bearer " + with_db}
        seq = []
        for svc in ("web", "db"):
            conn.request("GET", "/v1/sites/%s/services/%s/healthz" % (A, svc), headers=hdr)
            resp = conn.getresponse()
            resp.read()
            seq.append(resp.status)
        sock = conn.sock
        r = hub.ctl("token", "revoke", "with-db")
        h.check(r.rc == 0, "revoke with-db while its connection is open", r)
        conn.request("GET", "/v1/sites/%s/services/db/healthz" % A, headers=hdr)
        resp = conn.getresponse()
        resp.read()
        seq.append(resp.status)
        hdr = {"Authorization": "Bearer " + web_only}
        for svc in ("web", "db"):
            conn.request("GET", "/v1/sites/%s/services/%s/healthz" % (A, svc), headers=hdr)
            resp = conn.getresponse()
            resp.read()
            seq.append(resp.status)
        h.check(seq == [200, 200, 401, 200, 403] and conn.sock is sock,
                "one keep-alive connection: web, db allowed; after the revoke 401; another "
                "token on it: web 200, db 403", seq)
    finally:
        conn.close()

    # --- federated queries ----------------------------------------------------
    st, r = query_site(h, hub, web_only, [A, B], "db")
    h.check(st == 403 and "not in its \"services\"" in detail(r),
            "a query to a service outside the token's list is refused (403)", r)
    st, res = query_site(h, hub, web_only, [A, B], "web")
    h.check(st == 201 and all(res.get(s, {}).get("http_status") == 200 for s in (A, B)),
            "the token's own service: the query reaches both sites", res)
    st, res = query_site(h, hub, plain, [A, B], "db")
    ra, rb = res.get(A, {}) if st == 201 else {}, res.get(B, {}) if st == 201 else {}
    h.check(st == 201 and ra.get("status") == "error" and "restricted" in ra.get("detail", "")
            and rb.get("http_status") == 200,
            "a query to db: refused for A (restricted there), answered by B", res)
    st, res = query_site(h, hub, hub.token, [A], "db")
    h.check(st == 201 and res.get(A, {}).get("http_status") == 200,
            "an admin token's query reaches A's restricted db", res)

    # Delivery checks again: a query queued while A is offline is refused
    # when A comes back, since db is restricted there.
    site_a.proc.stop()
    hub.wait_online(A, online=False, timeout=15)
    body = {"sites": [A], "service": "db", "method": "GET", "path": "/healthz", "timeout_s": 10}
    r = submit(hub, body, token=plain)
    h.check(r.status == 201, "a query for offline A is accepted (queued)", r)
    site_a.start({"web": svc_a.url, "db": svc_db.url}, ("--service-opt", "db:restricted"))
    q = wait_complete(hub, r.json()["id"], 30, token=plain) if r.status == 201 else {}
    ra = by_site(q or {}).get(A, {})
    h.check(ra.get("status") == "error" and "restricted" in ra.get("detail", ""),
            "the queued query is refused at delivery: db is restricted on A", q)


Harness.main("service_scopes", main, tools=("curl",))
