#!/usr/bin/env python3
# Integration: /metrics of a real hub with traffic passes promtool, has every family the operator guide lists, and the shipped dashboard and alert rules use only its names.
# SPDX-License-Identifier: MIT
"""A hub with three sites (clinic-a connected, lab-b enrolled but stopped,
new-c registered only), proxied requests of every status class over HTTP/1.1
and HTTP/2, a federated query that waits for lab-b, a connection that is
not TLS and a tunnel handshake with an unknown key. Then:
  - `promtool check metrics` passes on /metrics (every family has HELP and
    TYPE, names follow the conventions);
  - the series names scripts rely on are still there;
  - each new family has the values the traffic implies (per-site up, active,
    bytes, streams, requests by service and class, latency histogram;
    handshakes; connections by kind; queries; commit latency; process);
  - per-site counters survive the site's reconnect;
  - metrics_max_sites below the number of sites switches the per-site
    series off (and says so), and back on;
  - deploy/grafana/tether.json is valid JSON and deploy/prometheus's rules
    pass `promtool check rules` and `promtool test rules`; every metric name
    either uses is one /metrics exports.
"""
import os
import re
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Fatal, tls_connect  # noqa: E402
import promtext  # noqa: E402

SITE = "clinic-a"

# Series scripts read (INTERFACE: extend, never rename).
OLD_SERIES = [
    ("tether_sites_online", {}),
    ("tether_requests_total", {}),
    ("tether_proxy_requests_total", {}),
    ("tether_tunnels_accepted_total", {}),
    ("tether_tunnels_refused_total", {}),
    ("tether_users_refused_total", {"reason": "per_address"}),
    ("tether_users_refused_total", {"reason": "fd_reserve"}),
    ("tether_users_timed_out_total", {}),
    ("tether_proxy_refused_total", {"reason": "conn_requests"}),
    ("tether_proxy_refused_total", {"reason": "site_busy"}),
]

# The families issue 14 asks for, by the names docs/operator-guide.md gives them.
NEW_FAMILIES = {
    "tether_site_up": "gauge", "tether_site_active": "gauge",
    "tether_site_received_bytes_total": "counter", "tether_site_sent_bytes_total": "counter",
    "tether_site_streams_open": "gauge", "tether_site_requests_total": "counter",
    "tether_site_proxy_latency_seconds": "histogram",
    "tether_handshakes_accepted_total": "counter", "tether_handshakes_refused_total": "counter",
    "tether_connections": "gauge",
    "tether_queries_submitted_total": "counter", "tether_queries_completed_total": "counter",
    "tether_query_results_total": "counter", "tether_query_deliveries_total": "counter",
    "tether_query_queue_depth": "gauge", "tether_query_results_in_flight": "gauge",
    "tether_registry_commit_seconds": "histogram",
    "process_open_fds": "gauge", "process_max_fds": "gauge",
    "process_resident_memory_bytes": "gauge", "process_cpu_seconds_total": "counter",
    "tether_build_info": "gauge", "tether_ready": "gauge", "tether_sites": "gauge",
    "tether_metrics_site_series_enabled": "gauge", "tether_metrics_max_sites": "gauge",
    "tether_proxy_responses_total": "counter", "tether_proxy_latency_seconds": "histogram",
    # Issue 16: the loop's lag, and the records written off the loop.
    "tether_hub_loop_lag_seconds": "histogram", "tether_registry_records_total": "counter",
    "tether_registry_record_batches_total": "counter", "tether_registry_record_queue": "gauge",
}


def scrape(h, hub, http="1.1", label=""):
    r = hub.curl("/metrics", http=http)
    if r.status != 200:
        raise Fatal("GET /metrics: %r" % r)
    h.check(r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
            "/metrics is the Prometheus text format 0.0.4%s" % label, r.headers)
    text = r.body.decode()
    path = h.path("metrics-%d.txt" % int(time.monotonic() * 1000))
    with open(path, "w") as f:
        f.write(text)
    return promtext.Exposition(text), path


def promtool(h, *args, stdin=None, cwd=None):
    p = subprocess.run(["promtool"] + list(args), input=stdin, capture_output=True, timeout=60,
                       cwd=cwd)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def check_promtool_metrics(h, text_path, label):
    with open(text_path, "rb") as f:
        rc, out = promtool(h, "check", "metrics", stdin=f.read())
    h.check(rc == 0 and out.strip() == "", "promtool check metrics passes (%s)" % label,
            "rc=%d %s" % (rc, out[:2000]))


def not_tls(hub):
    """A connection whose first bytes are no TLS ClientHello."""
    s = socket.create_connection(("127.0.0.1", hub.port), timeout=5)
    try:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        s.settimeout(5)
        while s.recv(4096):
            pass
    except OSError:
        pass
    finally:
        s.close()


def unknown_key_tunnel(h, hub):
    """A tunnel handshake with a key the registry does not hold."""
    key, crt = h.path("stray.key"), h.path("stray.crt")
    r = h.run(["openssl", "req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", key,
               "-out", crt, "-subj", "/CN=stray", "-days", "1"])
    if r.rc != 0:
        raise Fatal("openssl req: %r" % r)
    try:
        s = tls_connect(hub.port, alpn=("tether/1",), cert=crt, key=key, timeout=10)
        s.settimeout(5)
        try:
            while s.recv(4096):
                pass
        finally:
            s.close()
    except (ssl.SSLError, OSError):
        pass


def site_requests(x, site, service, code):
    return x.get("tether_site_requests_total", site=site, service=service, code=code) or 0


def main(h):
    h.require(tools=("promtool", "openssl"))
    hub, site, svc = h.setup(SITE)

    # lab-b: enrolled, then stopped (active but down); new-c: registered only.
    lab, _ = h.add_site(hub, "lab-b")
    lab.proc.stop()
    hub.wait_online("lab-b", online=False)
    hub.site_add("new-c")

    # --- traffic -----------------------------------------------------------
    st = [hub.proxy(SITE, "web", "/healthz").status for _ in range(5)]
    h.check(st == [200] * 5, "five 2xx through the tunnel", st)
    r = hub.proxy(SITE, "web", "/healthz", http="2")
    h.check(r.status == 200 and r.version == "2", "a 2xx over HTTP/2", r)
    h.check(hub.proxy(SITE, "web", "/status/404").status == 404, "a 404 from the service")
    h.check(hub.proxy(SITE, "web", "/status/502").status == 502, "a 502 from the service")
    h.check(hub.proxy(SITE, "web", "/status/503").status == 503, "a 503 from the service")
    h.check(hub.proxy(SITE, "nope", "/x").status == 404,
            "a service the site does not announce: 404 from the hub")
    h.check(hub.proxy("lab-b", "web", "/healthz").status == 503,
            "a request to the stopped site: 503 from the hub")
    r = hub.api("POST", "/v1/queries", {"sites": [SITE, "lab-b"], "service": "web",
                                        "path": "/healthz", "timeout_s": 10})
    h.check(r.status == 201, "a federated query to clinic-a and lab-b", r)
    qid = r.json().get("id") if r.status == 201 else None

    def clinic_done():
        q = hub.curl("/v1/queries/%s" % qid)
        res = q.json().get("sites", []) if q.status == 200 else []
        return [x for x in res if x.get("site") == SITE and x.get("status") == "done"]
    h.check(h.wait_until(clinic_done, 10), "clinic-a answers the query; lab-b's result waits")
    not_tls(hub)
    unknown_key_tunnel(h, hub)
    hub.proc.wait_log(r"\btunnel_refused\b.*unknown key", 10)

    # --- one scrape over HTTP/2, one over HTTP/1.1 --------------------------
    x2, _ = scrape(h, hub, http="2", label=" over HTTP/2")
    h.check((x2.get("tether_connections", kind="user_h2") or 0) >= 1,
            "tether_connections{kind=user_h2} counts the scrape's own HTTP/2 connection",
            x2.get("tether_connections", kind="user_h2"))
    x, path = scrape(h, hub)
    check_promtool_metrics(h, path, "a site connected, traffic flowed")
    h.check(not x.errors, "every line parses", x.errors[:5])
    no_help = [n for n, f in x.families.items() if not f.get("help") or not f.get("type")]
    h.check(not no_help, "every family has # HELP and # TYPE", no_help)
    orphans = sorted({n for n, _, _ in x.samples if x.family_of(n) is None})
    h.check(not orphans, "every sample belongs to a family with HELP and TYPE", orphans)
    for name, labels in OLD_SERIES:
        h.check(x.get(name, **labels) is not None, "the existing series %s%s is kept" % (
            name, labels or ""))
    for name, typ in NEW_FAMILIES.items():
        h.check(x.families.get(name, {}).get("type") == typ, "family %s is a %s" % (name, typ),
                x.families.get(name))

    # Per site.
    h.check(x.get("tether_site_up", site=SITE) == 1 and x.get("tether_site_up", site="lab-b") == 0
            and x.get("tether_site_up", site="new-c") == 0,
            "tether_site_up: 1 for the connected site, 0 for the stopped and the new one",
            x.all("tether_site_up"))
    h.check(x.get("tether_site_active", site=SITE) == 1
            and x.get("tether_site_active", site="lab-b") == 1
            and x.get("tether_site_active", site="new-c") == 0,
            "tether_site_active: 1 for enrolled sites, 0 for one never enrolled",
            x.all("tether_site_active"))
    rx = x.get("tether_site_received_bytes_total", site=SITE) or 0
    tx = x.get("tether_site_sent_bytes_total", site=SITE) or 0
    h.check(rx > 1000 and tx > 1000, "bytes each way on clinic-a's tunnel", (rx, tx))
    h.check((x.get("tether_site_received_bytes_total", site="lab-b") or 0) > 0,
            "lab-b's bytes stay counted after its tunnel closed",
            x.get("tether_site_received_bytes_total", site="lab-b"))
    h.check(x.get("tether_site_streams_open", site=SITE) is not None
            and x.get("tether_site_streams_open", site=SITE) <= 2,
            "tether_site_streams_open: none left but the hub's announcement stream",
            x.get("tether_site_streams_open", site=SITE))
    ok2, c4, c5 = (site_requests(x, SITE, "web", "2xx"), site_requests(x, SITE, "web", "4xx"),
                   site_requests(x, SITE, "web", "5xx"))
    h.check(ok2 == 6 and c4 == 1 and c5 == 2,
            "tether_site_requests_total by class: six 2xx, one 4xx, two 5xx",
            x.all("tether_site_requests_total"))
    h.check(not [lab for lab, _ in x.all("tether_site_requests_total")
                 if lab.get("service") not in ("web",)],
            "a service the site did not announce makes no series",
            x.all("tether_site_requests_total"))
    h.check(site_requests(x, "lab-b", "web", "5xx") == 1,
            "the stopped site's 503 counts under its last announced service",
            x.all("tether_site_requests_total"))
    cnt = x.get("tether_site_proxy_latency_seconds_count", site=SITE) or 0
    inf = x.get("tether_site_proxy_latency_seconds_bucket", site=SITE, le="+Inf")
    h.check(cnt == 9 and inf == cnt and
            0 < (x.get("tether_site_proxy_latency_seconds_sum", site=SITE) or 0) < 9 * 5,
            "the site's latency histogram: one observation per answered request", (cnt, inf))
    buckets = [(float(lab["le"]) if lab["le"] != "+Inf" else float("inf"), v)
               for lab, v in x.all("tether_site_proxy_latency_seconds_bucket")
               if lab.get("site") == SITE]
    h.check(len(buckets) >= 10 and all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])),
            "its buckets are cumulative", buckets)
    h.check(x.get("tether_site_proxy_latency_seconds_count", site="new-c") is None,
            "a site without requests has no latency series")
    h.check((x.get("tether_proxy_responses_total", code="4xx") or 0) >= 2
            and (x.get("tether_proxy_responses_total", code="2xx") or 0) >= 6,
            "tether_proxy_responses_total counts every site, unknown services too",
            x.all("tether_proxy_responses_total"))

    # Hub-wide.
    h.check((x.get("tether_handshakes_accepted_total", kind="tunnel") or 0) >= 2
            and (x.get("tether_handshakes_accepted_total", kind="user") or 0) >= 10,
            "handshakes accepted by kind", x.all("tether_handshakes_accepted_total"))
    h.check((x.get("tether_handshakes_refused_total", kind="tunnel", reason="unknown_key") or 0)
            >= 1, "the unknown key's handshake is refused as unknown_key",
            x.all("tether_handshakes_refused_total"))
    h.check((x.get("tether_handshakes_refused_total", kind="unknown", reason="not_tls") or 0)
            >= 1, "the connection that was not TLS counts as not_tls",
            x.all("tether_handshakes_refused_total"))
    h.check(x.get("tether_connections", kind="tunnel") == 1
            and (x.get("tether_connections", kind="user_h1") or 0) >= 1,
            "tether_connections: one tunnel, the scrape's HTTP/1.1 connection",
            x.all("tether_connections"))
    h.check(x.get("tether_queries_submitted_total") == 1
            and x.get("tether_query_results_total", state="done") == 1
            and x.get("tether_query_deliveries_total") == 1
            and x.get("tether_query_queue_depth") == 1
            and x.get("tether_query_results_in_flight") == 0
            and x.get("tether_queries_completed_total") == 0,
            "queries: one submitted, its clinic-a result done, lab-b's queued",
            [(n, v) for n, _, v in x.samples if n.startswith(("tether_quer", "tether_query"))])
    h.check((x.get("tether_registry_commit_seconds_count") or 0) >= 5
            and x.get("tether_registry_commit_seconds_bucket", le="+Inf")
            == x.get("tether_registry_commit_seconds_count"),
            "registry commits were timed", x.get("tether_registry_commit_seconds_count"))
    # The site's connect and hello were written by the recorder, none lost.
    h.check((x.get("tether_registry_records_total", outcome="written") or 0) >= 3
            and x.get("tether_registry_records_total", outcome="dropped") == 0
            and x.get("tether_registry_record_queue") is not None
            and (x.get("tether_registry_record_batches_total") or 0) >= 1,
            "records of connects and hellos are written by the writer thread",
            x.all("tether_registry_records_total"))
    lag_n = x.get("tether_hub_loop_lag_seconds_count") or 0
    h.check(lag_n >= 1 and x.get("tether_hub_loop_lag_seconds_bucket", le="+Inf") == lag_n,
            "the loop's lag is measured", lag_n)
    time.sleep(0.5)
    y, _ = scrape(h, hub, label=" (again)")
    lag_n2 = y.get("tether_hub_loop_lag_seconds_count") or 0
    # A tick every 20 ms: at least ~10 more in half a second, however busy.
    h.check(lag_n2 >= lag_n + 10, "the loop's lag count grows with time", (lag_n, lag_n2))
    pid = hub.proc.pid
    fds = len(os.listdir("/proc/%d/fd" % pid))
    h.check(abs((x.get("process_open_fds") or 0) - fds) <= 5,
            "process_open_fds matches /proc/PID/fd", (x.get("process_open_fds"), fds))
    rss = hub.proc.rss_kib() * 1024
    h.check(abs((x.get("process_resident_memory_bytes") or 0) - rss) < rss / 2,
            "process_resident_memory_bytes matches the hub's RSS",
            (x.get("process_resident_memory_bytes"), rss))
    ver = h.run([h.bin("tether-hub"), "--version"]).stdout
    bi = x.all("tether_build_info")
    h.check(len(bi) == 1 and bi[0][1] == 1 and bi[0][0].get("version", "?") in ver,
            "tether_build_info{version} is tether-hub --version's", (bi, ver))
    h.check(x.get("tether_ready") == 1 and x.get("tether_metrics_site_series_enabled") == 1
            and x.get("tether_metrics_max_sites") == 500,
            "ready, per-site series on under the default cap of 500")
    h.check(x.get("tether_sites", state="active") == 2 and x.get("tether_sites", state="pending")
            == 1, "tether_sites by state", x.all("tether_sites"))

    # --- per-site counters survive a reconnect ------------------------------
    site.proc.stop()
    hub.wait_online(SITE, online=False)
    x1, _ = scrape(h, hub)
    site.start({"web": svc.url})
    hub.wait_ready(SITE)
    hub.proxy(SITE, "web", "/healthz")
    x3, path = scrape(h, hub)
    h.check(x1.get("tether_site_up", site=SITE) == 0 and x3.get("tether_site_up", site=SITE) == 1,
            "clinic-a down, then up again")
    h.check(x3.get("tether_site_received_bytes_total", site=SITE) >
            x1.get("tether_site_received_bytes_total", site=SITE) >= rx,
            "its byte counters go on from where they were (no reset at reconnect)",
            (rx, x1.get("tether_site_received_bytes_total", site=SITE),
             x3.get("tether_site_received_bytes_total", site=SITE)))
    h.check(site_requests(x3, SITE, "web", "2xx") == ok2 + 1,
            "its request counters too", site_requests(x3, SITE, "web", "2xx"))

    # --- the per-site switch ------------------------------------------------
    hub.reload(metrics_max_sites="2")
    xo, path = scrape(h, hub)
    check_promtool_metrics(h, path, "per-site series off")
    h.check(xo.get("tether_metrics_site_series_enabled") == 0
            and xo.get("tether_metrics_max_sites") == 2,
            "3 sites over metrics_max_sites = 2: the gauge says per-site series are off")
    h.check(not [n for n, _, _ in xo.samples if n.startswith("tether_site_")],
            "no tether_site_* series while off")
    h.check(xo.series_count() < x3.series_count(), "fewer series while off",
            (xo.series_count(), x3.series_count()))
    hub.reload(metrics_max_sites="3")
    xb, _ = scrape(h, hub)
    h.check(xb.get("tether_metrics_site_series_enabled") == 1
            and site_requests(xb, SITE, "web", "2xx") == ok2 + 1,
            "3 sites at metrics_max_sites = 3: on again, counters intact")

    # --- removed site: its series go -----------------------------------------
    r = hub.api("DELETE", "/v1/sites/lab-b")
    h.check(r.status == 204, "remove lab-b", r)
    xr, _ = scrape(h, hub)
    h.check(not [lab for n, lab, _ in xr.samples if lab.get("site") == "lab-b"],
            "a removed site leaves no series")

    # --- the dashboard and the rules use only these names --------------------
    exported = x3.names() | x.names()
    dash_path = os.path.join(h.src_dir, "deploy", "grafana", "tether.json")
    try:
        dash, exprs = promtext.dashboard_exprs(dash_path)
        h.check(isinstance(dash.get("panels"), list) and dash.get("title"),
                "deploy/grafana/tether.json is a Grafana dashboard (valid JSON)")
    except ValueError as e:
        raise Fatal("deploy/grafana/tether.json is not valid JSON: %s" % e)
    used = set()
    for e in exprs:
        used |= promtext.promql_names(e)
    h.check(len(used) >= 25, "the dashboard charts most families", sorted(used))
    h.check(not sorted(used - exported), "every metric the dashboard uses is in /metrics",
            sorted(used - exported))
    for must in ("tether_site_up", "tether_site_received_bytes_total",
                 "tether_site_requests_total", "tether_site_proxy_latency_seconds_bucket",
                 "tether_handshakes_refused_total", "tether_connections",
                 "tether_query_queue_depth", "tether_registry_commit_seconds_bucket",
                 "process_open_fds", "process_resident_memory_bytes"):
        h.check(must in used, "the dashboard charts %s" % must)

    rules_dir = os.path.join(h.src_dir, "deploy", "prometheus")
    rc, out = promtool(h, "check", "rules", os.path.join(rules_dir, "tether-rules.yml"))
    h.check(rc == 0 and "SUCCESS" in out, "promtool check rules passes", out[-1500:])
    rc, out = promtool(h, "test", "rules", "tether-rules_test.yml", cwd=rules_dir)
    h.check(rc == 0 and "SUCCESS" in out, "promtool test rules: the alerts fire as meant",
            out[-3000:])
    with open(os.path.join(rules_dir, "tether-rules.yml")) as f:
        rule_names = promtext.promql_names(f.read())
    h.check(len(rule_names) >= 8, "the rules use the hub's metrics", sorted(rule_names))
    h.check(not sorted(rule_names - exported), "every metric the rules use is in /metrics",
            sorted(rule_names - exported))


Harness.main("metrics", main)
