#!/usr/bin/env python3
# Integration: 50 real sites connected; metrics_max_sites = 20 switches the per-site /metrics series off, 100 exports exactly the expected number per site.
# SPDX-License-Identifier: MIT
"""The short form of tests/bench/metrics_cardinality.py (which measures 1 and
1,000 sites): 50 sites registered, enrolled and connected by real agents
(bench_sites, site/agent.c with one key and one TLS tunnel each).
  - metrics_max_sites = 20 (under the 50 sites): tether_metrics_site_series_enabled
    is 0 and no tether_site_* series is exported;
  - metrics_max_sites = 100: 5 series per site while idle (up, active,
    streams open, bytes each way), 21 after one request each (plus one
    requests-by-class series and the 15 of the latency histogram);
  - promtool check metrics passes every time.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "bench"))
from harness import Harness, Fatal  # noqa: E402
import metrics_cardinality as mc  # noqa: E402

N = 50
IDLE_PER_SITE = 5
TRAFFIC_PER_SITE = 5 + 1 + 15


def check(h, hub, api, cap, label):
    hub.reload(metrics_max_sites=str(cap))
    x, _, _ = mc.scrape(api)
    p = subprocess.run(["promtool", "check", "metrics"], input=x.text.encode(),
                       capture_output=True, timeout=60)
    h.check(p.returncode == 0, "promtool check metrics passes (%s, cap %d)" % (label, cap),
            (p.stdout + p.stderr)[-1500:])
    site_series = [n for n, _, _ in x.samples if n.startswith("tether_site_")]
    sites = {lab.get("site") for n, lab, _ in x.samples if n == "tether_site_up"}
    return x, len(site_series), sites


def main(h):
    h.require("bench_sites", tools=("promtool",))
    keys = h.mkdir("keys")
    pins = mc.keygen(h, keys, N)
    svc = h.service("svc")
    hub = h.hub()
    hub.init()
    hub.start()
    api = mc.Api(hub)
    mc.enroll(api, pins)
    sims = h.spawn("sites", [h.bin("bench_sites"), "run", "--dir", keys, "--from", "0",
                             "--count", str(N), "--hub", hub.addr, "--hub-pin", hub.pin,
                             "--service", "web=" + svc.url])
    sims.wait_log(r"^loaded \d+", timeout=120)
    mc.wait_ready(api, N, 120)

    x, n_site, _ = check(h, hub, api, 20, "idle")
    h.check(x.get("tether_metrics_site_series_enabled") == 0 and n_site == 0,
            "50 sites over metrics_max_sites = 20: per-site series off, and the gauge says so",
            (x.get("tether_metrics_site_series_enabled"), n_site))
    h.check(x.get("tether_sites_online") == N and x.get("tether_sites", state="active") == N,
            "the hub-wide gauges still count every site")
    off_total = x.series_count()
    x, n_site, sites = check(h, hub, api, 100, "idle")
    h.check(x.get("tether_metrics_site_series_enabled") == 1 and n_site == N * IDLE_PER_SITE
            and len(sites) == N,
            "under metrics_max_sites = 100: %d series per idle site" % IDLE_PER_SITE,
            (n_site, len(sites)))
    h.check(x.series_count() - off_total == n_site,
            "the per-site series are all the switch turns off",
            (x.series_count(), off_total, n_site))
    h.check(all(v == 1 for _, v in x.all("tether_site_up")), "every site up")

    for name in sorted(pins):
        st, _ = api.call("GET", "/v1/sites/%s/services/web/healthz" % name)
        if st != 200:
            raise Fatal("request through %s: %d" % (name, st))
    x, n_site, _ = check(h, hub, api, 100, "traffic")
    h.check(n_site == N * TRAFFIC_PER_SITE,
            "after one request each: %d series per site" % TRAFFIC_PER_SITE, n_site)
    h.check(len(x.all("tether_site_requests_total")) == N and
            all(lab.get("code") == "2xx" and lab.get("service") == "web" and v == 1
                for lab, v in x.all("tether_site_requests_total")),
            "one 2xx of service web per site")
    x, n_site, _ = check(h, hub, api, 20, "traffic")
    h.check(n_site == 0 and x.series_count() <= off_total + 20,
            "over the cap again: the hub's series only, whatever the traffic",
            (x.series_count(), off_total))
    api.close()


Harness.main("metrics_cardinality", main, progs=("tether-hub", "bench_sites"))
