#!/usr/bin/env python3
# The number of /metrics series of a real hub with N real sites connected, under metrics_max_sites' default and with the cap off.
# SPDX-License-Identifier: MIT
"""metrics_cardinality.py [--sites 1,1000] [--build DIR] [--json FILE]

For each N: a fresh hub (tether-hub init + run), N sites registered and
enrolled through the API (POST /v1/sites, POST /v1/enroll with the site's
pin), and N real site agents connected with their own keys and TLS
tunnels (bench_sites run: site/agent.c, one process, one loop), each
offering the service "web" (deploy/sample-service.py). The series count of
GET /metrics (its non-comment lines) is read:
  - idle: connected, no request yet;
  - traffic: after one proxied request per site;
each with metrics_max_sites at its default (500) and with the cap off
(metrics_max_sites = 10000000), switched by SIGHUP. Prints a table, and
the figures as JSON with --json. 1,000 sites take about a minute here.

docs/operator-guide.md ("Metrics") quotes the figures.
"""
import argparse
import base64
import http.client
import json
import os
import re
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import harness  # noqa: E402
import promtext  # noqa: E402

CAP_OFF = 10000000


class Api:
    """A keep-alive HTTPS/1.1 client to the hub (its certificate checked
    against hub.crt)."""

    def __init__(self, hub):
        self.hub = hub
        self.cert = harness.cert_der(os.path.join(hub.dir, "hub.crt"))
        self.conn = None

    def call(self, method, path, body=None, auth=True):
        hdrs = {"Authorization": "Bearer " + self.hub.token} if auth else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        for attempt in range(3):
            try:
                if self.conn is None:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    c = http.client.HTTPSConnection("127.0.0.1", self.hub.port, context=ctx,
                                                    timeout=60)
                    c.connect()
                    if c.sock.getpeercert(binary_form=True) != self.cert:
                        raise harness.Fatal("the hub presented another certificate")
                    self.conn = c
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, raw
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def token_secret(enrollment_token):
    b = enrollment_token.split(".", 1)[1]
    return json.loads(base64.urlsafe_b64decode(b + "=" * (-len(b) % 4)))["secret"]


def keygen(h, keys, n):
    """n site identities b-00000...; {name: pin}."""
    r = h.run([h.bin("bench_sites"), "keygen", "--dir", keys, "--from", "0", "--count", str(n)],
              timeout=1200)
    if r.rc != 0:
        raise harness.Fatal("bench_sites keygen: %r" % r)
    pins = dict(line.split() for line in r.stdout.splitlines())
    if len(pins) != n:
        raise harness.Fatal("keygen made %d identities, wanted %d" % (len(pins), n))
    return pins


def enroll(api, pins):
    for name in sorted(pins):
        st, raw = api.call("POST", "/v1/sites", {"name": name})
        if st != 201:
            raise harness.Fatal("POST /v1/sites %s: %d %r" % (name, st, raw[:200]))
        st, raw = api.call("POST", "/v1/enroll", {
            "site": name, "secret": token_secret(json.loads(raw)["enrollment_token"]),
            "pin": pins[name], "agent_version": "bench"}, auth=False)
        if st != 200:
            raise harness.Fatal("POST /v1/enroll %s: %d %r" % (name, st, raw[:200]))


def scrape(api):
    t = time.monotonic()
    st, raw = api.call("GET", "/metrics")
    ms = (time.monotonic() - t) * 1000
    if st != 200:
        raise harness.Fatal("GET /metrics: %d" % st)
    x = promtext.Exposition(raw.decode())
    return x, ms, len(raw)


def wait_ready(api, n, timeout):
    """Until n sites are online and each has said hello (services known)."""
    deadline = time.monotonic() + timeout
    while True:
        x, _, _ = scrape(api)
        online = x.get("tether_sites_online") or 0
        if online >= n:
            st, raw = api.call("GET", "/v1/sites")
            sites = json.loads(raw).get("sites", []) if st == 200 else []
            if sum(1 for s in sites if s.get("online") and s.get("services")) >= n:
                return
        if time.monotonic() >= deadline:
            raise harness.Fatal("only %d of %d sites online after %.0f s" % (online, n, timeout))
        time.sleep(0.5)


def measure(h, hub, api, n, label, caps):
    """{cap: {"series", "site_series", "enabled", "ms", "bytes"}} for each cap."""
    out = {}
    for cap in caps:
        hub.reload(metrics_max_sites=str(cap))
        x, ms, size = scrape(api)
        out["off" if cap == CAP_OFF else str(cap)] = {
            "series": x.series_count(),
            "site_series": sum(1 for name, _, _ in x.samples if name.startswith("tether_site_")),
            "enabled": int(x.get("tether_metrics_site_series_enabled") or 0),
            "ms": round(ms, 1), "bytes": size,
        }
        h.info("%5d sites %-8s metrics_max_sites=%-8s series=%d (per-site %d) %.1f ms %d bytes"
               % (n, label, cap, x.series_count(), out[list(out)[-1]]["site_series"], ms, size))
    return out


def run_one(h, keys, pins, n, svc, caps=(500, CAP_OFF), timeout=300):
    """A fresh hub with sites b-00000..n-1 connected; the figures, idle and
    after one request per site."""
    hub = h.hub("hub-%d" % n)
    hub.init()
    hub.start()
    api = Api(hub)
    names = sorted(pins)[:n]
    enroll(api, {k: pins[k] for k in names})
    sims = h.spawn("sites-%d" % n, [h.bin("bench_sites"), "run", "--dir", keys, "--from", "0",
                                    "--count", str(n), "--hub", hub.addr, "--hub-pin", hub.pin,
                                    "--service", "web=" + svc.url])
    sims.wait_log(r"^loaded \d+", timeout=timeout)
    wait_ready(api, n, timeout)
    res = {"sites": n, "idle": measure(h, hub, api, n, "idle", caps)}
    for name in names:
        st, _ = api.call("GET", "/v1/sites/%s/services/web/healthz" % name)
        if st != 200:
            raise harness.Fatal("request through %s: %d" % (name, st))
    res["traffic"] = measure(h, hub, api, n, "traffic", caps)
    api.close()
    sims.stop(timeout=30)
    hub.proc.stop(timeout=30)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", default="1,1000", help="comma-separated site counts")
    ap.add_argument("--build", help="build directory (default $TETHER_BIN or build/)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    if a.build:
        os.environ["TETHER_BIN"] = os.path.abspath(a.build)
    os.environ.setdefault("TETHER_BIN", os.path.join(SRC, "build"))
    os.environ.setdefault("TETHER_SRC", SRC)
    counts = sorted(int(s) for s in a.sites.split(",") if s.strip())
    figures = []

    def body(h):
        h.require("bench_sites")
        keys = h.mkdir("keys")
        pins = keygen(h, keys, max(counts))
        svc = h.service("svc")
        for n in counts:
            figures.append(run_one(h, keys, pins, n, svc))
        print("\nsites  state    metrics_max_sites  series  per-site  enabled  scrape_ms")
        for f in figures:
            for state in ("idle", "traffic"):
                for cap, v in f[state].items():
                    print("%5d  %-7s  %-17s  %6d  %8d  %7d  %9.1f" % (
                        f["sites"], state, "500 (default)" if cap == "500" else cap,
                        v["series"], v["site_series"], v["enabled"], v["ms"]))
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(figures, fh, indent=2)
        h.check(all(f["traffic"]["off"]["enabled"] == 1 for f in figures),
                "with the cap off, per-site series are exported at every count")
        h.check(all((f["traffic"]["500"]["enabled"] == 1) == (f["sites"] <= 500)
                    for f in figures), "with the default cap, only up to 500 sites")

    harness.Harness.main("metrics_cardinality", body, progs=("tether-hub", "bench_sites"))


if __name__ == "__main__":
    main()
