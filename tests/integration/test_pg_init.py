#!/usr/bin/env python3
# Integration: tether-hub init --db postgresql://... keeps the registry in PostgreSQL: hub.conf's db (0600, password hidden in messages), run opens it, a site enrolls and is served, a second init on the same database joins its cluster, a server restart costs no failed call, a bad URL is a clear error.
# SPDX-License-Identifier: MIT
import os
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, Fatal, Skip, read_conf  # noqa: E402


def server_url(h):
    """The PostgreSQL server's base URL: TETHER_TEST_PG_URL, else the file the
    CTest fixture `pg` writes (BUILD/pgtest/url); None without either."""
    url = os.environ.get("TETHER_TEST_PG_URL")
    if url:
        return url.rstrip("/")
    path = os.environ.get("TETHER_TEST_PG_URL_FILE") or os.path.join(h.bin_dir, "pgtest", "url")
    try:
        with open(path) as f:
            return f.readline().strip().rstrip("/") or None
    except OSError:
        return None


def psql(url, sql):
    p = subprocess.run(["psql", "-qtA", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                       capture_output=True, timeout=30)
    if p.returncode != 0:
        raise Fatal("psql %s: %s" % (sql, p.stderr.decode(errors="replace")))
    return p.stdout.decode().strip()


def main(h):
    base = server_url(h)
    if base is None:
        raise Skip("no PostgreSQL server (TETHER_TEST_PG_URL or the pg fixture's pgtest/url)")
    name = "t_pg_init_%d" % os.getpid()
    psql(base + "/postgres", "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8'" % name)
    try:
        run(h, base, name)
    finally:
        psql(base + "/postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


def run(h, base, name):
    url = base + "/" + name
    hub = h.hub()
    r = h.run([h.bin("tether-hub"), "init", "--state", hub.dir, "--name", "127.0.0.1",
               "--public", hub.addr, "--db", url])
    h.check(r.rc == 0, "init --db succeeds", r)
    conf = os.path.join(hub.dir, "hub.conf")
    with open(conf) as f:
        text = f.read()
    h.check("db = %s\n" % url in text, "hub.conf keeps the URL as db")
    h.check(stat.S_IMODE(os.stat(conf).st_mode) == 0o600, "hub.conf is 0600 with a db")
    h.check(not os.path.exists(os.path.join(hub.dir, "hub.db")), "no hub.db is made")
    h.check(psql(url, "SELECT value FROM tether_meta WHERE key = 'application'") == "tether-hub",
            "the database is marked as a tether registry")
    h.check(psql(url, "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL") == "1",
            "the admin token is in the database")
    hub.conf = read_conf(hub.ctl_conf)
    hub.pin = hub.conf["hub_pin"][-1]
    hub.token = hub.conf["token"][-1]

    # A second state on the same database joins its cluster, with an admin
    # token of its own (test_cluster_basic tests the cluster itself).
    other = h.path("other")
    joined = h.path("joined")
    r = h.run([h.bin("tether-hub"), "init", "--state", joined, "--name", "127.0.0.1", "--db", url])
    h.check(r.rc == 0 and "joined: 2 hubs share this registry" in r.stdout and
            "admin-127-0-0-1" in r.stdout,
            "init on a database that holds a registry joins its cluster", r)
    h.check(psql(url, "SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL") == "2" and
            psql(url, "SELECT count(*) FROM hubs") == "2",
            "the join added one admin token and one hub to the database")
    # Init again on the same state without --force: refused.
    r = h.run([h.bin("tether-hub"), "init", "--state", hub.dir, "--db", url])
    h.check(r.rc == 1 and "already initialised" in r.stderr, "init again is refused", r)
    r = h.run([h.bin("tether-hub"), "init", "--state", hub.dir, "--name", "127.0.0.1"])
    h.check(r.rc == 1 and "already initialised" in r.stderr and
            not os.path.exists(os.path.join(hub.dir, "hub.db")),
            "init without --db does not turn the state into an SQLite one", r)
    # A URL that is not PostgreSQL's is a usage error; an unreachable server a
    # one-line error without the password.
    r = h.run([h.bin("tether-hub"), "init", "--state", other, "--db", "mysql://x/y"])
    h.check(r.rc == 2 and "invalid --db" in r.stderr, "a URL that is not postgresql:// is refused",
            r)
    r = h.run([h.bin("tether-hub"), "init", "--state", h.path("third"), "--db",
               "postgresql://u:s3cret@127.0.0.1:1/x"])
    h.check(r.rc == 1 and "cannot connect" in r.stderr and "s3cret" not in r.stderr
            and r.stderr.strip().count("\n") == 0,
            "an unreachable server: one line, password hidden", r)

    hub.start()
    site, svc = h.add_site(hub, "clinic")
    h.check(psql(url, "SELECT state FROM sites WHERE name = 'clinic'") == "active",
            "the enrolled site is active in PostgreSQL")
    h.check(psql(url, "SELECT count(*) FROM sessions WHERE disconnected_at IS NULL") == "1",
            "its open session is in PostgreSQL")
    r = hub.proxy("clinic", "web", "/healthz")
    h.check(r.status == 200, "a request reaches the site through the hub on PostgreSQL", r)

    # The server ends the hub's session (as a restart does): the next call is
    # served on a new connection, without an error.
    psql(base + "/postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
         "WHERE datname = '%s' AND application_name = 'tether-hub'" % name)
    time.sleep(0.3)
    r = hub.api("GET", "/v1/sites")
    h.check(r.status == 200 and b"clinic" in (r.body or b""),
            "after the server ended the hub's session, the next call is served", r)
    mark = hub.proc.mark()
    r = hub.ctl("site", "revoke", "clinic")
    h.check(r.rc == 0, "revoke on PostgreSQL", r)
    h.check(hub.proc.wait_log(r"\bsite_disconnected\b.*\bsite=clinic\b", 5, since=mark,
                              fatal=False), "the revoke cuts the tunnel")
    h.check(psql(url, "SELECT state FROM sites WHERE name = 'clinic'") == "revoked",
            "the revoke is in the database")
    h.check("FATAL" not in hub.proc.text(), "libpq's notices stay out of the hub's log")
    hub.proc.stop()


if __name__ == "__main__":
    Harness.main("test_pg_init", main, tools=("curl", "psql"))
