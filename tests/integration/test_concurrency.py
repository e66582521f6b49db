#!/usr/bin/env python3
# Integration: 200 concurrent requests through one site, all right, over exactly one TCP connection.
# SPDX-License-Identifier: MIT
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, load_sample_module, process_tcp  # noqa: E402

SITE = "conc-a"
N = 200
SLOW_MS = 1500


def tunnel_conns(hub_port, site_pid):
    """TCP connections of the site process whose peer is the hub port (from
    /proc: harness.process_tcp). Returns a list of (local, peer)."""
    return [(local, peer) for state, local, peer in process_tcp(site_pid)
            if peer.endswith(":%d" % hub_port) and state not in ("TIME-WAIT", "CLOSE", "LISTEN")]


def run_batch(h, hub, svc, sample, proto):
    tag = "HTTP/%s" % proto
    d = h.mkdir("batch-" + proto.replace(".", ""))
    cfg = os.path.join(d, "curl.cfg")
    expect = {}
    with open(cfg, "w") as f:
        for i in range(N):
            kind = i % 4
            if kind == 3:
                n = 1000 + i * 997  # a few KiB to ~200 KB
                path = "/bytes/%d" % n
                expect[i] = ("bytes", n)
            else:
                path = "/slow?ms=%d&i=%d" % (SLOW_MS, i)
                expect[i] = ("slow", "ms=%d&i=%d" % (SLOW_MS, i))
            url = "%s/v1/sites/%s/services/web%s" % (hub.url, SITE, path)
            f.write('url = "%s"\noutput = "%s"\n' % (url, os.path.join(d, "out-%d" % i)))
    argv = ["curl", "-q", "-sS", "--no-progress-meter", "-k", "--pinnedpubkey", hub.pin,
            "-H", "Authorization: Bearer %s" % hub.token,
            "--http2" if proto == "2" else "--http1.1",
            "--parallel", "--parallel-immediate", "--parallel-max", str(N),
            "--max-time", "60", "-w", "%{http_code} %{http_version} %{url_effective}\\n",
            "-K", cfg]
    before = svc.stats(reset=True) or {}
    t0 = time.monotonic()
    p = h.spawn("curl-" + proto, argv)
    samples = []
    while p.alive() and time.monotonic() - t0 < 90:
        c = tunnel_conns(hub.port, h.site_pid)
        if c is not None:
            samples.append(c)
        time.sleep(0.02)
    if p.alive():
        p.stop()
        h.check(False, "%s: curl finished within 90 s" % tag)
    elapsed = time.monotonic() - t0
    h.check(p.returncode() == 0, "%s: curl --parallel exit code 0" % tag, p.returncode())
    lines = [ln for ln in p.text().splitlines() if re.match(r"^\d{3} ", ln)]
    codes = {}
    for ln in lines:
        codes[ln.split()[0]] = codes.get(ln.split()[0], 0) + 1
    h.check(len(lines) == N and codes.get("200") == N, "%s: all %d requests got 200" % (tag, N),
            codes)
    versions = {ln.split()[1] for ln in lines}
    h.check(versions == {proto}, "%s: all spoke %s" % (tag, tag), versions)

    bad = []
    for i, (kind, want) in expect.items():
        try:
            with open(os.path.join(d, "out-%d" % i), "rb") as f:
                body = f.read()
        except OSError:
            bad.append((i, "no output"))
            continue
        if kind == "slow":
            try:
                j = json.loads(body)
            except ValueError:
                bad.append((i, body[:80]))
                continue
            if j.get("query") != want:
                bad.append((i, j))
        else:
            if len(body) != want or body != b"".join(sample.pattern_chunks(want)):
                bad.append((i, "len %d want %d" % (len(body), want)))
    h.check(not bad, "%s: every response body is the right one for its request" % tag, bad[:5])

    h.check(len(samples) >= 2, "%s: sampled the site's sockets at least twice during the run" % tag,
            len(samples))
    counts = [len(s) for s in samples]
    h.check(counts and all(c == 1 for c in counts),
            "%s: exactly ONE TCP connection between tether-site and the hub while the requests "
            "ran" % tag, "counts seen: %s" % sorted(set(counts)))
    locals_seen = {conn[0] for s in samples for conn in s}
    h.check(locals_seen <= {h.site_local}, "%s: the site kept its source port" % tag,
            (h.site_local, locals_seen))

    after = svc.stats() or {}
    def routed(st):
        r = st.get("by_route") or {}
        return r.get("/slow", 0) + r.get("/bytes", 0)
    served = routed(after) - routed(before)
    h.check(served == N, "%s: the service saw each request exactly once" % tag, served)
    h.info("%s: %d requests in %.1fs; service max in flight %s; %d socket samples" % (
        tag, N, elapsed, after.get("max_inflight"), len(samples)))
    h.check(after.get("max_inflight", 0) >= 32, "%s: the service saw at least 32 requests in "
            "flight at once (the tunnel multiplexes)" % tag, after.get("max_inflight"))
    # 150 requests sleep 1.5 s each: done one by one they would take 225 s.
    h.check(elapsed < 30, "%s: the requests ran concurrently (%.1fs)" % (tag, elapsed))


def main(h):
    sample = load_sample_module()
    hub, site, svc = h.setup(SITE)
    h.site_pid = site.proc.pid
    c = tunnel_conns(hub.port, site.proc.pid)
    if not h.check(c is not None and len(c) == 1, "the site holds one connection to the hub at rest", c):
        return
    h.site_local = c[0][0]
    for proto in ("1.1", "2"):
        run_batch(h, hub, svc, sample, proto)
    h.check(hub.proc.alive() and site.proc.alive(), "hub and site still running")


if __name__ == "__main__":
    Harness.main("concurrency", main, tools=("curl",))
