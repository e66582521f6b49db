#!/usr/bin/env python3
# Benchmark report generator: results JSON from tests/bench/run -> docs/benchmarks.md (markdown).
# SPDX-License-Identifier: MIT
"""Writes only figures present in the results (each produced by a command the
run made; the commands are listed at the end of the report). A missing figure
shows as "failed: why" or "not run", never as a number.

Sections between `<!-- BEGIN HAND-WRITTEN: NAME -->` and
`<!-- END HAND-WRITTEN: NAME -->` are kept from the existing report.

    tests/bench/report.py RESULTS.json [OUT.md]   # re-render saved results
"""

import datetime
import json
import os
import re
import sys

HAND = ("method", "findings")

DEFAULT_HAND = {
    "method": """\
Everything runs on one machine over loopback, in one run of `tests/bench/run`,
so all paths share the same CPU, kernel and moment.

- **Backend**: Debian's nginx, one worker, `sendfile on`, keep-alive without a
  request limit. It serves a 1 KiB file and the bulk file from tmpfs, on one
  HTTP/1.1 port and one h2c port (for the HTTP/2 rows of the direct and `ssh -R`
  paths; `sendfile` is off there, as with it nginx 1.22 stalls each small HTTP/2
  answer by ~40 ms on this machine). Uploads are WebDAV `PUT`s into tmpfs: after each one the runner checks
  that the stored file has exactly the uploaded size, so the body was really read.
- **direct**: the client talks to nginx.
- **ssh -R**: Debian's sshd on a private loopback port with its own host key and
  an authorized key made for the run; `ssh -N -R` from the same machine forwards
  a port on the sshd side to nginx. Ciphers, MACs and key exchange are left at
  OpenSSH's defaults; the negotiated ones (from `ssh -v`) are named above. The
  client speaks plain HTTP to the forwarded port, as with a real `ssh -R` tunnel.
- **tether**: `tether-hub` with one port for sites and another for users, and
  one real `tether-site` offering nginx as service `web`. Clients speak HTTPS to
  the hub (curl with `--pinnedpubkey`, wrk and h2load with a bearer token); the
  hub sends each request down the site's TLS 1.3 + HTTP/2 tunnel.
- **Bulk**: one transfer per cell with curl (`-o /dev/null` down, `-T FILE` up),
  MB/s = bytes / curl's `time_total` / 10^6. HTTP/2 rows use `--http2` to the
  hub and `--http2-prior-knowledge` (h2c) to nginx.
- **Requests**: wrk (HTTP/1.1) and h2load (HTTP/2, one stream per connection)
  with the same number of keep-alive connections and duration on each path.
  wrk's own latency distribution gives p50/p99; for h2load they come from its
  per-request `--log-file`. Load generator, proxy and nginx share the 2 cores.
- **Idle sites**: `bench_sites` (tests/bench/sites.c) runs the real site agent
  code (`site/agent.c`): thousands of agents per process in one libuv loop, each
  with its own P-256 key, its own TLS context and its own TLS connection. Each
  site is registered (`POST /v1/sites`) and enrolled (`POST /v1/enroll` with the
  token's secret and the agent's key pin) through the hub's API first. Hub RSS is
  `VmRSS` from `/proc` after the sites are online (`tether_sites_online` in
  `/metrics`) and a settling pause; memory per site is the RSS growth from one
  site to N, divided by N−1.
- **Connection setup**: the last step of the ladder starts all its agents at
  once; the rate is connects per second from the hub's `site_connected` log
  timestamps (first to last), with the hub's CPU use over the same window.
  Simulator and hub share the 2 cores, so this is a lower bound for the hub.
- **Reconnect storm**: with the storm's number of sites online, the hub gets
  SIGTERM (a normal restart; `--storm-signal KILL` for a crash), and is started
  again at once on the same state, three times by default (`--storm-repeat`);
  the target is judged on the slowest restart. "Back" is the time of the last
  `site_connected` line in the new hub's log, measured from the signal and from
  the new hub's `listening` line; `/metrics` is polled every 100 ms to confirm.
  The per-second histogram counts `site_connected` lines from `listening` on.
  "Spread" means no single second holds more than half of the sites. The
  loop's lag is the new hub's `tether_hub_loop_lag_seconds` (a timer due
  every 20 ms; how late each tick ran) read once all are back: p99 ≤ 20 ms
  when at least 99% of the ticks were at most 20 ms late. Above 4,750 sites
  the sites run in several bench_sites processes dialing from 127.10.x.y,
  500 per address (`--storm-per-source`); `--storm-compare-bin` restarts
  another build's hub as many times in the same run (after one restart
  into it: the window is the draining hub's).
- **Port economy**: h2load sends the requests through the hub to the real site
  (sites and users on separate hub ports, so their sockets can be told apart).
  Every 250 ms the runner samples `ss -tanp`: the site process's sockets to the
  hub's sites port, and TIME_WAIT sockets on the sites port, the users port and
  nginx's port, counting only sockets that were not already in TIME_WAIT before
  the run (the client side is the site's for both the tunnel and the service).
  nginx logs `$connection` for these requests, which counts the connections the
  site opened to the service. The target passes when the site used its one
  tunnel, opened no other, left no TIME_WAIT, and opened no more service
  connections than there were concurrent requests. A design with one connection
  per request needs one connection per request, and each leaves a socket in
  TIME_WAIT for 60 s (Linux), so it holds `rate × 60` ports against the
  ephemeral range.
""",
    "findings": """\
(Profiling notes for missed targets go here: what was measured, what was found,
what was changed.)
""",
}


DOCS_REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                           "benchmarks.md")


def existing_hand_written(path):
    """{name: text} of the hand-written sections in the report at path; a new
    report (no file yet) takes those of docs/benchmarks.md, the maintained ones."""
    out = {}
    if not path or not os.path.exists(path):
        path = DOCS_REPORT
        if not os.path.exists(path):
            return out
    with open(path) as f:
        text = f.read()
    for name in HAND:
        m = re.search(r"<!-- BEGIN HAND-WRITTEN: %s -->\n(.*?)<!-- END HAND-WRITTEN: %s -->"
                      % (name, name), text, re.S)
        if m:
            out[name] = m.group(1)
    return out


# --- formatting ---

def _num(x, fmt="%.0f"):
    return fmt % x if isinstance(x, (int, float)) else None


def cell(item, key, fmt="%.0f", unit=""):
    """A figure from a result dict, or why it is missing."""
    if item is None:
        return "not run"
    v = item.get(key)
    if isinstance(v, (int, float)):
        return (fmt % v) + unit
    if item.get("error"):
        return "failed: %s" % _short(item["error"])
    return "not measured"


def _short(s, n=90):
    s = " ".join(str(s).split()).replace("|", "/")
    return s if len(s) <= n else s[:n - 1] + "…"


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
        return "%.2f×" % (a / b)
    return "n/a"


def fmt_time(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC")


BULK_PATHS = ("tether", "ssh", "direct", "https", "tls")
PATH_NAMES = {"tether": "tether", "ssh": "ssh -R", "direct": "direct", "https": "direct HTTPS",
              "tls": "stunnel pair"}
ROLE_ORDER = ("client", "tetherctl", "hub", "site", "sshd", "ssh", "stunnel_c", "stunnel_s",
              "nginx", "service")


def cpu_budget(bulk):
    """CPU seconds per GiB of each process on each path, and the transfer rate
    the machine's cores could give if they did nothing else."""
    if not bulk or "error" in bulk:
        return []
    ncpu = os.cpu_count() or 1
    rows = []
    for key, name in (("download_h1", "download, HTTP/1.1"), ("upload_h1", "upload, HTTP/1.1"),
                      ("download_h2", "download, HTTP/2"), ("upload_h2", "upload, HTTP/2")):
        for p in BULK_PATHS:
            item = (bulk.get(key) or {}).get(p) or {}
            c = item.get("cpu_s_per_gib")
            if not c:
                continue
            total = sum(c.values())
            parts = ", ".join("%s %.2f" % (r, c[r]) for r in ROLE_ORDER if r in c)
            ceiling = ncpu / total * (1 << 30) / 1e6 if total > 0 else None
            rows.append((name, PATH_NAMES[p], parts, "%.2f" % total,
                         "%.0f" % ceiling if ceiling else "", cell(item, "mbps")))
    if not rows:
        return []
    return ["", "CPU seconds spent per GiB moved, by process (client = curl; user + system "
            "time from /proc and getrusage), and the rate %d cores would allow if they did "
            "nothing but this work (cores / total):" % ncpu, "",
            table(("transfer", "path", "CPU s per GiB by process", "total", "%d-core ceiling "
                   "(MB/s)" % ncpu, "measured (MB/s)"), rows)]


def _size(b):
    mib = b / 1048576.0
    return "%.0f GiB" % (mib / 1024) if mib >= 1024 else "%.0f MiB" % mib


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def _get(res, *keys):
    d = res
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


# --- targets ---

def targets(res):
    """Rows (scenario, target, measured, verdict)."""
    rows = []

    def verdict(ok):
        if ok is None:
            return "NOT MEASURED"
        return "PASS" if ok else "MISS"

    bulk = res.get("bulk")
    for key, name in (("download_h1", "download, HTTP/1.1"), ("upload_h1", "upload, HTTP/1.1"),
                      ("download_h2", "download, HTTP/2"), ("upload_h2", "upload, HTTP/2")):
        t = _get(bulk, key, "tether", "mbps")
        s = _get(bulk, key, "ssh", "mbps")
        ok = None
        meas = "not measured"
        if isinstance(t, (int, float)) and isinstance(s, (int, float)) and s > 0:
            ok = t >= 2.5 * s and t >= 1000
            meas = "%.0f MB/s, %.2f× ssh -R (%.0f MB/s)" % (t, t / s, s)
        rows.append(("bulk", "Bulk %s through tether ≥ 2.5× ssh -R and ≥ 1 GB/s" % name, meas,
                     verdict(ok)))
    req = res.get("requests")
    for key, name in (("h1", "HTTP/1.1 (wrk)"), ("h2", "HTTP/2 (h2load)")):
        t = _get(req, key, "tether") or {}
        s = _get(req, key, "ssh") or {}
        ok = None
        meas = "not measured"
        if all(isinstance(d.get(k), (int, float)) for d in (t, s)
               for k in ("rps", "p99_ms")) and s["rps"] > 0 and not t.get("errors"):
            ok = t["rps"] >= 2 * s["rps"] and t["p99_ms"] <= s["p99_ms"]
            meas = "%.0f req/s = %.2f× ssh -R; p99 %.2f ms vs %.2f ms" % (
                t["rps"], t["rps"] / s["rps"], t["p99_ms"], s["p99_ms"])
        rows.append(("requests", "Requests %s through tether ≥ 2× ssh -R, p99 no worse" % name,
                     meas, verdict(ok)))
    sc = res.get("scale") or {}
    pts = [p for p in sc.get("points", []) if isinstance(p.get("per_site_kib"), (int, float))]
    ok, meas = None, "not measured"
    if pts:
        big = max(pts, key=lambda p: p["sites"])
        meas = "%.1f KiB per site at %d sites" % (big["per_site_kib"], big["sites"])
        ok = big["per_site_kib"] <= 64 and big["sites"] >= 10000
        if big["per_site_kib"] <= 64 and big["sites"] < 10000:
            meas += " (10,000 not reached)"
    rows.append(("scale", "Hub memory ≤ 64 KiB per idle connected site at 10,000 sites", meas,
                 verdict(ok)))
    im = res.get("idle-memory") or {}
    pts = [p for p in im.get("hub") or [] if isinstance(p.get("per_conn_kib"), (int, float))]
    ok, meas = None, "not measured"
    if pts:
        big = max(pts, key=lambda p: p["conns"])
        ngx = {p["conns"]: p for p in _get(im, "nginx", "points") or []}.get(big["conns"], {})
        meas = "%.1f KiB per site at %d sites" % (big["per_conn_kib"], big["conns"])
        if isinstance(ngx.get("per_conn_kib"), (int, float)):
            meas += "; nginx %.1f KiB per idle TLS + HTTP/2 connection" % ngx["per_conn_kib"]
        ok = big["per_conn_kib"] <= 24 and big["conns"] >= 19000
        if big["conns"] < 19000:
            meas += " (19,000 not reached)"
    elif im.get("error"):
        meas, ok = "failed: " + _short(im["error"]), False
    rows.append(("idle-memory", "Hub memory ≤ 24 KiB per idle site at 19,000 sites (issue 16)",
                 meas, verdict(ok)))
    st = res.get("storm") or {}
    ok, meas = None, "not measured"
    if isinstance(st.get("back_after_kill_s"), (int, float)) and st["sites"] >= 19000:
        meas = "not measured (%d sites; see the 19,000-site row)" % st["sites"]
    elif isinstance(st.get("back_after_kill_s"), (int, float)):
        n = st["sites"]
        spread = st["peak_per_s"] <= n / 2.0
        ok = st["back_after_kill_s"] <= 15 and spread and n >= 1000
        meas = "%d sites back %.1f s after the restart began; peak %d in one second over %d s" % (
            n, st["back_after_kill_s"], st["peak_per_s"], st["seconds_with_connects"])
        if n < 1000:
            meas += " (fewer than 1,000 sites)"
    elif st.get("error"):
        meas = "failed: " + _short(st["error"])
        ok = False
    rows.append(("storm", "1,000 sites back within 15 s of a hub restart, spread over the window",
                 meas, verdict(ok)))
    rows.append(storm19k_target(st, verdict))
    po = res.get("ports") or {}
    ok, meas = None, "not measured"
    if isinstance(po.get("tunnel_connections_opened"), int) and po.get("requests_done"):
        opened = po["tunnel_connections_opened"] + po.get("new_sessions", 0)
        tw = max(po["tw_max"]["tunnel"], po["tw_after"]["tunnel"])
        svc_tw = max(po["tw_max"]["service"] + po["tw_max"]["service_server"],
                     po["tw_after"]["service"] + po["tw_after"]["service_server"])
        conc = po.get("conns") or 0
        ok = (po["tunnel_sockets_after"] == 1 and opened == 0 and tw == 0
              and po["service_connections"] <= max(conc, 1) and svc_tw == 0
              and not po.get("errors"))
        meas = ("%d requests; tunnel: %d connection in use, %d opened, %d TIME_WAIT; "
                "service: %d connections opened (concurrency %d), %d TIME_WAIT" % (
                    po["requests_done"], po["tunnel_sockets_after"], opened, tw,
                    po["service_connections"], conc, svc_tw))
    rows.append(("ports", "Port economy: one tunnel connection and no TIME_WAIT on the site host "
                 "(expected 1 and 0); service connections kept alive", meas, verdict(ok)))
    hs = res.get("handshakes") or {}
    ok, meas = None, "not measured"
    t, n = hs.get("tether") or {}, hs.get("nginx") or {}
    if isinstance(t.get("per_core"), (int, float)):
        ok = t["per_core_min"] >= 3000 and not t.get("errors")
        meas = "%.0f per hub core (%.0f–%.0f; %.3f ms of hub CPU each)" % (
            t["per_core"], t["per_core_min"], t["per_core_max"], t["cpu_ms"])
        if isinstance(n.get("per_core"), (int, float)) and n["per_core"] > 0:
            meas += ", %.2f× nginx (%.0f per core)" % (t["per_core"] / n["per_core"],
                                                      n["per_core"])
        if t.get("errors"):
            meas += ", %d errors" % t["errors"]
    elif hs.get("error") or t.get("error"):
        meas = "failed: " + _short(hs.get("error") or t.get("error"))
        ok = False
    rows.append(("handshakes", "Handshakes: ≥ 3,000 full TLS 1.3 connects per second per hub "
                 "core (client certificate, pin check, hello), side by side with nginx", meas,
                 verdict(ok)))
    rows.append(fanout_target(res.get("fanout") or {}, verdict))
    return rows


def storm19k_target(st, verdict):
    """Issue 16's storm row: 19,000 sites back within 30 s of a restart,
    spread (no second holds half of them), the loop's lag p99 <= 20 ms; the
    slowest restart and the worst lag of this build's restarts are judged,
    the compared build's slowest restart shown beside them."""
    ok, meas = None, "not measured"
    if isinstance(st.get("back_after_kill_s"), (int, float)):
        n = st["sites"]
        p99 = st.get("lag_p99_le_s")
        ok = (n >= 19000 and st["back_after_kill_s"] <= 30 and st["peak_per_s"] <= n / 2.0
              and p99 is not None and p99 <= 0.02)
        meas = ("%d sites back %.1f s after SIG%s (slowest of %d); peak %d in one second over "
                "%d s; loop lag p99 %s (%s of ticks ≤ 20 ms)" % (
                    n, st["back_after_kill_s"], st.get("signal", "TERM"),
                    sum(1 for r in st.get("runs", []) if r.get("drained", "this") == "this"
                        and r.get("took", "this") == "this"),
                    st["peak_per_s"], st["seconds_with_connects"],
                    "≤ %g ms" % (p99 * 1000) if p99 not in (None, float("inf")) else "> 5 s"
                    if p99 == float("inf") else "not read",
                    "%.1f%%" % (100 * st["lag_share_le_20ms"])
                    if isinstance(st.get("lag_share_le_20ms"), (int, float)) else "?"))
        if isinstance(st.get("probe_lag_p99_le_s"), (int, float)):
            meas += " (an idle 20 ms timer beside it: p99 ≤ %g ms, %.1f%% ≤ 20 ms)" % (
                st["probe_lag_p99_le_s"] * 1000, 100 * st["probe_lag_share_le_20ms"])
        c = st.get("compare") or {}
        if isinstance(c.get("back_after_kill_s"), (int, float)):
            meas += "; %s in the same run: %.1f s, peak %d, lag p99 %s" % (
                st.get("compare_label", "the compared build"), c["back_after_kill_s"],
                c["peak_per_s"], "≤ %g ms" % (c["lag_p99_le_s"] * 1000)
                if c.get("lag_p99_le_s") not in (None, float("inf")) else "?")
        elif st.get("compare_error"):
            meas += "; %s in the same run: %s" % (st.get("compare_label", "the compared build"),
                                                  _short(st["compare_error"]))
        if n < 19000:
            meas += " (fewer than 19,000 sites)"
    elif st.get("error"):
        meas, ok = "failed: " + _short(st["error"]), False
    return ("storm", "All 19,000 sites back within 30 s of a hub restart, spread out; the event "
            "loop's lag ≤ 20 ms at p99 during the storm (issue 16)", meas, verdict(ok))


def fanout_target(fo, verdict):
    """The fan-out target row: judged on the median run, the spread shown."""
    ok, meas = None, "not measured"
    t, c = fo.get("tether") or {}, fo.get("tether_compare") or {}
    if isinstance(t.get("hub_cpu_us_per_site"), (int, float)):
        ok = (t["hub_cpu_us_per_site"] <= 25 and t["p50_ms"] <= 60 and t["p99_ms"] <= 120
              and not t.get("not_done"))
        meas = ("%.1f µs of hub CPU per site-query (%.1f–%.1f); %d sites: p50 %.1f ms "
                "(%.1f–%.1f), p99 %.1f ms (%.1f–%.1f)" % (
                    t["hub_cpu_us_per_site"], t["hub_cpu_us_per_site_min"],
                    t["hub_cpu_us_per_site_max"], fo.get("sites", 0), t["p50_ms"],
                    t["p50_ms_min"], t["p50_ms_max"], t["p99_ms"], t["p99_ms_min"],
                    t["p99_ms_max"]))
        if isinstance(c.get("hub_cpu_us_per_site"), (int, float)):
            meas += "; the comparison build in the same run: %.1f µs, p50 %.1f ms, p99 %.1f ms" % (
                c["hub_cpu_us_per_site"], c["p50_ms"], c["p99_ms"])
        if t.get("not_done"):
            meas += "; %d results not done" % t["not_done"]
    elif fo.get("error") or t.get("error"):
        meas = "failed: " + _short(fo.get("error") or t.get("error"))
        ok = False
    return ("fanout", "Fan-out: ≤ 25 µs of hub CPU per site per federated query; 1,000 "
            "simulated sites answer in ≤ 60 ms at p50, ≤ 120 ms at p99", meas, verdict(ok))


def connects_pg_section(L, res):
    r = section(L, "12. Connects with the registry on PostgreSQL against SQLite (issue 15)", res,
                "connects-pg", lambda r: r.get("sqlite") or r.get("postgresql"))
    if not r:
        return

    def rng(d, key, fmt):
        v = d.get(key)
        if not isinstance(v, list) or len(v) != 3:
            return "not measured"
        return (fmt + " (" + fmt + "–" + fmt + ")") % tuple(v)

    rows = []
    for key, label in (("sqlite", "SQLite (state on disk, synchronous=FULL)"),
                       ("postgresql", "PostgreSQL %s (same host, fsync on)" % (
                           " ".join(re.findall(r"\b\d+\.\d+\b", r.get("pg_version") or "")[:1])))):
        d = r.get(key) or {}
        if "rate" not in d:
            rows.append((label, "failed: " + _short(d.get("error", "?")), "", "", "", "", ""))
            continue
        rows.append((label, rng(d, "rate", "%.0f"), rng(d, "cpu_ms", "%.3f"),
                     rng(d, "per_core", "%.0f"),
                     rng(d, "db_cpu_ms", "%.3f") if key == "postgresql" else "(in the hub)",
                     rng(d, "commits", "%.2f") if key == "postgresql" else "(in the hub)",
                     "%d" % d.get("errors", 0)))
    L.append(table(("registry", "connects/s (median; range)", "hub CPU ms per connect",
                    "connects/s per hub core", "database server CPU ms per connect",
                    "database commits per connect", "errors"), rows))
    sq, pg = (r.get("sqlite") or {}).get("rate"), (r.get("postgresql") or {}).get("rate")
    L.append("")
    L.append("PostgreSQL against SQLite, connects per second: %s. The load of section 10 "
             "(`bench_sites handshakes`, %d client identities, %d connections in flight, "
             "%d runs per hub of %.1f s, taking turns); each hub pinned to CPU %s, the "
             "PostgreSQL server unpinned. A connect is a full TLS 1.3 handshake with the pin "
             "lookup, the hello and its session records (written by the hub's writer thread "
             "in batches). Commits are PostgreSQL's `xact_commit` for the hub's database, "
             "reads included." % (
                 ratio(pg[0] if isinstance(pg, list) else None,
                       sq[0] if isinstance(sq, list) else None),
                 r.get("sites", 0), r.get("conns", 0), r.get("repeat", 1),
                 r.get("ms", 0) / 1000.0, r.get("server_cpu", "?")))


PEER_SHAPE_ORDER = ("h1", "h2", "h1-1")


def peer_section(L, res):
    """Section 13: the same requests through one peer hop and on the site's own hub."""
    r = section(L, "13. One peer hop: the same requests through another hub of the cluster "
                "(issue 15)", res, "peer",
                lambda r: any(isinstance(r.get(k), dict) for k in PEER_SHAPE_ORDER))
    if not r:
        return

    def rng(v, fmt):
        if not isinstance(v, list) or len(v) != 3:
            return "not measured"
        return (fmt + " (" + fmt + "–" + fmt + ")") % tuple(v)

    shapes = r.get("shapes") or {}
    rows, hop = [], []
    for key in PEER_SHAPE_ORDER:
        s = r.get(key)
        if not isinstance(s, dict):
            continue
        for t, label in (("b", "hub B (the site's own)"), ("a", "hub A (one hop to B)")):
            d = s.get(t) or {}
            if "rps" not in d:
                rows.append((shapes.get(key, key), label,
                             "failed: " + _short(d.get("error", "?")), "", "", "", "", ""))
                continue
            cpu = d.get("cpu_us") or {}
            rows.append((shapes.get(key, key), label, rng(d["rps"], "%.0f"),
                         rng(d.get("p50_ms"), "%.2f"), rng(d.get("p99_ms"), "%.2f"),
                         rng(cpu.get("hub_a"), "%.0f") if t == "a" else "(idle)",
                         rng(cpu.get("hub_b"), "%.0f"), "%d" % d.get("errors", 0)))
        a_cpu = _get(s, "a", "cpu_us") or {}
        b_cpu = _get(s, "b", "cpu_us", "hub_b")
        both = [x + y for x, y in zip(a_cpu.get("hub_a") or [], a_cpu.get("hub_b") or [])]
        hop.append((shapes.get(key, key), rng(s.get("ratio"), "%.2f"),
                    rng(s.get("added_p50_ms"), "%+.2f"), rng(s.get("added_p99_ms"), "%+.2f"),
                    "%s against %s" % (("%.0f" % both[0]) if both else "?",
                                       ("%.0f" % b_cpu[0]) if b_cpu else "?")))
    if r.get("error"):
        L.append("> %s" % _short(r["error"], 300))
        L.append("")
    L.append(table(("load", "to", "req/s (median; range)", "p50 ms", "p99 ms",
                    "hub A CPU µs per request", "hub B CPU µs per request", "errors"), rows))
    L.append("")
    L.append(table(("load", "req/s via A ÷ via B (median; range)", "p50 added by the hop, ms",
                    "p99 added by the hop, ms", "hubs' CPU µs per request, via A (A + B) "
                    "against via B (medians)"), hop))
    bulk = r.get("bulk") or {}
    if bulk:
        brow = []
        for t, label in (("b", "hub B (the site's own)"), ("a", "hub A (one hop to B)")):
            d = bulk.get(t) or {}
            if "mbps" not in d:
                brow.append((label, "failed: " + _short(d.get("error", "?")), "", "", ""))
                continue
            cpu = d.get("cpu_s_per_gib") or {}
            brow.append((label, rng(d["mbps"], "%.0f"),
                         rng(cpu.get("hub_a"), "%.2f") if t == "a" else "(idle)",
                         rng(cpu.get("hub_b"), "%.2f"), rng(cpu.get("site"), "%.2f")))
        L.append("")
        L.append("Download of %s through each hub (curl, HTTP/1.1), once per run; via A ÷ via "
                 "B: %s." % (_size(r.get("bulk_bytes") or 0), rng(bulk.get("ratio"), "%.2f")))
        L.append("")
        L.append(table(("to", "MB/s (median; range)", "hub A CPU s per GiB",
                        "hub B CPU s per GiB", "site CPU s per GiB"), brow))
    L.append("")
    L.append("Two hubs of one cluster on the bench's own PostgreSQL (%s, same host): the "
             "second `tether-hub init --db` on the database joined the cluster, and the run "
             "waited for hub A's peer link to B (`peer_link_up`). One real `tether-site` on hub "
             "B offers nginx's 1 KiB file (section 2's) as service `web`. The same request "
             "(`GET /v1/sites/bench/services/web/1k.bin`, the same token) goes to hub B, which "
             "holds the site's tunnel, and to hub A, which forwards it over its HTTP/2 peer "
             "link to B. %d runs of %d s per hub and load, A and B taking turns (A, B, then B, "
             "A); the ratio and the added latency compare each run through A with the run "
             "through B next to it. CPU = the process's CPU time over the measured window ÷ "
             "requests answered (h2load's window starts after its 1 s warm-up). Load "
             "generator, both hubs, the site and nginx share the machine's cores; load "
             "average %s at the start, %s at the end." % (
                 " ".join(re.findall(r"\b\d+\.\d+\b", r.get("pg_version") or "")[:1]) or "?",
                 r.get("repeat", 1), r.get("duration_s", 0), r.get("loadavg_start", "?"),
                 r.get("loadavg_end", "?")))


def fanout_section(L, res):
    """Section 11: federated queries to every site, sites in bench_sites."""
    r = section(L, "11. Fan-out: federated queries to every site, the sites simulated in one "
                "process", res, "fanout", lambda r: r.get("tether"))
    if not r:
        return
    names = (("tether", "tether-hub (this build)"),
             ("tether_compare", "tether-hub, %s" % (r.get("compare_label") or
                                                   "--fo-compare-bin build")))
    rows = []
    for key, label in names:
        d = r.get(key)
        if not isinstance(d, dict):
            continue
        if "p50_ms" not in d:
            rows.append((label, "failed: " + _short(d.get("error", "?")), "", "", "", ""))
            continue
        rows.append((label,
                     "%.1f (%.1f–%.1f)" % (d["hub_cpu_us_per_site"], d["hub_cpu_us_per_site_min"],
                                          d["hub_cpu_us_per_site_max"]),
                     "%.1f (%.1f–%.1f)" % (d["p50_ms"], d["p50_ms_min"], d["p50_ms_max"]),
                     "%.1f (%.1f–%.1f)" % (d["p99_ms"], d["p99_ms_min"], d["p99_ms_max"]),
                     "%.1f (%.1f–%.1f)" % (d["max_ms"], d["max_ms_min"], d["max_ms_max"]),
                     "%d" % d.get("not_done", 0)))
    L.append(table(("hub", "hub CPU µs per site-query (median; range)",
                    "p50 ms", "p99 ms", "max ms", "results not done"), rows))
    L.append("")
    L.append("%d sites, all run by one `bench_sites run` process (a real site agent, its own "
             "key and TLS tunnel each) answering `GET /count` from one nginx; %d runs per hub, "
             "taking turns, of %d queries each, one after another: `POST /v1/queries` to "
             "`\"sites\": \"*\"` then `GET /v1/queries/{id}?wait=60` on a kept HTTPS "
             "connection, timed from the POST until the answer with every result came back. "
             "Hub state %s. Hub on CPU %s; bench_sites, nginx and the client on CPU %s. "
             "*Hub CPU* = the hub process's CPU time over a run ÷ queries ÷ sites; "
             "bench_sites spent %s ms of CPU per query (median) answering for all the sites." % (
                 r.get("sites", 0), r.get("repeat", 1), r.get("queries", 0),
                 "on disk (an fsync per commit, on the event loop)" if r.get("state") == "disk"
                 else "in tmpfs (`--fo-disk 1` puts it on disk: each commit then waits for an "
                 "fsync on the event loop, and a shared disk's wait is measured, not the hub)",
                 r.get("hub_cpu", "?"), r.get("sites_cpu", "?"),
                 _num(_get(r, "tether", "sites_cpu_ms_per_query")) or "?"))
    if r.get("compare_bin"):
        L.append("")
        L.append("The comparison hub is the `tether-hub` of another build dir "
                 "(`--fo-compare-bin`), measured in the same run against its own copy of the "
                 "same sites.")


# --- the report ---

TW = "new TIME_WAIT sockets (most at once; at the end), "


def tw(po, *keys):
    return "%d; %d" % (sum(po["tw_max"][k] for k in keys), sum(po["tw_after"][k] for k in keys))


def section(L, title, res, key, has_data):
    """The heading of a report section and, when its result is missing or
    failed (an error and no data, as has_data(result) tells), the line that
    says so. Returns the result to show, or None."""
    L.append("")
    L.append("## " + title)
    L.append("")
    r = res.get(key)
    if not r:
        L.append("not run")
        return None
    if r.get("error") and not has_data(r):
        L.append("failed: %s" % _short(r["error"], 400))
        return None
    return r


def render(res, hand=None):
    hand = dict(DEFAULT_HAND, **(hand or {}))
    meta = res.get("meta", {})
    L = []
    L.append("# Benchmarks: tether against `ssh -R` and a direct connection")
    L.append("")
    L.append("<!-- Generated by tests/bench/run (tests/bench/report.py). Edit only the "
             "hand-written sections; the rest is rewritten by the next run. -->")
    L.append("")
    when = meta.get("finished") or meta.get("started")
    L.append("**Measured on %s** by `tests/bench/run%s`%s." % (
        fmt_time(when) if when else "an unknown date",
        "" if meta.get("full_run") else (" --smoke" if meta.get("smoke") else "") +
        (" --only " + ",".join(meta.get("only", []))
         if meta.get("only") and not meta.get("full_run") else ""),
        (", %.0f s" % (meta["finished"] - meta["started"]))
        if meta.get("finished") and meta.get("started") else ""))
    if meta.get("smoke"):
        L.append("")
        L.append("> Smoke run at tiny sizes: it shows that every part of the bench works; "
                 "its figures say nothing about performance.")
    if meta.get("error"):
        L.append("")
        L.append("> The run stopped early: %s" % _short(meta["error"], 300))
    sz = meta.get("sizes", {})
    ran = set(meta.get("only") or ("bulk", "requests", "scale", "setup", "storm", "ports",
                                   "tcp", "websocket", "grpc", "handshakes", "idle-memory", "fanout",
                                   "connects-pg", "peer"))

    def shown(scenario):
        return scenario in ran

    L.append("")
    L.append("## Machine and versions")
    L.append("")
    mem = meta.get("mem_kib")
    rows = [
        ("CPU", "%s, %s cores (nproc)" % (meta.get("cpu", "?"), meta.get("nproc", "?"))),
        ("memory", "%.1f GiB" % (mem / 1048576.0) if mem else "?"),
        ("kernel", meta.get("kernel", "?")),
        ("tether (wolfSSL build in use)", meta.get("tether", "?")),
        ("AES-128-GCM, one core (`%s`)" % meta.get("aesgcm_cmd", "bench_sites aesgcm"),
         "%s MB/s" % meta["aesgcm_mbps"] if meta.get("aesgcm_mbps") else "not measured"),
        ("OpenSSH", meta.get("openssh", "?")),
        ("ssh -R negotiated", "cipher %s, MAC %s, kex %s" % (
            meta.get("ssh_cipher"), meta.get("ssh_mac"), meta.get("ssh_kex"))
         if meta.get("ssh_cipher") else "not run"),
        ("stunnel (the TLS tunnel peer)", meta.get("stunnel", "not run")),
        ("nginx", meta.get("nginx", "?")),
        ("load", "%s; %s" % (meta.get("wrk", "?"), meta.get("h2load", "?"))),
        ("curl", meta.get("curl", "?")),
        ("python3-websockets; python3-grpcio (tcp, websocket, grpc peers)", "%s; %s" % (
            meta.get("websockets", "?"), meta.get("grpcio", "?"))),
        ("open files limit (soft, hard)", ", ".join(str(x) for x in meta.get("nofile", []))),
        ("ephemeral ports", meta.get("eph_range", "?")),
        ("load average at start; at end", "%s; %s (other work on the machine shows here)" % (
            meta.get("loadavg_start", "?"), meta.get("loadavg_end", "?"))),
    ]
    L.append(table(("", ""), rows))

    L.append("")
    L.append("## Targets (issue 6)")
    L.append("")
    L.append(table(("target", "measured", "verdict"),
                   [r[1:] for r in targets(res) if shown(r[0])]))

    # 1. bulk
    if shown('bulk'):
        L.append("")
        bulk = res.get("bulk")
        mib = (bulk or {}).get("bytes", (sz.get("bulk_mib") or 0) << 20) / 1048576.0
        rep = (bulk or {}).get("repeat", 1)
        L.append("## 1. Bulk transfer: one %s each way (MB/s%s)" % (
            "%.0f GiB" % (mib / 1024) if mib >= 1024 else "%.0f MiB" % mib,
            ", median of %d" % rep if rep > 1 else ""))
        L.append("")
        rows = []
        for key, name in (("download_h1", "download, HTTP/1.1"), ("upload_h1", "upload, HTTP/1.1"),
                          ("download_h2", "download, HTTP/2"), ("upload_h2", "upload, HTTP/2")):
            d = (bulk or {}).get(key) if bulk and "error" not in bulk else None
            if bulk and "error" in bulk:
                d = {p: {"error": bulk["error"]} for p in BULK_PATHS}
            d = d or {}
            t, s, x, hs, tl = (d.get(p) for p in BULK_PATHS)
            rows.append((name, cell(t, "mbps"), cell(s, "mbps"), cell(x, "mbps"),
                         cell(hs, "mbps"), cell(tl, "mbps"),
                         ratio(_get(d, "tether", "mbps"), _get(d, "ssh", "mbps")),
                         ratio(_get(d, "tether", "mbps"), _get(d, "direct", "mbps")),
                         ratio(_get(d, "tether", "mbps"), _get(d, "https", "mbps")),
                         ratio(_get(d, "tether", "mbps"), _get(d, "tls", "mbps"))))
        L.append(table(("transfer", "tether", "ssh -R", "direct", "direct HTTPS", "stunnel pair",
                        "tether / ssh -R", "tether / direct", "tether / direct HTTPS",
                        "tether / stunnel pair"), rows))
        L.append("")
        L.append("*direct HTTPS* is curl talking TLS 1.3 straight to nginx (OpenSSL): one "
                 "TLS hop and nothing in between, the most any proxy whose users speak "
                 "HTTPS could reach here. tether has two TLS hops (user and tunnel). "
                 "*stunnel pair* is the encrypted tunnel built like `ssh -R`: curl speaks "
                 "plain HTTP to a stunnel client, which carries it over one TLS 1.3 hop "
                 "(OpenSSL, AES-128-GCM, as tether's tunnel) to a stunnel server in front "
                 "of nginx.")
        if meta.get("aesgcm_mbps"):
            L.append("")
            L.append("The AES-128-GCM ceiling of the linked wolfSSL on one core is %d MB/s "
                     "(tether encrypts twice on this path: user TLS and tunnel TLS)."
                     % meta["aesgcm_mbps"])
        L.extend(cpu_budget(bulk))

    # 2. requests
    if shown('requests'):
        L.append("")
        req = res.get("requests")
        L.append("## 2. Requests: %s keep-alive connections fetching 1 KiB for %s s" % (
            (req or {}).get("conns", sz.get("conns")), (req or {}).get("duration_s",
                                                                       sz.get("duration"))))
        L.append("")
        rows = []
        for key, name in (("h1", "HTTP/1.1, wrk"), ("h2", "HTTP/2, h2load")):
            d = (req or {}).get(key) if req and "error" not in req else None
            if req and "error" in req:
                d = {p: {"error": req["error"]} for p in ("tether", "ssh", "direct")}
            d = d or {}
            t, s, x = (d.get(p) for p in ("tether", "ssh", "direct"))
            rows.append((name + ": req/s", cell(t, "rps"), cell(s, "rps"), cell(x, "rps"),
                         ratio(_get(d, "tether", "rps"), _get(d, "ssh", "rps")),
                         ratio(_get(d, "tether", "rps"), _get(d, "direct", "rps"))))
            for q in ("p50_ms", "p99_ms"):
                rows.append((name + ": " + q[:3] + " latency", cell(t, q, "%.2f", " ms"),
                             cell(s, q, "%.2f", " ms"), cell(x, q, "%.2f", " ms"),
                             ratio(_get(d, "tether", q), _get(d, "ssh", q)),
                             ratio(_get(d, "tether", q), _get(d, "direct", q))))
            rows.append((name + ": failed requests", cell(t, "errors"), cell(s, "errors"),
                         cell(x, "errors"), "", ""))
        L.append(table(("measure", "tether", "ssh -R", "direct", "tether / ssh -R",
                        "tether / direct"), rows))

    # 3. scale
    if shown('scale'):
        sc = section(L, "3. Idle sites: hub memory", res, "scale", lambda r: r.get("points"))
        if sc:
            rows = [("0 (after enrolling all)", "%.1f" % (sc["rss_0_kib"] / 1024.0), "")]
            for p in sc["points"]:
                if "rss_kib" in p:
                    rows.append(("%d" % p["sites"], "%.1f" % (p["rss_kib"] / 1024.0),
                                 "%.1f" % p["per_site_kib"] if "per_site_kib" in p else "(base)"))
                else:
                    rows.append(("%d" % p["sites"], "failed: %s" % _short(p.get("error"), 200), ""))
            L.append(table(("connected sites", "hub RSS (MiB)", "KiB per site since 1 site"), rows))
            L.append("")
            L.append("%d sites registered and enrolled through the API in %.1f s. Open-files "
                     "limit of hub and simulators: %s." % (
                         sc["counts"][-1], sc["enroll_s"], ", ".join(str(x) for x in sc["nofile"])))

    # 3b. idle memory at the descriptor limit
    if shown('idle-memory'):
        im = section(L, "3b. Idle sites at the descriptor limit: hub memory against nginx",
                     res, "idle-memory", lambda r: r.get("hub"))
        if im:
            ngx = {p["conns"]: p for p in _get(im, "nginx", "points") or []}
            rows = []
            for p in im["hub"]:
                n = ngx.get(p["conns"], {})
                if "rss_kib" not in p:
                    rows.append(("%d" % p["conns"], "failed: %s" % _short(p.get("error"), 200),
                                 "", "", "", ""))
                    continue
                rows.append(("%d" % p["conns"], "%.1f" % (p["rss_kib"] / 1024.0),
                             "%.1f" % p["per_conn_kib"] if "per_conn_kib" in p else "(base)",
                             "%.1f" % (n["rss_kib"] / 1024.0) if "rss_kib" in n else
                             _short(n.get("error") or _get(im, "nginx", "error") or "", 120),
                             "%.1f" % n["per_conn_kib"] if "per_conn_kib" in n else
                             ("(base)" if "rss_kib" in n else ""),
                             ratio(p.get("per_conn_kib"), n.get("per_conn_kib"))
                             if "per_conn_kib" in p else "(base)"))
            L.append(table(("idle connections", "hub RSS (MiB)", "hub KiB per site since 1",
                            "nginx worker RSS (MiB)", "nginx KiB per connection since 1",
                            "hub / nginx"), rows))
            L.append("")
            L.append("Each step was read %.0f s after its last connection came up (the hub's "
                     "ping interval, %g s, plus a settling pause). Sites dial from %d loopback "
                     "addresses (127.10.x.y, %d sites each) in %d bench_sites processes; hub "
                     "before any site: %.1f MiB, %d descriptors open at %d sites; "
                     "%d sites enrolled through the API in %.1f s. Open-files limit: %s. "
                     "nginx: %s, one worker, OpenSSL, TLS 1.3, client certificate asked "
                     "(`ssl_verify_client optional_no_ca`), no session tickets; bench_sites "
                     "hold opens each connection from the same addresses with a site's "
                     "certificate, sends the HTTP/2 preface and SETTINGS, then stays quiet." % (
                         im["wait_s"], im["ping_s"], im["sources"], im["per_source"],
                         im["processes"], im.get("rss_0_kib", 0) / 1024.0,
                         im.get("hub_fds", 0), im["counts"][-1], im["counts"][-1],
                         im.get("enroll_s", 0), ", ".join(str(x) for x in im["nofile"]),
                         _get(im, "nginx", "version") or "?"))

    # 4. setup
    if shown('setup'):
        su = section(L, "4. Connection setup: TLS handshakes + registrations accepted per "
                     "second", res, "setup", lambda r: False)
        if su:
            L.append(table(("sites started at once", "connected", "first to last (s)",
                            "mean per second", "peak in one second", "hub CPU",
                            "simulators' CPU"),
                           [(su["sites"], su["connected"], "%.2f" % su["span_s"],
                             cell(su, "rate"), su["peak_per_s"], "%.0f%%" % su["hub_cpu_pct"],
                             "%.0f%% (%d processes)" % (su.get("sims_cpu_pct", 0),
                                                        su.get("sims", 0)))]))
            if su.get("histogram"):
                L.append("")
                L.append("Connects per second from the first on: %s." % ", ".join(
                    str(x) for x in su["histogram"]))
            if su.get("handshake_cap_events"):
                L.append("")
                L.append("The hub queued %d handshakes over its per-address cap (all simulated "
                         "sites come from 127.0.0.1)." % su["handshake_cap_events"])

    # 5. storm
    if shown('storm'):
        st = section(L, "5. Reconnect storm", res, "storm", lambda r: "back_after_kill_s" in r)
        if st:
            runs = st.get("runs") or [st]
            names = {"this": "this build", "compare": st.get("compare_label", "compared")}

            def hubs(r):
                d, t = r.get("drained", "this"), r.get("took", "this")
                return names[d] if d == t else "%s → %s" % (names[d], names[t])

            def lag(r, p=""):
                if not r.get(p + "lag_samples"):
                    return ""
                f = lambda v: "%g" % (v * 1000) if v != float("inf") else "> 5000"
                return "≤ %s (%.1f%% ≤ 20 ms)" % (
                    f(r[p + "lag_p99_le_s"]), 100 * (r.get(p + "lag_share_le_20ms") or 0))

            def load(r):
                la = r.get("loadavg")
                return "%.1f" % la[0] if la else ""
            L.append(table(("restart", "hub drained → restarted", "sites", "signal", "hub exit (s)",
                            "signal to listening (s)", "all back after signal (s)",
                            "after listening (s)", "peak per second", "seconds with connects",
                            "hub loop lag p99 (ms)", "idle timer beside it, p99 (ms)",
                            "load (1 min)"),
                           [("%d of %d" % (i + 1, len(runs)), hubs(r), st["sites"],
                             "SIG" + st["signal"],
                             cell(r, "exit_s", "%.2f"), cell(r, "down_s", "%.2f"),
                             cell(r, "back_after_kill_s", "%.2f")
                             if "back_after_kill_s" in r else _short(r.get("error", "?")),
                             ("%.2f" % r["back_after_listen_s"]) if "back_after_listen_s" in r
                             else "",
                             r.get("peak_per_s", ""), r.get("seconds_with_connects", ""), lag(r),
                             lag(r, "probe_"), load(r))
                            for i, r in enumerate(runs)]))
            if st.get("per_source"):
                L.append("")
                L.append("The sites dial from loopback addresses 127.10.x.y, %d sites each, in "
                         "%s bench_sites processes." % (st["per_source"],
                                                        st.get("processes", "?")))
            L.append("")
            for i, r in enumerate(runs):
                L.append("Restart %d, connects per second from `listening` on: %s." % (
                    i + 1, ", ".join(str(x) for x in r.get("histogram", []))))
            if any(r.get("lag_samples") for r in runs):
                L.append("")
                L.append("Hub loop lag: the new hub's `tether_hub_loop_lag_seconds` (a timer due "
                         "every 20 ms, how late each tick ran) from its start to all sites back; "
                         "the share of ticks at most 20 ms late in brackets. Idle timer: a "
                         "process doing nothing but the same 20 ms timer, run beside the hub "
                         "over the same span: the lateness the shared cores' scheduler alone "
                         "adds.")
            if len(runs) > 1:
                L.append("")
                L.append("The target is judged on this build's slowest restart and its worst "
                         "lag.")

    # 6. ports
    if shown('ports'):
        po = section(L, "6. Port economy", res, "ports", lambda r: "tunnel_sockets_after" in r)
        if po:
            rate = po.get("rps")
            opened = po["tunnel_connections_opened"] + po["new_sessions"]
            rows = [
                ("requests sent (h2load, HTTP/2 users, %s connections)" % po.get("conns", "?"),
                 "%d" % po["requests_done"], "%d" % po["requests"]),
                ("rate (req/s)", cell(po, "rps"), "same work"),
                ("failed requests", "%d" % (po.get("errors") or 0), ""),
                ("TCP connections site → hub opened during the run", "%d (%d in use)" % (
                    opened, po["tunnel_sockets_after"]), "%d" % po["requests"]),
                (TW + "site side of site → hub", tw(po, "tunnel"),
                 "%d (rate × 60 s)" % po["per_request_tw_ports"]
                 if po.get("per_request_tw_ports") is not None else "rate × 60 s"),
                (TW + "hub side of site → hub", tw(po, "tunnel_server"), ""),
                ("connections site → nginx opened (nginx `$connection`)",
                 "%d for %d requests" % (po["service_connections"],
                                         po["service_requests_logged"]),
                 "%d" % po["requests"]),
                (TW + "site side of site → nginx", tw(po, "service"), ""),
                (TW + "nginx side of site → nginx", tw(po, "service_server"), ""),
                (TW + "users → hub, both sides", tw(po, "users", "users_server"), ""),
                ("ephemeral ports per destination", "%d (%d-%d)" % (
                    po["eph_size"], po["eph_lo"], po["eph_hi"]), ""),
                ("highest sustainable req/s per site (ports / 60 s)", "no port limit",
                 "%.0f" % po["per_request_max_rps"] if po.get("per_request_max_rps") else ""),
            ]
            L.append(table(("", "tether (measured)", "one connection per request (computed)"),
                           rows))
            if rate and po.get("per_request_tw_ports"):
                L.append("")
                L.append("At the measured %.0f req/s a connection-per-request design would hold "
                         "%d sockets in TIME_WAIT, %.1f× the %d ephemeral ports one source "
                         "address has towards one destination." % (
                             rate, po["per_request_tw_ports"],
                             po["per_request_tw_ports"] / float(po["eph_size"]), po["eph_size"]))

    # 7. a TCP service
    if shown('tcp'):
        tc = section(L, "7. TCP service: %s each way (MB/s%s)" % (
            _size((res.get("tcp") or {}).get("bytes", (sz.get("tcp_mib") or 0) << 20)),
            ", median of %d" % (res.get("tcp") or {}).get("repeat", 1)
            if (res.get("tcp") or {}).get("repeat", 1) > 1 else ""),
            res, "tcp", lambda r: r.get("download"))
        if tc:
            rows, cpu_rows = [], []
            for kind in ("download", "upload"):
                d = tc.get(kind) or {}
                t, s_, x = (d.get(p) for p in ("tether", "ssh", "direct"))
                rows.append((kind + (" (service → client)" if kind == "download"
                                     else " (client → service)"),
                             cell(t, "mbps"), cell(s_, "mbps"), cell(x, "mbps"),
                             ratio(_get(d, "tether", "mbps"), _get(d, "ssh", "mbps")),
                             ratio(_get(d, "tether", "mbps"), _get(d, "direct", "mbps"))))
                for p in ("tether", "ssh", "direct"):
                    c = (d.get(p) or {}).get("cpu_s_per_gib")
                    if c:
                        cpu_rows.append((kind, PATH_NAMES[p], ", ".join(
                            "%s %.2f" % (r, c[r]) for r in ROLE_ORDER if r in c),
                            "%.2f" % sum(c.values())))
            L.append(table(("transfer", "tether (`tetherctl connect --listen`)", "ssh -R",
                            "direct", "tether / ssh -R", "tether / direct"), rows))
            if cpu_rows:
                L.append("")
                L.append("CPU seconds per GiB moved, by process (client and service: the "
                         "python sink/source of tests/bench/peers.py):")
                L.append("")
                L.append(table(("transfer", "path", "CPU s per GiB by process", "total"),
                               cpu_rows))

    # 8, 9. WebSocket echo, gRPC unary calls
    for key, num, title, unit, what in (
            ("websocket", 8, "WebSocket echo", "msgs/s", "msgs"),
            ("grpc", 9, "gRPC unary calls", "calls/s", "calls")):
        if not shown(key):
            continue
        w = res.get(key) or {}
        r = section(L, "%d. %s: %s connections × %s %s of 64 bytes, one at a time each" % (
            num, title, w.get("conns", sz.get("ws_conns" if key == "websocket"
                                              else "grpc_conns")),
            w.get(what, sz.get("ws_msgs" if key == "websocket" else "grpc_calls")), what),
            res, key, lambda r: r.get("tether") or r.get("direct"))
        if r:
            t, x = r.get("tether"), r.get("direct")
            rows = [(unit, cell(t, "rate"), cell(x, "rate"),
                     ratio(_get(r, "tether", "rate"), _get(r, "direct", "rate")))]
            for q in ("p50_ms", "p99_ms"):
                rows.append((q[:3] + " round trip", cell(t, q, "%.2f", " ms"),
                             cell(x, q, "%.2f", " ms"),
                             ratio(_get(r, "tether", q), _get(r, "direct", q))))
            rows.append(("failed", cell(t, "errors"), cell(x, "errors"), ""))
            L.append(table(("measure", "tether", "direct", "tether / direct"), rows))

    # 10. handshakes
    if shown("handshakes"):
        hs = res.get("handshakes") or {}
        r = section(L, "10. Handshakes: full TLS 1.3 connects with a client certificate, "
                    "server pinned to one core", res, "handshakes",
                    lambda r: r.get("tether") or r.get("nginx"))
        if r:
            names = (("tether", "tether-hub (state in tmpfs)%s" % (
                        ", linked with " + r["wolfssl"] if r.get("wolfssl") else "")),
                     ("tether_compare", "tether-hub, %s" % (r.get("compare_label") or
                                                          "--hs-compare-bin build")),
                     ("tether_disk", "tether-hub (state on disk)"),
                     ("tether_compare_disk", "tether-hub, %s (state on disk)" % (
                         r.get("compare_label") or "--hs-compare-bin build")),
                     ("nginx", "nginx (%s)" % (_get(r, "versions", "nginx") or "OpenSSL")))
            nginx_pc = _get(r, "nginx", "per_core")
            rows = []
            for key, label in names:
                if key not in r:
                    continue
                d = r[key] or {}
                if "per_core" not in d:
                    rows.append((label, "failed: " + _short(d.get("error", "?")), "", "", "", "",
                                 ""))
                    continue
                rows.append((label,
                             "%.0f (%.0f–%.0f)" % (d["rate"], d["rate_min"], d["rate_max"]),
                             "%.3f (%.3f–%.3f)" % (d["cpu_ms"], d["cpu_ms_min"], d["cpu_ms_max"]),
                             "%.0f (%.0f–%.0f)" % (d["per_core"], d["per_core_min"],
                                                  d["per_core_max"]),
                             "%d" % d.get("errors", 0),
                             ratio(d["per_core"], nginx_pc) if key != "nginx" else ""))
            L.append(table(("server", "connects/s (median; range)",
                            "server CPU ms per connect", "connects/s per server core",
                            "errors", "per core / nginx"), rows))
            first = next((r[k] for k in ("tether", "nginx") if isinstance(r.get(k), dict)
                          and r[k].get("group")), {})
            L.append("")
            L.append("%d runs per server, taking turns, %.1f s each after a %.1f s warm-up; "
                     "%d connections in flight, cycling through %d client identities (each its "
                     "own P-256 key and self-signed certificate, enrolled in each hub). Key "
                     "exchange %s, cipher %s. Server on CPU %s, load generator (`bench_sites "
                     "handshakes`) on CPU %s. *Per server core* = connects ÷ the server "
                     "process's CPU seconds over the same window." % (
                         r.get("repeat", 1), r.get("ms", 0) / 1000.0,
                         r.get("warmup_ms", 0) / 1000.0, r.get("conns", 0), r.get("sites", 0),
                         first.get("group") or "?", first.get("cipher") or "?",
                         r.get("server_cpu", "?"), r.get("client_cpu", "?")))
            if r.get("profile"):
                L.append("")
                L.append(r["profile"])

    # 11. fan-out
    if shown("fanout"):
        fanout_section(L, res)

    # 12. connects on PostgreSQL
    if shown("connects-pg"):
        connects_pg_section(L, res)

    # 13. one peer hop
    if shown("peer"):
        peer_section(L, res)

    for name, title in (("method", "Method"), ("findings", "Findings and profiling")):
        L.append("")
        L.append("## %s" % title)
        L.append("")
        L.append("<!-- BEGIN HAND-WRITTEN: %s -->" % name)
        L.append(hand[name].rstrip("\n"))
        L.append("<!-- END HAND-WRITTEN: %s -->" % name)

    L.append("")
    L.append("## Commands this run made")
    L.append("")
    L.append("Secrets are shown as `$TOKEN`; temporary paths as they were.")
    L.append("")
    L.append("```")
    for c in meta.get("commands", []):
        L.append(c)
    L.append("```")
    if meta.get("sanitizer_reports"):
        L.append("")
        L.append("Sanitizer reports in process logs: %s" % "; ".join(meta["sanitizer_reports"]))
    return "\n".join(L) + "\n"


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write("usage: report.py RESULTS.json [OUT.md]\n")
        return 2
    with open(argv[1]) as f:
        res = json.load(f)
    out = argv[2] if len(argv) == 3 else None
    text = render(res, existing_hand_written(out))
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
