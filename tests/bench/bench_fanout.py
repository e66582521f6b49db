#!/usr/bin/env python3
# Benchmark: federated-query fan-out latency (submit until every site's result is stored) with N real tether-site processes.
# SPDX-License-Identifier: MIT
"""Usage: bench_fanout.py [--sites 1,100] [--queries 50] [--upstream nginx|python]
                       [--out FILE.json] [--keep]

For each N in --sites: starts a hub, one local service (nginx if installed,
else a minimal Python one: --upstream) and N `tether-site run`
processes (each enrolled with its own key, its own TLS tunnel), then submits
--queries queries one after the other to every site (`"sites": "*"`,
GET /count) and measures, per query, the time from the POST until the query
is complete (every result stored), with GET /v1/queries/{id}?wait= on a kept
HTTPS connection. Prints p50/p99/max of that latency and of the per-site
latency_ms the hub stored (request sent -> result stored).

Environment: TETHER_BIN (build dir with tether-hub, tether-site, tetherctl),
TETHER_SRC (source tree).
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import resource
import shutil
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Fatal, Harness, free_port  # noqa: E402


class CountHandler(BaseHTTPRequestHandler):
    """The bench's local service: GET /count answered in one segment.
    (deploy/sample-service.py writes head and body separately without
    TCP_NODELAY, which costs 40 ms per keep-alive request: Nagle against the
    client's delayed ACK. That would be measured instead of tether.)"""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self):
        body = b'{"count": 1}\n'
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def log_message(self, fmt, *args):
        pass


class CountServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096  # listen() backlog: a thousand sites connect at once


def serve(port):
    srv = CountServer(("127.0.0.1", port), CountHandler)
    print("listening %d" % srv.server_address[1], flush=True)
    srv.serve_forever(poll_interval=0.2)
    return 0


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


class Api:
    """One kept-alive HTTPS/1.1 connection to the hub."""

    def __init__(self, hub):
        self.hub = hub
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.ctx = ctx
        self.c = None

    def call(self, method, path, body=None, timeout=120):
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPSConnection("127.0.0.1", self.hub.port, context=self.ctx,
                                                     timeout=timeout)
            try:
                hdrs = {"Authorization": "Bearer " + self.hub.token}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    hdrs["Content-Type"] = "application/json"
                self.c.request(method, path, body=data, headers=hdrs)
                r = self.c.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
            except (OSError, http.client.HTTPException):
                self.c.close()
                self.c = None
                if attempt == 1:
                    raise
        raise Fatal("unreachable")


NGINX_CONF = """daemon off;
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %(dir)s;
    proxy_temp_path %(dir)s;
    fastcgi_temp_path %(dir)s;
    uwsgi_temp_path %(dir)s;
    scgi_temp_path %(dir)s;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    server {
        listen 127.0.0.1:%(port)d backlog=4096;
        location /count { default_type application/json; return 200 '{"count": 1}\\n'; }
    }
}
"""


def start_upstream(h, n, kind):
    """The sites' local service: nginx (fast, C) or the Python one above.
    Returns its URL."""
    port = free_port()
    if kind == "nginx":
        d = h.mkdir("nginx-%d" % n)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF % {"dir": d, "port": port})
        h.spawn("nginx-%d" % n, ["nginx", "-c", conf, "-p", d])
    else:
        p = h.spawn("svc-%d" % n, [sys.executable, os.path.abspath(__file__), "--serve",
                                   str(port)])
        p.wait_log(r"^listening %d$" % port, 15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/count")
            if c.getresponse().status == 200:
                c.close()
                return "http://127.0.0.1:%d" % port
        except OSError:
            time.sleep(0.1)
    raise Fatal("the %s upstream did not answer on port %d" % (kind, port))


def setup(h, n, upstream, log):
    hub = h.hub("hub-%d" % n)
    hub.init()
    hub.start()
    svc_url = start_upstream(h, n, upstream)
    api = Api(hub)
    names = ["s%05d" % i for i in range(n)]
    t0 = time.monotonic()
    tokens = {}
    for name in names:
        st, j = api.call("POST", "/v1/sites", {"name": name})
        if st != 201:
            raise Fatal("site add %s: %s %r" % (name, st, j))
        tokens[name] = j["enrollment_token"]
    sites = {name: h.site(name, hub) for name in names}

    def enroll(name):
        return sites[name].enroll(tokens[name])

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(enroll, names))
    log("  %d sites registered and enrolled in %.1f s" % (n, time.monotonic() - t0))
    t0 = time.monotonic()
    for name in names:
        sites[name].start({"counts": svc_url}, wait=False)
    deadline = time.monotonic() + 60 + n * 0.2
    ready = 0
    while time.monotonic() < deadline:
        st, j = api.call("GET", "/v1/sites")
        ready = sum(1 for s in j["sites"] if s["online"] and s["services"])
        if ready == n:
            break
        time.sleep(0.5)
    if ready != n:
        raise Fatal("only %d of %d sites came online" % (ready, n))
    log("  %d tunnels up with services in %.1f s" % (n, time.monotonic() - t0))
    return hub, api, sites


def cpu_ms(pid):
    """User+system CPU time of a process, in ms."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def run_size(h, n, queries, upstream, log):
    hub, api, sites = setup(h, n, upstream, log)
    # One warm-up query (first use of each site's upstream pool).
    body = {"sites": "*", "service": "counts", "path": "/count", "timeout_s": 60}
    fan, per_site, failures = [], [], 0
    cpu0 = None
    for i in range(queries + 1):
        if i == 1:
            cpu0 = cpu_ms(hub.proc.pid)
        t0 = time.perf_counter()
        st, j = api.call("POST", "/v1/queries", body)
        if st != 201:
            raise Fatal("POST /v1/queries: %s %r" % (st, j))
        st, q = api.call("GET", "/v1/queries/%s?wait=60" % j["id"])
        t1 = time.perf_counter()
        if st != 200 or q["status"] != "complete":
            raise Fatal("query %s did not complete: %s %r" % (j["id"], st, q and q.get("counts")))
        done = [s for s in q["sites"] if s["status"] == "done"]
        failures += len(q["sites"]) - len(done)
        if i == 0:
            continue
        fan.append((t1 - t0) * 1000.0)
        per_site += [s["latency_ms"] for s in done]
    hub_cpu = (cpu_ms(hub.proc.pid) - cpu0) / max(1, queries)
    hub_rss = hub.proc.rss_kib()
    for s in sites.values():
        s.proc.stop(timeout=5)
    hub.proc.stop(timeout=15)
    return {
        "sites": n, "queries": queries, "failed_results": failures,
        "fanout_p50_ms": round(pct(fan, 50), 2), "fanout_p99_ms": round(pct(fan, 99), 2),
        "fanout_max_ms": round(max(fan), 2), "fanout_min_ms": round(min(fan), 2),
        "site_latency_p50_ms": pct(per_site, 50), "site_latency_p99_ms": pct(per_site, 99),
        "hub_rss_kib": hub_rss, "hub_cpu_ms_per_query": round(hub_cpu, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", default="1,100", help="comma-separated site counts")
    ap.add_argument("--queries", type=int, default=50, help="queries per site count")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--upstream", choices=("nginx", "python"),
                    help="the sites' local service (default: nginx if installed)")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve is not None:
        return serve(a.serve)
    sizes = [int(x) for x in a.sites.split(",") if x.strip()]
    upstream = a.upstream or ("nginx" if shutil.which("nginx") else "python")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.keep:
        os.environ["TETHER_KEEP"] = "1"
    h = Harness("bench_fanout")

    def log(msg):
        print(msg, flush=True)

    results = []
    try:
        for n in sizes:
            log("== %d site(s), %d queries, %s upstream" % (n, a.queries, upstream))
            r = run_size(h, n, a.queries, upstream, log)
            r["upstream"] = upstream
            results.append(r)
            log("  fan-out submit->complete: p50 %.1f ms  p99 %.1f ms  max %.1f ms; per-site "
                "send->stored p50 %s ms p99 %s ms; failed results %d; hub RSS %s KiB; hub CPU "
                "%.1f ms per query"
                % (r["fanout_p50_ms"], r["fanout_p99_ms"], r["fanout_max_ms"],
                   r["site_latency_p50_ms"], r["site_latency_p99_ms"], r["failed_results"],
                   r["hub_rss_kib"], r["hub_cpu_ms_per_query"]))
    except Fatal as e:
        print("bench_fanout: %s" % e, file=sys.stderr)
        h.dump_logs(20)
        h.cleanup()
        return 1
    finally:
        h.cleanup()
    print("SITES  QUERIES  P50_MS  P99_MS  MAX_MS  SITE_P50_MS  SITE_P99_MS  FAILED  HUB_CPU_MS")
    for r in results:
        print("%5d  %7d  %6.1f  %6.1f  %6.1f  %11s  %11s  %6d  %10.1f" % (
            r["sites"], r["queries"], r["fanout_p50_ms"], r["fanout_p99_ms"], r["fanout_max_ms"],
            r["site_latency_p50_ms"], r["site_latency_p99_ms"], r["failed_results"],
            r["hub_cpu_ms_per_query"]))
    print("RESULTS " + json.dumps(results), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
