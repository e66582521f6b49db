#!/usr/bin/env python3
# Integration: the benchmark (tests/bench/run) at tiny sizes writes a report with every row filled.
# SPDX-License-Identifier: MIT
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Skip  # noqa: E402

# 60 s before the idle-memory scenario (issue 16) added about 12 s.
LIMIT_S = 90
# What a cell says when its figure is missing (tests/bench/report.py).
MISSING = re.compile(r"failed|not run|not measured|n/a|NOT MEASURED|\?")


def table_rows(text, heading):
    """Rows (lists of cells) of the first table after a heading starting with `heading`."""
    i = text.find("\n## " + heading)
    if i < 0:
        return None
    rows = []
    for line in text[i:].split("\n")[2:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(set(c) <= set("-") for c in cells):
            continue
        rows.append(cells)
    return rows[1:]  # without the header


def num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def main(h):
    h.bin("bench_sites")
    # The bench's own harness inherits TETHER_TEST_DB: its hubs run on
    # PostgreSQL too, each on a database of its own.
    if h.db_backend == "pg":
        h.pg_require_hub_support()
    report = h.path("benchmarks.md")
    results = h.path("results.json")
    runner = os.path.join(h.src_dir, "tests", "bench", "run")
    t = time.monotonic()
    r = h.run([sys.executable, runner, "--smoke", "--no-install", "--bin", h.bin_dir,
               "--report", report, "--results", results], timeout=LIMIT_S + 60)
    elapsed = time.monotonic() - t
    if r.rc == 77:
        raise Skip("the bench's tools are missing: %s" % r.stdout.strip()[-300:])
    h.check(r.rc == 0, "tests/bench/run --smoke exits 0", r.stdout[-2000:] + r.stderr[-1000:])
    h.check(elapsed < LIMIT_S, "the smoke run takes under %d s" % LIMIT_S, "%.1f s" % elapsed)
    h.check(os.path.exists(report) and os.path.exists(results),
            "the smoke run writes the report and the results")
    if not (os.path.exists(report) and os.path.exists(results)):
        return
    with open(report) as f:
        text = f.read()
    with open(results) as f:
        res = json.load(f)

    # The report: every table row of every scenario filled with a figure.
    for heading, want_rows in (("1. Bulk", 4), ("2. Requests", 8), ("3. Idle sites", 4),
                               ("4. Connection setup", 1), ("5. Reconnect storm", 1),
                               ("6. Port economy", 12), ("7. TCP service", 2),
                               ("8. WebSocket echo", 4), ("9. gRPC unary calls", 4),
                               ("10. Handshakes", 2), ("11. Fan-out", 1),
                               ("3b. Idle sites at the descriptor limit", 3),
                               ("Targets", 12)):
        rows = table_rows(text, heading)
        h.check(rows is not None and len(rows) >= want_rows,
                "report has the table of %r with %d rows" % (heading, want_rows),
                rows and len(rows))
        for row in rows or []:
            cells = row[1:]
            if heading == "Targets":
                cells = row[1:2]  # the verdict of a smoke run may be MISS
                h.check(row[2] in ("PASS", "MISS"), "target %r has a verdict" % row[0], row[2])
            bad = [c for c in cells if MISSING.search(c)]
            h.check(not bad, "row %r of %r is filled" % (row[0], heading), bad)
    h.check(re.search(r"\*\*Measured on \d{4}-\d\d-\d\d \d\d:\d\d UTC\*\*", text) is not None,
            "the report says when it was measured")
    h.check("<!-- BEGIN HAND-WRITTEN: method -->" in text, "the report has the method section")
    cipher = (res.get("meta") or {}).get("ssh_cipher")
    h.check(bool(cipher) and cipher != "unknown" and cipher in text,
            "the report names the negotiated ssh cipher", cipher)

    # The results: the figures behind the rows, each from a command.
    bulk = res.get("bulk") or {}
    for key in ("download_h1", "upload_h1", "download_h2", "upload_h2"):
        for path in ("tether", "ssh", "direct", "https", "tls"):
            it = (bulk.get(key) or {}).get(path) or {}
            h.check(num(it.get("mbps")) and it["mbps"] > 0 and it.get("cmd")
                    and it.get("bytes") == bulk.get("bytes"),
                    "bulk %s through %s moved every byte" % (key, path), it)
            cpu = it.get("cpu_s_per_gib") or {}
            want = {"tether": ("client", "hub", "site", "nginx"),
                    "ssh": ("client", "sshd", "ssh", "nginx"),
                    "tls": ("client", "stunnel_c", "stunnel_s", "nginx")}.get(path,
                                                                          ("client", "nginx"))
            h.check(set(cpu) == set(want) and all(num(cpu[k]) and cpu[k] >= 0 for k in want)
                    and cpu["client"] > 0,
                    "bulk %s through %s: CPU per GiB of each process" % (key, path), cpu)
    h.check("-core ceiling (MB/s)" in text and "direct HTTPS" in text and "stunnel pair" in text,
            "the report has the direct HTTPS and stunnel paths and the CPU budget of the bulk "
            "transfers")
    req = res.get("requests") or {}
    for key in ("h1", "h2"):
        for path in ("tether", "ssh", "direct"):
            it = (req.get(key) or {}).get(path) or {}
            h.check(all(num(it.get(k)) and it[k] > 0 for k in ("rps", "p50_ms", "p99_ms"))
                    and it.get("errors") == 0,
                    "requests %s through %s: req/s, p50 and p99 without errors" % (key, path),
                    it)
    sc = res.get("scale") or {}
    pts = sc.get("points") or []
    h.check(len(pts) >= 3 and all(num(p.get("rss_kib")) for p in pts),
            "hub RSS measured at every step of the site ladder", pts)
    h.check(pts and all(p.get("reached") == p.get("sites") for p in pts),
            "every simulated site of the ladder came online", pts)
    im = res.get("idle-memory") or {}
    for who, pts in (("hub", im.get("hub") or []),
                     ("nginx", (im.get("nginx") or {}).get("points") or [])):
        h.check(len(pts) == len(im.get("counts") or [0]) and len(pts) >= 3
                and all(num(p.get("rss_kib")) and p.get("after_read") == p.get("conns")
                        for p in pts),
                "idle-memory: %s RSS measured at every step, every connection still up" % who,
                pts)
    su = res.get("setup") or {}
    h.check(num(su.get("rate")) and su["rate"] > 0 and su.get("connected") == su.get("sites"),
            "connection setup rate measured over every site of the batch", su)
    st = res.get("storm") or {}
    h.check(num(st.get("back_after_kill_s")) and st.get("reconnected", 0) >= st.get("sites", 1),
            "every site came back after the hub restart", st)
    h.check(num(st.get("lag_samples")) and num(st.get("probe_lag_samples"))
            and num(st.get("lag_share_le_20ms")) and num(st.get("probe_lag_share_le_20ms")),
            "storm: the hub's loop lag and the idle timer beside it were read", st)
    po = res.get("ports") or {}
    h.check(po.get("requests_done") == po.get("requests") and po.get("errors") == 0,
            "port economy: every request answered", po)
    h.check(po.get("tunnel_sockets_after") == 1 and po.get("tunnel_connections_opened") == 0
            and po.get("new_sessions") == 0,
            "port economy: the site used its one tunnel and opened no other", po)
    tc = res.get("tcp") or {}
    for kind in ("download", "upload"):
        for path in ("tether", "ssh", "direct"):
            it = (tc.get(kind) or {}).get(path) or {}
            h.check(num(it.get("mbps")) and it["mbps"] > 0 and it.get("cmd")
                    and it.get("bytes") == tc.get("bytes")
                    and it.get("stored_bytes") == tc.get("bytes"),
                    "tcp %s through %s moved every byte" % (kind, path), it)
            want = {"tether": ("client", "tetherctl", "hub", "site", "service"),
                    "ssh": ("client", "sshd", "ssh", "service")}.get(path, ("client", "service"))
            h.check(set(it.get("cpu_s_per_gib") or {}) == set(want),
                    "tcp %s through %s: CPU per GiB of each process" % (kind, path), it)
    for key, n in (("websocket", "msgs"), ("grpc", "calls")):
        r = res.get(key) or {}
        for path in ("tether", "direct"):
            it = r.get(path) or {}
            h.check(all(num(it.get(k)) and it[k] > 0 for k in ("rate", "p50_ms", "p99_ms"))
                    and it.get("errors") == 0 and it.get(n) == r.get("conns", 0) * r.get(n, 0)
                    and "error" not in it,
                    "%s through %s: every answer came back, rate, p50, p99" % (key, path), it)
    hs = res.get("handshakes") or {}
    for server in ("tether", "nginx"):
        it = hs.get(server) or {}
        runs = [r for r in (hs.get("runs") or {}).get(server) or [] if "error" not in r]
        h.check(num(it.get("per_core")) and it["per_core"] > 0 and num(it.get("cpu_ms"))
                and it.get("errors") == 0 and runs and all(r.get("done", 0) > 0 for r in runs),
                "handshakes: full connects to %s completed, with its CPU per connect and no "
                "failure" % server, it)
        h.check(it.get("group") == "SECP256R1",
                "handshakes: %s negotiated P-256 key exchange" % server, it.get("group"))
    fo = (res.get("fanout") or {}).get("tether") or {}
    runs = ((res.get("fanout") or {}).get("runs") or {}).get("tether") or []
    h.check(num(fo.get("hub_cpu_us_per_site")) and fo["hub_cpu_us_per_site"] >= 0
            and num(fo.get("p50_ms")) and fo["p50_ms"] > 0 and fo.get("not_done") == 0 and runs,
            "fanout: every query to every simulated site completed, all done, with the hub's "
            "CPU per site-query", fo)
    h.check((res.get("meta") or {}).get("sanitizer_reports") == [],
            "no sanitizer report in the bench's process logs",
            (res.get("meta") or {}).get("sanitizer_reports"))


if __name__ == "__main__":
    Harness.main("bench_smoke", main, tools=("curl",))
