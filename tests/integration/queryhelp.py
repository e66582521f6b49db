# Helpers shared by the federated-query integration tests (tests/integration/test_query_*.py).
# SPDX-License-Identifier: MIT
import json
import re
import subprocess
import threading
import time

from harness import Fatal

QID_RE = re.compile(r"^q_[A-Za-z0-9_-]{22}$")


def add_site(h, hub, name, start=True, labels=(), site_args=()):
    """A sample service named after the site, the site registered, enrolled
    and (start=True) running with the service as "counts". Returns (site, svc)."""
    svc = h.service("svc-" + name, site_name=name)
    extra = []
    for lab in labels:
        extra += ["--label", lab]
    tok = hub.site_add(name, *extra)
    site = h.site(name, hub)
    site.enroll(tok)
    site.svc = svc
    if start:
        start_site(hub, site, site_args)
    return site, svc


def start_site(hub, site, site_args=()):
    site.start({"counts": site.svc.url}, list(site_args))
    if hub.wait_ready(site.name, 15) is None:
        raise Fatal("site %s did not come online with its services" % site.name)


def submit(hub, body, token=None):
    """POST /v1/queries; returns the CurlResult."""
    kw = {"token": token} if token else {}
    return hub.api("POST", "/v1/queries", body, **kw)


def submit_ok(hub, body, token=None):
    r = submit(hub, body, token)
    j = r.json()
    if r.status != 201 or not isinstance(j, dict) or not QID_RE.match(str(j.get("id"))):
        raise Fatal("POST /v1/queries %r failed: %r" % (body, r))
    return j


def get_query(hub, qid, wait=None, token=None, timeout=60):
    path = "/v1/queries/%s" % qid
    if wait is not None:
        path += "?wait=%s" % wait
    kw = {"token": token} if token else {}
    r = hub.curl(path, timeout=timeout, **kw)
    if r.status != 200:
        raise Fatal("GET %s: %r" % (path, r))
    return r.json()


def by_site(q):
    return {s["site"]: s for s in q.get("sites", [])}


def tally(svc):
    st, body = svc.get("/tally")
    if st != 200:
        raise Fatal("GET /tally on %s: %s" % (svc.url, st))
    return json.loads(body)


def list_all(hub, token=None):
    """Every query the token sees, following the paging."""
    out, before = [], None
    for _ in range(1000):
        path = "/v1/queries?limit=100" + ("&before=%s" % before if before else "")
        kw = {"token": token} if token else {}
        r = hub.curl(path, **kw)
        if r.status != 200:
            raise Fatal("GET %s: %r" % (path, r))
        j = r.json()
        out += j["queries"]
        before = j.get("next")
        if not before:
            return out
    raise Fatal("paging does not end")


def sql(h, hub, query):
    """Runs one SQL statement on the hub's registry (SQLite or PostgreSQL:
    Hub.sql); returns its rows as the sqlite3 tool prints them."""
    return hub.sql(query)


def wait_complete(hub, qid, timeout=30, token=None):
    """GET ?wait= until the query is complete (or timeout); returns it."""
    deadline = time.monotonic() + timeout
    q = None
    while time.monotonic() < deadline:
        left = max(1, int(deadline - time.monotonic()))
        q = get_query(hub, qid, wait=left, token=token, timeout=left + 30)
        if q.get("status") != "running":  # complete, or cancelled
            return q
    return q


class Stream:
    """curl -N on the events URL in the background; records (time, line)."""

    def __init__(self, h, hub, qid, http2=False):
        argv = ["curl", "-q", "-sS", "-N", "-k", "--pinnedpubkey", hub.pin, "-H",
                "Authorization: Bearer %s" % hub.token, "--max-time", "60",
                "--http2" if http2 else "--http1.1", "-D", "-",
                "%s/v1/queries/%s/events" % (hub.url, qid)]
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=h.env)
        self.lines = []
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()

    def _read(self):
        for raw in self.p.stdout:
            self.lines.append((time.monotonic() - self.t0, raw.decode("utf-8", "replace")
                               .rstrip("\r\n")))

    def wait(self, timeout=40):
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.th.join(5)
        return self.p.returncode

    def kill(self):
        self.p.kill()
        self.p.wait()
        self.th.join(5)

    def headers(self):
        out = {}
        for _, ln in self.lines:
            if ln == "":
                break
            if ":" in ln and not ln.startswith("HTTP/"):
                k, v = ln.split(":", 1)
                out[k.strip().lower()] = v.strip()
        return out

    def events(self):
        """[(time, event, id, data)] after the response head."""
        evs, cur, body = [], {}, False
        for t, ln in self.lines:
            if not body:
                body = ln == ""
                continue
            if ln == "":
                if "event" in cur:
                    evs.append((cur["t"], cur["event"], cur.get("id"), cur.get("data")))
                cur = {}
            elif ln.startswith(":"):
                continue
            elif ":" in ln:
                k, v = ln.split(":", 1)
                cur.setdefault("t", t)
                cur[k] = v[1:] if v.startswith(" ") else v
        return evs
