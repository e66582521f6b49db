#!/usr/bin/env python3
# The PostgreSQL test fixture itself: the harness's databases on the suite's server, parallel and left-over starts, nothing left running.
# SPDX-License-Identifier: MIT
"""Runs under the CTest fixture `pg` (the server pg/start left in
$TETHER_BIN/pgtest). Checks:
- the harness creates a database per call (unique names), reads rows through
  psql with NULLs, empty strings, "|" and newlines intact, and drops its
  databases at cleanup;
- Hub.sql() and Hub.db_check() work on PostgreSQL (amcheck over a table and
  its indexes);
- two more servers started at once in two other build directories come up on
  different ports; a `start` over a server left running (and over one killed
  with SIGKILL) replaces it; `stop` leaves no process and no directory.
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Harness, Hub, load_pgfixture  # noqa: E402

FX = os.path.join(HERE, "pgfixture.py")


def postgres_pids(data):
    """PIDs of processes whose command line names data (a postmaster -D)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if data.encode() in argv:
            out.append(int(d))
    return out


def family(pid):
    """pid and its children (a postmaster's backends and workers)."""
    out = [pid]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(d))
    return out


def alive(pids):
    return [p for p in pids if os.path.exists("/proc/%d" % p)]


def fixture(h, cmd, build):
    return h.run([sys.executable, FX, cmd, build], timeout=180)


def main(h):
    if h.db_backend != "pg":
        h.note("TETHER_TEST_DB=%s: the harness part runs on PostgreSQL anyway" % h.db_backend)
        h.db_backend = "pg"
    fx = load_pgfixture()

    # Databases of the harness.
    u1 = h.pg_create_db("a")
    u2 = h.pg_create_db("a")
    h.check(u1 != u2 and u1.startswith(h.pg_url("t_")), "two databases, two names", (u1, u2))
    names = [r[0] for r in h.pg_rows(h.pg_url(), "SELECT datname FROM pg_database")]
    h.check(all(u.rsplit("/", 1)[1] in names for u in (u1, u2)), "both exist on the server",
            names)
    rows = h.pg_rows(u1, "SELECT 1, NULL, '', 'a|b', E'x\\ny' UNION ALL "
                         "SELECT 2, 'n', 'e', 'c', 'd' ORDER BY 1")
    h.check(rows == [["1", None, "", "a|b", "x\ny"], ["2", "n", "e", "c", "d"]],
            "rows come back with NULL, empty string, | and newline intact", rows)
    h.check(h.pg_rows(u1, "SELECT 1 WHERE false") == [], "no rows: an empty list")
    h.check(h.pg_rows(u1, "SELECT ''") == [[""]], "one empty string: one row")

    # Hub.sql and Hub.db_check against a database with tables and indexes.
    hub = Hub(h, "hub")
    hub.db_url = u2
    hub.sql("CREATE TABLE sites (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "name text NOT NULL UNIQUE, detail json)")
    hub.sql("INSERT INTO sites (name, detail) SELECT 'site-' || g, '{\"n\": 1}' "
            "FROM generate_series(1, 500) g")
    h.check(hub.sql("SELECT count(*), min(name) FROM sites") == "500|site-1",
            "Hub.sql() prints like the sqlite3 tool", hub.sql("SELECT count(*) FROM sites"))
    ok, detail = hub.db_check()
    h.check(ok and "2 B-tree indexes" in detail, "Hub.db_check() runs amcheck over the "
            "hub's tables and indexes", detail)
    h.check(hub.db_path is None, "no hub.db path on PostgreSQL")

    # Cleanup drops them.
    h._pg_drop_all()
    names = [r[0] for r in h.pg_rows(h.pg_url(), "SELECT datname FROM pg_database")]
    h.check(not any(u.rsplit("/", 1)[1] in names for u in (u1, u2)),
            "cleanup dropped the test's databases", names)

    # Two more servers at once, in other build trees; stopped whatever
    # happens (their data may be in /tmp, named only inside h.tmp).
    builds = [tempfile.mkdtemp(prefix="pgfx-", dir=h.tmp) for _ in range(2)]
    try:
        servers(h, fx, builds)
    finally:
        for b in builds:
            subprocess.run([sys.executable, FX, "stop", b], capture_output=True, timeout=180)


def servers(h, fx, builds):
    res = [None, None]

    def go(i):
        res[i] = fixture(h, "start", builds[i])

    ts = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    h.check(all(r.rc == 0 for r in res), "two starts at once both succeed", res)
    urls = [fx.read_url(b) for b in builds]
    h.check(all(urls) and urls[0] != urls[1], "on two different URLs", urls)
    for u in filter(None, urls):
        rows = h.pg_rows(u + "/postgres", "SELECT current_setting('max_connections'), "
                         "current_setting('fsync'), current_setting('unix_socket_directories'), "
                         "current_setting('listen_addresses'), "
                         "current_setting('server_encoding'), current_user")
        h.check(rows == [["300", "off", "", "127.0.0.1", "UTF8", "postgres"]],
                "%s: 300 connections, fsync off, no Unix socket, loopback only, UTF-8, "
                "superuser postgres" % u, rows)

    # A start over a running server replaces it; one over a killed server too.
    data0 = fx.data_dir(builds[0])
    old = fx.postmaster_pid(data0)
    r = fixture(h, "start", builds[0])
    h.check(r.rc == 0 and "left over" in r.stdout and old not in postgres_pids(data0),
            "start over a running server stops it first", r)
    data0 = fx.data_dir(builds[0])  # a new temporary directory when the first was one
    pid = fx.postmaster_pid(data0)
    os.kill(pid, signal.SIGKILL)
    h.wait_until(lambda: pid not in postgres_pids(data0), 10)
    t0 = time.monotonic()
    r = fixture(h, "start", builds[0])
    h.check(r.rc == 0 and "stale" in r.stdout and time.monotonic() - t0 < 30,
            "start over a server killed with SIGKILL", r)
    rows = h.pg_rows(fx.read_url(builds[0]) + "/postgres", "SELECT 1")
    h.check(rows == [["1"]], "the new server answers", rows)

    for b in builds:
        data = fx.data_dir(b)
        procs = family(fx.postmaster_pid(data))
        h.check(len(procs) >= 4, "the server on %s runs a postmaster and its workers" % data,
                procs)
        r = fixture(h, "stop", b)
        h.check(r.rc == 0, "stop %s" % b, r)
        gone = h.wait_until(lambda: not alive(procs) and not postgres_pids(data), 10)
        h.check(gone, "no postgres process left on %s" % data, alive(procs))
        h.check(not os.path.exists(os.path.join(b, "pgtest")), "%s/pgtest removed" % b)
    r = fixture(h, "stop", builds[0])
    h.check(r.rc == 0 and "nothing to stop" in r.stdout, "a second stop is a no-op", r)
    r = subprocess.run([sys.executable, FX, "status", builds[0]], capture_output=True, text=True)
    h.check(r.returncode == 1, "status without a server exits 1", r.stdout)


Harness.main("pgfixture", main, progs=(), tools=("psql",))
